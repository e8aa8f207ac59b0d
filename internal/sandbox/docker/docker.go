// Package docker runs sandboxes on a Docker Engine: one container per
// participant on a dedicated bridge network where sandboxes cannot reach each
// other, found again by labels after any restart.
//
// It speaks the Engine API through the official client with version
// negotiation, so it works with old engines (API 1.41, Docker 20.10) and
// current ones alike.
package docker

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/sandbox"
)

// Labels this engine adds besides the ones in package sandbox.
const (
	// LabelInstance carries Options.NamePrefix, so two THONs (or two tests)
	// sharing one engine never see each other's sandboxes.
	LabelInstance = "io.thon.instance"
	// LabelPort is the IDE's port inside the sandbox (Spec.Port).
	LabelPort = "io.thon.port"
)

// Defaults for Options.
const (
	DefaultNetwork = "thon"
	DefaultPrefix  = "thon"
)

// iccOption is the bridge driver option that, set to "false", stops
// containers on the network from talking to each other.
const iccOption = "com.docker.network.bridge.enable_icc"

// Options configures a Runtime.
type Options struct {
	// Host is the engine address ("unix:///var/run/docker.sock",
	// "tcp://host:2376"); "" uses DOCKER_HOST or the default socket.
	Host string
	// Network is the bridge network the sandboxes join; default "thon".
	Network string
	// NamePrefix starts every container and volume name and is stored in
	// the io.thon.instance label; default "thon".
	NamePrefix string
}

// Runtime is the Docker implementation of sandbox.Runtime.
type Runtime struct {
	cli     *client.Client
	host    string
	network string
	prefix  string

	mu            sync.Mutex
	net           *netInfo         // the validated network, nil until known
	engineMachine *sandbox.Machine // the engine's CPUs and memory, once asked

	// forceRoutable, when set (by tests), replaces endpoint detection.
	forceRoutable *bool
}

var _ sandbox.Runtime = (*Runtime)(nil)

var prefixRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// New returns a Runtime for the engine at opts.Host. It does not contact the
// engine: Ping or Prepare do.
func New(opts Options) (*Runtime, error) {
	if opts.Network == "" {
		opts.Network = DefaultNetwork
	}
	if opts.NamePrefix == "" {
		opts.NamePrefix = DefaultPrefix
	}
	if !prefixRE.MatchString(opts.NamePrefix) {
		return nil, sandbox.Hintf(nil, "use letters, digits, '_', '.' or '-', starting with a letter or digit",
			"invalid Docker name prefix %q", opts.NamePrefix)
	}
	if !prefixRE.MatchString(opts.Network) {
		return nil, sandbox.Hintf(nil, "use letters, digits, '_', '.' or '-', starting with a letter or digit",
			"invalid Docker network name %q", opts.Network)
	}
	copts := []client.Opt{client.FromEnv}
	if opts.Host != "" {
		copts = append(copts, client.WithHost(opts.Host))
	}
	cli, err := client.New(copts...)
	if err != nil {
		return nil, sandbox.Hintf(err, "set DOCKER_HOST (or the docker host setting) to an address such as unix:///var/run/docker.sock",
			"cannot use the Docker engine address: %v", err)
	}
	return &Runtime{
		cli:     cli,
		host:    cli.DaemonHost(),
		network: opts.Network,
		prefix:  opts.NamePrefix,
	}, nil
}

// Close releases the client's connections.
func (r *Runtime) Close() error { return r.cli.Close() }

// Name is "docker".
func (r *Runtime) Name() string { return "docker" }

// Capabilities are Docker's, the reference: a stopped container keeps its
// logs and its files (the archive API reads them), the engine measures
// volumes' sizes, and every workspace mode works (bind needs the engine on
// this host).
func (r *Runtime) Capabilities() sandbox.Capabilities {
	return sandbox.Capabilities{StoppedLogs: true, StoppedArchive: true, DiskUsage: true, Workspaces: slices.Clone(sandbox.WorkspaceModes)}
}

