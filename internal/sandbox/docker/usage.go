package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/sandbox"
)

// Archive streams the user's workspace through the engine's archive API
// (GET /containers/{id}/archive), which reads a stopped or paused
// container's files as well as a running one's: the tar's entries are under
// {user}/, the workspace directory's name.
func (r *Runtime) Archive(ctx context.Context, user string) (io.ReadCloser, error) {
	c, err := r.inspectUser(ctx, user)
	if err != nil {
		return nil, r.wrap("archive the workspace of", user, err)
	}
	group := ""
	if c.Config != nil {
		group = c.Config.Labels[sandbox.LabelGroup]
	}
	res, err := r.cli.CopyFromContainer(ctx, c.ID, client.CopyFromContainerOptions{SourcePath: sandbox.WorkspacePath(group, user)})
	if err != nil {
		return nil, r.containerErr("archive the workspace of", user, err)
	}
	return res.Content, nil
}

// statsConcurrency bounds the one-shot stats requests of a Usage sample.
const statsConcurrency = 8

// Usage samples every running or paused sandbox with one-shot stats (GET
// /containers/{id}/stats?stream=false&one-shot=true: one reading, no
// second one a second later), at most statsConcurrency at once. Memory is
// the cgroup's usage less its inactive page cache, as `docker stats`
// shows; CPUTime the cgroup's CPU counter. With opts.Disk the workspaces'
// sizes come from the engine's disk usage (GET /system/df) for volumes, and
// from walking the directory for bind workspaces (the engine is on this
// host for those).
func (r *Runtime) Usage(ctx context.Context, opts sandbox.UsageOptions) (sandbox.UsageReport, error) {
	res, err := r.cli.ContainerList(ctx, client.ContainerListOptions{Filters: r.filters()})
	if err != nil {
		return sandbox.UsageReport{}, r.wrapOp("measure", "sandboxes", err)
	}
	var boxes []container.Summary
	for _, c := range res.Items {
		if c.State == container.StateRunning || c.State == container.StatePaused {
			boxes = append(boxes, c)
		}
	}
	rep := sandbox.UsageReport{Sandboxes: make([]sandbox.Use, len(boxes)), Machine: r.machine(ctx)}
	var volumes map[string]int64
	if opts.Disk && len(boxes) > 0 {
		if volumes, err = r.volumeSizes(ctx); err != nil {
			return sandbox.UsageReport{}, r.wrapOp("measure", "workspace volumes", err)
		}
	}
	sem := make(chan struct{}, statsConcurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i, c := range boxes {
		user, group := c.Labels[sandbox.LabelUser], c.Labels[sandbox.LabelGroup]
		u := sandbox.Use{User: user, ID: c.ID, CPUTime: sandbox.Unknown, CPU: sandbox.Unknown,
			Memory: sandbox.Unknown, MemoryLimit: sandbox.Unknown, Disk: sandbox.Unknown}
		if opts.Disk {
			u.Disk = workspaceSize(c.Mounts, sandbox.WorkspacePath(group, user), volumes)
		}
		rep.Sandboxes[i] = u
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s, err := r.stats(ctx, c.ID)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				rep.Sandboxes[i].CPUTime = time.Duration(s.CPUStats.CPUUsage.TotalUsage)
				rep.Sandboxes[i].Memory, rep.Sandboxes[i].MemoryLimit = memoryOf(s.MemoryStats, rep.Machine.Memory)
			case isGone(err):
				rep.Sandboxes[i].User = "" // stopped or removed meanwhile
			case firstErr == nil:
				firstErr = r.wrap("measure", user, err)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return sandbox.UsageReport{}, firstErr
	}
	rep.Sandboxes = slices.DeleteFunc(rep.Sandboxes, func(u sandbox.Use) bool { return u.User == "" })
	slices.SortFunc(rep.Sandboxes, func(a, b sandbox.Use) int { return strings.Compare(a.User, b.User) })
	return rep, nil
}

// stats is one reading of a container's counters.
func (r *Runtime) stats(ctx context.Context, id string) (container.StatsResponse, error) {
	res, err := r.cli.ContainerStats(ctx, id, client.ContainerStatsOptions{})
	if err != nil {
		return container.StatsResponse{}, err
	}
	defer res.Body.Close()
	var s container.StatsResponse
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		return container.StatsResponse{}, fmt.Errorf("read the stats of %s: %w", id, err)
	}
	if s.Read.IsZero() || s.CPUStats.CPUUsage.TotalUsage == 0 && s.MemoryStats.Usage == 0 {
		// A container that stopped between the list and the reading
		// answers with zeros.
		return container.StatsResponse{}, errGone
	}
	return s, nil
}

var errGone = errors.New("the container is no longer running")

func isGone(err error) bool {
	return errors.Is(err, errGone) || strings.Contains(err.Error(), "No such container") || strings.Contains(err.Error(), "is not running")
}

// memoryOf is the memory in use as `docker stats` counts it (usage less the
// inactive page cache: "inactive_file" on cgroup v2, "total_inactive_file"
// on v1), and the limit (0 when the limit is the machine's memory: none).
func memoryOf(m container.MemoryStats, machine int64) (used, limit int64) {
	used = int64(m.Usage)
	if v, ok := m.Stats["total_inactive_file"]; ok && v < m.Usage {
		used -= int64(v)
	} else if v, ok := m.Stats["inactive_file"]; ok && v < m.Usage {
		used -= int64(v)
	}
	limit = int64(m.Limit)
	if machine > 0 && limit >= machine {
		limit = 0
	}
	return used, limit
}

// workspaceSize is the size of the workspace mounted at target: its
// volume's from the engine's disk usage, or the bind-mounted directory's;
// Unknown when neither can be measured.
func workspaceSize(mounts []container.MountPoint, target string, volumes map[string]int64) int64 {
	for _, m := range mounts {
		if m.Destination != target {
			continue
		}
		switch m.Type {
		case mount.TypeVolume:
			if n, ok := volumes[m.Name]; ok && n >= 0 {
				return n
			}
		case mount.TypeBind:
			return dirSize(m.Source)
		}
	}
	return sandbox.Unknown
}

// volumeSizes asks the engine for the size of every volume (GET /system/df;
// engines before API 1.42 answer with images and containers too).
func (r *Runtime) volumeSizes(ctx context.Context) (map[string]int64, error) {
	du, err := r.cli.DiskUsage(ctx, client.DiskUsageOptions{Volumes: true, Verbose: true})
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(du.Volumes.Items))
	for _, v := range du.Volumes.Items {
		if v.UsageData != nil {
			out[v.Name] = v.UsageData.Size
		}
	}
	return out, nil
}

// dirSize adds up the regular files under dir; Unknown when it cannot be
// read (the engine on another host, no permission).
func dirSize(dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		return sandbox.Unknown
	}
	return n
}

// machine is the engine's CPUs and memory, asked once.
func (r *Runtime) machine(ctx context.Context) sandbox.Machine {
	r.mu.Lock()
	m := r.engineMachine
	r.mu.Unlock()
	if m != nil {
		return *m
	}
	info, err := r.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return sandbox.Machine{CPUs: sandbox.Unknown, Memory: sandbox.Unknown}
	}
	got := sandbox.Machine{CPUs: float64(info.Info.NCPU), Memory: info.Info.MemTotal}
	r.mu.Lock()
	r.engineMachine = &got
	r.mu.Unlock()
	return got
}
