package sandbox

import (
	"context"
	"time"
)

// Meter is what an engine tells THON's readiness check (thon doctor): the
// machine it runs on, an image, what a sandbox or a service container uses
// right now, and the output of a command run in a sandbox. Engines without
// it are checked without measurements.
type Meter interface {
	// Host describes the machine the engine runs containers on.
	Host(ctx context.Context) (Host, error)
	// Image describes an image the engine has; ErrNotFound when it has none.
	Image(ctx context.Context, ref string) (Image, error)
	// SandboxUsage samples what the user's running sandbox uses.
	SandboxUsage(ctx context.Context, user string) (Usage, error)
	// ServiceUsage samples what a running service container uses.
	ServiceUsage(ctx context.Context, name string) (Usage, error)
	// Exec runs cmd in the user's running sandbox, as its user, and
	// returns the combined output and the exit code.
	Exec(ctx context.Context, user string, cmd []string) (output string, exitCode int, err error)
}

// Host is the machine an engine runs containers on.
type Host struct {
	Engine   string   `json:"engine"`  // "docker"
	Version  string   `json:"version"` // the engine's version
	OS       string   `json:"os"`      // e.g. "Debian GNU/Linux 12 (bookworm)"
	CPUs     int      `json:"cpus"`
	Memory   int64    `json:"memory_bytes"`
	RootDir  string   `json:"root_dir,omitempty"` // where images, containers and volumes live
	Cgroup   string   `json:"cgroup,omitempty"`   // "1" or "2"
	Warnings []string `json:"warnings,omitempty"`
}

// Image is an image an engine has.
type Image struct {
	Ref     string            `json:"ref"`
	ID      string            `json:"id"`
	Size    int64             `json:"size_bytes"`
	Created time.Time         `json:"created"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// Usage is one sample of what a container uses. CPU time is cumulative:
// two samples give the cores used in between (CPUCores).
type Usage struct {
	Read time.Time `json:"read"`
	// MemoryBytes is the memory in use without the page cache the kernel
	// reclaims (what docker stats shows).
	MemoryBytes int64 `json:"memory_bytes"`
	MemoryLimit int64 `json:"memory_limit_bytes,omitempty"`
	// CPUNanos is the CPU time used since the container started.
	CPUNanos uint64 `json:"cpu_nanos"`
	Pids     int64  `json:"pids"`
}

// CPUCores is the average number of cores used between an earlier sample
// and u; 0 when they are not in order.
func (u Usage) CPUCores(earlier Usage) float64 {
	dt := u.Read.Sub(earlier.Read)
	if dt <= 0 || u.CPUNanos < earlier.CPUNanos {
		return 0
	}
	return float64(u.CPUNanos-earlier.CPUNanos) / float64(dt.Nanoseconds())
}
