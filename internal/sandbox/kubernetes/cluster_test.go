package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/sandbox/sandboxtest"
)

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	spec := e.spec("ann", "alpha")
	if err := e.rt.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Prepare(ctx, spec); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if _, err := e.rt.Inspect(ctx, "ann"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("Inspect before Create: %v", err)
	}
	for name, fn := range map[string]func() error{
		"Start":  func() error { _, err := e.rt.Start(ctx, "ann"); return err },
		"Stop":   func() error { return e.rt.Stop(ctx, "ann", 0) },
		"Remove": func() error { return e.rt.Remove(ctx, "ann", false) },
	} {
		if err := fn(); !errors.Is(err, sandbox.ErrNotFound) {
			t.Errorf("%s before Create: %v", name, err)
		}
	}

	created, err := e.rt.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if created.User != "ann" || created.Group != "alpha" || created.SpecHash != spec.Hash() || created.ID == "" || created.Image != spec.Image {
		t.Errorf("Create returned %+v", created)
	}
	// Inspect sees it at once (the write is waited for in the cache).
	if inst, err := e.rt.Inspect(ctx, "ann"); err != nil || inst.State == sandbox.StateMissing {
		t.Fatalf("Inspect right after Create: %+v %v", inst, err)
	}
	if _, err := e.rt.Create(ctx, spec); !errors.Is(err, sandbox.ErrExists) {
		t.Errorf("second Create: %v", err)
	}
	inst := waitState(t, ctx, e.rt, "ann", sandbox.StateRunning)
	svc, err := e.cs.CoreV1().Services(e.ns).Get(ctx, e.rt.ServiceName("ann"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := svc.Spec.ClusterIP + ":8080"; inst.Endpoint != want || svc.Spec.ClusterIP == "" {
		t.Errorf("Endpoint %q, want %q", inst.Endpoint, want)
	}
	if inst.ID != created.ID || inst.SpecHash != spec.Hash() {
		t.Errorf("running: %+v", inst)
	}
	// started: Start on a running sandbox only returns it.
	if again, err := e.rt.Start(ctx, "ann"); err != nil || again.State != sandbox.StateRunning {
		t.Errorf("Start on running: %+v %v", again, err)
	}

	// The objects and their labels.
	pod, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, e.rt.PodName("ann"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkLabels(t, "pod", pod.Labels, e.inst, "ann", "alpha", spec.Hash())
	checkLabels(t, "service", svc.Labels, e.inst, "ann", "alpha", spec.Hash())
	checkPod(t, pod, spec, e.rt.ClaimName("ann"))
	pvc, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).Get(ctx, e.rt.ClaimName("ann"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pvc.Labels[sandbox.LabelUser] != "ann" || pvc.Spec.Resources.Requests.Storage().String() != "10Gi" {
		t.Errorf("pvc: %+v", pvc.ObjectMeta.Labels)
	}
	if svc.Spec.Selector[sandbox.LabelUser] != "ann" || svc.Spec.Ports[0].Port != 8080 || svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("service spec: %+v", svc.Spec)
	}

	// Stop keeps the PVC, the Service and the Secret.
	if err := e.rt.Stop(ctx, "ann", 2*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	inst, err = e.rt.Inspect(ctx, "ann")
	if err != nil || inst.State != sandbox.StateStopped || inst.Endpoint != "" || inst.ID != created.ID || inst.Group != "alpha" || inst.Image != spec.Image {
		t.Fatalf("after Stop: %+v %v", inst, err)
	}
	if got := e.objects(t, "ann"); fmt.Sprint(got) != fmt.Sprint(map[string]int{"pvcs": 1, "secrets": 1, "services": 1}) {
		t.Errorf("after Stop: %v", got)
	}
	if err := e.rt.Stop(ctx, "ann", 0); err != nil {
		t.Errorf("Stop when stopped: %v", err)
	}
	if _, err := e.rt.Logs(ctx, "ann", sandbox.LogOptions{}); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Errorf("Logs when stopped: %v", err)
	}

	// Start makes the Pod again from the Secret.
	if _, err := e.rt.Start(ctx, "ann"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	inst = waitState(t, ctx, e.rt, "ann", sandbox.StateRunning)
	if inst.ID != created.ID || inst.SpecHash != spec.Hash() || inst.Endpoint == "" {
		t.Errorf("restarted: %+v", inst)
	}
	pod2, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, e.rt.PodName("ann"), metav1.GetOptions{})
	if err != nil || pod2.UID == pod.UID {
		t.Fatalf("restarted pod: %v", err)
	}
	checkPod(t, pod2, spec, e.rt.ClaimName("ann"))

	// Pause is Stop, Resume is Start.
	if !e.rt.Capabilities().PauseIsStop {
		t.Error("PauseIsStop")
	}
	if err := e.rt.Pause(ctx, "ann"); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if inst, _ := e.rt.Inspect(ctx, "ann"); inst.State != sandbox.StateStopped {
		t.Errorf("after Pause: %s", inst.State)
	}
	if err := e.rt.Resume(ctx, "ann"); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	waitState(t, ctx, e.rt, "ann", sandbox.StateRunning)

	// Recreate (remove without purge, create): the same PVC.
	if err := e.rt.Remove(ctx, "ann", false); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := e.rt.Inspect(ctx, "ann"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Inspect after Remove: %v", err)
	}
	if got := e.objects(t, "ann"); fmt.Sprint(got) != fmt.Sprint(map[string]int{"pvcs": 1}) {
		t.Errorf("after Remove: %v", got)
	}
	if _, err := e.rt.Create(ctx, spec); err != nil {
		t.Fatalf("Create again: %v", err)
	}
	waitState(t, ctx, e.rt, "ann", sandbox.StateRunning)
	pvc2, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).Get(ctx, e.rt.ClaimName("ann"), metav1.GetOptions{})
	if err != nil || pvc2.UID != pvc.UID {
		t.Errorf("recreate made a new PVC: %v", err)
	}

	// Remove with purge takes the PVC too; a second Remove finds nothing.
	if err := e.rt.Remove(ctx, "ann", true); err != nil {
		t.Fatalf("Remove purge: %v", err)
	}
	if got := e.objects(t, "ann"); len(got) != 0 {
		t.Errorf("after Remove purge: %v", got)
	}
	if err := e.rt.Remove(ctx, "ann", true); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Remove again: %v", err)
	}
	// And a Create right after the purge gets a new, empty PVC.
	if _, err := e.rt.Create(ctx, spec); err != nil {
		t.Fatalf("Create after purge: %v", err)
	}
	pvc3, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).Get(ctx, e.rt.ClaimName("ann"), metav1.GetOptions{})
	if err != nil || pvc3.UID == pvc.UID {
		t.Errorf("purge kept the PVC: %v", err)
	}
	// PurgeWorkspace refuses while the sandbox exists, then deletes the PVC.
	var ue *sandbox.UserError
	if err := e.rt.PurgeWorkspace(ctx, spec); !errors.As(err, &ue) {
		t.Errorf("PurgeWorkspace with a sandbox: %v", err)
	}
	if err := e.rt.Remove(ctx, "ann", false); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.PurgeWorkspace(ctx, spec); err != nil {
		t.Errorf("PurgeWorkspace: %v", err)
	}
	if got := e.objects(t, "ann"); len(got) != 0 {
		t.Errorf("after PurgeWorkspace: %v", got)
	}
	t.Logf("requests: %s", fmtCounts(e.count.get()))
}

