// Package manifests_test checks the kustomize manifests in this directory:
// rendered with kustomize's own library (krusty), every object has THON's
// labels and the settings the daemon and the sandbox engine rely on, and a
// real API server (shared/k8s, like internal/sandbox/kubernetes's tests)
// accepts every object, runs the workloads, and lets the ServiceAccount do
// exactly what the engine needs: a sandbox made through the engine as that
// ServiceAccount comes up, and nothing outside the namespace is allowed.
//
//	go test ./deploy/kubernetes/
package manifests_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/sandbox"
	thonk8s "github.com/thon-dev/thon/internal/sandbox/kubernetes"
	"github.com/thon-dev/thon/internal/testenv"
)

// The optional components, as kustomization.yaml names them.
var components = []string{"components/cluster-rbac", "components/postgres", "components/ingress"}

// ---------------------------------------------------------------------------
// The control plane, from testenv.Kubernetes (shared with the engine's tests).

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

func needCluster(t *testing.T) {
	t.Helper()
	if kubeconfig == "" {
		t.Skip(noCluster)
	}
}

// ---------------------------------------------------------------------------
// Rendering.

// render builds the kustomization in dir with kustomize's library, as
// `kubectl apply -k` does.
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range rm.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		out = append(out, u)
	}
	return out
}

