// Command k8s-scale simulates a 1,000-participant event on Kubernetes: a
// real control plane (kube-apiserver, etcd, scheduler, controllers from
// shared/k8s) with 20 kwok nodes, and THON's Kubernetes sandbox engine
// (internal/sandbox/kubernetes, as the daemon configures it) creating every
// participant's sandbox with the orchestrator's bounded concurrency
// (sandbox.concurrency: 8 by default, and 32).
//
// For each concurrency it reports the time until every sandbox is Ready,
// the API requests THON made per participant, the engine process's peak
// resident memory (each run is a fresh child process, like a daemon), and
// the latency of the engine's List with every sandbox there (what `thon
// status` reads; goal p95 < 200 ms). As a baseline measured in the same run
// it makes the same four objects per participant with bare client-go (same
// concurrency, same client-side rate limit), waiting for Ready with a watch,
// and times a LIST of the pods and services straight from the API server.
//
// It is a report: it exits 0 whether the goal is met or not, and non-zero
// only when something failed to run. It takes the control plane's lock
// ($K8S_WORK/.test.lock, shared with the tests), starts the control plane
// with up.sh and stops it at the end; with -kubeconfig (or
// THON_K8S_KUBECONFIG) it uses a running cluster instead. Each run has a
// namespace of its own (tbk…), deleted at the end, after an error or Ctrl-C
// too.
//
//	go run ./bench/k8s-scale                      # 1,000 participants, concurrency 8 and 32
//	go run ./bench/k8s-scale -n 200 -concurrency 8 -baseline=false   # quicker
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/thon-dev/thon/bench/internal/benchkit"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/sandbox/kubernetes"
	"github.com/thon-dev/thon/internal/testenv"
)

// goalList is the p95 latency List must stay under with every sandbox there.
const goalList = 200 * time.Millisecond

// The sandbox every participant gets: thon.yaml's defaults (1 CPU, 2 GiB,
// a volume workspace) and three small files, like the assistants' configs.
const (
	image      = "thon/sandbox:latest"
	port       = 8080
	healthPath = "/healthz"
	groups     = 20
)

type options struct {
	n, nodes, calls int
	concurrency     []int
	qps             float64
	baseline        bool
	kubeconfig      string
	timeout         time.Duration
	// child mode: one engine run in this process, its result as JSON on stdout.
	child bool
	ns    string
}

func main() {
	var o options
	var conc string
	flag.IntVar(&o.n, "n", 1000, "participants")
	flag.IntVar(&o.nodes, "nodes", 20, "kwok nodes of the control plane this benchmark starts")
	flag.StringVar(&conc, "concurrency", "8,32", "sandboxes created at a time (sandbox.concurrency), one run each, comma-separated")
	flag.IntVar(&o.calls, "calls", 200, "List calls timed at the end of each run")
	flag.Float64Var(&o.qps, "qps", 0, "client-side requests per second of the engine and the baseline (burst twice that); 0: the engine's default, as the daemon runs it")
	flag.BoolVar(&o.baseline, "baseline", true, "also make the same objects with bare client-go, in the same run")
	flag.StringVar(&o.kubeconfig, "kubeconfig", os.Getenv("THON_K8S_KUBECONFIG"), "use this running cluster instead of starting shared/k8s (default $THON_K8S_KUBECONFIG)")
	flag.DurationVar(&o.timeout, "timeout", 20*time.Minute, "longest one run may take")
	flag.BoolVar(&o.child, "child", false, "internal: run the engine once in this process")
	flag.StringVar(&o.ns, "ns", "", "internal: the child's namespace")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./bench/k8s-scale [flags]\n\n"+
			"Creates N participants' sandboxes through THON's Kubernetes engine on a real\n"+
			"control plane with kwok nodes and reports time to all Ready, API requests per\n"+
			"participant, peak RSS and List latency (goal: p95 < %d ms).\n\nFlags:\n", goalList.Milliseconds())
		flag.PrintDefaults()
	}
	flag.Parse()
	for _, s := range strings.Split(conc, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || c < 1 {
			fmt.Fprintf(os.Stderr, "k8s-scale: -concurrency %q: want positive numbers, comma-separated\n", conc)
			os.Exit(2)
		}
		o.concurrency = append(o.concurrency, c)
	}
	if o.n < 1 || o.nodes < 1 || o.calls < 1 || o.qps < 0 {
		fmt.Fprintln(os.Stderr, "k8s-scale: -n, -nodes and -calls must be positive, -qps not negative")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.child {
		if err := child(ctx, o); err != nil {
			fmt.Fprintln(os.Stderr, "k8s-scale child:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, o); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted (%w); its namespaces were deleted", err)
		}
		fmt.Fprintln(os.Stderr, "k8s-scale:", err)
		os.Exit(1)
	}
}

