// Package benchkit holds what the benchmarks under bench/ share: building the
// thon binary, running it, a daemon started and stopped by the benchmark,
// process memory from /proc, percentiles, and removing every engine object
// whose name starts with the benchmark's prefix.
package benchkit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	thonclient "github.com/thon-dev/thon/client"
)

// BuildThon compiles ./cmd/thon of the module at root into dir and returns
// the binary's path.
func BuildThon(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "thon")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/thon")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/thon: %w\n%s", err, out)
	}
	return bin, nil
}

// RandHex returns n random bytes as lowercase hex.
func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Result is the outcome of one run of the thon binary.
type Result struct {
	Stdout, Stderr string
	Code           int
	Elapsed        time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d after %s\n--- stdout\n%s--- stderr\n%s", r.Code, r.Elapsed.Round(time.Millisecond), tail(r.Stdout, 40), tail(r.Stderr, 40))
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("(%d lines omitted)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n") + "\n"
}

// Runner runs the thon binary in a directory with a fixed environment.
type Runner struct {
	Bin string
	Dir string
	Env []string
}

// Run runs thon with args and measures the wall time from fork to exit. An
// error means the process could not run (or ctx ended); a non-zero exit is
// in Result.Code.
func (r Runner) Run(ctx context.Context, args ...string) (Result, error) {
	cmd := exec.CommandContext(ctx, r.Bin, args...)
	cmd.Dir = r.Dir
	cmd.Env = r.Env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	res := Result{Stdout: out.String(), Stderr: errb.String(), Elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return res, ctx.Err()
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	case err != nil:
		return res, fmt.Errorf("thon %s: %w", strings.Join(args, " "), err)
	}
	return res, nil
}

// OK is Run that also fails on a non-zero exit.
func (r Runner) OK(ctx context.Context, args ...string) (Result, error) {
	res, err := r.Run(ctx, args...)
	if err == nil && res.Code != 0 {
		err = fmt.Errorf("thon %s failed: %s", strings.Join(args, " "), res)
	}
	return res, err
}

// Daemon is a `thon serve` started by a benchmark (in its own process group,
// so a Ctrl-C on the terminal reaches the benchmark, which then stops it in
// order).
type Daemon struct {
	PID  int
	URL  string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartDaemon runs `thon serve --config configPath` and waits until its
// health endpoint answers at listen.
func StartDaemon(ctx context.Context, r Runner, configPath, listen string) (*Daemon, error) {
	logPath := filepath.Join(r.Dir, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(r.Bin, "serve", "--config", configPath)
	cmd.Dir = r.Dir
	cmd.Env = r.Env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start thon serve: %w", err)
	}
	d := &Daemon{PID: cmd.Process.Pid, URL: "http://" + listen, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { d.err = cmd.Wait(); close(d.done) }()

	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	probe := thonclient.New(d.URL, "")
	for {
		if probe.Health(wctx) == nil {
			return d, nil
		}
		select {
		case <-d.done:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("thon serve exited at start (%v):\n%s", d.err, tail(string(b), 20))
		case <-wctx.Done():
			d.Stop()
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("thon serve did not answer at %s within 30s:\n%s", d.URL, tail(string(b), 20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Exited reports whether the daemon process has ended.
func (d *Daemon) Exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// Wait waits up to timeout for the daemon to exit by itself (after `thon
// down`), and reports whether it did.
func (d *Daemon) Wait(timeout time.Duration) bool {
	select {
	case <-d.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Stop ends the daemon if it still runs: SIGTERM, then SIGKILL after 15s.
func (d *Daemon) Stop() {
	if d == nil || d.Exited() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if d.Wait(15 * time.Second) {
		return
	}
	_ = d.cmd.Process.Kill()
	<-d.done
}

// ProcStatusKiB reads one "Vm…: N kB" field of /proc/PID/status.
func ProcStatusKiB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
		return strconv.ParseInt(v, 10, 64)
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// MiB formats KiB as MiB.
func MiB(kib int64) string { return fmt.Sprintf("%.1f", float64(kib)/1024) }

// Percentile is the nearest-rank p-th percentile (0 < p <= 100) of ds.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// Median of xs (mean of the middle two for an even count).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Ms formats a duration in milliseconds.
func Ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

// Verdict is PASS or MISS.
func Verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// Leftovers counts engine objects whose name starts with a prefix.
type Leftovers struct{ Containers, Volumes, Networks int }

func (l Leftovers) String() string {
	return fmt.Sprintf("%d containers, %d volumes, %d networks", l.Containers, l.Volumes, l.Networks)
}

// Empty reports whether nothing was left.
func (l Leftovers) Empty() bool { return l == Leftovers{} }

// CleanupPrefix force-removes every container, volume and network whose
// name starts with prefix and says how many of each it found. It goes on
// after an error, so one stuck object does not keep the rest.
func CleanupPrefix(ctx context.Context, cli *client.Client, prefix string) (Leftovers, error) {
	var found Leftovers
	if len(prefix) < 4 {
		return found, fmt.Errorf("cleanup: prefix %q is too short to be safe", prefix)
	}
	var errs []error
	has := func(name string) bool { return strings.HasPrefix(strings.TrimPrefix(name, "/"), prefix) }

	cs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("name", prefix)})
	if err != nil {
		errs = append(errs, fmt.Errorf("list containers: %w", err))
	}
	for _, c := range cs.Items {
		if !slices.ContainsFunc(c.Names, has) {
			continue
		}
		found.Containers++
		if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %v: %w", c.Names, err))
		}
	}
	vs, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: make(client.Filters).Add("name", prefix)})
	if err != nil {
		errs = append(errs, fmt.Errorf("list volumes: %w", err))
	}
	for _, v := range vs.Items {
		if !has(v.Name) {
			continue
		}
		found.Volumes++
		if _, err := cli.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
		}
	}
	ns, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("name", prefix)})
	if err != nil {
		errs = append(errs, fmt.Errorf("list networks: %w", err))
	}
	for _, n := range ns.Items {
		if !has(n.Name) {
			continue
		}
		found.Networks++
		if _, err := cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
		}
	}
	return found, errors.Join(errs...)
}
