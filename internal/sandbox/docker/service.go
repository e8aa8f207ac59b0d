package docker

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/sandbox"
)

var _ sandbox.ServiceRunner = (*Runtime)(nil)

// serviceName is the container name of a service: {prefix}-{name}. A
// sandbox is always {prefix}-{group}-{user}, so the two never collide.
func (r *Runtime) serviceName(name string) string { return r.prefix + "-" + name }

func (r *Runtime) serviceFilters(name string) client.Filters {
	return make(client.Filters).Add("label", sandbox.LabelService+"="+name, LabelInstance+"="+r.prefix)
}

// findService returns the service's container, or ErrNotFound.
func (r *Runtime) findService(ctx context.Context, name string) (container.InspectResponse, error) {
	res, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: r.serviceFilters(name)})
	if err != nil {
		return container.InspectResponse{}, err
	}
	if len(res.Items) == 0 {
		return container.InspectResponse{}, sandbox.ErrNotFound
	}
	c, err := r.cli.ContainerInspect(ctx, res.Items[0].ID, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return container.InspectResponse{}, sandbox.ErrNotFound
	}
	if err != nil {
		return container.InspectResponse{}, err
	}
	if c.Container.State == nil {
		c.Container.State = &container.State{}
	}
	return c.Container, nil
}

func (r *Runtime) serviceInstance(ctx context.Context, c container.InspectResponse) sandbox.ServiceInstance {
	in := instanceFrom(c)
	s := sandbox.ServiceInstance{ID: in.ID, Name: in.Name, Image: in.Image, State: in.State, SpecHash: in.SpecHash, ExitCode: in.ExitCode, Reason: in.Reason}
	if c.State != nil {
		if t, err := time.Parse(time.RFC3339Nano, c.State.StartedAt); err == nil && !t.IsZero() && t.Year() > 1 {
			s.Started = t
		}
	}
	if s.State == sandbox.StateRunning {
		s.Endpoint = r.endpoint(ctx, c)
	}
	return s
}

// InspectService returns the service; ErrNotFound when there is none.
func (r *Runtime) InspectService(ctx context.Context, name string) (sandbox.ServiceInstance, error) {
	c, err := r.findService(ctx, name)
	if err != nil {
		return sandbox.ServiceInstance{}, r.wrapOp("inspect", "service "+name, err)
	}
	return r.serviceInstance(ctx, c), nil
}

// RunService makes the service run from spec: a container made from
// another spec is replaced, a stopped one started.
func (r *Runtime) RunService(ctx context.Context, spec sandbox.ServiceSpec) (sandbox.ServiceInstance, error) {
	what := "service " + spec.Name
	if err := spec.Check(); err != nil {
		return sandbox.ServiceInstance{}, sandbox.Hintf(err, "this is a bug in THON: please report it", "%v", err)
	}
	hash := spec.Hash()
	c, err := r.findService(ctx, spec.Name)
	switch {
	case err == nil && c.Config != nil && c.Config.Labels[sandbox.LabelSpec] == hash:
		if c.State.Running {
			return r.serviceInstance(ctx, c), nil
		}
		return r.startService(ctx, c.ID, spec.Name)
	case err == nil:
		if _, err := r.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return sandbox.ServiceInstance{}, r.wrapOp("replace", what, err)
		}
	case err != sandbox.ErrNotFound:
		return sandbox.ServiceInstance{}, r.wrapOp("run", what, err)
	}
	if _, err := r.cli.ImageInspect(ctx, spec.Image); err != nil {
		if cerrdefs.IsNotFound(err) {
			return sandbox.ServiceInstance{}, &sandbox.UserError{
				Msg:  fmt.Sprintf("image %s is not on this Docker engine", spec.Image),
				Hint: "build it with: sudo thon setup llm (no registry needed)",
				Err:  err,
			}
		}
		return sandbox.ServiceInstance{}, r.wrapOp("run", what, err)
	}
	ni, err := r.loadNetwork(ctx, true)
	if err != nil {
		return sandbox.ServiceInstance{}, r.wrapOp("run", what, err)
	}
	cfg, hc, err := r.serviceConfig(spec, hash, ni.routable)
	if err != nil {
		return sandbox.ServiceInstance{}, err
	}
	name := r.serviceName(spec.Name)
	res, err := r.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: hc})
	if cerrdefs.IsConflict(err) {
		return sandbox.ServiceInstance{}, &sandbox.UserError{
			Msg:  fmt.Sprintf("cannot run THON's %s: a container named %s already exists and THON does not manage it", spec.Name, name),
			Hint: fmt.Sprintf("remove it with: docker rm -f %s (check it is not needed first)", name),
			Err:  err,
		}
	}
	if err != nil {
		return sandbox.ServiceInstance{}, r.gpuErr(spec, r.wrapOp("create", what, err))
	}
	if err := r.writeFiles(ctx, res.ID, spec.Files); err != nil {
		_, _ = r.cli.ContainerRemove(context.WithoutCancel(ctx), res.ID, client.ContainerRemoveOptions{Force: true})
		return sandbox.ServiceInstance{}, r.wrapOp("create", what, err)
	}
	return r.startService(ctx, res.ID, spec.Name)
}

func (r *Runtime) startService(ctx context.Context, id, name string) (sandbox.ServiceInstance, error) {
	if _, err := r.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return sandbox.ServiceInstance{}, r.wrapOp("start", "service "+name, err)
	}
	c, err := r.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return sandbox.ServiceInstance{}, r.wrapOp("start", "service "+name, err)
	}
	return r.serviceInstance(ctx, c.Container), nil
}