// Network is the name of the sandboxes' bridge network.
func (r *Runtime) Network() string { return r.network }

// Ping checks that the engine answers; its error says how to start it.
func (r *Runtime) Ping(ctx context.Context) error {
	if _, err := r.cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return r.unreachable(err)
	}
	return nil
}

// Prepare checks the engine answers, that spec's image is on the engine
// (THON never pulls), and creates the sandbox network when it is missing,
// deciding how sandboxes are reached (see Routable).
func (r *Runtime) Prepare(ctx context.Context, spec sandbox.Spec) error {
	if err := spec.Check(r.Capabilities(), "Docker"); err != nil {
		return err
	}
	if err := r.Ping(ctx); err != nil {
		return err
	}
	if _, err := r.cli.ImageInspect(ctx, spec.Image); err != nil {
		if cerrdefs.IsNotFound(err) {
			return missingImage(spec.Image, err)
		}
		return r.wrapOp("prepare", "image "+spec.Image, err)
	}
	if _, err := r.loadNetwork(ctx, true); err != nil {
		return r.wrapOp("prepare", "network "+r.network, err)
	}
	return nil
}

func missingImage(image string, err error) error {
	return &sandbox.UserError{
		Msg:  fmt.Sprintf("image %s is not on this Docker engine", image),
		Hint: fmt.Sprintf("build it with: sudo thon setup image --tag %s (no registry needed; or, with Docker Hub: docker build -t %s deploy/sandbox)", image, image),
		Err:  err,
	}
}

// Create makes the sandbox of spec.User (not started): its workspace, then
// its container. ErrExists when the user already has one.
func (r *Runtime) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Instance, error) {
	if err := spec.Check(r.Capabilities(), "Docker"); err != nil {
		return sandbox.Instance{}, err
	}
	user := spec.User
	if _, err := r.find(ctx, user); err == nil {
		return sandbox.Instance{}, fmt.Errorf("create sandbox %s: %w", user, sandbox.ErrExists)
	} else if !errors.Is(err, sandbox.ErrNotFound) {
		return sandbox.Instance{}, r.wrap("create", user, err)
	}
	mounts, err := r.workspaceMounts(ctx, spec)
	if err != nil {
		return sandbox.Instance{}, r.wrap("create", user, err)
	}

	var id string
	for attempt := 0; ; attempt++ {
		ni, err := r.loadNetwork(ctx, true)
		if err != nil {
			return sandbox.Instance{}, r.wrap("create", user, err)
		}
		name := r.containerName(spec)
		cfg, hc := r.containerConfig(spec, mounts, ni.routable)
		res, err := r.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: hc})
		if err == nil {
			id = res.ID
			break
		}
		switch {
		case cerrdefs.IsConflict(err):
			return sandbox.Instance{}, r.nameConflict(ctx, name, user, err)
		case cerrdefs.IsNotFound(err):
			if _, ierr := r.cli.ImageInspect(ctx, spec.Image); cerrdefs.IsNotFound(ierr) {
				return sandbox.Instance{}, missingImage(spec.Image, err)
			}
			if attempt == 0 {
				// The network was removed behind our back: make it again.
				r.forgetNetwork()
				continue
			}
		}
		return sandbox.Instance{}, r.wrap("create", user, err)
	}
	c, err := r.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err == nil {
		err = r.ownWorkspace(ctx, c.Container, spec)
	}
	if err == nil {
		err = r.writeFiles(ctx, id, spec.Files)
	}
	if err != nil {
		// Leave nothing half made behind.
		_, _ = r.cli.ContainerRemove(context.WithoutCancel(ctx), id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		return sandbox.Instance{}, r.wrap("create", user, err)
	}
	return r.instance(ctx, c.Container), nil
}

// containerName is {prefix}-{group}-{user}. Names are only for people: the
// sandbox is always found by its labels.
func (r *Runtime) containerName(spec sandbox.Spec) string {
	return r.prefix + "-" + spec.Group + "-" + spec.User
}

