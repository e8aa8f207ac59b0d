package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/testenv"
)

// ownDockerd is a Docker engine of the test's own, beside the machine's,
// so that it can be stopped and started: its own data root, runtime
// directory (with its own containerd) and socket, in a network namespace
// of its own. (In the machine's namespace a second dockerd deletes the
// machine's docker0 when it starts again.) A veth pair links the two
// namespaces and a route sends its containers' addresses, 10.N.0.0/17,
// through it, so THON on the host reaches them as it reaches any engine's.
type ownDockerd struct {
	t    *testing.T
	dir  string
	sock string
	ns   string // the network namespace
	n    int    // its addresses are 10.n.0.0/16
	cmd  *exec.Cmd
	cli  *client.Client
}

func startOwnDockerd(t *testing.T) *ownDockerd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("starts a Docker engine of its own: run as root (scripts/test does)")
	}
	if _, err := exec.LookPath("dockerd"); err != nil {
		t.Fatal("dockerd is not installed: apt-get install -y docker.io (scripts/test does)")
	}
	// A short path: containerd's sockets live under it.
	dir, err := os.MkdirTemp("/tmp", "thon-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	n := 200 + os.Getpid()%50
	d := &ownDockerd{t: t, dir: dir, sock: filepath.Join(dir, "docker.sock"), ns: fmt.Sprintf("thon-test-%d", os.Getpid()), n: n}
	host, peer := fmt.Sprintf("thonh%d", os.Getpid()%100000), fmt.Sprintf("thonn%d", os.Getpid()%100000)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		exec.Command("ip", "route", "del", fmt.Sprintf("10.%d.0.0/17", n)).Run()
		exec.Command("ip", "link", "del", host).Run()
		exec.Command("ip", "netns", "del", d.ns).Run()
	})
	ip("netns", "add", d.ns)
	ip("link", "add", host, "type", "veth", "peer", "name", peer)
	ip("link", "set", peer, "netns", d.ns)
	ip("addr", "add", fmt.Sprintf("10.%d.254.1/30", n), "dev", host)
	ip("link", "set", host, "up")
	ip("-n", d.ns, "addr", "add", fmt.Sprintf("10.%d.254.2/30", n), "dev", peer)
	ip("-n", d.ns, "link", "set", peer, "up")
	ip("-n", d.ns, "link", "set", "lo", "up")
	ip("-n", d.ns, "route", "add", "default", "via", fmt.Sprintf("10.%d.254.1", n))
	ip("route", "add", fmt.Sprintf("10.%d.0.0/17", n), "via", fmt.Sprintf("10.%d.254.2", n))
	if out, err := exec.Command("ip", "netns", "exec", d.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("ip_forward in the engine's namespace: %v %s", err, out)
	}
	d.start()
	cli, err := client.New(client.WithHost("unix://"+d.sock), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	d.cli = cli
	t.Cleanup(func() {
		ctx := context.Background()
		if res, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true}); err == nil {
			for _, c := range res.Items {
				cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
			}
		}
		cli.Close()
		d.stop()
		exec.Command("umount", "-R", filepath.Join(dir, "data", "overlay2")).Run()
		os.RemoveAll(dir)
	})
	return d
}