// overlay writes a kustomization in a temporary directory that uses this
// directory (as `kubectl apply -k deploy/kubernetes` would) with namespace
// ns and the given components, and renders it.
func overlay(t *testing.T, ns string, comps ...string) []*unstructured.Unstructured {
	t.Helper()
	here, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rel := func(p string) string {
		r, err := filepath.Rel(dir, filepath.Join(here, p))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: %s\nresources:\n  - %s\n", ns, rel("."))
	if len(comps) > 0 {
		b.WriteString("components:\n")
		for _, c := range comps {
			fmt.Fprintf(&b, "  - %s\n", rel(c))
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return render(t, dir)
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && baseName(o) == name {
			return o
		}
	}
	return nil
}

func must[T any](t *testing.T, objs []*unstructured.Unstructured, kind, name string) *T {
	t.Helper()
	o := find(objs, kind, name)
	if o == nil {
		t.Fatalf("no %s %s in the rendered manifests", kind, name)
	}
	var v T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &v); err != nil {
		t.Fatalf("%s %s: %v", kind, name, err)
	}
	return &v
}

func id(o *unstructured.Unstructured) string {
	if ns := o.GetNamespace(); ns != "" {
		return o.GetKind() + " " + ns + "/" + o.GetName()
	}
	return o.GetKind() + " " + o.GetName()
}

// ---------------------------------------------------------------------------
// Without a cluster: what the manifests say.

// TestRendered checks the default kustomization (no components) object by
// object.
func TestRendered(t *testing.T) {
	objs := render(t, ".")
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+"/"+baseName(o))
	}
	sort.Strings(got)
	want := []string{
		"ConfigMap/thon-config", "Deployment/thon", "Deployment/thon-gateway", "Deployment/thon-redis",
		"Namespace/thon", "PersistentVolumeClaim/thon-data", "PodDisruptionBudget/thon-gateway",
		"Role/thon-sandboxes", "RoleBinding/thon-sandboxes", "Secret/thon-secrets",
		"Service/thon-api", "Service/thon-frontdoor", "Service/thon-gateway", "Service/thon-redis",
		"ServiceAccount/thon",
	}
	if !slices.Equal(got, want) {
		t.Errorf("objects:\n got %v\nwant %v", got, want)
	}
	checkLabels(t, objs, "thon")

	// The Role is exactly what the engine asks for.
	role := must[rbacv1.Role](t, objs, "Role", "thon-sandboxes")
	if !apiequality.Semantic.DeepEqual(role.Rules, thonk8s.PolicyRules()) {
		t.Errorf("Role thon-sandboxes rules differ from kubernetes.PolicyRules():\n got %+v\nwant %+v", role.Rules, thonk8s.PolicyRules())
	}
	rb := must[rbacv1.RoleBinding](t, objs, "RoleBinding", "thon-sandboxes")
	if rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != "thon-sandboxes" || len(rb.Subjects) != 1 ||
		rb.Subjects[0].Kind != "ServiceAccount" || rb.Subjects[0].Name != "thon" {
		t.Errorf("RoleBinding thon-sandboxes: %+v", rb)
	}

	// thon.yaml: valid, the Kubernetes engine, and consistent with the objects.
	cm := must[corev1.ConfigMap](t, objs, "ConfigMap", "thon-config")
	cfg, err := config.Parse([]byte(cm.Data["thon.yaml"]), "thon.yaml")
	if err != nil {
		t.Fatalf("thon.yaml in the ConfigMap: %v", err)
	}
	if cfg.Sandbox.Runtime != config.RuntimeKubernetes {
		t.Errorf("sandbox.runtime = %q, want kubernetes", cfg.Sandbox.Runtime)
	}
	if cfg.Sandbox.Kubernetes.Namespace != "thon" {
		t.Errorf("sandbox.kubernetes.namespace = %q, want the kustomization's namespace thon", cfg.Sandbox.Kubernetes.Namespace)
	}
	if cfg.Sandbox.Kubernetes.Kubeconfig != "" {
		t.Errorf("sandbox.kubernetes.kubeconfig = %q, want \"\" (the in-cluster ServiceAccount)", cfg.Sandbox.Kubernetes.Kubeconfig)
	}
	if cfg.Server.Database != "" {
		t.Errorf("server.database = %q: the URL belongs in the Secret (THON_SERVER_DATABASE)", cfg.Server.Database)
	}
	if !strings.Contains(cfg.Gateway.Redis, "//thon-redis:6379") {
		t.Errorf("gateway.redis = %q, want the Service thon-redis", cfg.Gateway.Redis)
	}
	_, apiPort, _ := net.SplitHostPort(cfg.Server.Listen)
	_, gwPort, _ := net.SplitHostPort(cfg.Gateway.Listen)

	// The daemon.
	d := must[appsv1.Deployment](t, objs, "Deployment", "thon")
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("Deployment thon: want 1 replica and strategy Recreate, got %v %s", d.Spec.Replicas, d.Spec.Strategy.Type)
	}
	ps := d.Spec.Template.Spec
	if got := d.Spec.Template.Labels[thonk8s.LabelRole]; got != "daemon" {
		t.Errorf("daemon Pod label %s = %q, want daemon", thonk8s.LabelRole, got)
	}
	if ps.ServiceAccountName != "thon" {
		t.Errorf("daemon serviceAccountName = %q, want thon", ps.ServiceAccountName)
	}
	c := ps.Containers[0]
	if !slices.Equal(c.Args, []string{"serve", "--config", "/etc/thon/thon.yaml"}) {
		t.Errorf("daemon args %q", c.Args)
	}
	// `kubectl exec deploy/thon -- thon token create ...` finds ./thon.yaml
	// (and so the data directory's admin token) only from there.
	if c.WorkingDir != "/etc/thon" {
		t.Errorf("daemon workingDir %q, want /etc/thon, the directory of its thon.yaml", c.WorkingDir)
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/api/v1/health" || port(c, p.HTTPGet.Port.String()) != apiPort {
			t.Errorf("daemon %s probe %+v: want GET /api/v1/health on server.listen's port %s", name, p, apiPort)
		}
	}
	if port(c, "gateway") != gwPort {
		t.Errorf("daemon's gateway port %s, want gateway.listen's %s", port(c, "gateway"), gwPort)
	}
	if port(c, "https") != fmt.Sprint(cfg.Access.HTTPSPort) || port(c, "http") != fmt.Sprint(cfg.Access.HTTPPort) {
		t.Errorf("daemon ports https %s http %s, want access.https_port %d and http_port %d", port(c, "https"), port(c, "http"), cfg.Access.HTTPSPort, cfg.Access.HTTPPort)
	}
	if !mounted(ps, c, "thon-data", cfg.Server.DataDir) {
		t.Errorf("the PVC thon-data is not mounted at server.data_dir %s", cfg.Server.DataDir)
	}
	if !slices.ContainsFunc(c.EnvFrom, func(e corev1.EnvFromSource) bool { return e.SecretRef != nil && e.SecretRef.Name == "thon-secrets" }) {
		t.Error("the daemon does not read the Secret thon-secrets")
	}
	checkHardened(t, "daemon", ps)
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("the daemon has no memory request or limit")
	}

	// The gateway replicas.
	g := must[appsv1.Deployment](t, objs, "Deployment", "thon-gateway")
	if g.Spec.Replicas == nil || *g.Spec.Replicas != 2 {
		t.Errorf("gateway replicas %v, want 2", g.Spec.Replicas)
	}
	if got := g.Spec.Template.Labels[thonk8s.LabelRole]; got != "gateway" {
		t.Errorf("gateway Pod label %s = %q, want gateway", thonk8s.LabelRole, got)
	}
	if a := g.Spec.Template.Spec.Containers[0].Args; len(a) < 2 || a[0] != "gateway" || a[1] != "serve" {
		t.Errorf("gateway args %q, want gateway serve ...", a)
	}
	if env(g.Spec.Template.Spec.Containers[0], "THON_URL") != "http://thon-api:"+apiPort {
		t.Errorf("gateway THON_URL = %q, want http://thon-api:%s", env(g.Spec.Template.Spec.Containers[0], "THON_URL"), apiPort)
	}
	checkHardened(t, "gateway", g.Spec.Template.Spec)

	// Redis carries no io.thon.role: sandboxes must not reach it.
	r := must[appsv1.Deployment](t, objs, "Deployment", "thon-redis")
	if _, ok := r.Spec.Template.Labels[thonk8s.LabelRole]; ok {
		t.Errorf("Redis Pods carry %s: the sandboxes' NetworkPolicy would let them in", thonk8s.LabelRole)
	}
	checkHardened(t, "redis", r.Spec.Template.Spec)

	checkServices(t, objs)

	// The Secret is a template: placeholders only.
	sec := must[corev1.Secret](t, objs, "Secret", "thon-secrets")
	for _, k := range []string{"THON_ADMIN_PASSWORD", "THON_SERVER_DATABASE", "THON_LLM_API_KEY", "THON_TOKEN"} {
		v, ok := sec.StringData[k]
		if !ok {
			t.Errorf("Secret thon-secrets has no %s", k)
		}
		if v != "" && !strings.Contains(v, "CHANGE-ME") {
			t.Errorf("Secret thon-secrets %s = %q: want a placeholder (\"\" or CHANGE-ME...)", k, v)
		}
	}
	if len(sec.StringData["THON_ADMIN_PASSWORD"]) < 8 {
		t.Error("the placeholder admin password is shorter than THON accepts (8)")
	}
}

