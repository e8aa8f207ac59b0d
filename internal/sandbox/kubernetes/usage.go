package kubernetes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/thon-dev/thon/internal/sandbox"
)

// archiveCommand is what Archive runs in the IDE's container: GNU or
// busybox tar, writing the workspace directory to stdout.
func archiveCommand(group, user string) []string {
	return []string{"tar", "-C", "/workspace/" + group, "-cf", "-", user}
}

// Archive streams the user's workspace as a tar made in the running IDE's
// container through the API server's exec (`tar -C /workspace/{group} -cf -
// {user}`: the image needs tar). A stopped sandbox has no Pod to read
// through: a *sandbox.UserError says so (no Capabilities.StoppedArchive).
// GNU tar's "file changed as we read it" (exit code 1, a participant
// saving meanwhile) still ends a complete archive and is not an error.
func (r *Runtime) Archive(ctx context.Context, user string) (io.ReadCloser, error) {
	if err := r.informers.ready(ctx); err != nil {
		return nil, fmt.Errorf("archive the workspace of %s: %w", user, err)
	}
	svc, pod := r.informers.user(user)
	if svc == nil && pod == nil {
		return nil, fmt.Errorf("archive the workspace of %s: %w", user, sandbox.ErrNotFound)
	}
	if pod == nil || pod.DeletionTimestamp != nil || !containerRunning(pod) {
		return nil, sandbox.Hintf(nil, "start it first: thon instance start "+user,
			"the sandbox of %s is not running: on Kubernetes its workspace is read through its running Pod", user)
	}
	group := pod.Labels[sandbox.LabelGroup]
	req := r.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(r.ns).Name(pod.Name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: containerName, Command: archiveCommand(group, user), Stdout: true, Stderr: true}, scheme.ParameterCodec)
	spdy, err := remotecommand.NewSPDYExecutor(r.cfg, "POST", req.URL())
	if err != nil {
		return nil, fmt.Errorf("archive the workspace of %s: %w", user, err)
	}
	ws, err := remotecommand.NewWebSocketExecutor(r.cfg, "GET", req.URL().String())
	if err != nil {
		return nil, fmt.Errorf("archive the workspace of %s: %w", user, err)
	}
	exec, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return nil, fmt.Errorf("archive the workspace of %s: %w", user, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	go func() {
		var stderr bytes.Buffer
		err := exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: pw, Stderr: &limitedBuffer{b: &stderr, n: 4096}})
		pw.CloseWithError(r.archiveErr(user, err, stderr.String()))
		cancel()
	}()
	return &archiveStream{PipeReader: pr, cancel: cancel}, nil
}

// archiveErr is what a finished tar in the sandbox means: nil for success
// and for GNU tar's exit code 1 (some files changed while read: the
// archive is complete).
func (r *Runtime) archiveErr(user string, err error, stderr string) error {
	if err == nil {
		return io.EOF
	}
	var exit utilexec.ExitError
	if errors.As(err, &exit) {
		if exit.ExitStatus() == 1 {
			return io.EOF
		}
		if exit.ExitStatus() == 127 || strings.Contains(stderr, "not found") && strings.Contains(stderr, "tar") {
			return sandbox.Hintf(err, "the sandbox image needs a tar command (the participant image has one)",
				"archive the workspace of %s: tar is not in the sandbox image", user)
		}
		return fmt.Errorf("archive the workspace of %s: tar exited with code %d: %s", user, exit.ExitStatus(), strings.TrimSpace(stderr))
	}
	if apierrors.IsForbidden(err) {
		return sandbox.Hintf(err, "grant THON's service account create on pods/exec in its namespace (see PolicyRules)",
			"archive the workspace of %s: exec in the Pod is forbidden", user)
	}
	return fmt.Errorf("archive the workspace of %s: exec tar in the Pod: %w", user, err)
}

type archiveStream struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (a *archiveStream) Close() error {
	a.cancel() // ends the exec
	return a.PipeReader.Close()
}

// limitedBuffer keeps the first n bytes written to it.
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func containerRunning(p *corev1.Pod) bool {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == containerName {
			return cs.State.Running != nil
		}
	}
	return false
}

// metricsPath is the metrics API's Pod metrics of a namespace (served by
// metrics-server where it is installed).
const metricsPath = "/apis/metrics.k8s.io/v1beta1/namespaces/%s/pods"

// podMetrics is the part of a metrics.k8s.io PodMetrics THON reads.
type podMetrics struct {
	Items []struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Containers []struct {
			Name  string                       `json:"name"`
			Usage map[string]resource.Quantity `json:"usage"`
		} `json:"containers"`
	} `json:"items"`
}

