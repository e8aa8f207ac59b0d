package kubernetes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/testenv"
)

// The tests run against a real control plane (kube-apiserver, controller
// manager, scheduler, etcd, and kwok playing the nodes) started by
// shared/k8s/up.sh from binaries built by shared/k8s/build.sh. Set
// THON_K8S_KUBECONFIG to use a control plane that is already running instead.
var (
	kubeconfig string // the admin kubeconfig; "" when there is no cluster
	noCluster  string // why not
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if testing.Short() {
		noCluster = "-short: no Kubernetes control plane"
		return m.Run()
	}
	kc, why, stop := testenv.Kubernetes(m, 3)
	defer stop()
	kubeconfig, noCluster = kc, why
	return m.Run()
}

func needCluster(t testing.TB) {
	t.Helper()
	if kubeconfig == "" {
		t.Skip(noCluster)
	}
}

// admin is a client with the admin kubeconfig.
func admin(t testing.TB) k8s.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	cs, err := k8s.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// counter counts requests to the API server by verb.
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
	out := map[string]int{}
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

func (c *counter) writes() int {
	n := c.get()
	return n["POST"] + n["PUT"] + n["PATCH"] + n["DELETE"]
}

func (c *counter) total() int {
	t := 0
	for _, v := range c.get() {
		t += v
	}
	return t
}

// env is one test's namespace and runtime.
type env struct {
	cs    k8s.Interface
	ns    string
	inst  string
	rt    *Runtime
	count *counter
}

func randHex(t testing.TB) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// newEnv makes a namespace of the test's own and a Runtime on it.
func newEnv(t testing.TB, opts ...func(*Options)) *env {
	t.Helper()
	needCluster(t)
	cs := admin(t)
	id := randHex(t)
	e := &env{cs: cs, ns: "tt" + id, inst: "tt" + id}
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), e.ns, metav1.DeleteOptions{})
	})
	e.rt, e.count = e.runtime(t, opts...)
	return e
}

// runtime is another Runtime on the env's namespace and instance (a
// restarted daemon), with its own request counter.
func (e *env) runtime(t testing.TB, opts ...func(*Options)) (*Runtime, *counter) {
	t.Helper()
	c := &counter{n: map[string]int{}}
	o := Options{
		Kubeconfig: kubeconfig, Namespace: e.ns, Instance: e.inst,
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper { c.next = rt; return c },
	}
	for _, f := range opts {
		f(&o)
	}
	rt, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt, c
}

func (e *env) spec(user, group string) sandbox.Spec {
	return sandbox.Spec{
		User: user, Group: group, Image: "thon/sandbox:test", Port: 8080, HealthPath: "/healthz",
		Env:       map[string]string{"FOO": "bar"},
		Limits:    sandbox.Limits{NanoCPUs: 500_000_000, MemoryBytes: 512 << 20, Pids: 512},
		Workspace: sandbox.WorkspaceVolume,
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// waitState polls Inspect (the informer cache) until user's sandbox is in state.
func waitState(t testing.TB, ctx context.Context, rt *Runtime, user string, want sandbox.State) sandbox.Instance {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last sandbox.Instance
	var err error
	for time.Now().Before(deadline) {
		last, err = rt.Inspect(ctx, user)
		if err == nil && last.State == want {
			return last
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("sandbox %s never became %s; last: %+v, %v", user, want, last, err)
	return last
}

// objects counts the namespace's Pods, Services, Secrets and PVCs of user
// ("" for all users of the instance).
func (e *env) objects(t testing.TB, user string) map[string]int {
	t.Helper()
	ctx := context.Background()
	sel := sandbox.LabelManaged + "=true," + LabelInstance + "=" + e.inst
	if user != "" {
		sel += "," + sandbox.LabelUser + "=" + user
	}
	lo := metav1.ListOptions{LabelSelector: sel}
	out := map[string]int{}
	pods, err := e.cs.CoreV1().Pods(e.ns).List(ctx, lo)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out["pods"]++
		}
	}
	svcs, err := e.cs.CoreV1().Services(e.ns).List(ctx, lo)
	if err != nil {
		t.Fatal(err)
	}
	out["services"] = len(svcs.Items)
	secs, err := e.cs.CoreV1().Secrets(e.ns).List(ctx, lo)
	if err != nil {
		t.Fatal(err)
	}
	out["secrets"] = len(secs.Items)
	pvcs, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).List(ctx, lo)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pvcs.Items {
		if p.DeletionTimestamp == nil {
			out["pvcs"]++
		}
	}
	for k, v := range out {
		if v == 0 {
			delete(out, k)
		}
	}
	return out
}

func fmtCounts(m map[string]int) string {
	var b strings.Builder
	for _, k := range []string{"GET", "WATCH", "POST", "PUT", "PATCH", "DELETE"} {
		if m[k] > 0 {
			fmt.Fprintf(&b, "%s=%d ", k, m[k])
		}
	}
	return strings.TrimSpace(b.String())
}