// TestComponents checks the optional components on top of the default.
func TestComponents(t *testing.T) {
	objs := overlay(t, "thon", components...)
	checkLabels(t, objs, "thon")
	cr := must[rbacv1.ClusterRole](t, objs, "ClusterRole", "thon-cluster")
	if !apiequality.Semantic.DeepEqual(cr.Rules, thonk8s.ClusterPolicyRules()) {
		t.Errorf("ClusterRole thon-cluster rules differ from kubernetes.ClusterPolicyRules():\n got %+v\nwant %+v", cr.Rules, thonk8s.ClusterPolicyRules())
	}
	crb := must[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding", "thon-cluster")
	if len(crb.Subjects) != 1 || crb.Subjects[0].Name != "thon" || crb.Subjects[0].Namespace != "thon" {
		t.Errorf("ClusterRoleBinding thon-cluster subjects %+v, want ServiceAccount thon/thon", crb.Subjects)
	}
	sec := must[corev1.Secret](t, objs, "Secret", "thon-secrets")
	pg := must[corev1.Secret](t, objs, "Secret", "thon-postgres")
	url := sec.StringData["THON_SERVER_DATABASE"]
	if !strings.HasPrefix(url, "postgres://thon:"+pg.StringData["POSTGRES_PASSWORD"]+"@thon-postgres:5432/thon") {
		t.Errorf("with components/postgres, THON_SERVER_DATABASE = %q does not match the Secret thon-postgres and the Service thon-postgres", url)
	}
	ss := must[appsv1.StatefulSet](t, objs, "StatefulSet", "thon-postgres")
	if _, ok := ss.Spec.Template.Labels[thonk8s.LabelRole]; ok {
		t.Errorf("PostgreSQL Pods carry %s: the sandboxes' NetworkPolicy would let them in", thonk8s.LabelRole)
	}
	checkHardened(t, "postgres", ss.Spec.Template.Spec)
	fd := must[corev1.Service](t, objs, "Service", "thon-frontdoor")
	if fd.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("with components/ingress the front door Service is %s, want ClusterIP", fd.Spec.Type)
	}
	ing := must[networkingv1.Ingress](t, objs, "Ingress", "thon")
	for _, r := range ing.Spec.Rules {
		for _, p := range r.HTTP.Paths {
			if p.Backend.Service == nil || p.Backend.Service.Name != "thon-frontdoor" || p.Backend.Service.Port.Name != "https" {
				t.Errorf("Ingress rule %s: backend %+v, want thon-frontdoor https", r.Host, p.Backend)
			}
		}
	}
	checkServices(t, objs)
}