func checkLabels(t *testing.T, what string, l map[string]string, inst, user, group, hash string) {
	t.Helper()
	want := map[string]string{sandbox.LabelManaged: "true", LabelInstance: inst, sandbox.LabelUser: user, sandbox.LabelGroup: group, sandbox.LabelSpec: hash, LabelPort: "8080"}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("%s label %s=%q, want %q", what, k, l[k], v)
		}
	}
}

func checkPod(t *testing.T, pod *corev1.Pod, spec sandbox.Spec, claim string) {
	t.Helper()
	ps := pod.Spec
	sc := ps.SecurityContext
	if sc == nil || *sc.RunAsUser != 1000 || *sc.RunAsGroup != 1000 || *sc.FSGroup != 1000 || !*sc.RunAsNonRoot {
		t.Errorf("pod security context: %+v", sc)
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken || ps.EnableServiceLinks == nil || *ps.EnableServiceLinks {
		t.Error("the pod gets a token or service links")
	}
	if ps.Hostname != spec.User {
		t.Errorf("hostname %q", ps.Hostname)
	}
	c := ps.Containers[0]
	if c.Image != spec.Image || c.WorkingDir != spec.WorkspacePath() {
		t.Errorf("container: %s %s", c.Image, c.WorkingDir)
	}
	if c.SecurityContext == nil || *c.SecurityContext.AllowPrivilegeEscalation || len(c.SecurityContext.Capabilities.Drop) != 1 || c.SecurityContext.Capabilities.Drop[0] != "ALL" {
		t.Errorf("container security context: %+v", c.SecurityContext)
	}
	p := c.ReadinessProbe
	if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != spec.HealthPath || p.HTTPGet.Port.IntValue() != spec.Port {
		t.Errorf("readiness probe: %+v", p)
	}
	env := map[string]string{}
	for _, v := range c.Env {
		env[v.Name] = v.Value
	}
	for k, v := range map[string]string{"FOO": "bar", "THON_USER": spec.User, "THON_GROUP": spec.Group, "THON_WORKSPACE": spec.WorkspacePath(), "PORT": "8080"} {
		if env[k] != v {
			t.Errorf("env %s=%q, want %q", k, env[k], v)
		}
	}
	if spec.Limits.NanoCPUs > 0 {
		if c.Resources.Limits.Cpu().MilliValue() != spec.Limits.NanoCPUs/1e6 || c.Resources.Requests.Cpu().MilliValue() != spec.Limits.NanoCPUs/1e6 {
			t.Errorf("cpu: %+v", c.Resources)
		}
		if c.Resources.Limits.Memory().Value() != spec.Limits.MemoryBytes {
			t.Errorf("memory: %+v", c.Resources)
		}
	}
	var ws *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if m.MountPath == spec.WorkspacePath() {
			ws = &c.VolumeMounts[i]
		}
	}
	if ws == nil {
		t.Fatalf("no workspace mount: %+v", c.VolumeMounts)
	}
	for _, v := range ps.Volumes {
		if v.Name != ws.Name {
			continue
		}
		switch {
		case claim != "" && (v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != claim):
			t.Errorf("workspace volume %+v, want PVC %s", v.VolumeSource, claim)
		case claim == "" && v.EmptyDir == nil:
			t.Errorf("workspace volume %+v, want an emptyDir", v.VolumeSource)
		}
	}
}