// VolumeName is the named volume holding user's workspace: {prefix}-ws-{user}.
// It does not depend on the group, so it follows the user to a new group.
func (r *Runtime) VolumeName(user string) string { return r.prefix + "-ws-" + user }

func (r *Runtime) containerConfig(spec sandbox.Spec, mounts []mount.Mount, routable bool) (*container.Config, *container.HostConfig) {
	ws := spec.WorkspacePath()
	var envList []string
	for _, v := range spec.Environ() {
		envList = append(envList, v.Name+"="+v.Value)
	}
	port, _ := network.PortFrom(uint16(spec.Port), network.TCP)

	cfg := &container.Config{
		Image:        spec.Image,
		Hostname:     spec.User,
		Env:          envList,
		WorkingDir:   ws,
		ExposedPorts: network.PortSet{port: {}},
		Labels: map[string]string{
			sandbox.LabelManaged: "true",
			LabelInstance:        r.prefix,
			sandbox.LabelUser:    spec.User,
			sandbox.LabelGroup:   spec.Group,
			sandbox.LabelSpec:    spec.Hash(),
			LabelPort:            strconv.Itoa(spec.Port),
		},
	}
	useInit := true
	hc := &container.HostConfig{
		NetworkMode: container.NetworkMode(r.network),
		// unless-stopped: sandboxes come back after a host or engine
		// restart, while a sandbox stopped by THON stays stopped.
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		Init:          &useInit, // the engine's tini reaps the IDE's zombies and forwards signals
		SecurityOpt:   []string{"no-new-privileges:true"},
		// NET_RAW would let a sandbox forge packets (ARP spoofing) on the
		// shared bridge; nothing an IDE needs.
		CapDrop:    []string{"NET_RAW"},
		Privileged: false,
		ExtraHosts: []string{"host.docker.internal:host-gateway"},
		Mounts:     mounts,
		Resources: container.Resources{
			NanoCPUs: spec.Limits.NanoCPUs,
			Memory:   spec.Limits.MemoryBytes,
		},
	}
	if spec.Limits.MemoryBytes > 0 {
		hc.MemorySwap = spec.Limits.MemoryBytes // memory+swap = memory: no extra swap
	}
	if spec.Limits.Pids > 0 {
		pids := spec.Limits.Pids
		hc.PidsLimit = &pids
	}
	if !routable {
		// Container addresses are not reachable from here (Docker Desktop,
		// a remote engine): publish the IDE on the engine host's loopback.
		hc.PortBindings = network.PortMap{port: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: ""}}}
	}
	return cfg, hc
}

// nameConflict explains why the container name is taken.
func (r *Runtime) nameConflict(ctx context.Context, name, user string, cause error) error {
	// The engine reserves a name before the container it names can be
	// inspected: a concurrent Create of the same sandbox may still be making
	// it. Wait for it a little.
	var c client.ContainerInspectResult
	var err error
	for range 200 {
		c, err = r.cli.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
		if !cerrdefs.IsNotFound(err) || sleep(ctx, 50*time.Millisecond) != nil {
			break
		}
	}
	if err != nil {
		return r.wrap("create", user, cause)
	}
	var labels map[string]string
	if c.Container.Config != nil {
		labels = c.Container.Config.Labels
	}
	if labels[sandbox.LabelManaged] == "true" && labels[LabelInstance] == r.prefix {
		if labels[sandbox.LabelUser] == user {
			return fmt.Errorf("create sandbox %s: %w", user, sandbox.ErrExists)
		}
		return &sandbox.UserError{
			Msg:  fmt.Sprintf("cannot create the sandbox of %s: the container name %s is taken by the sandbox of user %s", user, name, labels[sandbox.LabelUser]),
			Hint: "group and user names joined with '-' collide; rename the group or one of the users",
			Err:  cause,
		}
	}
	return &sandbox.UserError{
		Msg:  fmt.Sprintf("cannot create the sandbox of %s: a container named %s already exists and THON does not manage it", user, name),
		Hint: fmt.Sprintf("remove it with: docker rm -f %s (check it is not needed first), or give THON another name prefix", name),
		Err:  cause,
	}
}

