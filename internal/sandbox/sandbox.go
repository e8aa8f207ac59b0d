// Package sandbox defines what THON needs from a container engine: one isolated
// IDE per participant, found again by its labels after any restart.
//
// Engines live in subpackages (docker, kubernetes) and implement Runtime;
// sandboxtest holds the conformance suite every engine passes and an
// in-memory engine for tests above the engines. Nothing engine-specific leaks
// out of this package: the orchestrator speaks only in Specs and Instances.
//
// # The contract
//
// Sandboxes are addressed by user name: a user has at most one sandbox per
// instance of THON (the instance is the engine's name prefix or namespace), and
// a Runtime never sees another instance's sandboxes.
//
//   - Create checks the Spec (Spec.Check, a *UserError before anything is
//     made), makes the workspace unless it is kept from before, writes
//     Spec.Files and makes the sandbox, labelled with user, group and the
//     Spec's Hash. ErrExists when the user has a sandbox, even when several
//     Creates race. The sandbox is created, not started, unless
//     Capabilities.CreateStarts.
//   - Start returns the sandbox starting or running; it becomes running, with
//     an Endpoint, by itself. On a running sandbox it only returns it.
//   - Stop (grace, then killed) leaves the sandbox stopped with no Endpoint;
//     on a stopped one it does nothing. Pause freezes a running sandbox
//     (paused, no Endpoint) and Resume thaws it; both are idempotent. With
//     Capabilities.PauseIsStop they are Stop and Start. Running says nothing
//     of the IDE's health unless Capabilities.ReadyIsHealthy.
//   - Remove deletes the sandbox and keeps its workspace; with purge it
//     deletes the workspace too (even when there was no sandbox: then it still
//     returns ErrNotFound). PurgeWorkspace deletes a kept workspace and refuses
//     (a *UserError wrapping ErrExists) while the user has a sandbox.
//   - Start, Stop, Pause, Resume, Remove, Inspect and Logs return an error
//     wrapping ErrNotFound when the user has no sandbox.
//   - Inspect and List (sorted by user) report what the engine holds: a new
//     Runtime on the same engine and instance (a restarted daemon) finds every
//     sandbox again with its ID, user, group, image, spec hash and state. The
//     ID stays across Stop and Start and changes on a new Create.
//   - An IDE that exits is reported stopped with its exit code and a reason,
//     or starting with a reason while the engine restarts it.
//   - The workspace (volume mode) survives Remove without purge and a new
//     Create, also in another group, where it appears at the new
//     WorkspacePath.
//   - Logs streams the output (stdout and stderr merged) of a running
//     sandbox; of a stopped one, its last run's output when
//     Capabilities.StoppedLogs, else a *UserError saying none is kept.
//   - Archive streams the workspace as a tar: every entry under {user}/
//     (the workspace directory itself first), with its owner, mode and
//     time as the engine holds them. It works on a running or paused
//     sandbox, and on a stopped one with Capabilities.StoppedArchive (else
//     a *UserError saying to start it); never through a helper sandbox.
//   - Usage samples what every running sandbox uses now, sorted by user,
//     one entry each: memory and CPU time where the engine counts them,
//     workspace disk use when asked and Capabilities.DiskUsage; a measure
//     the engine cannot take is Unknown, never a guess. A stopped sandbox
//     is not listed.
//   - Every method is safe for concurrent use.
//   - Close releases what the Runtime holds (connections, watches); the
//     sandboxes keep running.
//
// Capabilities say where an engine departs from Docker's model; the
// orchestrator honours each of them.
package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Labels every managed sandbox carries, so state can be rebuilt from the engine alone.
const (
	LabelManaged = "io.thon.managed"
	LabelUser    = "io.thon.user"
	LabelGroup   = "io.thon.group"
	LabelSpec    = "io.thon.spec" // hash of the Spec the sandbox was created from
)

// WorkspaceMode says where a participant's files live.
type WorkspaceMode string

