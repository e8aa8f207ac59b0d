package wire

import "time"

// Doctor outcomes, from good to bad.
const (
	DoctorOK   = "ok"
	DoctorWarn = "warn" // the event can run; something should be looked at
	DoctorFail = "fail" // the event will not work as configured
)

// DoctorReport is GET /api/v1/doctor: every check, the capacity estimate
// and the worst outcome.
type DoctorReport struct {
	Status       string         `json:"status"`
	Participants int            `json:"participants"` // the head count the checks are against
	Checks       []DoctorCheck  `json:"checks"`
	Capacity     DoctorCapacity `json:"capacity"`
	Daemon       bool           `json:"daemon"` // checked by the running daemon
	Took         float64        `json:"seconds"`
	Time         time.Time      `json:"time"`
}

// DoctorCheck is one thing looked at.
type DoctorCheck struct {
	ID     string `json:"id"`   // engine, image, llm-image, llm-model, ports, dns, certificate, llm, gateway, disk, clock, capacity
	Name   string `json:"name"` // in words
	Status string `json:"status"`
	Detail string `json:"detail"`        // what was found
	Fix    string `json:"fix,omitempty"` // what to do about it
}

// DoctorCapacity is how many participants the machine holds, measured.
type DoctorCapacity struct {
	Measured      bool             `json:"measured"`
	Source        string           `json:"source"`
	Idle          int              `json:"idle"`
	IdleLimit     string           `json:"idle_limit,omitempty"` // memory, cpu, ports
	AtLimits      int              `json:"at_limits"`
	AtLimitsLimit string           `json:"at_limits_limit,omitempty"`
	SandboxMemory int64            `json:"sandbox_memory_bytes"`
	SandboxCPU    float64          `json:"sandbox_cpu_cores"`
	SandboxPids   int64            `json:"sandbox_pids"`
	LLMMemory     int64            `json:"llm_memory_bytes"`
	HostMemory    int64            `json:"host_memory_bytes"`
	HostCPUs      int              `json:"host_cpus"`
	Reserved      int64            `json:"reserved_bytes"`
	Resources     []DoctorResource `json:"resources"`
	Notes         []string         `json:"notes,omitempty"`
}

// DoctorResource is what one resource allows.
type DoctorResource struct {
	Name      string  `json:"name"`      // memory, cpu, ports
	Available float64 `json:"available"` // bytes, cores or ports
	Idle      float64 `json:"idle"`      // one idle participant's share
	Limit     float64 `json:"limit"`     // one participant at sandbox.limits (0: no limit)
	HoldsIdle int     `json:"holds_idle"`
	HoldsAt   int     `json:"holds_at_limits"` // -1: unlimited
}

// Check returns the check with id, if there is one.
func (r DoctorReport) Check(id string) (DoctorCheck, bool) {
	for _, c := range r.Checks {
		if c.ID == id {
			return c, true
		}
	}
	return DoctorCheck{}, false
}
