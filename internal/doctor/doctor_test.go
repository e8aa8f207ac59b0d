package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/imagebuild"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/sandbox/docker"
	"github.com/thon-dev/thon/internal/testenv"
)

// dnsServer answers A queries from records (name → address) over UDP on
// loopback, NXDOMAIN for anything else, and returns a resolver asking it.
func dnsServer(t *testing.T, records map[string]string) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		name := strings.TrimSuffix(q.Question[0].Name, ".")
		ip, ok := records[name]
		switch {
		case !ok:
			m.Rcode = dns.RcodeNameError
		case q.Question[0].Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(ip)})
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	addr := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func find(t *testing.T, rep Report, id string) Check {
	t.Helper()
	c, ok := rep.Check(id)
	if !ok {
		t.Fatalf("no %s check in %+v", id, rep.Checks)
	}
	return c
}

// Without a daemon, on the real engine: the image and its code-server
// version, a port another program holds, host names that resolve here,
// elsewhere or nowhere (a real DNS server), a probe sandbox measured and
// removed, and the checks that need the daemon saying so.
func TestRunWithoutADaemon(t *testing.T) {
	prefix := testenv.Prefix(t)
	t.Cleanup(func() { testenv.Cleanup(t, prefix) })
	rt, err := docker.New(docker.Options{NamePrefix: prefix, Network: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	image := testenv.DerivedImage(t, testenv.SandboxImage(t), "codeserver", "LABEL "+imagebuild.LabelCodeServerVersion+"="+imagebuild.DefaultCodeServerVersion)

	// Another program holds the gateway's port.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	cfg := config.Default()
	cfg.Server.DataDir = t.TempDir()
	cfg.Server.Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg.Sandbox.Image = image
	cfg.Sandbox.Limits = config.Limits{CPU: 0.5, Memory: 256 << 20, Pids: 64}
	cfg.Access.ExternalIP = "127.0.0.1"
	cfg.Access.HTTPSPort, cfg.Access.HTTPPort = freePort(t), 0
	cfg.Access.PortRange = "41000-41009"
	cfg.Access.Hostnames = []string{"here.thon.test", "elsewhere.thon.test", "nowhere.thon.test"}
	cfg.Gateway.Listen = taken.Addr().String()
	cfg.LLM.Enabled = false
	cfg.Groups = config.Groups{{Name: "alpha", Users: []string{"alice", "bob", "carol"}}}
	resolver := dnsServer(t, map[string]string{"here.thon.test": "127.0.0.1", "elsewhere.thon.test": "203.0.113.9"})

	var said []string
	rep := Run(context.Background(), Options{
		Config: cfg, Runtime: rt, Participants: -1, Probe: true, Resolver: resolver,
		Settle: time.Second, Window: time.Second, Progress: func(s string) { said = append(said, s) },
	})
	if rep.Participants != 3 || rep.Daemon {
		t.Errorf("report: %d participants, daemon %v", rep.Participants, rep.Daemon)
	}
	if c := find(t, rep, "engine"); c.Status != OK || !strings.Contains(c.Detail, "CPUs") {
		t.Errorf("engine: %+v", c)
	}
	if c := find(t, rep, "image"); c.Status != OK || !strings.Contains(c.Detail, "code-server "+imagebuild.DefaultCodeServerVersion) {
		t.Errorf("image: %+v", c)
	}
	c := find(t, rep, "ports")
	if c.Status != Fail || !strings.Contains(c.Detail, "AI gateway "+taken.Addr().String()+": in use by another program") || !strings.Contains(c.Fix, "ss -ltnp") {
		t.Errorf("ports: %+v", c)
	}
	c = find(t, rep, "dns")
	for _, want := range []string{"here.thon.test → 127.0.0.1", "elsewhere.thon.test → 203.0.113.9, not this machine (127.0.0.1)", "nowhere.thon.test does not resolve"} {
		if !strings.Contains(c.Detail, want) {
			t.Errorf("dns lacks %q: %+v", want, c)
		}
	}
	if c.Status != Fail || !strings.Contains(c.Fix, "add an A record nowhere.thon.test → 127.0.0.1") {
		t.Errorf("dns: %+v", c)
	}
	if c := find(t, rep, "certificate"); c.Status != OK || !strings.Contains(c.Detail, "local CA is made at the first start") {
		t.Errorf("certificate: %+v", c)
	}
	if c := find(t, rep, "llm"); c.Status != OK || !strings.Contains(c.Detail, "off") {
		t.Errorf("llm: %+v", c)
	}
	if c := find(t, rep, "gateway"); c.Status != Warn || !strings.Contains(c.Detail, "daemon") {
		t.Errorf("gateway: %+v", c)
	}
	if c := find(t, rep, "disk"); c.Status == Fail || !strings.Contains(c.Detail, "free for the data directory") {
		t.Errorf("disk: %+v", c)
	}
	if c := find(t, rep, "clock"); c.Status == Fail || c.Detail == "" {
		t.Errorf("clock: %+v", c)
	}
	// The probe: measured, then gone.
	cp := rep.Capacity
	if !cp.Measured || !strings.Contains(cp.Source, "probe sandbox") || cp.SandboxMemory <= 0 || cp.SandboxPids <= 0 || cp.HostCPUs <= 0 || cp.Idle < 1 || cp.IdleLimit == "" {
		t.Errorf("capacity: %+v", cp)
	}
	if len(cp.Resources) != 3 || cp.Resources[2].Name != "ports" || cp.Resources[2].HoldsIdle != 10 {
		t.Errorf("resources: %+v", cp.Resources)
	}
	if _, err := rt.Inspect(context.Background(), ProbeUser); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("the probe sandbox is still there: %v", err)
	}
	if !strings.Contains(strings.Join(said, "\n"), "starting a probe sandbox") {
		t.Errorf("progress: %q", said)
	}
	if rep.Status != Fail {
		t.Errorf("status %s, want fail", rep.Status)
	}

	// Without the probe and with nothing running: not measured, and it says why.
	rep = Run(context.Background(), Options{Config: cfg, Runtime: rt, Participants: -1, Resolver: resolver})
	if rep.Capacity.Measured || !strings.Contains(rep.Capacity.Source, "no sandbox runs") {
		t.Errorf("capacity without a probe: %+v", rep.Capacity)
	}
	if c := find(t, rep, "capacity"); c.Status != Warn {
		t.Errorf("capacity check without a probe: %+v", c)
	}
}

// An image the engine lacks, an unlabelled one, and an engine that does
// not answer: each says what to do.
func TestImageAndEngineProblems(t *testing.T) {
	prefix := testenv.Prefix(t)
	rt, err := docker.New(docker.Options{NamePrefix: prefix, Network: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	cfg := config.Default()
	cfg.Server.DataDir = t.TempDir()
	cfg.LLM.Enabled = false
	cfg.Sandbox.Image = "thon-test/no-such-image:" + prefix
	rep := Run(context.Background(), Options{Config: cfg, Runtime: rt, Participants: 1})
	if c := find(t, rep, "image"); c.Status != Fail || !strings.Contains(c.Fix, "sudo thon setup image") {
		t.Errorf("missing image: %+v", c)
	}
	cfg.Sandbox.Image = testenv.SandboxImage(t)
	rep = Run(context.Background(), Options{Config: cfg, Runtime: rt, Participants: 1})
	if c := find(t, rep, "image"); c.Status != Warn || !strings.Contains(c.Detail, "code-server version is unknown") {
		t.Errorf("unlabelled image: %+v", c)
	}
	// THON's own LLM server: its image must be there too.
	cfg.LLM.Enabled, cfg.LLM.Backend, cfg.LLM.Image = true, config.BackendLlamacpp, "thon-test/no-llm:"+prefix
	rep = Run(context.Background(), Options{Config: cfg, Runtime: rt, Participants: 1})
	if c := find(t, rep, "llm-image"); c.Status != Fail || !strings.Contains(c.Fix, "sudo thon setup llm") {
		t.Errorf("missing LLM image: %+v", c)
	}
	if c := find(t, rep, "llm-model"); c.Status != Fail || !strings.Contains(c.Detail, "gemma-4-31B-it-GGUF:Q8_K_XL is not downloaded") || !strings.Contains(c.Fix, "thon llm pull") {
		t.Errorf("a checkpoint not downloaded: %+v", c)
	}
	cfg.LLM.ChatModel = config.LLMModel{Name: "thon-test"}
	rep = Run(context.Background(), Options{Config: cfg, Runtime: rt, Participants: 1})
	if c := find(t, rep, "llm-model"); c.Status != Warn || !strings.Contains(c.Detail, "test model") {
		t.Errorf("test model: %+v", c)
	}
	if c := find(t, rep, "llm"); c.Status != Warn || !strings.Contains(c.Fix, "systemctl start thon") {
		t.Errorf("managed LLM without a daemon: %+v", c)
	}

	bad, err := docker.New(docker.Options{Host: "unix:///nonexistent/docker.sock", NamePrefix: prefix, Network: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	rep = Run(context.Background(), Options{Config: cfg, Runtime: bad, Participants: 1})
	if c := find(t, rep, "engine"); c.Status != Fail || !strings.Contains(c.Fix, "systemctl start docker") {
		t.Errorf("engine down: %+v", c)
	}
	if _, ok := rep.Check("image"); ok {
		t.Error("the image was checked on an engine that does not answer")
	}
	if rep.Status != Fail {
		t.Errorf("status %s", rep.Status)
	}
}

// The estimate from measurements: idle participants are limited by what
// runs out first, all at their limits by memory, never by CPU (shared).
func TestCapacityEstimate(t *testing.T) {
	cfg := config.Default()
	cfg.LLM.Enabled = false
	cfg.Sandbox.Limits = config.Limits{CPU: 1, Memory: 2 << 30}
	cfg.Access.PortRange = "20000-20999"
	for _, tc := range []struct {
		n           int
		status      Status
		idle, atLim int
		idleLimit   string
	}{
		{3, OK, 40, 4, "memory"},
		{5, Warn, 40, 4, "memory"},
		{41, Fail, 40, 4, "memory"},
	} {
		d := &doc{o: Options{Participants: tc.n}, cfg: cfg, host: &sandbox.Host{CPUs: 4, Memory: 9 << 30}}
		cp := d.capacity(context.Background(), &measured{users: []string{"alice"}, usage: sandbox.Usage{MemoryBytes: 200 << 20, Pids: 20}, cpu: 0.02})
		c := d.checks[len(d.checks)-1]
		if cp.Idle != tc.idle || cp.IdleLimit != tc.idleLimit || cp.AtLimits != tc.atLim || cp.AtLimitsLimit != "memory" || c.Status != tc.status {
			t.Errorf("%d participants: idle %d (%s), at limits %d (%s), %s; want %d, %d, %s\n%+v", tc.n, cp.Idle, cp.IdleLimit, cp.AtLimits, cp.AtLimitsLimit, c.Status, tc.idle, tc.atLim, tc.status, c)
		}
		if tc.n > 4 && !strings.Contains(strings.Join(cp.Notes, " "), "4 CPUs for") {
			t.Errorf("%d participants: no note on sharing the CPUs: %q", tc.n, cp.Notes)
		}
	}
	// Few ports: they run out first.
	cfg.Access.PortRange = "20000-20009"
	d := &doc{o: Options{Participants: 3}, cfg: cfg, host: &sandbox.Host{CPUs: 64, Memory: 256 << 30}}
	cp := d.capacity(context.Background(), &measured{users: []string{"alice"}, usage: sandbox.Usage{MemoryBytes: 200 << 20}, cpu: 0.02})
	if cp.Idle != 10 || cp.IdleLimit != "ports" {
		t.Errorf("ports: %+v", cp)
	}
	// A busy CPU: 0.5 cores each idle on 4 CPUs.
	d = &doc{o: Options{Participants: 3}, cfg: cfg, host: &sandbox.Host{CPUs: 4, Memory: 256 << 30}}
	if cp := d.capacity(context.Background(), &measured{users: []string{"alice"}, usage: sandbox.Usage{MemoryBytes: 200 << 20}, cpu: 0.5}); cp.Idle != 8 || cp.IdleLimit != "cpu" {
		t.Errorf("cpu: %+v", cp)
	}
}
