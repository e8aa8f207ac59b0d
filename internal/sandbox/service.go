package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"regexp"
	"time"
)

// LabelService names a service container (the managed LLM server): a
// helper THON runs beside the sandboxes, never listed as a sandbox.
const LabelService = "io.thon.service"

// ServiceSpec is a long-running helper container THON runs on the sandbox
// engine, on the sandboxes' network, where sandboxes cannot reach it (only
// this process can): today the managed LLM server.
type ServiceSpec struct {
	// Name is a DNS label ("llm"); the container is {instance}-{name}.
	Name  string   `json:"name"`
	Image string   `json:"image"`
	Args  []string `json:"args,omitempty"` // after the image's entrypoint
	// User runs the service ("uid:gid"; "" the image's user).
	User string            `json:"user,omitempty"`
	Env  map[string]string `json:"env,omitempty"`
	// Port is what the service listens on inside; Endpoint says where this
	// process reaches it.
	Port   int     `json:"port"`
	Mounts []Mount `json:"mounts,omitempty"`
	// Files are written before the container first starts.
	Files  []File `json:"files,omitempty"`
	Limits Limits `json:"limits"`
	// GPU passes the host's GPUs through: "" none, "nvidia" (all, through
	// the NVIDIA container runtime), "dri" (/dev/dri: Vulkan on AMD and
	// Intel), "amd" (/dev/dri and /dev/kfd: Vulkan and ROCm).
	GPU string `json:"gpu,omitempty"`
}

// Mount is a host file or directory in a service container, read-only.
type Mount struct {
	Source string `json:"source"` // absolute host path
	Target string `json:"target"` // absolute path inside
}

// GPU pass-through kinds of ServiceSpec.GPU.
const (
	GPUNone   = ""
	GPUNvidia = "nvidia"
	GPUDRI    = "dri"
	GPUAMD    = "amd"
)

var serviceNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// Check reports what is wrong with the spec, or nil.
func (s ServiceSpec) Check() error {
	if !serviceNameRE.MatchString(s.Name) {
		return fmt.Errorf("service name %q: use lowercase letters, digits and '-'", s.Name)
	}
	if s.Image == "" {
		return fmt.Errorf("service %s: no image", s.Name)
	}
	if s.Port <= 0 || s.Port > 65535 {
		return fmt.Errorf("service %s: invalid port %d", s.Name, s.Port)
	}
	for _, m := range s.Mounts {
		if !path.IsAbs(m.Source) || !path.IsAbs(m.Target) || path.Clean(m.Target) != m.Target {
			return fmt.Errorf("service %s: mount %s → %s: both paths must be absolute", s.Name, m.Source, m.Target)
		}
	}
	switch s.GPU {
	case GPUNone, GPUNvidia, GPUDRI, GPUAMD:
	default:
		return fmt.Errorf("service %s: unknown GPU kind %q", s.Name, s.GPU)
	}
	return CheckFiles(s.Files)
}

// Hash is a short, stable digest of the spec: a running service made from
// another spec is replaced.
func (s ServiceSpec) Hash() string {
	b, _ := json.Marshal(s)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// ServiceInstance is a service container as the engine sees it.
type ServiceInstance struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Image    string    `json:"image"`
	State    State     `json:"state"`
	SpecHash string    `json:"spec_hash,omitempty"`
	Endpoint string    `json:"endpoint,omitempty"` // host:port, when running
	Started  time.Time `json:"started,omitempty"`
	ExitCode int       `json:"exit_code,omitempty"`
	Reason   string    `json:"reason,omitempty"`
}

// ServiceRunner is what an engine offers for service containers. Engines
// without it (Kubernetes today) cannot run THON's managed LLM server.
type ServiceRunner interface {
	// RunService makes the service run as spec says: a container made
	// from another spec is replaced, a stopped one started. It returns
	// once the container runs (not once the service answers).
	RunService(ctx context.Context, spec ServiceSpec) (ServiceInstance, error)
	// InspectService returns ErrNotFound when there is no such service.
	InspectService(ctx context.Context, name string) (ServiceInstance, error)
	// StartService starts a stopped service container as it is.
	StartService(ctx context.Context, name string) (ServiceInstance, error)
	// RemoveService stops and deletes it; a missing one is not an error.
	RemoveService(ctx context.Context, name string) error
	// ServiceLogs streams its output.
	ServiceLogs(ctx context.Context, name string, opts LogOptions) (io.ReadCloser, error)
}