// Start starts (or resumes) the sandbox; on a running sandbox it only
// returns it.
func (r *Runtime) Start(ctx context.Context, user string) (sandbox.Instance, error) {
	c, err := r.inspectUser(ctx, user)
	if err != nil {
		return sandbox.Instance{}, r.wrap("start", user, err)
	}
	switch c.State.Status {
	case container.StateRunning, container.StateRestarting:
		return r.instance(ctx, c), nil
	case container.StatePaused:
		if _, err := r.cli.ContainerUnpause(ctx, c.ID, client.ContainerUnpauseOptions{}); err != nil {
			return sandbox.Instance{}, r.containerErr("start", user, err)
		}
	default:
		if _, err := r.cli.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
			return sandbox.Instance{}, r.containerErr("start", user, err)
		}
	}
	res, err := r.cli.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
	if err != nil {
		return sandbox.Instance{}, r.containerErr("start", user, err)
	}
	return r.instance(ctx, res.Container), nil
}

// Stop stops the sandbox, giving the IDE grace to exit before it is killed;
// grace <= 0 uses the engine's default (10s). A stopped sandbox stays stopped
// across engine restarts. Stopping a stopped sandbox does nothing.
func (r *Runtime) Stop(ctx context.Context, user string, grace time.Duration) error {
	c, err := r.inspectUser(ctx, user)
	if err != nil {
		return r.wrap("stop", user, err)
	}
	switch c.State.Status {
	case container.StateCreated, container.StateExited, container.StateDead, container.StateRemoving:
		return nil
	case container.StatePaused:
		// A frozen process cannot handle SIGTERM: thaw it first.
		if _, err := r.cli.ContainerUnpause(ctx, c.ID, client.ContainerUnpauseOptions{}); err != nil && !cerrdefs.IsConflict(err) {
			return r.containerErr("stop", user, err)
		}
	}
	var opts client.ContainerStopOptions
	if grace > 0 {
		secs := int(math.Ceil(grace.Seconds()))
		opts.Timeout = &secs
	}
	if _, err := r.cli.ContainerStop(ctx, c.ID, opts); err != nil {
		return r.containerErr("stop", user, err)
	}
	return nil
}

// Pause freezes a running sandbox (its processes keep their memory).
func (r *Runtime) Pause(ctx context.Context, user string) error {
	c, err := r.inspectUser(ctx, user)
	if err != nil {
		return r.wrap("pause", user, err)
	}
	switch c.State.Status {
	case container.StatePaused:
		return nil
	case container.StateRunning:
	default:
		return fmt.Errorf("pause sandbox %s: it is %s, not running", user, c.State.Status)
	}
	// With cgroup v1, runc cannot always freeze a container whose processes
	// are busy on a busy host: it gives up with "unable to freeze" and thaws
	// the container back, leaving it running (one pause in ten of a busy
	// container, on a loaded two-core host). Its maintainers leave retrying
	// to the caller (moby/moby#48205, opencontainers/runc#4388), so we try
	// again, backing off from 100 ms to 1 s, for up to 10 s.
	delay := 100 * time.Millisecond
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := r.cli.ContainerPause(ctx, c.ID, client.ContainerPauseOptions{})
		if err == nil {
			return nil
		}
		if !strings.Contains(err.Error(), "unable to freeze") || time.Now().Add(delay).After(deadline) {
			return r.containerErr("pause", user, err)
		}
		if err := sleep(ctx, delay); err != nil {
			return fmt.Errorf("pause sandbox %s: %w", user, err)
		}
		delay = min(2*delay, time.Second)
	}
}