// result is one run's measurements.
type result struct {
	Side        string         `json:"side"` // thon | baseline
	Concurrency int            `json:"concurrency"`
	N           int            `json:"n"`
	Created     time.Duration  `json:"created"`   // until the last create returned
	AllReady    time.Duration  `json:"all_ready"` // until every sandbox was Ready
	Requests    map[string]int `json:"requests"`  // during the run, by verb
	Setup       int            `json:"setup"`     // requests before the run (Prepare, informer sync)
	HWMKiB      int64          `json:"hwm_kib"`
	SampledKiB  int64          `json:"sampled_kib"`
	List        []time.Duration
	ListN       int `json:"list_n"` // sandboxes List returned
	// From the Pods' conditions (second resolution): when the scheduler
	// placed the last Pod and kwok made the last one Ready, after the start.
	LastScheduled time.Duration `json:"last_scheduled"`
	LastReady     time.Duration `json:"last_ready"`
}

func (r result) perParticipant() float64 {
	t := 0
	for _, v := range r.Requests {
		t += v
	}
	return float64(t) / float64(r.N)
}

// ---------------------------------------------------------------------------
// The parent: the control plane, the runs, the report.

func run(ctx context.Context, o options) (err error) {
	kc := o.kubeconfig
	if kc == "" {
		var stop func()
		kc, stop, err = startControlPlane(o.nodes)
		if err != nil {
			return err
		}
		defer stop()
	} else {
		fmt.Printf("k8s-scale: using the cluster of %s\n", kc)
	}
	admin, err := client(kc, 200, 400)
	if err != nil {
		return err
	}
	nodes, err := admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	// Every namespace this run makes is deleted on the way out.
	var made []string
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, ns := range made {
			if derr := deleteNamespace(cctx, admin, ns, false); derr != nil {
				fmt.Fprintf(os.Stderr, "cleanup: %v\n", derr)
				err = errors.Join(err, derr)
			}
		}
	}()
	newNS := func() (string, error) {
		ns := "tbk" + benchkit.RandHex(4)
		_, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil {
			return "", fmt.Errorf("create namespace %s: %w", ns, err)
		}
		made = append(made, ns)
		return ns, nil
	}
	done := func(ns string) error {
		made = slices.DeleteFunc(made, func(s string) bool { return s == ns })
		start := time.Now()
		if err := deleteNamespace(ctx, admin, ns, true); err != nil {
			return err
		}
		fmt.Printf("  (namespace %s deleted in %s)\n", ns, time.Since(start).Round(100*time.Millisecond))
		return nil
	}

	if o.qps == 0 {
		o.qps = kubernetes.DefaultQPS
	}
	qps := o.qps
	fmt.Printf("k8s-scale: %d participants on %d nodes; concurrency %v; client-side limit %.0f requests/s (burst %.0f)\n\n",
		o.n, len(nodes.Items), o.concurrency, qps, 2*qps)
	var thon, base []result
	for _, c := range o.concurrency {
		ns, err := newNS()
		if err != nil {
			return err
		}
		fmt.Printf("THON engine, concurrency %d, namespace %s ...\n", c, ns)
		r, err := runChild(ctx, o, self, kc, ns, c)
		if err != nil {
			return err
		}
		thon = append(thon, r)
		fmt.Printf("  all %d Ready after %s (the cluster: last scheduled %s, last Ready %s); %.2f requests per participant; peak RSS %s MiB; List p95 %s ms\n",
			r.N, r.AllReady.Round(time.Millisecond), r.LastScheduled.Round(time.Second), r.LastReady.Round(time.Second), r.perParticipant(), benchkit.MiB(max(r.HWMKiB, r.SampledKiB)), benchkit.Ms(benchkit.Percentile(r.List, 95)))
		if err := done(ns); err != nil {
			return err
		}
		if o.baseline {
			ns, err := newNS()
			if err != nil {
				return err
			}
			fmt.Printf("baseline (bare client-go), concurrency %d, namespace %s ...\n", c, ns)
			b, err := baseline(ctx, o, kc, ns, c, qps)
			if err != nil {
				return err
			}
			base = append(base, b)
			fmt.Printf("  all %d Ready after %s (the cluster: last scheduled %s, last Ready %s); %.2f requests per participant; LIST p95 %s ms\n",
				b.N, b.AllReady.Round(time.Millisecond), b.LastScheduled.Round(time.Second), b.LastReady.Round(time.Second), b.perParticipant(), benchkit.Ms(benchkit.Percentile(b.List, 95)))
			if err := done(ns); err != nil {
				return err
			}
		}
	}
	report(o, thon, base)
	return nil
}