const (
	WorkspaceVolume    WorkspaceMode = "volume"    // a named volume per user; survives recreate and group moves
	WorkspaceBind      WorkspaceMode = "bind"      // a host directory per user
	WorkspaceEphemeral WorkspaceMode = "ephemeral" // nothing kept
)

// Limits caps what one sandbox may use. Zero means "engine default".
type Limits struct {
	NanoCPUs    int64 `json:"nano_cpus,omitempty"`
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	Pids        int64 `json:"pids,omitempty"`
}

// Spec is the desired sandbox of one participant.
type Spec struct {
	User       string            `json:"user"`
	Group      string            `json:"group"`
	Image      string            `json:"image"`
	Port       int               `json:"port"`        // the IDE's port inside the sandbox
	HealthPath string            `json:"health_path"` // answered with 2xx once the IDE is up
	Env        map[string]string `json:"env,omitempty"`
	Limits     Limits            `json:"limits"`
	Workspace  WorkspaceMode     `json:"workspace"`
	// WorkspaceDir is the host directory holding per-user directories (bind mode):
	// the user's files are at WorkspaceDir/{user}, so they follow a group move.
	WorkspaceDir string `json:"workspace_dir,omitempty"`
	// Files are written into the sandbox after it is created and before it
	// first starts (assistant configs, VS Code settings). A recreate writes
	// them again from the current settings.
	Files []File `json:"files,omitempty"`
}

// File is one file an engine writes into a new sandbox. Missing parent
// directories inside a home directory (/home/NAME/…, NAME included) are made
// owned by the file's owner, so the participant can write next to the file;
// other missing parents are made owned by root, mode 0755.
type File struct {
	Path string `json:"path"` // absolute, clean
	Mode int64  `json:"mode"` // permission bits, e.g. 0o600
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
	Data []byte `json:"data"`
}

// CheckFiles reports the first file whose path is not absolute and clean.
func CheckFiles(files []File) error {
	for _, f := range files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return fmt.Errorf("sandbox file %q: the path must be absolute and clean", f.Path)
		}
		if f.Mode&^0o7777 != 0 || f.UID < 0 || f.GID < 0 {
			return fmt.Errorf("sandbox file %q: bad mode or owner", f.Path)
		}
	}
	return nil
}

// OwnedDirs returns the parent directories of p that are made owned by the
// file's owner: those from /home/NAME down, outermost first.
func OwnedDirs(p string) []string {
	parts := strings.Split(strings.TrimPrefix(path.Dir(p), "/"), "/")
	if len(parts) < 2 || parts[0] != "home" {
		return nil
	}
	var dirs []string
	for i := 2; i <= len(parts); i++ {
		dirs = append(dirs, "/"+strings.Join(parts[:i], "/"))
	}
	return dirs
}

// WorkspacePath is where the participant's files appear inside the sandbox.
func (s Spec) WorkspacePath() string { return WorkspacePath(s.Group, s.User) }

// WorkspacePath is /workspace/{group}/{user}.
func WorkspacePath(group, user string) string { return "/workspace/" + group + "/" + user }

// State is a sandbox's lifecycle state as the engine reports it.
type State string

const (
	StateMissing  State = "missing"  // no sandbox exists for the user
	StateCreated  State = "created"  // exists, never started
	StateStarting State = "starting" // running, IDE not yet healthy (orchestrator only)
	StateRunning  State = "running"
	StatePaused   State = "paused"
	StateStopped  State = "stopped"
	StateFailed   State = "failed" // orchestrator only: last operation failed
)

