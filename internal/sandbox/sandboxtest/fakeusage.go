package sandboxtest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/thon-dev/thon/internal/sandbox"
)

// Fake's sizes for Usage: what an idle IDE takes, and the CPU time each
// request it serves costs. The machine it reports.
const (
	FakeIdleMemory  = 16 << 20
	FakeRequestCPU  = time.Millisecond
	FakeMachineCPUs = 4
	FakeMachineMem  = 16 << 30
	// FakeCPU is the rate an engine without CPU time (Kubernetes'
	// capabilities) reports for a running sandbox.
	FakeCPU = 0.01
)

// Archive is the workspace as a tar, entries under {user}/: the directory,
// then every file by name. A stopped sandbox's needs StoppedArchive.
func (f *Fake) Archive(ctx context.Context, user string) (io.ReadCloser, error) {
	if err := f.lock(); err != nil {
		return nil, err
	}
	b, err := f.box("archive the workspace of", user)
	if err != nil {
		f.e.mu.Unlock()
		return nil, err
	}
	stopped := b.run == nil
	ws, created := b.ws, b.created
	f.e.mu.Unlock()
	if stopped && !f.caps.StoppedArchive {
		return nil, sandbox.Hintf(nil, "start it first (thon instance start "+user+")",
			"the sandbox of %s is stopped: the fake engine reads a workspace through its running sandbox", user)
	}
	files, err := ws.list()
	if err != nil {
		return nil, fmt.Errorf("archive the workspace of %s: %w", user, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: user + "/", Mode: 0o755, ModTime: created}); err != nil {
		return nil, err
	}
	for _, fl := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: user + "/" + fl.name, Mode: fl.mode, Size: int64(len(fl.data)), ModTime: fl.modTime}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(fl.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return io.NopCloser(&buf), ctx.Err()
}

// Usage reports every running or paused sandbox: memory FakeIdleMemory
// plus its workspace's bytes, CPU time FakeRequestCPU per request its IDE
// served (with FakeOptions.CPURate, like the Kubernetes metrics API: a
// rate of FakeCPU and no CPU time), the workspace's bytes as its disk use
// with DiskUsage.
func (f *Fake) Usage(ctx context.Context, opts sandbox.UsageOptions) (sandbox.UsageReport, error) {
	if err := f.lock(); err != nil {
		return sandbox.UsageReport{}, err
	}
	type live struct {
		user, id string
		ws       workspace
		requests int64
		limit    int64
	}
	var boxes []live
	for k, b := range f.e.boxes {
		if k.instance == f.instance && b.run != nil {
			boxes = append(boxes, live{b.spec.User, b.id, b.ws, b.run.ide.requests.Load(), b.spec.Limits.MemoryBytes})
		}
	}
	f.e.mu.Unlock()
	rep := sandbox.UsageReport{Sandboxes: []sandbox.Use{}, Machine: sandbox.Machine{CPUs: FakeMachineCPUs, Memory: FakeMachineMem}}
	for _, b := range boxes {
		files, err := b.ws.list()
		if err != nil {
			return sandbox.UsageReport{}, fmt.Errorf("usage of %s: %w", b.user, err)
		}
		var size int64
		for _, fl := range files {
			size += int64(len(fl.data))
		}
		u := sandbox.Use{User: b.user, ID: b.id, CPUTime: time.Duration(b.requests) * FakeRequestCPU, CPU: sandbox.Unknown,
			Memory: FakeIdleMemory + size, MemoryLimit: b.limit, Disk: sandbox.Unknown}
		if f.cpuRate { // like the Kubernetes metrics API
			u.CPUTime, u.CPU = sandbox.Unknown, FakeCPU
		}
		if opts.Disk && f.caps.DiskUsage {
			u.Disk = size
		}
		rep.Sandboxes = append(rep.Sandboxes, u)
	}
	sortUsage(rep.Sandboxes)
	return rep, ctx.Err()
}

func sortUsage(us []sandbox.Use) {
	slices.SortFunc(us, func(a, b sandbox.Use) int { return strings.Compare(a.User, b.User) })
}