func report(o options, thon, base []result) {
	fmt.Printf("\n%d participants, %d List calls each run (p50/p95/max in ms)\n\n", o.n, o.calls)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "run\tconc.\tcreated\tlast scheduled\tlast Ready\tall Ready seen\tvs baseline\treq/participant\tby verb\tsetup req\tpeak RSS MiB\tList p50\tp95\tmax")
	for i, r := range thon {
		ratio := "-"
		if i < len(base) {
			ratio = fmt.Sprintf("%.2f×", r.AllReady.Seconds()/base[i].AllReady.Seconds())
		}
		fmt.Fprintf(w, "THON engine\t%d\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Concurrency,
			r.Created.Round(time.Millisecond), r.LastScheduled.Round(time.Second), r.LastReady.Round(time.Second), r.AllReady.Round(time.Millisecond), ratio, r.perParticipant(), verbs(r.Requests), r.Setup,
			benchkit.MiB(max(r.HWMKiB, r.SampledKiB)),
			benchkit.Ms(benchkit.Percentile(r.List, 50)), benchkit.Ms(benchkit.Percentile(r.List, 95)), benchkit.Ms(benchkit.Percentile(r.List, 100)))
		if i < len(base) {
			b := base[i]
			fmt.Fprintf(w, "bare client-go\t%d\t%s\t%s\t%s\t%s\t1.00×\t%.2f\t%s\t-\t-\t%s\t%s\t%s\n", b.Concurrency,
				b.Created.Round(time.Millisecond), b.LastScheduled.Round(time.Second), b.LastReady.Round(time.Second), b.AllReady.Round(time.Millisecond), b.perParticipant(), verbs(b.Requests),
				benchkit.Ms(benchkit.Percentile(b.List, 50)), benchkit.Ms(benchkit.Percentile(b.List, 95)), benchkit.Ms(benchkit.Percentile(b.List, 100)))
		}
	}
	w.Flush()
	fmt.Println()
	fmt.Println("THON engine List reads the informer cache (what `thon status` gets from the engine); the baseline's is a LIST of pods and services from the API server.")
	fmt.Println("peak RSS: VmHWM of a fresh process running only the engine, as the daemon does.")
	fmt.Println("last scheduled / last Ready: from the Pods' conditions (1 s resolution), the cluster's own pace (scheduler, kwok); all Ready seen: when the client saw it.")
	if len(thon) > 0 {
		// client-go's token bucket: the burst at once, then qps a second.
		n := 0
		for _, v := range thon[0].Requests {
			n += v
		}
		fmt.Printf("the client-side rate limit (%.0f/s, burst %.0f) alone needs %.1f s for %d requests: what keeps THON from hammering the API server.\n\n",
			o.qps, 2*o.qps, max(0, float64(n)-2*o.qps)/o.qps, n)
	}
	for _, r := range thon {
		p95 := benchkit.Percentile(r.List, 95)
		fmt.Printf("List at %d sandboxes, concurrency %d: p95 %s ms (goal < %d ms)  %s\n", r.ListN, r.Concurrency, benchkit.Ms(p95), goalList.Milliseconds(), benchkit.Verdict(p95 < goalList && r.ListN == r.N))
	}
}

