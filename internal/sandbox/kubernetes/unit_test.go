package kubernetes

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/sandbox/sandboxtest"
)

// These tests need no cluster.

func TestStateMapping(t *testing.T) {
	now := metav1.Now()
	ready := []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	notReady := []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
	cases := []struct {
		name   string
		pod    corev1.Pod
		state  sandbox.State
		code   int
		reason string
	}{
		{"pending", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending}}, sandbox.StateStarting, 0, ""},
		{"running ready", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: ready}}, sandbox.StateRunning, 0, ""},
		{"running not ready", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: notReady}}, sandbox.StateStarting, 0, ""},
		{"deleting", corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: ready}}, sandbox.StateStopped, 0, "stopping"},
		{"crash loop", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
			Name: containerName, RestartCount: 4,
			State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3}},
		}}}}, sandbox.StateStopped, 3, "exited with code 3 (restarted 4 times)"},
		{"oom loop", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
			Name: containerName, RestartCount: 1,
			State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}},
		}}}}, sandbox.StateStopped, 137, "OOM-killed (restarted 1 times)"},
		{"init crash", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{{
			Name: initName, RestartCount: 2,
			State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}},
		}}}}, sandbox.StateStopped, 1, "writing its files exited with code 1 (restarted 2 times)"},
		{"image pull", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			Name:  containerName,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image \"x\""}},
		}}}}, sandbox.StateStopped, 0, "the image cannot be pulled: Back-off pulling image \"x\""},
		{"failed", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{
			Name: containerName, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2}},
		}}}}, sandbox.StateStopped, 2, "exited with code 2"},
		{"evicted", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "The node was low on resource: memory."}},
			sandbox.StateStopped, 0, "Evicted: The node was low on resource: memory."},
		{"unknown", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodUnknown}}, sandbox.StateStopped, 0, "the node running it is unreachable"},
	}
	for _, c := range cases {
		state, code, reason := stateOf(&c.pod)
		if state != c.state || code != c.code || reason != c.reason {
			t.Errorf("%s: got %s %d %q, want %s %d %q", c.name, state, code, reason, c.state, c.code, c.reason)
		}
	}
}

func TestInstanceOf(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "thon-ann", Namespace: "thon", UID: "svc-uid",
			Labels:      map[string]string{sandbox.LabelUser: "ann", sandbox.LabelGroup: "g", sandbox.LabelSpec: "abc"},
			Annotations: map[string]string{AnnotationImage: "img:1"}},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.7", Ports: []corev1.ServicePort{{Port: 8080}}},
	}
	stopped := instanceOf(svc, nil)
	if stopped.State != sandbox.StateStopped || stopped.ID != "svc-uid" || stopped.Group != "g" || stopped.Image != "img:1" || stopped.Endpoint != "" {
		t.Errorf("stopped: %+v", stopped)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "thon-ann", UID: "pod-uid", Labels: svc.Labels},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
	running := instanceOf(svc, pod)
	if running.State != sandbox.StateRunning || running.ID != "svc-uid" || running.Endpoint != "10.96.0.7:8080" {
		t.Errorf("running: %+v", running)
	}
	if got := instanceOf(nil, pod); got.State != sandbox.StateStarting || got.Endpoint != "" {
		t.Errorf("pod without service: %+v", got)
	}
}

func TestNames(t *testing.T) {
	r := &Runtime{instance: "thon"}
	if r.PodName("ann") != "thon-ann" || r.ServiceName("ann") != "thon-ann" || r.SecretName("ann") != "thon-files-ann" || r.ClaimName("ann") != "thon-ws-ann" {
		t.Errorf("names: %s %s %s %s", r.PodName("ann"), r.ServiceName("ann"), r.SecretName("ann"), r.ClaimName("ann"))
	}
	long := strings.Repeat("a", 63)
	for _, n := range []string{r.ServiceName(long), r.SecretName(long), r.ClaimName(long)} {
		if len(n) > 63 || !nameRE.MatchString(n) {
			t.Errorf("%q is not a DNS label", n)
		}
	}
	if r.ServiceName(long) == r.ServiceName(long[:62]+"b") {
		t.Error("long names collide")
	}
}

func TestInvalidSpecs(t *testing.T) {
	ok := sandbox.Spec{User: "ann", Group: "g", Image: "i", Port: 8080}
	if err := (&Runtime{}).validateSpec(ok); err != nil {
		t.Fatal(err)
	}
	bind := ok
	bind.Workspace, bind.WorkspaceDir = sandbox.WorkspaceBind, "/srv"
	var ue *sandbox.UserError
	if err := (&Runtime{}).validateSpec(bind); !errors.As(err, &ue) || !strings.Contains(err.Error(), "not supported on Kubernetes") || !strings.Contains(err.Error(), "volume") {
		t.Errorf("bind: %v", err)
	}
	big := ok
	big.Files = []sandbox.File{{Path: "/home/coder/x", Mode: 0o600, Data: make([]byte, 1<<20)}}
	if err := (&Runtime{}).validateSpec(big); !errors.As(err, &ue) {
		t.Errorf("big files: %v", err)
	}
	for _, s := range []sandbox.Spec{{User: "Ann", Group: "g", Image: "i", Port: 1}, {User: "ann", Group: "g", Image: "", Port: 1}, {User: "ann", Group: "g", Image: "i", Port: 0}} {
		if err := (&Runtime{}).validateSpec(s); !errors.As(err, &ue) {
			t.Errorf("%+v: %v", s, err)
		}
	}
}