func (d *ownDockerd) start() {
	d.t.Helper()
	// nsenter, not ip netns exec: that mounts a sysfs of its own, without
	// the cgroup file systems dockerd needs.
	d.cmd = exec.Command("nsenter", "--net=/run/netns/"+d.ns, "dockerd", "--data-root", filepath.Join(d.dir, "data"), "--exec-root", filepath.Join(d.dir, "run"),
		"--pidfile", filepath.Join(d.dir, "dockerd.pid"), "-H", "unix://"+d.sock, "--iptables=false",
		"--bip", fmt.Sprintf("10.%d.255.1/24", d.n), "--default-address-pool", fmt.Sprintf("base=10.%d.0.0/17,size=24", d.n))
	log, err := os.OpenFile(filepath.Join(d.dir, "dockerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	d.cmd.Stdout, d.cmd.Stderr = log, log
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := client.New(client.WithHost("unix://"+d.sock), client.WithAPIVersionNegotiation())
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err = c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
			cancel()
			c.Close()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(d.dir, "dockerd.log"))
			d.t.Fatalf("the test's own dockerd did not answer within a minute: %v\n%s", err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop stops the engine as systemctl stop docker does (SIGTERM; it stops
// the containers first).
func (d *ownDockerd) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		d.cmd.Process.Kill()
		<-done
	}
	d.cmd = nil
}

type statusRow struct {
	User     string `json:"user"`
	State    string `json:"state"`
	Endpoint string `json:"endpoint"`
}

type statusPage struct {
	Items       []statusRow `json:"items"`
	EngineError string      `json:"engine_error"`
}

func (o *organizer) statusPage(ctx context.Context) (statusPage, error) {
	var page statusPage
	out, err := o.cmd(ctx, "status", "-o", "json").Output()
	if err != nil {
		return page, err
	}
	if err := json.Unmarshal(out, &page); err != nil {
		return page, fmt.Errorf("thon status -o json: %w: %.200s", err, out)
	}
	return page, nil
}

// TestDockerEngineRestarted: the Docker engine (one of the test's own) is
// stopped and started again under a running event, as an engine upgrade
// or systemctl restart docker does. The sandboxes come back by themselves
// (their restart policy), the THON daemon keeps running and talks to the
// engine again without a restart of its own, `thon status` says the
// engine is down while it is and is right again after, and alice's
// browser reaches her IDE again, at its new address — and never, in the
// moment the containers come back at one another's old addresses, anyone
// else's.
func TestDockerEngineRestarted(t *testing.T) {
	d := startOwnDockerd(t)
	ctx := context.Background()
	if _, err := testenv.BuildSandboxImage(ctx, d.cli); err != nil {
		t.Fatal(err)
	}
	o := newOrganizer(t, "", 3)
	o.env = append(o.env, "DOCKER_HOST=unix://"+d.sock)
	if out, err := o.cmd(ctx, "run").CombinedOutput(); err != nil {
		t.Fatalf("thon run: %v\n%s", err, out)
	}
	page, err := o.statusPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := page.Items
	alice := signIn(t, o, "p00")
	if err := alice.page(ctx, "p00"); err != nil {
		t.Fatal(err)
	}
	pid := o.daemonPid()

	d.stop()
	stopped := time.Now()
	// With the engine down, THON keeps answering and, by its next
	// reconcile (every 10 s), says the engine does not answer.
	var said time.Duration
	for deadline := time.Now().Add(time.Minute); said == 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a minute with the engine down and thon status does not say so")
		}
		p, err := o.statusPage(ctx)
		if err != nil {
			t.Fatalf("thon status with the engine down: %v", err)
		}
		if p.EngineError != "" {
			said = time.Since(stopped)
			t.Logf("status with the engine down: %q, the states as last seen: %+v", p.EngineError, p.Items)
		}
	}
	if out, _ := o.cmd(ctx, "status").CombinedOutput(); !strings.Contains(string(out), "engine: it has not answered since") {
		t.Errorf("thon status does not tell the organizer the engine is down:\n%s", out)
	}
	if pid := o.daemonPid(); pid == 0 || syscall.Kill(pid, 0) != nil {
		t.Fatal("the THON daemon died with the engine")
	}
	t.Logf("thon status said the engine was down %v after it stopped", said.Round(time.Millisecond))
	d.start()
	started := time.Now()
	t.Logf("the engine was down %v", started.Sub(stopped).Round(time.Millisecond))

	// Status right again, the IDE reachable again: measured from the
	// engine's start.
	var statusBack, ideBack time.Duration
	lastErr, leaks := "", 0
	var after []statusRow
	deadline := time.Now().Add(2 * time.Minute)
	for statusBack == 0 || ideBack == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("2 minutes after the engine came back: status %v %+v, alice's IDE %v", statusBack, after, alice.page(ctx, "p00"))
		}
		if statusBack == 0 {
			if p, err := o.statusPage(ctx); err == nil && p.EngineError == "" && allRunning(p.Items, len(before)) {
				statusBack, after = time.Since(started), p.Items
			}
		}
		if ideBack == 0 {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := alice.page(rctx, "p00"); err == nil {
				ideBack = time.Since(started)
			} else if strings.Contains(err.Error(), ": 200 ") {
				if leaks++; leaks == 1 {
					t.Errorf("%v after the engine's start alice reached another participant's IDE (her sandbox's old address is someone else's now): %v", time.Since(started).Round(time.Millisecond), err)
				}
			} else if err.Error() != lastErr {
				lastErr = err.Error()
				t.Logf("%v after the start: %v", time.Since(started).Round(time.Millisecond), err)
			}
			cancel()
		}
		time.Sleep(100 * time.Millisecond)
	}
	if leaks > 0 {
		t.Errorf("alice reached someone else's IDE %d times after the engine's start", leaks)
	}
	if got := o.daemonPid(); got != pid {
		t.Errorf("the THON daemon was restarted (pid %d, then %d)", pid, got)
	}
	moved := 0
	for _, b := range before {
		for _, a := range after {
			if a.User == b.User && a.Endpoint != b.Endpoint {
				moved++
			}
		}
	}
	t.Logf("after the engine's start: status says all %d running after %v, alice's IDE answers after %v; %d of %d sandboxes at a new address",
		len(after), statusBack.Round(time.Millisecond), ideBack.Round(time.Millisecond), moved, len(after))
	res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	sandboxes := 0
	for _, c := range res.Items {
		if c.Labels["io.thon.user"] != "" {
			sandboxes++
		}
	}
	if sandboxes != len(before) {
		t.Errorf("%d sandboxes on the engine after its restart, %d before", sandboxes, len(before))
	}
}

func allRunning(rows []statusRow, n int) bool {
	if len(rows) != n {
		return false
	}
	for _, r := range rows {
		if r.State != "running" || r.Endpoint == "" {
			return false
		}
	}
	return true
}
