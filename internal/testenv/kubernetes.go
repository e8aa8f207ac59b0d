package testenv

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Kubernetes starts the real control plane of shared/k8s (kube-apiserver,
// controller manager, scheduler, etcd, kwok nodes) for a package's tests,
// from binaries shared/k8s/build.sh built, and returns its admin
// kubeconfig and a function that stops it. Packages take turns through a
// lock in $K8S_WORK. With THON_K8S_KUBECONFIG set it uses that cluster.
// When it cannot start one, kubeconfig is "" and why says how to get one;
// with -short (the fast tier) it starts none.
func Kubernetes(m *testing.M, nodes int) (kubeconfig, why string, stop func()) {
	stop = func() {}
	if !flag.Parsed() {
		flag.Parse()
	}
	if testing.Short() {
		return "", "-short: no Kubernetes control plane (the fast tier)", stop
	}
	if kc := os.Getenv("THON_K8S_KUBECONFIG"); kc != "" {
		return kc, "", stop
	}
	work := os.Getenv("K8S_WORK")
	if work == "" {
		home, _ := os.UserHomeDir()
		work = filepath.Join(home, ".cache", "thon-k8s")
	}
	scripts := K8sScripts()
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if _, err := os.Stat(filepath.Join(work, "bin", b)); err != nil {
			return "", fmt.Sprintf("no Kubernetes control plane: %s is missing; build it with %s/build.sh (once; scripts/test does) or set THON_K8S_KUBECONFIG",
				filepath.Join(work, "bin", b), scripts), stop
		}
	}
	lock, err := os.OpenFile(filepath.Join(work, ".test.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", "lock the control plane: " + err.Error(), stop
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		return "", "lock the control plane: " + err.Error(), stop
	}
	up := exec.Command(filepath.Join(scripts, "up.sh"), fmt.Sprint(nodes))
	up.Env = append(os.Environ(), "K8S_WORK="+work)
	if out, err := up.CombinedOutput(); err != nil {
		lock.Close()
		fmt.Fprintf(os.Stderr, "start the control plane: %v\n%s", err, out)
		os.Exit(1) // a cluster that should start and does not is a failure, not a skip
	}
	return filepath.Join(work, "run", "kubeconfig"), "", func() {
		down := exec.Command(filepath.Join(scripts, "down.sh"))
		down.Env = append(os.Environ(), "K8S_WORK="+work)
		_ = down.Run()
		lock.Close()
	}
}

// K8sScripts finds shared/k8s: $THON_K8S_SCRIPTS, else ../shared/k8s beside
// the module (as CI lays it out), else /work/shared/k8s.
func K8sScripts() string {
	if d := os.Getenv("THON_K8S_SCRIPTS"); d != "" {
		return d
	}
	if root, err := FindModuleRoot(); err == nil {
		s := filepath.Join(filepath.Dir(root), "shared", "k8s")
		if _, err := os.Stat(filepath.Join(s, "up.sh")); err == nil {
			return s
		}
	}
	return "/work/shared/k8s"
}