// StartService starts the stopped service container as it is.
func (r *Runtime) StartService(ctx context.Context, name string) (sandbox.ServiceInstance, error) {
	c, err := r.findService(ctx, name)
	if err != nil {
		return sandbox.ServiceInstance{}, r.wrapOp("start", "service "+name, err)
	}
	if c.State.Running {
		return r.serviceInstance(ctx, c), nil
	}
	return r.startService(ctx, c.ID, name)
}

// RemoveService force-removes the service; a missing one is not an error.
func (r *Runtime) RemoveService(ctx context.Context, name string) error {
	c, err := r.findService(ctx, name)
	if err == sandbox.ErrNotFound {
		return nil
	}
	if err != nil {
		return r.wrapOp("remove", "service "+name, err)
	}
	if _, err := r.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return r.wrapOp("remove", "service "+name, err)
	}
	return nil
}

// ServiceLogs streams the service's output, stdout and stderr merged.
func (r *Runtime) ServiceLogs(ctx context.Context, name string, opts sandbox.LogOptions) (io.ReadCloser, error) {
	c, err := r.findService(ctx, name)
	if err != nil {
		return nil, r.wrapOp("logs of", "service "+name, err)
	}
	lo := client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: opts.Follow}
	if opts.Tail > 0 {
		lo.Tail = strconv.Itoa(opts.Tail)
	}
	rc, err := r.cli.ContainerLogs(ctx, c.ID, lo)
	if err != nil {
		return nil, r.wrapOp("logs of", "service "+name, err)
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := stdcopy.StdCopy(pw, pw, rc)
		rc.Close()
		pw.CloseWithError(err)
	}()
	return &logStream{PipeReader: pr, src: rc}, nil
}

// serviceConfig is the container of a service: on the sandboxes' network
// (where inter-container traffic is off, so no sandbox reaches it), no
// capabilities, no new privileges, read-only mounts, and no restart
// policy: THON restarts it, with backoff, and says so.
func (r *Runtime) serviceConfig(spec sandbox.ServiceSpec, hash string, routable bool) (*container.Config, *container.HostConfig, error) {
	env := make([]string, 0, len(spec.Env))
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		env = append(env, k+"="+spec.Env[k])
	}
	port, _ := network.PortFrom(uint16(spec.Port), network.TCP)
	cfg := &container.Config{
		Image:        spec.Image,
		Cmd:          spec.Args,
		Env:          env,
		Hostname:     spec.Name,
		User:         spec.User,
		ExposedPorts: network.PortSet{port: {}},
		Labels: map[string]string{
			sandbox.LabelService: spec.Name,
			LabelInstance:        r.prefix,
			sandbox.LabelSpec:    hash,
			LabelPort:            strconv.Itoa(spec.Port),
		},
	}
	useInit := true
	hc := &container.HostConfig{
		NetworkMode:   container.NetworkMode(r.network),
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		Init:          &useInit,
		SecurityOpt:   []string{"no-new-privileges:true"},
		CapDrop:       []string{"ALL"},
		Resources:     container.Resources{NanoCPUs: spec.Limits.NanoCPUs, Memory: spec.Limits.MemoryBytes},
	}
	if spec.Limits.MemoryBytes > 0 {
		hc.MemorySwap = spec.Limits.MemoryBytes
	}
	if spec.Limits.Pids > 0 {
		pids := spec.Limits.Pids
		hc.PidsLimit = &pids
	}
	for _, m := range spec.Mounts {
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: m.Source, Target: m.Target, ReadOnly: true})
	}
	switch spec.GPU {
	case sandbox.GPUNvidia:
		hc.DeviceRequests = []container.DeviceRequest{{Driver: "nvidia", Count: -1, Capabilities: [][]string{{"gpu"}}}}
	case sandbox.GPUDRI, sandbox.GPUAMD:
		devs := []string{"/dev/dri"}
		if spec.GPU == sandbox.GPUAMD {
			devs = append(devs, "/dev/kfd")
		}
		for _, d := range devs {
			if _, err := os.Stat(d); err != nil {
				return nil, nil, &sandbox.UserError{
					Msg:  fmt.Sprintf("the GPU device %s is not on this machine", d),
					Hint: "set llm.gpu: none (or auto), or install the GPU's kernel driver",
					Err:  err,
				}
			}
			hc.Devices = append(hc.Devices, container.DeviceMapping{PathOnHost: d, PathInContainer: d, CgroupPermissions: "rwm"})
		}
		// The service runs as a non-root user: give it the groups that own
		// the render nodes.
		hc.GroupAdd = deviceGroups(devs)
	}
	if !routable {
		hc.PortBindings = network.PortMap{port: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: ""}}}
	}
	return cfg, hc, nil
}

// deviceGroups lists the numeric groups owning the device nodes in dirs
// (and the nodes themselves).
func deviceGroups(paths []string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil && st.Gid != 0 {
			g := strconv.Itoa(int(st.Gid))
			if !seen[g] {
				seen[g] = true
				out = append(out, g)
			}
		}
	}
	for _, p := range paths {
		add(p)
		entries, _ := os.ReadDir(p)
		for _, e := range entries {
			add(filepath.Join(p, e.Name()))
		}
	}
	return out
}

// gpuErr explains an engine that cannot give the service its GPUs.
func (r *Runtime) gpuErr(spec sandbox.ServiceSpec, err error) error {
	if spec.GPU == sandbox.GPUNvidia && strings.Contains(err.Error(), "device driver") {
		return &sandbox.UserError{
			Msg:  "the Docker engine cannot pass NVIDIA GPUs to containers",
			Hint: "install the NVIDIA Container Toolkit (nvidia-ctk runtime configure --runtime=docker, then restart Docker), or set llm.gpu: none",
			Err:  err,
		}
	}
	return err
}