// Resume thaws a paused sandbox; a running one is left alone.
func (r *Runtime) Resume(ctx context.Context, user string) error {
	c, err := r.inspectUser(ctx, user)
	if err != nil {
		return r.wrap("resume", user, err)
	}
	switch c.State.Status {
	case container.StateRunning, container.StateRestarting:
		return nil
	case container.StatePaused:
	default:
		return fmt.Errorf("resume sandbox %s: it is %s, not paused", user, c.State.Status)
	}
	if _, err := r.cli.ContainerUnpause(ctx, c.ID, client.ContainerUnpauseOptions{}); err != nil {
		return r.containerErr("resume", user, err)
	}
	return nil
}

// Remove force-removes the sandbox. With purge it also deletes the user's
// workspace volume, even when there was no sandbox (then it still returns
// ErrNotFound). Bind-mounted host directories are never deleted by THON: they
// belong to the organizer, who can archive or delete them.
func (r *Runtime) Remove(ctx context.Context, user string, purge bool) error {
	ids, err := r.findAll(ctx, user)
	if err != nil {
		return r.wrap("remove", user, err)
	}
	for _, id := range ids {
		_, err := r.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if cerrdefs.IsConflict(err) {
			// Another Remove is removing it ("removal already in
			// progress"): it is gone once that one is done.
			err = r.waitGone(ctx, id)
		}
		if err != nil && !cerrdefs.IsNotFound(err) {
			return r.containerErr("remove", user, err)
		}
	}
	if purge {
		if err := r.removeVolume(ctx, user); err != nil {
			return r.wrap("remove", user, err)
		}
	}
	if len(ids) == 0 {
		return fmt.Errorf("remove sandbox %s: %w", user, sandbox.ErrNotFound)
	}
	return nil
}

// waitGone waits (at most a minute) until container id no longer exists.
func (r *Runtime) waitGone(ctx context.Context, id string) error {
	for range 1200 {
		_, err := r.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("container %s is still being removed", id)
}

// sleep waits d, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// PurgeWorkspace deletes the workspace volume of spec.User, who must not have
// a sandbox. Bind-mounted host directories are never deleted by THON.
func (r *Runtime) PurgeWorkspace(ctx context.Context, spec sandbox.Spec) error {
	user := spec.User
	if _, err := r.find(ctx, user); err == nil {
		return &sandbox.UserError{
			Msg:  fmt.Sprintf("cannot purge the workspace of %s: the user still has a sandbox", user),
			Hint: "remove the sandbox first",
			Err:  sandbox.ErrExists,
		}
	} else if !errors.Is(err, sandbox.ErrNotFound) {
		return r.wrap("purge workspace of", user, err)
	}
	if err := r.removeVolume(ctx, user); err != nil {
		return r.wrap("purge workspace of", user, err)
	}
	return nil
}

// Inspect returns the user's sandbox; ErrNotFound when there is none.
func (r *Runtime) Inspect(ctx context.Context, user string) (sandbox.Instance, error) {
	c, err := r.inspectUser(ctx, user)
	if err != nil {
		return sandbox.Instance{}, r.wrap("inspect", user, err)
	}
	return r.instance(ctx, c), nil
}

// List returns every sandbox of this runtime's instance (name prefix),
// sorted by user.
func (r *Runtime) List(ctx context.Context) ([]sandbox.Instance, error) {
	res, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: r.filters()})
	if err != nil {
		return nil, r.wrapOp("list", "sandboxes", err)
	}
	out := make([]sandbox.Instance, 0, len(res.Items))
	for _, s := range res.Items {
		c, err := r.cli.ContainerInspect(ctx, s.ID, client.ContainerInspectOptions{})
		if cerrdefs.IsNotFound(err) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, r.wrapOp("list", "sandboxes", err)
		}
		out = append(out, r.instance(ctx, c.Container))
	}
	slices.SortFunc(out, func(a, b sandbox.Instance) int {
		return cmp.Or(cmp.Compare(a.User, b.User), a.Created.Compare(b.Created))
	})
	return out, nil
}

