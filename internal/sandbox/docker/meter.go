package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/sandbox"
)

var _ sandbox.Meter = (*Runtime)(nil)

// Host describes the Docker host: its CPUs, memory, root directory.
func (r *Runtime) Host(ctx context.Context) (sandbox.Host, error) {
	res, err := r.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return sandbox.Host{}, r.unreachable(err)
	}
	i := res.Info
	return sandbox.Host{
		Engine: "docker", Version: i.ServerVersion, OS: i.OperatingSystem, CPUs: i.NCPU, Memory: i.MemTotal,
		RootDir: i.DockerRootDir, Cgroup: i.CgroupVersion, Warnings: i.Warnings,
	}, nil
}

// Image describes an image of the engine; sandbox.ErrNotFound when it has
// none by that name.
func (r *Runtime) Image(ctx context.Context, ref string) (sandbox.Image, error) {
	res, err := r.cli.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return sandbox.Image{}, fmt.Errorf("image %s: %w", ref, sandbox.ErrNotFound)
	}
	if err != nil {
		return sandbox.Image{}, r.wrapOp("inspect", "image "+ref, err)
	}
	img := sandbox.Image{Ref: ref, ID: res.ID, Size: res.Size}
	img.Created, _ = time.Parse(time.RFC3339Nano, res.Created)
	if res.Config != nil {
		img.Labels = res.Config.Labels
	}
	return img, nil
}

// SandboxUsage samples the user's running sandbox.
func (r *Runtime) SandboxUsage(ctx context.Context, user string) (sandbox.Usage, error) {
	id, err := r.find(ctx, user)
	if err != nil {
		return sandbox.Usage{}, r.wrap("measure", user, err)
	}
	u, err := r.usage(ctx, id)
	if err != nil {
		return u, r.containerErr("measure", user, err)
	}
	return u, nil
}

// ServiceUsage samples a running service container.
func (r *Runtime) ServiceUsage(ctx context.Context, name string) (sandbox.Usage, error) {
	c, err := r.findService(ctx, name)
	if err != nil {
		return sandbox.Usage{}, err
	}
	u, err := r.usage(ctx, c.ID)
	if err != nil {
		return u, r.wrapOp("measure", "service "+name, err)
	}
	return u, nil
}

// usage is one sample of the engine's stats of container id.
func (r *Runtime) usage(ctx context.Context, id string) (sandbox.Usage, error) {
	res, err := r.cli.ContainerStats(ctx, id, client.ContainerStatsOptions{})
	if err != nil {
		return sandbox.Usage{}, err
	}
	defer res.Body.Close()
	var st container.StatsResponse
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return sandbox.Usage{}, fmt.Errorf("read stats: %w", err)
	}
	if st.Read.IsZero() {
		st.Read = time.Now()
	}
	mem := st.MemoryStats.Usage
	// What docker stats shows: without the page cache the kernel takes
	// back (cgroup v2: inactive_file; v1: total_inactive_file).
	for _, k := range []string{"inactive_file", "total_inactive_file"} {
		if v, ok := st.MemoryStats.Stats[k]; ok && v < mem {
			mem -= v
			break
		}
	}
	return sandbox.Usage{
		Read: st.Read, MemoryBytes: int64(mem), MemoryLimit: int64(st.MemoryStats.Limit),
		CPUNanos: st.CPUStats.CPUUsage.TotalUsage, Pids: int64(st.PidsStats.Current),
	}, nil
}