// baseName is o's name without the hash suffix kustomize's ConfigMap
// generator adds.
func baseName(o *unstructured.Unstructured) string {
	if n := o.GetName(); o.GetKind() == "ConfigMap" && strings.Count(n, "-") > 1 {
		return n[:strings.LastIndex(n, "-")]
	}
	return o.GetName()
}

// checkLabels: every object is THON's (name, part-of, a component) and in
// the namespace; Pod templates carry the same labels.
func checkLabels(t *testing.T, objs []*unstructured.Unstructured, ns string) {
	t.Helper()
	comps := []string{"daemon", "gateway", "redis", "postgres"}
	for _, o := range objs {
		l := o.GetLabels()
		if o.GetKind() == "Namespace" {
			if o.GetName() != ns || l["app.kubernetes.io/part-of"] != "thon" || l["pod-security.kubernetes.io/enforce"] != "restricted" {
				t.Errorf("%s: labels %v", id(o), l)
			}
			continue
		}
		if l["app.kubernetes.io/name"] != "thon" || l["app.kubernetes.io/part-of"] != "thon" || !slices.Contains(comps, l["app.kubernetes.io/component"]) {
			t.Errorf("%s: labels %v, want app.kubernetes.io/name=thon, part-of=thon and a component", id(o), l)
		}
		cluster := o.GetKind() == "ClusterRole" || o.GetKind() == "ClusterRoleBinding"
		if cluster != (o.GetNamespace() == "") || (!cluster && o.GetNamespace() != ns) {
			t.Errorf("%s: namespace %q, want %q", id(o), o.GetNamespace(), ns)
		}
		tl, found, _ := unstructured.NestedStringMap(o.Object, "spec", "template", "metadata", "labels")
		if found {
			for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/component"} {
				if tl[k] != l[k] {
					t.Errorf("%s: Pod template label %s = %q, want %q", id(o), k, tl[k], l[k])
				}
			}
		}
	}
}