func verbs(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// runChild runs one engine run in a fresh process (so its peak memory is
// the engine's alone) and decodes its result.
func runChild(ctx context.Context, o options, self, kc, ns string, c int) (result, error) {
	args := []string{"-child", "-kubeconfig", kc, "-ns", ns, "-n", strconv.Itoa(o.n), "-concurrency", strconv.Itoa(c),
		"-calls", strconv.Itoa(o.calls), "-qps", strconv.FormatFloat(o.qps, 'f', -1, 64), "-timeout", o.timeout.String()}
	cmd := exec.CommandContext(ctx, self, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("engine run (concurrency %d): %w", c, err)
	}
	var r result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return result{}, fmt.Errorf("engine run (concurrency %d): %w: %q", c, err, out.String())
	}
	return r, nil
}

// startControlPlane takes the control plane's lock and starts it with
// nodes kwok nodes; stop stops it and releases the lock.
func startControlPlane(nodes int) (kc string, stop func(), err error) {
	work := os.Getenv("K8S_WORK")
	if work == "" {
		home, _ := os.UserHomeDir()
		work = filepath.Join(home, ".cache", "thon-k8s")
	}
	scripts := testenv.K8sScripts()
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if _, err := os.Stat(filepath.Join(work, "bin", b)); err != nil {
			return "", nil, fmt.Errorf("%s is missing: build the control plane with %s/build.sh (20-30 minutes, once), or pass -kubeconfig", filepath.Join(work, "bin", b), scripts)
		}
	}
	lock, err := os.OpenFile(filepath.Join(work, ".test.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", nil, fmt.Errorf("lock the control plane: %w", err)
	}
	fmt.Printf("k8s-scale: waiting for the control plane's lock (%s) ...\n", lock.Name())
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		return "", nil, fmt.Errorf("lock the control plane: %w", err)
	}
	env := append(os.Environ(), "K8S_WORK="+work)
	start := time.Now()
	up := exec.Command(filepath.Join(scripts, "up.sh"), strconv.Itoa(nodes))
	up.Env = env
	if out, err := up.CombinedOutput(); err != nil {
		lock.Close()
		return "", nil, fmt.Errorf("start the control plane: %w\n%s", err, out)
	}
	fmt.Printf("k8s-scale: control plane with %d kwok nodes up in %s\n", nodes, time.Since(start).Round(100*time.Millisecond))
	return filepath.Join(work, "run", "kubeconfig"), func() {
		down := exec.Command(filepath.Join(scripts, "down.sh"))
		down.Env = env
		_ = down.Run()
		lock.Close()
	}, nil
}

func client(kc string, qps float32, burst int) (*k8s.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kc, err)
	}
	cfg.QPS, cfg.Burst = qps, burst
	return k8s.NewForConfig(cfg)
}

// deleteNamespace deletes ns; wait: until it is gone (at most 10 minutes).
func deleteNamespace(ctx context.Context, cs k8s.Interface, ns string, wait bool) error {
	err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete namespace %s: %w", ns, err)
	}
	if !wait {
		return nil
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("namespace %s still there after 10 minutes (%v)", ns, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// clusterTimes reads, from the Pods' conditions, when the last Pod was
// scheduled and when the last became Ready, after start: how long the
// cluster itself (scheduler, kwok) took, whoever made the Pods.
func clusterTimes(ctx context.Context, cs k8s.Interface, ns, selector string, start time.Time) (scheduled, ready time.Duration, err error) {
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return 0, 0, err
	}
	at := func(p corev1.Pod, t corev1.PodConditionType) time.Duration {
		for _, c := range p.Status.Conditions {
			if c.Type == t && c.Status == corev1.ConditionTrue {
				return c.LastTransitionTime.Sub(start)
			}
		}
		return 0
	}
	for _, p := range pods.Items {
		scheduled = max(scheduled, at(p, corev1.PodScheduled))
		ready = max(ready, at(p, corev1.PodReady))
	}
	return scheduled, ready, nil
}

// ---------------------------------------------------------------------------
// The engine run (child process).

// counter counts requests to the API server by verb (WATCH for watches).
type counter struct {
	next http.RoundTripper
	mu   sync.Mutex
	n    map[string]int
}

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	verb := req.Method
	if req.URL.Query().Get("watch") == "true" {
		verb = "WATCH"
	}
	c.mu.Lock()
	c.n[verb]++
	c.mu.Unlock()
	return c.next.RoundTrip(req)
}

func (c *counter) get() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