func TestEphemeralWorkspace(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	spec := e.spec("bob", "alpha")
	spec.Workspace = sandbox.WorkspaceEphemeral
	if _, err := e.rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, e.rt, "bob", sandbox.StateRunning)
	pod, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, e.rt.PodName("bob"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkPod(t, pod, spec, "")
	if got := e.objects(t, "bob"); got["pvcs"] != 0 {
		t.Errorf("ephemeral made a PVC: %v", got)
	}
	if err := e.rt.Stop(ctx, "bob", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.Start(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, e.rt, "bob", sandbox.StateRunning)
}

func TestGroupMoveKeepsTheWorkspace(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	spec := e.spec("cat", "alpha")
	if _, err := e.rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, e.rt, "cat", sandbox.StateRunning)
	pvc, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).Get(ctx, e.rt.ClaimName("cat"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Remove(ctx, "cat", false); err != nil {
		t.Fatal(err)
	}
	moved := e.spec("cat", "beta")
	if _, err := e.rt.Create(ctx, moved); err != nil {
		t.Fatal(err)
	}
	inst := waitState(t, ctx, e.rt, "cat", sandbox.StateRunning)
	if inst.Group != "beta" || inst.SpecHash != moved.Hash() {
		t.Errorf("moved: %+v", inst)
	}
	pvc2, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).Get(ctx, e.rt.ClaimName("cat"), metav1.GetOptions{})
	if err != nil || pvc2.UID != pvc.UID {
		t.Fatalf("the move made a new PVC: %v", err)
	}
	pod, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, e.rt.PodName("cat"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkPod(t, pod, moved, pvc.Name) // mounted at /workspace/beta/cat
}

// TestAdoption: a second Runtime (a restarted daemon) finds every sandbox
// with its state from its informers, and writes nothing.
func TestAdoption(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	for _, u := range []string{"u1", "u2", "u3"} {
		if _, err := e.rt.Create(ctx, e.spec(u, "alpha")); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{"u1", "u2", "u3"} {
		waitState(t, ctx, e.rt, u, sandbox.StateRunning)
	}
	if err := e.rt.Stop(ctx, "u2", 0); err != nil {
		t.Fatal(err)
	}
	before := e.objects(t, "")
	first, err := e.rt.List(ctx)
	if err != nil {
		t.Fatal(err)
	}

	rt2, count := e.runtime(t)
	list, err := rt2.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("adopted %d sandboxes: %+v", len(list), list)
	}
	for i, inst := range list {
		want := map[string]sandbox.State{"u1": sandbox.StateRunning, "u2": sandbox.StateStopped, "u3": sandbox.StateRunning}[inst.User]
		if inst.State != want || inst.ID != first[i].ID || inst.Endpoint != first[i].Endpoint || inst.SpecHash != e.spec(inst.User, "alpha").Hash() {
			t.Errorf("adopted %+v, want state %s like %+v", inst, want, first[i])
		}
	}
	if inst, err := rt2.Inspect(ctx, "u1"); err != nil || inst.State != sandbox.StateRunning || inst.Endpoint == "" {
		t.Errorf("Inspect after adoption: %+v %v", inst, err)
	}
	if _, err := rt2.Create(ctx, e.spec("u1", "alpha")); !errors.Is(err, sandbox.ErrExists) {
		t.Errorf("Create of an adopted sandbox: %v", err)
	}
	for i := 0; i < 20; i++ { // Inspect and List read the cache: no requests
		rt2.List(ctx)
		rt2.Inspect(ctx, "u3")
	}
	after := e.objects(t, "")
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("objects before %v, after %v", before, after)
	}
	n := count.get()
	if count.writes() != 0 {
		t.Errorf("the adopting runtime wrote: %s", fmtCounts(n))
	}
	if n["GET"] > 4 {
		t.Errorf("Inspect/List hit the API: %s", fmtCounts(n))
	}
	t.Logf("objects %v; adopting runtime's requests: %s", after, fmtCounts(n))

	// The adopter drives the adopted sandboxes.
	if _, err := rt2.Start(ctx, "u2"); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, rt2, "u2", sandbox.StateRunning)
	waitState(t, ctx, e.rt, "u2", sandbox.StateRunning) // the first runtime's informer sees it too
}