func TestOptions(t *testing.T) {
	dir := t.TempDir()
	var ue *sandbox.UserError
	if _, err := New(Options{Kubeconfig: filepath.Join(dir, "nope")}); !errors.As(err, &ue) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing kubeconfig: %v", err)
	}
	kc := writeKubeconfig(t, "https://127.0.0.1:1", "token")
	for _, o := range []Options{
		{Kubeconfig: kc, Instance: "Bad_Name"},
		{Kubeconfig: kc, Namespace: "no/slash"},
		{Kubeconfig: kc, WorkspaceSize: "lots"},
		{Kubeconfig: kc, GatewayService: "not a gateway"},
	} {
		if _, err := New(o); !errors.As(err, &ue) {
			t.Errorf("%+v: %v", o, err)
		}
	}
	for in, want := range map[string]string{"10.0.0.5": "10.0.0.5/32", "192.168.1.7/24": "192.168.1.0/24", "fd00::1": "fd00::1/128"} {
		g, err := parseGateway(in)
		if err != nil || g.cidr != want {
			t.Errorf("gateway %s: %+v %v", in, g, err)
		}
	}
	if g, err := parseGateway("app=gw"); err != nil || g.labels == nil || g.labels.MatchLabels["app"] != "gw" {
		t.Errorf("gateway selector: %+v %v", g, err)
	}
	t.Setenv("KUBECONFIG", filepath.Join(dir, "none"))
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := New(Options{}); !errors.As(err, &ue) || !strings.Contains(err.Error(), "no Kubernetes configuration") {
		t.Errorf("no configuration: %v", err)
	}
}

func writeKubeconfig(t testing.TB, server, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	data := "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"" + server + "\", insecure-skip-tls-verify: true}\n" +
		"users:\n- name: u\n  user: {token: \"" + token + "\"}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n"
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUnreachableCluster(t *testing.T) {
	kc := writeKubeconfig(t, "https://127.0.0.1:1", "token")
	rt, err := New(Options{Kubeconfig: kc})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var ue *sandbox.UserError
	err = rt.Ping(ctx)
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), kc) || !strings.Contains(err.Error(), "not reachable") {
		t.Errorf("Ping: %v", err)
	}
	// The informers report the same instead of waiting forever.
	if _, err := rt.Inspect(ctx, "ann"); !errors.As(err, &ue) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Inspect: %v", err)
	}
	if ctx.Err() != nil {
		t.Error("the errors took the whole timeout")
	}
	if err := rt.Prepare(ctx, sandbox.Spec{User: "ann", Group: "g", Image: "i", Port: 8080}); !errors.As(err, &ue) {
		t.Errorf("Prepare: %v", err)
	}
}