// Logs streams the sandbox's output, stdout and stderr merged in the order
// they were written, as plain text.
func (r *Runtime) Logs(ctx context.Context, user string, opts sandbox.LogOptions) (io.ReadCloser, error) {
	c, err := r.inspectUser(ctx, user)
	if err != nil {
		return nil, r.wrap("logs of", user, err)
	}
	lo := client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: opts.Follow}
	if opts.Tail > 0 {
		lo.Tail = strconv.Itoa(opts.Tail)
	}
	rc, err := r.cli.ContainerLogs(ctx, c.ID, lo)
	if err != nil {
		return nil, r.containerErr("logs of", user, err)
	}
	if c.Config != nil && c.Config.Tty {
		return rc, nil // a TTY stream is not multiplexed
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := stdcopy.StdCopy(pw, pw, rc)
		rc.Close()
		pw.CloseWithError(err)
	}()
	return &logStream{PipeReader: pr, src: rc}, nil
}

type logStream struct {
	*io.PipeReader
	src io.Closer
}

func (l *logStream) Close() error {
	l.src.Close() // unblocks a following read
	return l.PipeReader.Close()
}

// Exec runs cmd in the user's running sandbox (as the sandbox's user) and
// returns its combined output and exit code.
func (r *Runtime) Exec(ctx context.Context, user string, cmd []string) (output string, exitCode int, err error) {
	id, err := r.find(ctx, user)
	if err != nil {
		return "", -1, r.wrap("exec in", user, err)
	}
	out, code, err := r.exec(ctx, id, "", cmd)
	if err != nil {
		return out, code, r.containerErr("exec in", user, err)
	}
	return out, code, nil
}