func TestFiles(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	spec := e.spec("dan", "alpha")
	spec.Files = []sandbox.File{
		{Path: "/home/coder/.config/kilo/config.json", Mode: 0o600, UID: 1000, GID: 1000, Data: []byte(`{"apiKey":"sk-dan"}`)},
		{Path: "/home/coder/.local/share/code-server/User/settings.json", Mode: 0o644, UID: 1000, GID: 1000, Data: []byte(`{"a":1}`)},
		{Path: "/etc/thon/extensions.txt", Mode: 0o644, Data: []byte("kilocode.kilo-code\n")},
	}
	if _, err := e.rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	secret, err := e.cs.CoreV1().Secrets(e.ns).Get(ctx, e.rt.SecretName("dan"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range spec.Files {
		if string(secret.Data[fileKey(i)]) != string(f.Data) {
			t.Errorf("secret %s = %q, want %q", fileKey(i), secret.Data[fileKey(i)], f.Data)
		}
	}
	var stored storedSpec
	if err := json.Unmarshal(secret.Data[keySpec], &stored); err != nil || stored.Spec.User != "dan" || stored.Hash != spec.Hash() || stored.Spec.Files[0].Data != nil {
		t.Errorf("stored spec: %+v %v", stored, err)
	}
	back, hash, err := specFrom(secret)
	if err != nil || hash != spec.Hash() || back.Hash() != spec.Hash() {
		t.Errorf("spec read back: %v %s", err, hash)
	}

	pod, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, e.rt.PodName("dan"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pod.Spec.InitContainers) != 1 {
		t.Fatalf("init containers: %+v", pod.Spec.InitContainers)
	}
	ic := pod.Spec.InitContainers[0]
	if ic.Image != spec.Image || ic.Command[0] != "/bin/sh" || ic.SecurityContext == nil || *ic.SecurityContext.AllowPrivilegeEscalation {
		t.Errorf("init container: %+v", ic)
	}
	args := strings.Join(ic.Command, " ")
	for _, want := range []string{"seed /home/coder /thon/home/0", "file /thon/files/f0 /thon/home/0/.config/kilo/config.json 600", "dir /thon/home/0/.local/share/code-server/User"} {
		if !strings.Contains(args, want) {
			t.Errorf("init command lacks %q: %s", want, args)
		}
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		mounts[m.MountPath] = m
	}
	if m, ok := mounts["/home/coder"]; !ok || m.Name != "thon-home-0" {
		t.Errorf("home mount: %+v", mounts)
	}
	if m, ok := mounts["/etc/thon/extensions.txt"]; !ok || m.SubPath != "f2" || !m.ReadOnly {
		t.Errorf("extensions.txt mount: %+v", m)
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == filesVolume && (v.Secret == nil || v.Secret.SecretName != e.rt.SecretName("dan") || len(v.Secret.Items) != 3) {
			t.Errorf("files volume: %+v", v)
		}
	}
	waitState(t, ctx, e.rt, "dan", sandbox.StateRunning)

	// A Start after a Stop writes the same files from the Secret.
	if err := e.rt.Stop(ctx, "dan", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.Start(ctx, "dan"); err != nil {
		t.Fatal(err)
	}
	pod2, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, e.rt.PodName("dan"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(pod2.Spec.InitContainers[0].Command, " ") != args {
		t.Error("the restarted pod writes other files")
	}
	if pod2.Labels[sandbox.LabelSpec] != spec.Hash() {
		t.Errorf("restarted pod's spec hash %s", pod2.Labels[sandbox.LabelSpec])
	}
}

func TestNetworkPolicy(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.GatewayService = "192.168.50.10" })
	ctx := testCtx(t)
	spec := e.spec("eve", "alpha")
	if err := e.rt.Prepare(ctx, spec); err != nil {
		t.Fatal(err)
	}
	np, err := e.cs.NetworkingV1().NetworkPolicies(e.ns).Get(ctx, e.rt.PolicyName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if np.Spec.PodSelector.MatchLabels[LabelInstance] != e.inst || np.Spec.PodSelector.MatchLabels[sandbox.LabelManaged] != "true" || len(np.Spec.PolicyTypes) != 2 {
		t.Errorf("policy: %+v", np.Spec)
	}
	if len(np.Spec.Ingress) != 1 || np.Spec.Ingress[0].From[0].PodSelector.MatchExpressions[0].Key != LabelRole {
		t.Errorf("ingress: %+v", np.Spec.Ingress)
	}
	b, _ := json.Marshal(np.Spec.Egress)
	for _, want := range []string{`"port":53`, `"gateway"`, `"192.168.50.10/32"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("egress lacks %s: %s", want, b)
		}
	}
	// A restarted THON with other settings updates it; the same settings change nothing.
	rt2, count := e.runtime(t, func(o *Options) { o.GatewayService = "app=gw"; o.PublicEgress = true })
	if err := rt2.Prepare(ctx, spec); err != nil {
		t.Fatal(err)
	}
	np2, _ := e.cs.NetworkingV1().NetworkPolicies(e.ns).Get(ctx, e.rt.PolicyName(), metav1.GetOptions{})
	b, _ = json.Marshal(np2.Spec.Egress)
	if !strings.Contains(string(b), `"app":"gw"`) || !strings.Contains(string(b), `"0.0.0.0/0"`) || strings.Contains(string(b), "192.168.50.10") {
		t.Errorf("updated egress: %s", b)
	}
	rt3, count3 := e.runtime(t, func(o *Options) { o.GatewayService = "app=gw"; o.PublicEgress = true })
	if err := rt3.Prepare(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if count3.writes() != 0 {
		t.Errorf("an unchanged Prepare wrote: %s", fmtCounts(count3.get()))
	}
	t.Logf("prepare requests: update %s, unchanged %s", fmtCounts(count.get()), fmtCounts(count3.get()))
}

func TestPrepareMakesTheNamespace(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	ns := e.ns + "-new"
	rt, _ := e.runtime(t, func(o *Options) { o.Namespace = ns })
	t.Cleanup(func() { e.cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	if err := rt.Prepare(ctx, e.spec("fay", "alpha")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Create(ctx, e.spec("fay", "alpha")); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, rt, "fay", sandbox.StateRunning)
}

func TestBindModeIsRefused(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	spec := e.spec("gus", "alpha")
	spec.Workspace, spec.WorkspaceDir = sandbox.WorkspaceBind, "/srv/thon"
	var ue *sandbox.UserError
	for name, err := range map[string]error{
		"Prepare": e.rt.Prepare(ctx, spec),
		"Create":  func() error { _, err := e.rt.Create(ctx, spec); return err }(),
	} {
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "bind") || !strings.Contains(err.Error(), "not supported on Kubernetes") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if got := e.objects(t, ""); len(got) != 0 {
		t.Errorf("left behind: %v", got)
	}
}

func TestUnknownStorageClass(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.StorageClass = "fast-ssd" })
	ctx := testCtx(t)
	spec := e.spec("hal", "alpha")
	var ue *sandbox.UserError
	err := e.rt.Prepare(ctx, spec)
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "fast-ssd") || !strings.Contains(err.Error(), "kwok-volume") || !strings.Contains(err.Error(), "storage_class") {
		t.Errorf("Prepare: %v", err)
	}
	if _, err := e.rt.Create(ctx, spec); !errors.As(err, &ue) || !strings.Contains(err.Error(), "fast-ssd") {
		t.Errorf("Create: %v", err)
	}
	if got := e.objects(t, ""); len(got) != 0 {
		t.Errorf("left behind: %v", got)
	}
	// Ephemeral workspaces need no storage class.
	spec.Workspace = sandbox.WorkspaceEphemeral
	if _, err := e.rt.Create(ctx, spec); err != nil {
		t.Errorf("ephemeral: %v", err)
	}
}

// TestForbidden: THON's ServiceAccount may do everything but create Pods.
func TestForbidden(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	all := []string{"get", "list", "watch", "create", "update", "delete"}
	kc := e.serviceAccount(t, ctx, "thon", []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"services", "secrets", "persistentvolumeclaims"}, Verbs: all},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: all},
	})
	rt, _ := e.runtime(t, func(o *Options) { o.Kubeconfig = kc })
	spec := e.spec("ivy", "alpha")
	if err := rt.Prepare(ctx, spec); err != nil {
		t.Fatalf("Prepare (a namespaced Role suffices): %v", err)
	}
	_, err := rt.Create(ctx, spec)
	var ue *sandbox.UserError
	if !errors.As(err, &ue) || !apierrors.IsForbidden(err) {
		t.Fatalf("Create: %v", err)
	}
	for _, want := range []string{"system:serviceaccount:" + e.ns + ":thon", `"create"`, `"pods"`, "Role", e.ns} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q: %v", want, err)
		}
	}
	t.Logf("error: %v", err)
	if got := e.objects(t, ""); len(got) != 0 {
		t.Errorf("left behind: %v", got)
	}

	// Without the right to list Pods, Inspect says so instead of waiting.
	kc2 := e.serviceAccount(t, ctx, "blind", []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: all},
	})
	rt2, _ := e.runtime(t, func(o *Options) { o.Kubeconfig = kc2 })
	ictx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err = rt2.Inspect(ictx, "ivy")
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), `"list"`) || !strings.Contains(err.Error(), `"pods"`) || ictx.Err() != nil {
		t.Errorf("Inspect without list pods: %v", err)
	}
}

// serviceAccount makes a ServiceAccount with a Role of rules in the env's
// namespace and returns a kubeconfig with its token.
func (e *env) serviceAccount(t *testing.T, ctx context.Context, name string, rules []rbacv1.PolicyRule) string {
	t.Helper()
	if _, err := e.cs.CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.RbacV1().Roles(e.ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.RbacV1().RoleBindings(e.ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: e.ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := e.cs.CoreV1().ServiceAccounts(e.ns).CreateToken(ctx, name, &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return writeKubeconfig(t, cfg.Host, tok.Status.Token)
}

// TestQuota: a ResourceQuota of one Pod; the second Create fails clearly and
// leaves nothing of its own behind.
func TestQuota(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	q, err := e.cs.CoreV1().ResourceQuotas(e.ns).Create(ctx, &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "one-pod"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Admission needs the quota's usage computed first.
	for q.Status.Hard == nil {
		time.Sleep(100 * time.Millisecond)
		if q, err = e.cs.CoreV1().ResourceQuotas(e.ns).Get(ctx, "one-pod", metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.rt.Create(ctx, e.spec("jo", "alpha")); err != nil {
		t.Fatal(err)
	}
	before := e.objects(t, "")
	_, err = e.rt.Create(ctx, e.spec("kim", "alpha"))
	var ue *sandbox.UserError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "ResourceQuota") || !strings.Contains(err.Error(), "exceeded quota") || !strings.Contains(err.Error(), "kim") {
		t.Fatalf("Create over quota: %v", err)
	}
	t.Logf("error: %v", err)
	if got := e.objects(t, "kim"); len(got) != 0 {
		t.Errorf("left behind: %v", got)
	}
	if after := e.objects(t, ""); fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("objects before %v, after %v", before, after)
	}
	if _, err := e.rt.Inspect(ctx, "kim"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Inspect: %v", err)
	}
}

// TestConcurrentCreates: 50 sandboxes created at once all become Running.
func TestConcurrentCreates(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	const n = 50
	if err := e.rt.Prepare(ctx, e.spec("p0", "alpha")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	base := e.count.total()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.rt.Create(ctx, e.spec(fmt.Sprintf("p%d", i), "alpha")); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range n {
		waitState(t, ctx, e.rt, fmt.Sprintf("p%d", i), sandbox.StateRunning)
	}
	list, err := e.rt.List(ctx)
	if err != nil || len(list) != n {
		t.Fatalf("List: %d %v", len(list), err)
	}
	got := e.objects(t, "")
	if got["pods"] != n || got["services"] != n || got["secrets"] != n || got["pvcs"] != n {
		t.Errorf("objects: %v", got)
	}
	t.Logf("%d creates running after %s; %.1f requests per participant (%s)",
		n, time.Since(start).Round(time.Millisecond), float64(e.count.total()-base)/n, fmtCounts(e.count.get()))
}

// TestMinimalRole: a ServiceAccount with exactly PolicyRules (no cluster
// rights) runs the whole lifecycle.
func TestMinimalRole(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	kc := e.serviceAccount(t, ctx, "thon", PolicyRules())
	rt, _ := e.runtime(t, func(o *Options) { o.Kubeconfig = kc })
	spec := e.spec("lea", "alpha")
	spec.Files = []sandbox.File{{Path: "/home/coder/.config/x.json", Mode: 0o600, UID: 1000, GID: 1000, Data: []byte("{}")}}
	if err := rt.Prepare(ctx, spec); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if _, err := rt.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	waitState(t, ctx, rt, "lea", sandbox.StateRunning)
	if err := rt.Stop(ctx, "lea", 0); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := rt.Start(ctx, "lea"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitState(t, ctx, rt, "lea", sandbox.StateRunning)
	if _, err := rt.List(ctx); err != nil {
		t.Fatalf("List: %v", err)
	}
	// Usage with the Role alone: the sandbox, and the machine's total
	// unknown (listing nodes is ClusterPolicyRules').
	rep, err := rt.Usage(ctx, sandbox.UsageOptions{Disk: true})
	if err != nil || len(rep.Sandboxes) != 1 || rep.Sandboxes[0].User != "lea" || rep.Machine.CPUs != sandbox.Unknown {
		t.Fatalf("Usage: %+v %v", rep, err)
	}
	if rep.Sandboxes[0].Memory == sandbox.Unknown && rep.Note == "" {
		t.Errorf("Usage: memory unknown and no note saying why: %+v", rep)
	}
	t.Logf("Usage with the minimal Role: %+v", rep)
	if err := rt.Remove(ctx, "lea", true); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got := e.objects(t, ""); len(got) != 0 {
		t.Errorf("left behind: %v", got)
	}
}

// TestRestrictedPodSecurity: sandboxes meet the "restricted" Pod Security
// Standard, enforced by the API server's admission.
func TestRestrictedPodSecurity(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	ns, err := e.cs.CoreV1().Namespaces().Get(ctx, e.ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	if _, err := e.cs.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	spec := e.spec("max", "alpha")
	spec.Files = []sandbox.File{
		{Path: "/home/coder/.config/x.json", Mode: 0o600, UID: 1000, GID: 1000, Data: []byte("{}")},
		{Path: "/etc/thon/extensions.txt", Mode: 0o644, Data: []byte("x\n")},
	}
	if _, err := e.rt.Create(ctx, spec); err != nil {
		t.Fatalf("Create under restricted: %v", err)
	}
	waitState(t, ctx, e.rt, "max", sandbox.StateRunning)
}

// TestCrashLoopIsStoppedAndStartMakesThePodAgain: a crash-looping IDE (its
// status written here as a kubelet would) is stopped with a reason; Start
// makes a new Pod.
func TestCrashLoopIsStoppedAndStartMakesThePodAgain(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	if _, err := e.rt.Create(ctx, e.spec("ned", "alpha")); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, e.rt, "ned", sandbox.StateRunning)
	pod, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, e.rt.PodName("ned"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
			pod.Status.Conditions[i].Status = corev1.ConditionFalse
		}
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: containerName, Image: pod.Spec.Containers[0].Image, RestartCount: 5,
		State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 5m0s"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}},
	}}
	if _, err := e.cs.CoreV1().Pods(e.ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	inst := waitState(t, ctx, e.rt, "ned", sandbox.StateStopped)
	if inst.ExitCode != 137 || !strings.Contains(inst.Reason, "OOM-killed") {
		t.Errorf("crash-looping: %+v", inst)
	}
	if _, err := e.rt.Start(ctx, "ned"); err != nil {
		t.Fatal(err)
	}
	inst = waitState(t, ctx, e.rt, "ned", sandbox.StateRunning)
	pod2, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, e.rt.PodName("ned"), metav1.GetOptions{})
	if err != nil || pod2.UID == pod.UID {
		t.Errorf("Start kept the crash-looping Pod: %v", err)
	}
}

// TestConformance: the Runtime contract every engine passes (sandboxtest),
// on the control plane. kwok plays the nodes, so no container runs: the suite
// checks objects, states and errors, and workspaces by their PVCs; each
// subtest is an instance of its own in one namespace.
func TestConformance(t *testing.T) {
	needCluster(t)
	cs := admin(t)
	ns := "tt" + randHex(t)
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	instance := sandboxtest.PerTest(func(t *testing.T) string { return "tt" + randHex(t) })
	sandboxtest.Conformance(t, func(t *testing.T) sandbox.Runtime {
		rt, err := New(Options{Kubeconfig: kubeconfig, Namespace: ns, Instance: instance(t)})
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}, sandboxtest.NoProcesses("kwok plays the nodes: no container runs"),
		sandboxtest.WorkspaceID(func(t *testing.T, rt sandbox.Runtime, user string) string {
			pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(context.Background(), rt.(*Runtime).ClaimName(user), metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return ""
			}
			if err != nil {
				t.Fatal(err)
			}
			if pvc.DeletionTimestamp != nil {
				return "" // being deleted: gone for the participant
			}
			return string(pvc.UID)
		}))
}