func spec(i int) sandbox.Spec {
	user := fmt.Sprintf("p%04d", i)
	return sandbox.Spec{
		User: user, Group: fmt.Sprintf("g%02d", i%groups), Image: image, Port: port, HealthPath: healthPath,
		Env:       map[string]string{"TZ": "Europe/Berlin"},
		Limits:    sandbox.Limits{NanoCPUs: 1_000_000_000, MemoryBytes: 2 << 30, Pids: 512},
		Workspace: sandbox.WorkspaceVolume,
		Files: []sandbox.File{
			{Path: "/home/coder/.config/kilo/config.json", Mode: 0o600, UID: 1000, GID: 1000, Data: bytes.Repeat([]byte("k"), 1500)},
			{Path: "/home/coder/.continue/config.yaml", Mode: 0o600, UID: 1000, GID: 1000, Data: bytes.Repeat([]byte("c"), 1500)},
			{Path: "/etc/thon/extensions.txt", Mode: 0o644, Data: []byte("kilocode.kilo-code\n")},
		},
	}
}

func child(ctx context.Context, o options) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	c := o.concurrency[0]
	count := &counter{n: map[string]int{}}
	rt, err := kubernetes.New(kubernetes.Options{
		Kubeconfig: o.kubeconfig, Namespace: o.ns, Instance: "thon",
		QPS: float32(o.qps), Burst: int(2 * o.qps),
		// As internal/daemon configures it: a create is four requests.
		Concurrency:   c * 4,
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper { count.next = rt; return count },
	})
	if err != nil {
		return err
	}
	defer rt.Close()

	// Memory: the kernel's high-water mark at the end, and VmRSS sampled.
	var sampled atomic.Int64
	stopSampling := make(chan struct{})
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if kib, err := benchkit.ProcStatusKiB(os.Getpid(), "VmRSS"); err == nil && kib > sampled.Load() {
				sampled.Store(kib)
			}
			select {
			case <-t.C:
			case <-stopSampling:
				return
			}
		}
	}()

	// As the daemon starts: Prepare, informers synced.
	if err := rt.Prepare(ctx, spec(0)); err != nil {
		return err
	}
	if _, err := rt.List(ctx); err != nil {
		return err
	}
	before := count.get()
	setup := 0
	for _, v := range before {
		setup += v
	}

	start := time.Now()
	work := make(chan int)
	errs := make(chan error, o.n)
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if _, err := rt.Create(ctx, spec(i)); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range o.n {
		work <- i
	}
	close(work)
	wg.Wait()
	created := time.Since(start)
	close(errs)
	for err := range errs {
		return fmt.Errorf("create: %w", err)
	}
	for {
		list, err := rt.List(ctx)
		if err != nil {
			return err
		}
		ready := 0
		for _, inst := range list {
			if inst.State == sandbox.StateRunning {
				ready++
			}
		}
		if ready == o.n {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%d of %d sandboxes Ready after %s", ready, o.n, time.Since(start).Round(time.Second))
		}
		time.Sleep(20 * time.Millisecond)
	}
	allReady := time.Since(start)
	after := count.get()

	// List with every sandbox there, as `thon status` asks for it.
	lat := make([]time.Duration, 0, o.calls)
	n := 0
	for range o.calls {
		t := time.Now()
		list, err := rt.List(ctx)
		if err != nil {
			return err
		}
		lat = append(lat, time.Since(t))
		n = len(list)
	}
	close(stopSampling)
	hwm, _ := benchkit.ProcStatusKiB(os.Getpid(), "VmHWM")
	sched, ready, err := clusterTimes(ctx, rt.Clientset(), o.ns, sandbox.LabelManaged+"=true", start)
	if err != nil {
		return err
	}

	reqs := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			reqs[k] = d
		}
	}
	return json.NewEncoder(os.Stdout).Encode(result{
		Side: "thon", Concurrency: c, N: o.n, Created: created, AllReady: allReady, Requests: reqs, Setup: setup,
		HWMKiB: hwm, SampledKiB: sampled.Load(), List: lat, ListN: n, LastScheduled: sched, LastReady: ready,
	})
}

// ---------------------------------------------------------------------------
// The baseline: the same four objects per participant with bare client-go.