// TestFilesScript runs the init container's script with sh on a temporary
// directory standing for the container's filesystem.
func TestFilesScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	root := t.TempDir()
	files := []sandbox.File{
		{Path: "/home/coder/.config/kilo/config.json", Mode: 0o600, UID: 1000, GID: 1000, Data: []byte(`{"key":"k"}`)},
		{Path: "/home/coder/.local/share/code-server/User/settings.json", Mode: 0o644, UID: 1000, GID: 1000, Data: []byte(`{}`)},
		{Path: "/home/coder/.bashrc", Mode: 0o640, UID: 1000, GID: 1000, Data: []byte("# thon\n")},
		{Path: "/etc/thon/extensions.txt", Mode: 0o644, Data: []byte("kilocode.kilo-code\n")},
	}
	plan := planFiles(files)
	if len(plan.homes) != 1 || plan.homes[0] != "/home/coder" {
		t.Fatalf("homes: %v", plan.homes)
	}
	if len(plan.rootMounts) != 1 || plan.rootMounts[0].MountPath != "/etc/thon/extensions.txt" || plan.rootMounts[0].SubPath != "f3" || !plan.rootMounts[0].ReadOnly {
		t.Fatalf("root mounts: %+v", plan.rootMounts)
	}
	if m := plan.items[3].Mode; m == nil || *m != 0o644 {
		t.Errorf("root file item mode: %v", m)
	}
	// The image's home and the Secret's files, under root.
	must(t, os.MkdirAll(filepath.Join(root, "home/coder/.config/code-server"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "home/coder/.config/code-server/config.yaml"), []byte("auth: none\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "home/coder/.bashrc"), []byte("# image\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(root, filesMount), 0o755))
	must(t, os.MkdirAll(filepath.Join(root, overlayMount, "0"), 0o777))
	for i, f := range files {
		must(t, os.WriteFile(filepath.Join(root, filesMount, fileKey(i)), f.Data, 0o440))
	}
	args := []string{"-c", filesScript, initName}
	for _, a := range plan.steps {
		if strings.HasPrefix(a, "/") {
			a = filepath.Join(root, a)
		}
		args = append(args, a)
	}
	out, err := exec.Command(sh, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	home := filepath.Join(root, overlayMount, "0")
	for p, want := range map[string]string{
		".config/code-server/config.yaml":             "auth: none\n", // seeded from the image
		".config/kilo/config.json":                    `{"key":"k"}`,
		".local/share/code-server/User/settings.json": `{}`,
		".bashrc": "# thon\n", // the file wins over the image's
	} {
		b, err := os.ReadFile(filepath.Join(home, p))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q %v, want %q", p, b, err, want)
		}
	}
	for p, mode := range map[string]os.FileMode{
		".config/kilo/config.json": 0o600, ".bashrc": 0o640, ".local/share/code-server/User/settings.json": 0o644,
		".config/kilo": os.ModeDir | 0o755, ".local/share/code-server/User": os.ModeDir | 0o755,
	} {
		fi, err := os.Stat(filepath.Join(home, p))
		if err != nil || fi.Mode() != mode {
			t.Errorf("%s: %v %v, want %v", p, fi.Mode(), err, mode)
		}
	}
	// Run again (a restarted init container): same result, no error.
	if out, err := exec.Command(sh, args...).CombinedOutput(); err != nil {
		t.Fatalf("script again: %v\n%s", err, out)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The in-memory engine stands in for this one with the same capabilities.
func TestCapabilitiesMatchTheFake(t *testing.T) {
	if got := (&Runtime{}).Capabilities(); !reflect.DeepEqual(got, sandboxtest.KubernetesCapabilities) {
		t.Errorf("Capabilities %+v, sandboxtest.KubernetesCapabilities %+v", got, sandboxtest.KubernetesCapabilities)
	}
}

// The command Archive runs in the IDE's container makes the tar the
// contract asks for (entries under {user}/, the directory first), here
// with this machine's tar on a directory laid out like a sandbox's.
func TestArchiveCommand(t *testing.T) {
	root := t.TempDir()
	ws := filepath.Join(root, "workspace", "g1", "alice")
	must(t, os.MkdirAll(filepath.Join(ws, "src"), 0o755))
	must(t, os.WriteFile(filepath.Join(ws, "src", "main.go"), []byte("package main\n"), 0o644))
	cmd := archiveCommand("g1", "alice")
	if cmd[0] != "tar" || cmd[2] != "/workspace/g1" || cmd[len(cmd)-1] != "alice" {
		t.Fatalf("archiveCommand: %q", cmd)
	}
	cmd[2] = filepath.Join(root, "workspace", "g1") // here, not in a container
	out, err := exec.Command(cmd[0], cmd[1:]...).Output()
	if err != nil {
		t.Fatalf("%q: %v", cmd, err)
	}
	tr := exec.Command("tar", "-tf", "-")
	tr.Stdin = strings.NewReader(string(out))
	names, err := tr.Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(names))
	want := []string{"alice/", "alice/src/", "alice/src/main.go"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the archive holds %q, want %q", got, want)
	}
}

// What a finished tar means: exit 1 (files changed while read) still
// ends a complete archive; a missing tar says so with a hint.
func TestArchiveErrors(t *testing.T) {
	r := &Runtime{}
	if err := r.archiveErr("alice", nil, ""); err != io.EOF {
		t.Errorf("success: %v, want io.EOF", err)
	}
	if err := r.archiveErr("alice", utilexec.CodeExitError{Err: errors.New("exit 1"), Code: 1}, "tar: alice/x: file changed as we read it"); err != io.EOF {
		t.Errorf("exit 1: %v, want io.EOF (a complete archive)", err)
	}
	err := r.archiveErr("alice", utilexec.CodeExitError{Err: errors.New("exit 127"), Code: 127}, `exec: "tar": executable file not found in $PATH`)
	var ue *sandbox.UserError
	if !errors.As(err, &ue) || !strings.Contains(ue.Hint, "tar") {
		t.Errorf("no tar: %v, want a UserError about tar", err)
	}
	err = r.archiveErr("alice", utilexec.CodeExitError{Err: errors.New("exit 2"), Code: 2}, "tar: alice: Cannot open: Permission denied")
	if err == nil || err == io.EOF || !strings.Contains(err.Error(), "Permission denied") {
		t.Errorf("exit 2: %v, want an error with tar's message", err)
	}
}