// checkServices: each Service selects the Pods of one workload and its
// target ports are named ports of that workload's container.
func checkServices(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	type pods struct {
		labels map[string]string
		spec   corev1.PodSpec
	}
	var workloads []pods
	for _, o := range objs {
		switch o.GetKind() {
		case "Deployment":
			d := must[appsv1.Deployment](t, objs, "Deployment", o.GetName())
			workloads = append(workloads, pods{d.Spec.Template.Labels, d.Spec.Template.Spec})
		case "StatefulSet":
			s := must[appsv1.StatefulSet](t, objs, "StatefulSet", o.GetName())
			workloads = append(workloads, pods{s.Spec.Template.Labels, s.Spec.Template.Spec})
		}
	}
	for _, o := range objs {
		if o.GetKind() != "Service" {
			continue
		}
		svc := must[corev1.Service](t, objs, "Service", o.GetName())
		var match []pods
		for _, w := range workloads {
			if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.labels)) {
				match = append(match, w)
			}
		}
		if len(svc.Spec.Selector) == 0 || len(match) != 1 {
			t.Errorf("Service %s selects %d workloads, want 1", svc.Name, len(match))
			continue
		}
		for _, p := range svc.Spec.Ports {
			if port(match[0].spec.Containers[0], p.TargetPort.String()) == "" {
				t.Errorf("Service %s: target port %s is not a port of its Pods", svc.Name, p.TargetPort.String())
			}
		}
	}
}

// checkHardened: non-root, no privilege escalation, all capabilities
// dropped, read-only root, seccomp RuntimeDefault, resources set.
func checkHardened(t *testing.T, what string, ps corev1.PodSpec) {
	t.Helper()
	sc := ps.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: Pod securityContext %+v, want non-root with seccomp RuntimeDefault", what, sc)
	}
	for _, c := range ps.Containers {
		cs := c.SecurityContext
		if cs == nil || cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation ||
			cs.ReadOnlyRootFilesystem == nil || !*cs.ReadOnlyRootFilesystem ||
			cs.Capabilities == nil || !slices.Equal(cs.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(cs.Capabilities.Add) > 0 {
			t.Errorf("%s: container %s securityContext %+v", what, c.Name, cs)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: container %s without a CPU request or a memory limit", what, c.Name)
		}
		if c.ReadinessProbe == nil || c.LivenessProbe == nil {
			t.Errorf("%s: container %s without readiness and liveness probes", what, c.Name)
		}
	}
}

// port is the container port named (or numbered) p, as a string; "" when none.
func port(c corev1.Container, p string) string {
	for _, cp := range c.Ports {
		if cp.Name == p || fmt.Sprint(cp.ContainerPort) == p {
			return fmt.Sprint(cp.ContainerPort)
		}
	}
	return ""
}

func env(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// mounted: the PVC claim is mounted in c at path.
func mounted(ps corev1.PodSpec, c corev1.Container, claim, path string) bool {
	for _, v := range ps.Volumes {
		if v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != claim {
			continue
		}
		for _, m := range c.VolumeMounts {
			if m.Name == v.Name && filepath.Clean(m.MountPath) == filepath.Clean(path) {
				return true
			}
		}
	}
	return false
}

// ---------------------------------------------------------------------------
// With the real API server.

// warnings collects the API server's Warning headers.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	w.list = append(w.list, text)
	w.mu.Unlock()
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.list
	w.list = nil
	return l
}

type cluster struct {
	cfg    *rest.Config
	cs     k8s.Interface
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	warn   *warnings
}