// exec runs cmd in container id as execUser ("" = the container's user).
func (r *Runtime) exec(ctx context.Context, id, execUser string, cmd []string) (string, int, error) {
	ec, err := r.cli.ExecCreate(ctx, id, client.ExecCreateOptions{User: execUser, AttachStdout: true, AttachStderr: true, Cmd: cmd})
	if err != nil {
		return "", -1, err
	}
	att, err := r.cli.ExecAttach(ctx, ec.ID, client.ExecAttachOptions{})
	if err != nil {
		return "", -1, err
	}
	defer att.Close()
	var buf bytes.Buffer
	if _, err := stdcopy.StdCopy(&buf, &buf, att.Reader); err != nil {
		return buf.String(), -1, fmt.Errorf("read output: %w", err)
	}
	// The stream ends when the process does; the engine may need a moment
	// to record the exit code.
	for {
		ins, err := r.cli.ExecInspect(ctx, ec.ID, client.ExecInspectOptions{})
		if err != nil {
			return buf.String(), -1, err
		}
		if !ins.Running {
			return buf.String(), ins.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return buf.String(), -1, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// filters selects this instance's managed containers.
func (r *Runtime) filters() client.Filters {
	return make(client.Filters).Add("label", sandbox.LabelManaged+"=true", LabelInstance+"="+r.prefix)
}

// findAll returns the IDs of the user's sandboxes (normally at most one),
// found by label, never by name.
func (r *Runtime) findAll(ctx context.Context, user string) ([]string, error) {
	f := r.filters().Add("label", sandbox.LabelUser+"="+user)
	res, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, err
	}
	// Running first, then newest.
	slices.SortFunc(res.Items, func(a, b container.Summary) int {
		ar, br := a.State == container.StateRunning, b.State == container.StateRunning
		if ar != br {
			if ar {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.Created, a.Created)
	})
	ids := make([]string, len(res.Items))
	for i, c := range res.Items {
		ids[i] = c.ID
	}
	return ids, nil
}

// find returns the ID of the user's sandbox, or ErrNotFound.
func (r *Runtime) find(ctx context.Context, user string) (string, error) {
	ids, err := r.findAll(ctx, user)
	if err != nil {
		return "", err
	}
	if len(ids) == 0 {
		return "", sandbox.ErrNotFound
	}
	return ids[0], nil
}

func (r *Runtime) inspectUser(ctx context.Context, user string) (container.InspectResponse, error) {
	id, err := r.find(ctx, user)
	if err != nil {
		return container.InspectResponse{}, err
	}
	res, err := r.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return container.InspectResponse{}, sandbox.ErrNotFound
	}
	if err != nil {
		return container.InspectResponse{}, err
	}
	if res.Container.State == nil {
		res.Container.State = &container.State{}
	}
	return res.Container, nil
}

// instance converts an inspected container into an Instance.
func (r *Runtime) instance(ctx context.Context, c container.InspectResponse) sandbox.Instance {
	inst := instanceFrom(c)
	if inst.State == sandbox.StateRunning {
		inst.Endpoint = r.endpoint(ctx, c)
	}
	return inst
}

// instanceFrom is the engine-independent part of instance: names, labels
// and state.
func instanceFrom(c container.InspectResponse) sandbox.Instance {
	inst := sandbox.Instance{
		ID:   c.ID,
		Name: strings.TrimPrefix(c.Name, "/"),
	}
	if c.Config != nil {
		inst.Image = c.Config.Image
		inst.User = c.Config.Labels[sandbox.LabelUser]
		inst.Group = c.Config.Labels[sandbox.LabelGroup]
		inst.SpecHash = c.Config.Labels[sandbox.LabelSpec]
	}
	if t, err := time.Parse(time.RFC3339Nano, c.Created); err == nil {
		inst.Created = t
	}
	inst.State, inst.ExitCode, inst.Reason = stateOf(c.State)
	return inst
}

// stateOf maps the engine's container state to a sandbox state, with the
// exit code and a reason for a stopped sandbox.
func stateOf(s *container.State) (sandbox.State, int, string) {
	if s == nil {
		return sandbox.StateMissing, 0, ""
	}
	switch s.Status {
	case container.StateCreated:
		return sandbox.StateCreated, 0, ""
	case container.StateRunning:
		return sandbox.StateRunning, 0, ""
	case container.StatePaused:
		return sandbox.StatePaused, 0, ""
	case container.StateRestarting:
		// The engine restarts it because it exited: a crash, not a slow start.
		reason := fmt.Sprintf("restarting after it exited with code %d", s.ExitCode)
		if s.OOMKilled {
			reason = "restarting after it was OOM-killed"
		}
		return sandbox.StateStarting, s.ExitCode, reason
	case container.StateRemoving:
		return sandbox.StateStopped, s.ExitCode, "being removed"
	case container.StateExited, container.StateDead:
		reason := fmt.Sprintf("exited with code %d", s.ExitCode)
		switch {
		case s.OOMKilled:
			reason = "OOM-killed"
		case s.Error != "":
			reason = s.Error
		case s.Status == container.StateDead:
			reason = "dead (the engine failed to remove it)"
		}
		return sandbox.StateStopped, s.ExitCode, reason
	}
	return sandbox.StateStopped, s.ExitCode, "unknown engine state " + string(s.Status)
}

// endpoint is host:port where this process reaches the running IDE.
func (r *Runtime) endpoint(ctx context.Context, c container.InspectResponse) string {
	if c.Config == nil {
		return ""
	}
	portNum, err := strconv.Atoi(c.Config.Labels[LabelPort])
	if err != nil || portNum <= 0 || portNum > 65535 {
		return ""
	}
	var ip netip.Addr
	var bindings []network.PortBinding
	if ns := c.NetworkSettings; ns != nil {
		if ep := ns.Networks[r.network]; ep != nil {
			ip = ep.IPAddress
		}
		if port, ok := network.PortFrom(uint16(portNum), network.TCP); ok {
			bindings = ns.Ports[port]
		}
	}
	ni, _ := r.loadNetwork(ctx, false)
	if ni != nil && ni.routable && ip.IsValid() {
		return net.JoinHostPort(ip.String(), strconv.Itoa(portNum))
	}
	for _, b := range bindings {
		if b.HostPort == "" {
			continue
		}
		host := "127.0.0.1"
		if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
			host = b.HostIP.String()
		}
		return net.JoinHostPort(host, b.HostPort)
	}
	if ip.IsValid() {
		return net.JoinHostPort(ip.String(), strconv.Itoa(portNum))
	}
	return ""
}