// Usage lists every running sandbox Pod from the informer cache, with its
// CPU (a rate, in cores) and memory (the working set) from the metrics API
// (metrics.k8s.io, served by metrics-server) when the cluster has it:
// without it both are Unknown and UsageReport.Note says why. Disk use is
// always Unknown (no Capabilities.DiskUsage): a volume's use is known to
// the kubelet, not to the API. Machine is the nodes' allocatable CPU and
// memory, when THON may list nodes (ClusterPolicyRules).
func (r *Runtime) Usage(ctx context.Context, opts sandbox.UsageOptions) (sandbox.UsageReport, error) {
	if err := r.informers.ready(ctx); err != nil {
		return sandbox.UsageReport{}, fmt.Errorf("measure sandboxes: %w", err)
	}
	rep := sandbox.UsageReport{Sandboxes: []sandbox.Use{}, Machine: r.cluster(ctx)}
	pods := map[string]*corev1.Pod{}
	for _, o := range r.informers.pods.GetStore().List() {
		p := o.(*corev1.Pod)
		user := p.Labels[sandbox.LabelUser]
		if user == "" || p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		if old, ok := pods[user]; !ok || p.CreationTimestamp.After(old.CreationTimestamp.Time) {
			pods[user] = p
		}
	}
	if len(pods) == 0 {
		return rep, nil
	}
	metrics, note := r.podMetrics(ctx)
	rep.Note = note
	svcs := map[string]string{}
	for _, o := range r.informers.svcs.GetStore().List() {
		s := o.(*corev1.Service)
		svcs[s.Labels[sandbox.LabelUser]] = string(s.UID)
	}
	for user, p := range pods {
		id, ok := svcs[user]
		if !ok {
			continue // not a sandbox (its Service is gone): not listed by List either
		}
		u := sandbox.Use{User: user, ID: id, CPUTime: sandbox.Unknown, CPU: sandbox.Unknown,
			Memory: sandbox.Unknown, MemoryLimit: 0, Disk: sandbox.Unknown}
		for _, c := range p.Spec.Containers {
			if c.Name == containerName {
				if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
					u.MemoryLimit = q.Value()
				}
			}
		}
		if m, ok := metrics[p.Name]; ok {
			u.CPU, u.Memory = m.cpu, m.memory
		}
		rep.Sandboxes = append(rep.Sandboxes, u)
	}
	slices.SortFunc(rep.Sandboxes, func(a, b sandbox.Use) int { return strings.Compare(a.User, b.User) })
	return rep, nil
}

type podUse struct {
	cpu    float64
	memory int64
}

// podMetrics reads the namespace's Pod metrics; note says why there are
// none.
func (r *Runtime) podMetrics(ctx context.Context) (map[string]podUse, string) {
	var raw []byte
	err := r.do(ctx, func() error {
		var err error
		raw, err = r.cs.CoreV1().RESTClient().Get().AbsPath(fmt.Sprintf(metricsPath, r.ns)).
			Param("labelSelector", r.selector()).DoRaw(ctx)
		return err
	})
	switch {
	case apierrors.IsNotFound(err) || apierrors.IsServiceUnavailable(err):
		return nil, "the cluster serves no metrics API (metrics.k8s.io): install metrics-server to see CPU and memory"
	case apierrors.IsForbidden(err):
		return nil, "THON may not read the metrics API: grant get and list on pods.metrics.k8s.io (see PolicyRules)"
	case err != nil:
		return nil, "the metrics API did not answer: " + apiMessage(err)
	}
	var pm podMetrics
	if err := json.Unmarshal(raw, &pm); err != nil {
		return nil, "the metrics API answered something else than PodMetrics: " + err.Error()
	}
	out := make(map[string]podUse, len(pm.Items))
	for _, it := range pm.Items {
		for _, c := range it.Containers {
			if c.Name != containerName {
				continue
			}
			use := podUse{cpu: sandbox.Unknown, memory: sandbox.Unknown}
			if q, ok := c.Usage["cpu"]; ok {
				use.cpu = float64(q.MilliValue()) / 1000
			}
			if q, ok := c.Usage["memory"]; ok {
				use.memory = q.Value()
			}
			out[it.Metadata.Name] = use
		}
	}
	return out, ""
}

// cluster is the nodes' allocatable CPU and memory, listed at most once a
// minute; Unknown when THON may not list nodes.
func (r *Runtime) cluster(ctx context.Context) sandbox.Machine {
	r.nodesMu.Lock()
	defer r.nodesMu.Unlock()
	if time.Since(r.nodesAt) < time.Minute {
		return r.nodes
	}
	m := sandbox.Machine{CPUs: sandbox.Unknown, Memory: sandbox.Unknown}
	var list *corev1.NodeList
	err := r.do(ctx, func() error {
		var err error
		list, err = r.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		return err
	})
	if err == nil {
		var cpu, mem resource.Quantity
		for _, n := range list.Items {
			cpu.Add(n.Status.Allocatable[corev1.ResourceCPU])
			mem.Add(n.Status.Allocatable[corev1.ResourceMemory])
		}
		m = sandbox.Machine{CPUs: float64(cpu.MilliValue()) / 1000, Memory: mem.Value()}
	}
	r.nodes, r.nodesAt = m, time.Now()
	return m
}