func connect(t *testing.T) *cluster {
	t.Helper()
	needCluster(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	c := &cluster{cfg: cfg, warn: &warnings{}}
	cfg.WarningHandler = c.warn
	if c.cs, err = k8s.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if c.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	return c
}

// apply does a server-side apply of o; dryRun asks for dryRun=All. It
// returns the server's warnings.
func (c *cluster) apply(ctx context.Context, o *unstructured.Unstructured, dryRun bool) ([]string, error) {
	gvk := o.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("%s: no such resource on the server: %w", id(o), err)
	}
	var ri dynamic.ResourceInterface = c.dyn.Resource(m.Resource)
	if m.Scope.Name() == "namespace" {
		ri = c.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	opts := metav1.ApplyOptions{FieldManager: "thon-manifests-test", Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	c.warn.take()
	_, err = ri.Apply(ctx, o.GetName(), o, opts)
	return c.warn.take(), err
}

func randHex(t *testing.T) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// install really applies the namespace and the RBAC objects of objs, then
// has the API server check every object with a server-side apply dry run:
// each must be accepted, without warnings (Pod Security "restricted" warns
// about any workload that breaks it). The namespace is deleted at the end.
func install(t *testing.T, c *cluster, objs []*unstructured.Unstructured, ns string) {
	t.Helper()
	ctx := context.Background()
	t.Cleanup(func() {
		_ = c.cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	for _, kind := range []string{"Namespace", "ServiceAccount", "Role", "RoleBinding"} {
		for _, o := range objs {
			if o.GetKind() != kind {
				continue
			}
			if _, err := c.apply(ctx, o, false); err != nil {
				t.Fatalf("apply %s: %v", id(o), err)
			}
		}
	}
	accepted := 0
	for _, o := range objs {
		w, err := c.apply(ctx, o, true)
		if err != nil {
			t.Errorf("the API server refuses %s: %v", id(o), err)
			continue
		}
		if len(w) > 0 {
			t.Errorf("the API server warns about %s: %s", id(o), strings.Join(w, "; "))
			continue
		}
		accepted++
	}
	t.Logf("%d of %d objects accepted by a server-side apply dry run (namespace %s)", accepted, len(objs), ns)
}

// TestServerAcceptsEverything: every object, with and without the optional
// components, passes a server-side apply dry run on the real API server.
func TestServerAcceptsEverything(t *testing.T) {
	c := connect(t)
	t.Run("default", func(t *testing.T) {
		ns := "thon-m" + randHex(t)
		objs := overlay(t, ns)
		install(t, c, objs, ns)
		// The check can fail: a daemon running as root draws a Pod
		// Security warning.
		bad := find(objs, "Deployment", "thon").DeepCopy()
		unstructured.RemoveNestedField(bad.Object, "spec", "template", "spec", "securityContext", "runAsNonRoot")
		unstructured.RemoveNestedField(bad.Object, "spec", "template", "spec", "securityContext", "runAsUser")
		if w, err := c.apply(context.Background(), bad, true); err != nil || len(w) == 0 {
			t.Errorf("a daemon without runAsNonRoot drew no Pod Security warning (%v): the warning check is blind", err)
		}
	})
	t.Run("all-components", func(t *testing.T) {
		ns := "thon-m" + randHex(t)
		objs := overlay(t, ns, components...)
		// The ClusterRoleBinding names the ServiceAccount in namespace thon
		// (kustomize leaves it): point it at this namespace, and give the
		// cluster-scoped objects names of their own so the dry run cannot
		// collide with a real installation.
		for _, o := range objs {
			switch o.GetKind() {
			case "ClusterRoleBinding":
				subs, _, _ := unstructured.NestedSlice(o.Object, "subjects")
				subs[0].(map[string]any)["namespace"] = ns
				_ = unstructured.SetNestedSlice(o.Object, subs, "subjects")
				_ = unstructured.SetNestedField(o.Object, ns, "roleRef", "name")
				o.SetName(ns)
			case "ClusterRole":
				o.SetName(ns)
			}
		}
		install(t, c, objs, ns)
	})
}

// TestRunsOnCluster applies the default kustomization for real and waits
// until its workloads run: Pods admitted under Pod Security "restricted",
// scheduled (kwok nodes), the data PVC bound.
func TestRunsOnCluster(t *testing.T) {
	c := connect(t)
	ns := "thon-m" + randHex(t)
	objs := overlay(t, ns)
	install(t, c, objs, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, o := range objs {
		if _, err := c.apply(ctx, o, false); err != nil {
			t.Fatalf("apply %s: %v", id(o), err)
		}
	}
	for _, name := range []string{"thon", "thon-gateway", "thon-redis"} {
		for {
			d, err := c.cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			if err == nil && d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas == *d.Spec.Replicas {
				break
			}
			if ctx.Err() != nil {
				pods, _ := c.cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
				var st []string
				for _, p := range pods.Items {
					st = append(st, p.Name+"="+string(p.Status.Phase))
				}
				ev, _ := c.cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
				var msgs []string
				for _, e := range ev.Items {
					msgs = append(msgs, e.InvolvedObject.Name+": "+e.Message)
				}
				t.Fatalf("Deployment %s not available: %v, %v; pods %v; events %v", name, d.Status, err, st, msgs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	pvc, err := c.cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "thon-data", metav1.GetOptions{})
	if err != nil || pvc.Status.Phase != corev1.ClaimBound {
		t.Errorf("PVC thon-data: %v %v", pvc.Status.Phase, err)
	}
}

// TestServiceAccount: the ServiceAccount thon of the default kustomization
// may do what the sandbox engine needs in its namespace and nothing outside
// it; the engine, running as that ServiceAccount, makes a sandbox that
// becomes Ready; its NetworkPolicy admits the daemon's Pods and lets
// sandboxes reach the gateway's, but not Redis.
func TestServiceAccount(t *testing.T) {
	c := connect(t)
	ns := "thon-m" + randHex(t)
	objs := overlay(t, ns)
	install(t, c, objs, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	user := "system:serviceaccount:" + ns + ":thon"
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	can := func(verb, group, resource, sub, namespace string) bool {
		t.Helper()
		r, err := c.cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: user, Groups: groups,
			ResourceAttributes: &authzv1.ResourceAttributes{Namespace: namespace, Verb: verb, Group: group, Resource: resource, Subresource: sub},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status.Allowed
	}
	// Everything PolicyRules lists, in the namespace.
	n := 0
	for _, rule := range thonk8s.PolicyRules() {
		for _, g := range rule.APIGroups {
			for _, res := range rule.Resources {
				r, sub, _ := strings.Cut(res, "/")
				for _, v := range rule.Verbs {
					n++
					if !can(v, g, r, sub, ns) {
						t.Errorf("the ServiceAccount may not %s %s in %s", v, res, ns)
					}
				}
			}
		}
	}
	// What the brief of the engine names, spelled out.
	for _, r := range [][2]string{{"", "pods"}, {"", "persistentvolumeclaims"}, {"", "services"}, {"", "secrets"}, {"networking.k8s.io", "networkpolicies"}} {
		if !can("create", r[0], r[1], "", ns) {
			t.Errorf("the ServiceAccount may not create %s in %s", r[1], ns)
		}
	}
	// Nothing outside the namespace, nothing beyond the rules.
	denied := []struct{ verb, group, resource, ns string }{
		{"create", "", "pods", "default"},
		{"create", "", "pods", "kube-system"},
		{"list", "", "secrets", "default"},
		{"create", "", "secrets", "default"},
		{"list", "", "secrets", ns}, // get by name only
		{"create", "", "pods", ""},  // every namespace
		{"create", "", "namespaces", ""},
		{"list", "storage.k8s.io", "storageclasses", ""},
		{"create", "apps", "deployments", ns},
		{"create", "rbac.authorization.k8s.io", "roles", ns},
		{"update", "", "pods", ns},
		{"delete", "networking.k8s.io", "networkpolicies", ns},
	}
	for _, d := range denied {
		if can(d.verb, d.group, d.resource, "", d.ns) {
			t.Errorf("the ServiceAccount may %s %s in %q: more than the engine needs", d.verb, d.resource, d.ns)
		}
	}
	t.Logf("RBAC: %d allowed checks, %d denied checks for %s", n+5, len(denied), user)

	// The engine itself, as the ServiceAccount (impersonated).
	kc := impersonating(t, user, groups)
	rt, err := thonk8s.New(thonk8s.Options{Kubeconfig: kc, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	spec := sandbox.Spec{
		User: "alice", Group: "alpha", Image: "thon/sandbox:test", Port: 8080, HealthPath: "/healthz",
		Limits:    sandbox.Limits{NanoCPUs: 500_000_000, MemoryBytes: 512 << 20},
		Workspace: sandbox.WorkspaceVolume,
		Files:     []sandbox.File{{Path: "/home/coder/.config/thon.txt", Mode: 0o600, UID: 1000, GID: 1000, Data: []byte("hi")}},
	}
	if err := rt.Prepare(ctx, spec); err != nil {
		t.Fatalf("Prepare as the ServiceAccount: %v", err)
	}
	if _, err := rt.Create(ctx, spec); err != nil {
		t.Fatalf("Create as the ServiceAccount: %v", err)
	}
	for {
		inst, err := rt.Inspect(ctx, "alice")
		if err == nil && inst.State == sandbox.StateRunning && inst.Endpoint != "" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the sandbox made as the ServiceAccount never became Ready: %+v %v", inst, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := rt.Stop(ctx, "alice", time.Second); err != nil {
		t.Errorf("Stop as the ServiceAccount: %v", err)
	}
	if _, err := rt.Start(ctx, "alice"); err != nil {
		t.Errorf("Start as the ServiceAccount: %v", err)
	}

	// Its NetworkPolicy against the manifests' Pod labels.
	pol, err := c.cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, rt.PolicyName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	template := func(name string) labels.Set {
		return labels.Set(must[appsv1.Deployment](t, objs, "Deployment", name).Spec.Template.Labels)
	}
	peerMatches := func(peers []networkingv1.NetworkPolicyPeer, l labels.Set) bool {
		for _, p := range peers {
			if p.PodSelector == nil || p.NamespaceSelector != nil || p.IPBlock != nil {
				continue
			}
			sel, err := metav1.LabelSelectorAsSelector(p.PodSelector)
			if err == nil && sel.Matches(l) {
				return true
			}
		}
		return false
	}
	ingress := func(l labels.Set) bool {
		return slices.ContainsFunc(pol.Spec.Ingress, func(r networkingv1.NetworkPolicyIngressRule) bool { return peerMatches(r.From, l) })
	}
	egress := func(l labels.Set) bool {
		return slices.ContainsFunc(pol.Spec.Egress, func(r networkingv1.NetworkPolicyEgressRule) bool { return peerMatches(r.To, l) })
	}
	if !ingress(template("thon")) {
		t.Error("the sandboxes' NetworkPolicy does not admit the daemon's Pods")
	}
	if !egress(template("thon-gateway")) || !egress(template("thon")) {
		t.Error("the sandboxes' NetworkPolicy does not let sandboxes reach the gateway and the daemon")
	}
	if ingress(template("thon-redis")) || egress(template("thon-redis")) || ingress(template("thon-gateway")) {
		t.Error("the sandboxes' NetworkPolicy lets Redis or the gateway in, or sandboxes reach Redis")
	}

	if err := rt.Remove(ctx, "alice", true); err != nil {
		t.Errorf("Remove as the ServiceAccount: %v", err)
	}
}

// impersonating writes a kubeconfig that acts as user (with groups) through
// the admin's credentials.
func impersonating(t *testing.T, user string, groups []string) string {
	t.Helper()
	raw, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ctxName := raw.CurrentContext
	ai := raw.AuthInfos[raw.Contexts[ctxName].AuthInfo]
	ai.Impersonate = user
	ai.ImpersonateGroups = groups
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*raw, p); err != nil {
		t.Fatal(err)
	}
	return p
}
