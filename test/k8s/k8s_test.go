// Package k8s runs a THON daemon whose sandboxes live on a real Kubernetes
// control plane (shared/k8s: kube-apiserver, scheduler, controllers, etcd,
// kwok nodes): what an organizer does, through the API.
package k8s

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/daemon"
	"github.com/thon-dev/thon/internal/sandbox/kubernetes"
	"github.com/thon-dev/thon/internal/testenv"
	"github.com/thon-dev/thon/internal/thontest"
)

var kubeconfig, noCluster string

func TestMain(m *testing.M) {
	var stop func()
	kubeconfig, noCluster, stop = testenv.Kubernetes(m, 3)
	code := m.Run()
	stop()
	os.Exit(code)
}

// start runs a daemon on the cluster, in a namespace of its own.
func start(t *testing.T, ns string, groups config.Groups) (*daemon.Daemon, *client.Client, *kubernetes.Runtime) {
	t.Helper()
	cfg := config.Default()
	cfg.Server.DataDir = t.TempDir()
	cfg.Access = thontest.Access(t)
	cfg.Gateway.Listen = fmt.Sprintf("127.0.0.1:%d", thontest.FreePort(t))
	cfg.Sandbox.Runtime = config.RuntimeKubernetes
	cfg.Sandbox.Kubernetes = config.Kubernetes{Kubeconfig: kubeconfig, Namespace: ns, WorkspaceSize: "1Gi"}
	cfg.Sandbox.Image = "thon/sandbox:latest"
	cfg.Groups = groups
	rt, err := kubernetes.New(kubernetes.Options{Kubeconfig: kubeconfig, Namespace: ns, WorkspaceSize: "1Gi", Instance: "thon"})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	d, err := daemon.Start(context.Background(), daemon.Options{Config: cfg, Version: "test", Runtime: rt, Listener: ln,
		Logger: slog.New(slog.DiscardHandler), ResyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(d.URL, d.Token)
	if _, err := c.Import(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	return d, c, rt
}

// An event on Kubernetes: a bulk start becomes Ready Pods (Kubernetes
// probes readiness; THON does not), pause stops and keeps the workspace,
// resume starts again, and a restarted daemon adopts everything.
func TestEventOnKubernetes(t *testing.T) {
	if kubeconfig == "" {
		t.Skip(noCluster)
	}
	ctx := context.Background()
	ns := "thon-e2e-" + fmt.Sprint(time.Now().UnixNano()%1e6)
	groups := config.Groups{{Name: "alpha", Users: []string{"alice", "bob"}}, {Name: "beta", Users: []string{"carol"}}}
	d, c, rt := start(t, ns, groups)
	t.Cleanup(func() {
		rt.Clientset().CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	sum, err := c.Bulk(ctx, client.BulkRequest{Action: "start"}, nil)
	if err != nil || sum.Failed != 0 || sum.Total != 3 {
		t.Fatalf("bulk start: %+v %v", sum, err)
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		st, err := c.Sandbox(ctx, u)
		if err != nil || st.State != "running" || st.Endpoint == "" {
			t.Fatalf("%s: %+v %v", u, st, err)
		}
	}
	// The Pod carries the participant's assistant files and gateway key via its Secret.
	pod, err := rt.Clientset().CoreV1().Pods(ns).Get(ctx, rt.PodName("alice"), metav1.GetOptions{})
	if err != nil || pod.Labels["io.thon.user"] != "alice" || pod.Labels["io.thon.group"] != "alpha" {
		t.Fatalf("alice's pod: %v %v", pod.Labels, err)
	}
	// Pause is a stop on Kubernetes; the PVC stays; resume brings it back.
	res, err := c.Action(ctx, "alice", "pause")
	if err != nil || res.State != "stopped" {
		t.Fatalf("pause: %+v %v", res, err)
	}
	if _, err := rt.Clientset().CoreV1().PersistentVolumeClaims(ns).Get(ctx, rt.ClaimName("alice"), metav1.GetOptions{}); err != nil {
		t.Fatalf("alice's workspace after pause: %v", err)
	}
	if res, err := c.Action(ctx, "alice", "resume"); err != nil || res.State != "running" {
		t.Fatalf("resume: %+v %v", res, err)
	}
	// A restarted daemon adopts the cluster's sandboxes as they are.
	d.Shutdown(ctx)
	rt2, err := kubernetes.New(kubernetes.Options{Kubeconfig: kubeconfig, Namespace: ns, WorkspaceSize: "1Gi", Instance: "thon"})
	if err != nil {
		t.Fatal(err)
	}
	defer rt2.Close()
	list, err := rt2.List(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("after a restart: %d sandboxes, %v", len(list), err)
	}
}
