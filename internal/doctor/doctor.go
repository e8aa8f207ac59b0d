// Package doctor says whether this machine is ready for an event and how
// many participants it holds: every check of what the event needs (the
// engine, the images, ports, host names, the certificate, the LLM, the AI
// gateway as a sandbox reaches it, disk, time), each ok, warn or fail with
// what to do, and a capacity estimate measured on a running idle sandbox
// (the engine's figures) with the resource that limits it named.
//
// The CLI runs it in-process when no daemon answers; the daemon runs it
// for GET /api/v1/doctor with what it knows (its engine, its LLM service,
// the addresses it serves).
package doctor

import (
	"context"
	"crypto/x509"
	"net"
	"time"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/llm"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/wire"
)

// Status is a check's outcome.
type Status string

// Outcomes, from good to bad.
const (
	OK   Status = "ok"
	Warn Status = "warn" // the event can run; something should be looked at
	Fail Status = "fail" // the event will not work as configured
)

func (s Status) rank() int {
	switch s {
	case Warn:
		return 1
	case Fail:
		return 2
	}
	return 0
}

// worse is the worse of two outcomes.
func worse(a, b Status) Status {
	if b.rank() > a.rank() {
		return b
	}
	return a
}

// Check is one thing looked at.
type Check struct {
	ID     string `json:"id"`   // engine, image, llm-image, llm-model, ports, dns, certificate, llm, gateway, disk, clock, capacity
	Name   string `json:"name"` // in words
	Status Status `json:"status"`
	Detail string `json:"detail"`        // what was found
	Fix    string `json:"fix,omitempty"` // what to do about it
}

// Report is every check, the capacity estimate and the worst outcome.
type Report struct {
	Status       Status    `json:"status"`
	Participants int       `json:"participants"` // the head count the checks are against
	Checks       []Check   `json:"checks"`
	Capacity     Capacity  `json:"capacity"`
	Daemon       bool      `json:"daemon"` // checked by the running daemon
	Took         float64   `json:"seconds"`
	Time         time.Time `json:"time"`
}

// Check returns the check with id, if there is one.
func (r Report) Check(id string) (Check, bool) {
	for _, c := range r.Checks {
		if c.ID == id {
			return c, true
		}
	}
	return Check{}, false
}

// Options is what the doctor looks at.
type Options struct {
	Config *config.Config
	// Runtime is the sandbox engine; nil: it could not be set up (the
	// engine check says why, from RuntimeErr).
	Runtime    sandbox.Runtime
	RuntimeErr error
	// Participants is the head count; < 0 counts thon.yaml's.
	Participants int
	// LLM is the LLM server's status (the daemon's service); nil asks the
	// server thon.yaml names directly (a server THON runs is then found
	// down unless the daemon runs).
	LLM func(ctx context.Context) llm.Status
	// Daemon says the THON daemon runs: the ports in Serving are its own,
	// and the AI gateway can be reached from a sandbox.
	Daemon bool
	// Serving are the host:port addresses THON listens on.
	Serving []string
	// ExternalIP is the address participants reach (the daemon's, once
	// detected); "" is access.external_ip, else detected.
	ExternalIP string
	// CAPool verifies the front door's certificate (the local CA); nil
	// reads it from the data directory.
	CAPool *x509.CertPool
	// Probe lets the doctor start a throwaway sandbox to measure (and to
	// reach the gateway from) when no participant's sandbox runs.
	Probe bool
	// Settle is how long a sandbox must have run before it counts as idle
	// (a probe waits that long after its IDE answers); default 10s.
	Settle time.Duration
	// Window is how long CPU use is sampled for; default 3s.
	Window time.Duration
	// Resolver looks host names up; nil: the system's.
	Resolver *net.Resolver
	// Progress is told what a long step is doing; nil: nothing.
	Progress func(string)
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.Settle <= 0 {
		o.Settle = 10 * time.Second
	}
	if o.Window <= 0 {
		o.Window = 3 * time.Second
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Participants < 0 {
		o.Participants = len(o.Config.Users())
	}
}

// Run looks at everything and returns the report. It never fails: what
// cannot be looked at is a check that says why.
func Run(ctx context.Context, o Options) Report {
	o.defaults()
	start := o.Now()
	d := &doc{o: o, cfg: o.Config}
	d.meter, _ = o.Runtime.(sandbox.Meter)
	rep := Report{Participants: o.Participants, Daemon: o.Daemon, Time: start.UTC()}
	engineOK := d.engine()
	if engineOK {
		d.image()
	}
	d.llmImage(engineOK)
	d.llmModel()
	d.ports()
	d.dns(ctx)
	d.certificate(ctx)
	d.llm(ctx)
	// Measuring needs a sandbox: a participant's that runs, or a probe.
	var sb *measured
	if engineOK {
		sb = d.sandbox(ctx)
	}
	d.gateway(ctx, sb)
	d.disk()
	d.clock()
	rep.Capacity = d.capacity(ctx, sb)
	if sb != nil && sb.cleanup != nil {
		sb.cleanup()
	}
	rep.Checks = d.checks
	rep.Status = OK
	for _, c := range rep.Checks {
		rep.Status = worse(rep.Status, c.Status)
	}
	rep.Took = o.Now().Sub(start).Seconds()
	return rep
}

// doc is one run of the doctor.
type doc struct {
	o      Options
	cfg    *config.Config
	meter  sandbox.Meter
	host   *sandbox.Host
	checks []Check
}

func (d *doc) add(c Check) { d.checks = append(d.checks, c) }

// Wire is the report as the REST API answers it (and thon doctor prints it).
func (r Report) Wire() wire.DoctorReport {
	w := wire.DoctorReport{Status: string(r.Status), Participants: r.Participants, Checks: []wire.DoctorCheck{}, Daemon: r.Daemon, Took: r.Took, Time: r.Time}
	for _, c := range r.Checks {
		w.Checks = append(w.Checks, wire.DoctorCheck{ID: c.ID, Name: c.Name, Status: string(c.Status), Detail: c.Detail, Fix: c.Fix})
	}
	c := r.Capacity
	w.Capacity = wire.DoctorCapacity{Measured: c.Measured, Source: c.Source, Idle: c.Idle, IdleLimit: c.IdleLimit, AtLimits: c.AtLimits, AtLimitsLimit: c.AtLimitsLimit,
		SandboxMemory: c.SandboxMemory, SandboxCPU: c.SandboxCPU, SandboxPids: c.SandboxPids, LLMMemory: c.LLMMemory, HostMemory: c.HostMemory, HostCPUs: c.HostCPUs,
		Reserved: c.Reserved, Resources: []wire.DoctorResource{}, Notes: c.Notes}
	for _, x := range c.Resources {
		w.Capacity.Resources = append(w.Capacity.Resources, wire.DoctorResource(x))
	}
	return w
}
