// Package wizard is thon init's interactive side: it looks at the machine
// (Detect), asks the organizer about the event on a terminal (Run, with
// charmbracelet/huh forms), and writes the answers into the commented
// starter thon.yaml (Render), which it validates before anything is written.
package wizard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/pki"
)

// Detection is what thon init found on this machine, to propose.
type Detection struct {
	ExternalIP string   // the default route's address; "" when none
	Hostnames  []string // this machine's fully qualified names (its own, reverse DNS of ExternalIP)
	Docker     string   // the engine's version; "" when it does not answer
	DockerErr  string   // why it does not
	GPU        string   // nvidia, amd, intel or none (what llm.gpu: auto picks)
	Lemonade   string   // Lemonade's URL when one answers
	Llama      string   // a llama.cpp llama-server's URL when one answers
	Ports      []Port   // 443 and 80, and whether THON could listen on them
}

// Port is whether THON can listen on a TCP port.
type Port struct {
	Port int    `json:"port"`
	Free bool   `json:"free"`
	Why  string `json:"why,omitempty"` // when not: "in use", "needs root"
}

// DetectOptions say where Detect looks; the zero value is this machine.
type DetectOptions struct {
	LemonadeURL string // default config.DefaultLLMURL
	LlamaURL    string // default http://127.0.0.1:8080
	Ports       []int  // default 443, 80
	// Docker pings the engine; nil: Docker from the environment.
	Docker func(ctx context.Context) (string, error)
	// ProbeTimeout bounds each HTTP probe of an LLM server (default 2s).
	ProbeTimeout time.Duration
}

// Detect looks at the machine. It takes at most a few seconds: every
// probe is local and bounded.
func Detect(ctx context.Context, o DetectOptions) Detection {
	if o.LemonadeURL == "" {
		o.LemonadeURL = config.DefaultLLMURL
	}
	if o.LlamaURL == "" {
		o.LlamaURL = "http://127.0.0.1:8080"
	}
	if o.Ports == nil {
		o.Ports = []int{443, 80}
	}
	if o.Docker == nil {
		o.Docker = dockerVersion
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = 2 * time.Second
	}
	var d Detection
	if ip, err := pki.DetectExternalIP(); err == nil {
		d.ExternalIP = ip.String()
	}
	d.Hostnames = hostnames(ctx, d.ExternalIP)
	if v, err := o.Docker(ctx); err == nil {
		d.Docker = v
	} else {
		d.DockerErr = firstLine(err.Error())
	}
	d.GPU = config.DetectGPU()
	if lemonadeAnswers(ctx, o.LemonadeURL, o.ProbeTimeout) {
		d.Lemonade = strings.TrimRight(o.LemonadeURL, "/")
	}
	if llamaAnswers(ctx, o.LlamaURL, o.ProbeTimeout) {
		d.Llama = strings.TrimRight(o.LlamaURL, "/")
	}
	for _, p := range o.Ports {
		d.Ports = append(d.Ports, probePort(p))
	}
	return d
}

// PortFree reports what Detect found of port p (free when not probed).
func (d Detection) PortFree(p int) Port {
	for _, q := range d.Ports {
		if q.Port == p {
			return q
		}
	}
	return Port{Port: p, Free: true}
}

func dockerVersion(ctx context.Context) (string, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	v, err := cli.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return "", err
	}
	return v.Version, nil
}

// hostnames are this machine's names that look public: its own host name
// when fully qualified, and the reverse DNS of its address.
func hostnames(ctx context.Context, ip string) []string {
	var out []string
	add := func(n string) {
		n = strings.TrimSuffix(strings.ToLower(n), ".")
		if !strings.Contains(n, ".") || strings.HasSuffix(n, ".local") || strings.HasSuffix(n, ".localdomain") || n == "localhost" {
			return
		}
		for _, o := range out {
			if o == n {
				return
			}
		}
		out = append(out, n)
	}
	if h, err := os.Hostname(); err == nil {
		add(h)
	}
	if ip != "" {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if names, err := net.DefaultResolver.LookupAddr(ctx, ip); err == nil {
			for _, n := range names {
				add(n)
			}
		}
	}
	return out
}

// status GETs url and decodes a 200 answer's JSON into into; it returns
// the status (0 when nothing answers within timeout, or a 200 is not JSON).
func status(ctx context.Context, url string, timeout time.Duration, into any) int {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(into) != nil {
		return 0
	}
	return resp.StatusCode
}

func get(ctx context.Context, url string, timeout time.Duration, into any) bool {
	return status(ctx, url, timeout, into) == http.StatusOK
}

// lemonadeAnswers: Lemonade Server's /api/v1/health says it is one
// ({"status": "ok", "version": …}); one with an API key is alive (/live)
// and refuses the health request without the key.
func lemonadeAnswers(ctx context.Context, base string, timeout time.Duration) bool {
	base = strings.TrimRight(base, "/")
	var h struct {
		Status  string `json:"status"`
		Version string `json:"version"`
	}
	if status(ctx, base+"/api/v1/health", timeout, &h) == http.StatusOK && h.Status == "ok" && h.Version != "" {
		return true
	}
	var live struct {
		Status string `json:"status"`
	}
	return status(ctx, base+"/live", timeout, &live) == http.StatusOK && live.Status == "ok" &&
		status(ctx, base+"/api/v1/health", timeout, &h) == http.StatusUnauthorized
}

// llamaAnswers: llama-server's /health ({"status": "ok"}) and its
// OpenAI-compatible /v1/models.
func llamaAnswers(ctx context.Context, base string, timeout time.Duration) bool {
	base = strings.TrimRight(base, "/")
	var h struct {
		Status string `json:"status"`
	}
	var m struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	return get(ctx, base+"/health", timeout, &h) && h.Status == "ok" && get(ctx, base+"/v1/models", timeout, &m)
}

func probePort(p int) Port {
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(p))
	if err == nil {
		ln.Close()
		return Port{Port: p, Free: true}
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return Port{Port: p, Why: "in use by another program"}
	case errors.Is(err, syscall.EACCES):
		// Free, but this user may not listen on it: thon serve runs as
		// root under its systemd unit (thon setup), or with
		// CAP_NET_BIND_SERVICE.
		return Port{Port: p, Free: true, Why: "below 1024: thon needs root (sudo, or the unit thon setup installs)"}
	default:
		return Port{Port: p, Why: err.Error()}
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// Summary is what Detect found, one line each, for the wizard's first page.
func (d Detection) Summary() string {
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "%-11s %s\n", k, v) }
	line("Address:", orNone(d.ExternalIP, "none found (no default route)"))
	line("Names:", orNone(strings.Join(d.Hostnames, ", "), "none public (an address only: THON's local CA)"))
	if d.Docker != "" {
		line("Docker:", d.Docker+" answers")
	} else {
		line("Docker:", "does not answer ("+d.DockerErr+"): thon setup installs it")
	}
	line("GPU:", d.GPU)
	switch {
	case d.Lemonade != "":
		line("LLM:", "Lemonade answers at "+d.Lemonade)
	case d.Llama != "":
		line("LLM:", "llama.cpp's llama-server answers at "+d.Llama)
	default:
		line("LLM:", "no server answers (THON can run llama.cpp itself)")
	}
	var ps []string
	for _, p := range d.Ports {
		s := strconv.Itoa(p.Port) + ": "
		switch {
		case p.Free && p.Why == "":
			s += "free"
		case p.Free:
			s += "free, " + p.Why
		default:
			s += p.Why
		}
		ps = append(ps, s)
	}
	line("Ports:", strings.Join(ps, "; "))
	return strings.TrimRight(b.String(), "\n")
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}