func baseline(ctx context.Context, o options, kc, ns string, c int, qps float64) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		return result{}, err
	}
	listCfg := rest.CopyConfig(cfg)
	count := &counter{n: map[string]int{}}
	cfg.QPS, cfg.Burst = float32(qps), int(2*qps)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { count.next = rt; return count })
	cs, err := k8s.NewForConfig(cfg)
	if err != nil {
		return result{}, err
	}
	sel := "bench=k8s-scale"

	// Ready pods, counted by a watch started before the first create.
	var ready atomic.Int64
	allReady := make(chan struct{})
	w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return result{}, err
	}
	defer w.Stop()
	go func() {
		seen := map[string]bool{}
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) || seen[p.Name] {
				continue
			}
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
					seen[p.Name] = true
					if int(ready.Add(1)) == o.n {
						close(allReady)
					}
				}
			}
		}
	}()
	before := count.get()

	start := time.Now()
	work := make(chan int)
	errs := make(chan error, o.n)
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := bareCreate(ctx, cs, ns, spec(i)); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range o.n {
		work <- i
	}
	close(work)
	wg.Wait()
	created := time.Since(start)
	close(errs)
	for err := range errs {
		return result{}, fmt.Errorf("baseline create: %w", err)
	}
	select {
	case <-allReady:
	case <-ctx.Done():
		return result{}, fmt.Errorf("baseline: %d of %d pods Ready", ready.Load(), o.n)
	}
	all := time.Since(start)
	after := count.get()

	// LIST from the API server: pods and services, as a status without a
	// cache would, with a client whose rate limit does not get in the way.
	listCfg.QPS, listCfg.Burst = 10000, 10000
	lister, err := k8s.NewForConfig(listCfg)
	if err != nil {
		return result{}, err
	}
	lat := make([]time.Duration, 0, o.calls)
	n := 0
	for range o.calls {
		t := time.Now()
		pods, err := lister.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return result{}, err
		}
		if _, err := lister.CoreV1().Services(ns).List(ctx, metav1.ListOptions{LabelSelector: sel}); err != nil {
			return result{}, err
		}
		lat = append(lat, time.Since(t))
		n = len(pods.Items)
	}
	sched, last, err := clusterTimes(ctx, lister, ns, sel, start)
	if err != nil {
		return result{}, err
	}
	reqs := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			reqs[k] = d
		}
	}
	return result{Side: "baseline", Concurrency: c, N: o.n, Created: created, AllReady: all, Requests: reqs, List: lat, ListN: n,
		LastScheduled: sched, LastReady: last}, nil
}

// bareCreate makes a Secret, a PVC, a Service and a Pod like the engine's
// (same sizes, resources, probes and security settings), one request each.
func bareCreate(ctx context.Context, cs k8s.Interface, ns string, s sandbox.Spec) error {
	l := map[string]string{"bench": "k8s-scale", "user": s.User}
	meta := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Labels: l} }
	data := map[string][]byte{}
	for i, f := range s.Files {
		data["f"+strconv.Itoa(i)] = f.Data
	}
	spec, _ := json.Marshal(s)
	data["spec.json"] = spec
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: meta("files-" + s.User), Data: data}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: meta("ws-" + s.User), Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")}},
	}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: meta(s.User), Spec: corev1.ServiceSpec{
		Selector: l, Ports: []corev1.ServicePort{{Port: int32(s.Port), TargetPort: intstr.FromInt32(int32(s.Port))}},
	}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewMilliQuantity(s.Limits.NanoCPUs/1_000_000, resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(s.Limits.MemoryBytes, resource.BinarySI),
	}
	f := false
	t := true
	uid := int64(1000)
	_, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: meta(s.User), Spec: corev1.PodSpec{
		AutomountServiceAccountToken: &f, EnableServiceLinks: &f,
		SecurityContext: &corev1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &uid, FSGroup: &uid, RunAsNonRoot: &t,
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		Containers: []corev1.Container{{
			Name: "sandbox", Image: s.Image, Ports: []corev1.ContainerPort{{ContainerPort: int32(s.Port)}},
			Resources:      corev1.ResourceRequirements{Requests: res, Limits: res},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: s.HealthPath, Port: intstr.FromInt32(int32(s.Port))}}},
			SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &f,
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			VolumeMounts: []corev1.VolumeMount{{Name: "ws", MountPath: "/workspace/" + s.Group + "/" + s.User}, {Name: "files", MountPath: "/etc/thon", ReadOnly: true}},
		}},
		Volumes: []corev1.Volume{
			{Name: "ws", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "ws-" + s.User}}},
			{Name: "files", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "files-" + s.User}}},
		},
	}}, metav1.CreateOptions{})
	return err
}