// Instance is a sandbox as the engine sees it.
type Instance struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	User     string    `json:"user"`
	Group    string    `json:"group"`
	Image    string    `json:"image"`
	State    State     `json:"state"`
	SpecHash string    `json:"spec_hash,omitempty"`
	Created  time.Time `json:"created"`
	// Endpoint is host:port where the daemon reaches the IDE ("" when not running).
	Endpoint string `json:"endpoint,omitempty"`
	// ExitCode and Reason explain a stopped sandbox (for example OOM-killed),
	// or one the engine is restarting after a crash.
	ExitCode int    `json:"exit_code,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// Runtime is a container engine; the package documentation states its
// contract, and sandboxtest.Conformance checks it. Every method is safe for
// concurrent use. Sandboxes are addressed by their user name: a user has at
// most one sandbox.
//
// Like a Nomad task driver, a Runtime can List (recover) every sandbox it
// manages, so a restarted daemon adopts what is running instead of recreating it.
type Runtime interface {
	// Name is the engine's name, for messages ("docker").
	Name() string
	// Capabilities says how the engine departs from Docker's model.
	Capabilities() Capabilities
	// Ping checks that the engine answers; its error says how to start it.
	Ping(ctx context.Context) error
	// Prepare readies shared resources (network, image check) for spec.
	Prepare(ctx context.Context, spec Spec) error
	// Create makes the sandbox (not started). ErrExists if the user has one.
	Create(ctx context.Context, spec Spec) (Instance, error)
	Start(ctx context.Context, user string) (Instance, error)
	Stop(ctx context.Context, user string, grace time.Duration) error
	Pause(ctx context.Context, user string) error
	Resume(ctx context.Context, user string) error
	// Remove deletes the sandbox; with purge it deletes the workspace too.
	Remove(ctx context.Context, user string, purge bool) error
	// Inspect returns ErrNotFound when the user has no sandbox.
	Inspect(ctx context.Context, user string) (Instance, error)
	// List returns every sandbox this runtime manages.
	List(ctx context.Context) ([]Instance, error)
	// Logs streams the sandbox's output (stdout and stderr merged).
	Logs(ctx context.Context, user string, opts LogOptions) (io.ReadCloser, error)
	// PurgeWorkspace deletes a user's kept workspace when no sandbox uses it.
	PurgeWorkspace(ctx context.Context, spec Spec) error
	// Archive streams the user's workspace as an uncompressed tar whose
	// entries are under {user}/. ErrNotFound when the user has no sandbox.
	// Closing the stream early ends the transfer.
	Archive(ctx context.Context, user string) (io.ReadCloser, error)
	// Usage samples the resources every running sandbox uses now.
	Usage(ctx context.Context, opts UsageOptions) (UsageReport, error)
	// Close releases the Runtime's connections and watches; sandboxes keep
	// running. Closing twice is fine; nothing else is called after Close.
	Close() error
}

// Watcher is what an engine whose sandboxes' addresses can change behind
// THON's back also does (Docker: a container the engine restarted gets
// whichever address is free, perhaps another participant's old one).
// Watch sends the user of each sandbox the engine starts, stops or
// removes, as it happens, and WatchLost when what it sends may have gaps:
// the engine's stream broke (the engine stopped or restarted), and again
// when it is open again. The channel closes when ctx ends.
type Watcher interface {
	Watch(ctx context.Context) <-chan string
}

// WatchLost, sent by a Watcher, means every sandbox may have changed.
const WatchLost = ""

// Unknown is a measure of Usage or Machine the engine cannot take.
const Unknown = -1

// UsageOptions says what a Usage sample measures besides CPU and memory.
type UsageOptions struct {
	// Disk measures each workspace's size too (Capabilities.DiskUsage):
	// slower than the rest, so a caller asks for it less often.
	Disk bool
}

// UsageReport is one sample of what the sandboxes use, and what the
// engine's machine has.
type UsageReport struct {
	Sandboxes []Use   `json:"sandboxes"` // running ones, sorted by user
	Machine   Machine `json:"machine"`
	// Note says why measures are Unknown when the engine knows ("the
	// cluster serves no metrics API: install metrics-server …").
	Note string `json:"note,omitempty"`
}

// Use is what one running sandbox uses; a field is Unknown (-1) when
// the engine cannot say.
type Use struct {
	User string `json:"user"`
	// ID is the sandbox's ID (Instance.ID): CPUTime of two samples with
	// the same ID can be subtracted.
	ID string `json:"id"`
	// CPUTime is the CPU time the sandbox's processes used since it
	// started (Docker's cgroup counter), in nanoseconds.
	CPUTime time.Duration `json:"cpu_time"`
	// CPU is the cores in use, averaged by the engine over its own short
	// window (the Kubernetes metrics API), when it gives a rate instead of
	// CPUTime.
	CPU float64 `json:"cpu"`
	// Memory is the bytes in use, without the page cache the kernel can
	// take back (what `docker stats` shows, a Pod's working set).
	Memory int64 `json:"memory"`
	// MemoryLimit is the sandbox's memory limit in bytes (0: none).
	MemoryLimit int64 `json:"memory_limit"`
	// Disk is the workspace's size in bytes (only when asked).
	Disk int64 `json:"disk"`
}

// Machine is what the engine's machine (or cluster) has for sandboxes; a
// field is Unknown (-1) when the engine cannot say.
type Machine struct {
	CPUs   float64 `json:"cpus"`
	Memory int64   `json:"memory"`
}

// LogOptions selects which log lines to stream.
type LogOptions struct {
	Tail   int // last N lines; 0 = all
	Follow bool
}

var (
	// ErrNotFound: the user has no sandbox.
	ErrNotFound = errors.New("sandbox not found")
	// ErrExists: the user already has a sandbox.
	ErrExists = errors.New("sandbox already exists")
)

// UserError is an error whose message tells the organizer what to do.
// Callers show Error() as it is and exit non-zero.
type UserError struct {
	Msg  string // what is wrong
	Hint string // how to fix it
	Err  error  // the cause, if any
}

func (e *UserError) Error() string {
	s := e.Msg
	if e.Hint != "" {
		s += ": " + e.Hint
	}
	return s
}

func (e *UserError) Unwrap() error { return e.Err }

// Hintf builds a UserError.
func Hintf(err error, hint, format string, args ...any) *UserError {
	return &UserError{Msg: fmt.Sprintf(format, args...), Hint: hint, Err: err}
}

// Hash is a short, stable digest of the Spec; engines store it in LabelSpec so
// THON can tell a sandbox created from other settings (or another group).
func (s Spec) Hash() string {
	b, _ := json.Marshal(s) // maps marshal with sorted keys: stable
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Capabilities is how an engine departs from Docker's model, which is the
// reference: Docker's are StoppedLogs, StoppedArchive, DiskUsage and every
// workspace mode, nothing else. Every engine states its own; the orchestrator honours them.
type Capabilities struct {
	// ReadyIsHealthy: running means the IDE answered its health path (the
	// engine probes it itself, like Kubernetes' readiness probe), so THON
	// does not probe the endpoint.
	ReadyIsHealthy bool
	// PauseIsStop: the engine cannot freeze a sandbox; pause stops it (the
	// workspace is kept) and resume starts it again.
	PauseIsStop bool
	// CreateStarts: Create starts the sandbox too (a Kubernetes Pod runs
	// once it exists); a Start after it only returns the sandbox.
	CreateStarts bool
	// StoppedLogs: Logs of a stopped sandbox gives its last run's output.
	// Without it, Logs of a stopped sandbox is a *UserError saying the
	// engine keeps none (Kubernetes deletes a stopped sandbox's Pod).
	StoppedLogs bool
	// Workspaces are the workspace modes the engine supports; Spec.Check
	// refuses the others with a *UserError.
	Workspaces []WorkspaceMode
	// StoppedArchive: Archive reads the workspace of a stopped sandbox
	// (Docker's archive API reads a stopped container's files). Without
	// it the sandbox must run (Kubernetes reads through the Pod), and THON
	// starts a stopped one for the export and stops it again.
	StoppedArchive bool
	// DiskUsage: Usage measures the workspaces' size when asked. Without
	// it Usage.Disk is always Unknown (Kubernetes: a PVC's use is the
	// kubelet's, not the API's).
	DiskUsage bool
}

// Supports reports whether the engine supports workspace mode m ("" is
// volume).
func (c Capabilities) Supports(m WorkspaceMode) bool {
	if m == "" {
		m = WorkspaceVolume
	}
	return slices.Contains(c.Workspaces, m)
}

// WorkspaceModes are all the workspace modes, in the order they are offered.
var WorkspaceModes = []WorkspaceMode{WorkspaceVolume, WorkspaceBind, WorkspaceEphemeral}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// ValidName reports whether s is a valid user or group name: a DNS label
// (lowercase letters, digits and '-', at most 63, not starting or ending
// with '-').
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Validate reports what is wrong with the spec, whatever the engine, as a
// *UserError: user and group names, image, port, environment, files and
// workspace mode.
func (s Spec) Validate() error {
	const hint = "names use lowercase letters, digits and '-' (at most 63)"
	if !ValidName(s.User) {
		return Hintf(nil, hint, "invalid user name %q", s.User)
	}
	if !ValidName(s.Group) {
		return Hintf(nil, hint, "invalid group name %q", s.Group)
	}
	if s.Image == "" {
		return Hintf(nil, "set the sandbox image", "no sandbox image for %s", s.User)
	}
	if s.Port <= 0 || s.Port > 65535 {
		return Hintf(nil, "use a port between 1 and 65535", "invalid sandbox port %d", s.Port)
	}
	for k := range s.Env {
		if !envKeyRE.MatchString(k) {
			return Hintf(nil, "names use letters, digits and _, and do not start with a digit, e.g. TZ or MY_VAR", "invalid environment variable name %q", k)
		}
	}
	if err := CheckFiles(s.Files); err != nil {
		return Hintf(err, "this is a bug in THON: please report it", "%v", err)
	}
	switch s.Workspace {
	case "", WorkspaceVolume, WorkspaceEphemeral:
	case WorkspaceBind:
		if s.WorkspaceDir == "" {
			return Hintf(nil, "set the workspace directory", "workspace mode bind needs a host directory")
		}
	default:
		return Hintf(nil, "use volume, bind or ephemeral", "unknown workspace mode %q", s.Workspace)
	}
	return nil
}

// Check is Validate, then whether an engine with capabilities c (named
// engine in messages, "Kubernetes") can run the spec's workspace mode.
func (s Spec) Check(c Capabilities, engine string) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if !c.Supports(s.Workspace) {
		var ok []string
		for _, m := range WorkspaceModes {
			if c.Supports(m) {
				ok = append(ok, string(m))
			}
		}
		what := map[WorkspaceMode]string{WorkspaceVolume: " (a volume per participant)", WorkspaceBind: " (a host directory)", WorkspaceEphemeral: ""}[s.Workspace]
		return Hintf(nil, "use workspace mode "+strings.Join(ok, " or "),
			"workspace mode %s%s is not supported on %s", s.Workspace, what, engine)
	}
	return nil
}

// EnvVar is one variable of a sandbox's environment.
type EnvVar struct{ Name, Value string }

// Environ is the sandbox's environment, sorted by name: the spec's Env, then
// THON_USER, THON_GROUP, THON_WORKSPACE (WorkspacePath) and PORT, which win
// over an Env entry of the same name.
func (s Spec) Environ() []EnvVar {
	env := maps.Clone(s.Env)
	if env == nil {
		env = map[string]string{}
	}
	env["THON_USER"] = s.User
	env["THON_GROUP"] = s.Group
	env["THON_WORKSPACE"] = s.WorkspacePath()
	env["PORT"] = strconv.Itoa(s.Port)
	out := make([]EnvVar, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, EnvVar{k, env[k]})
	}
	return out
}
