package kubernetes

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/thon-dev/thon/internal/sandbox"
)

const userIndex = "user"

// informerCache watches this instance's Pods and Services. It starts on first
// use, so New never contacts the cluster.
type informerCache struct {
	r       *Runtime
	once    sync.Once
	stop    chan struct{}
	factory informers.SharedInformerFactory
	pods    cache.SharedIndexInformer
	svcs    cache.SharedIndexInformer

	mu      sync.Mutex
	changed chan struct{} // closed (and replaced) on every event
	lastErr error         // the last list/watch error, while not synced
	closed  bool
}

func newInformerCache(r *Runtime) *informerCache {
	return &informerCache{r: r, stop: make(chan struct{}), changed: make(chan struct{})}
}

func (c *informerCache) start() {
	c.once.Do(func() {
		c.factory = informers.NewSharedInformerFactoryWithOptions(c.r.cs, 0,
			informers.WithNamespace(c.r.ns),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = c.r.selector() }),
			informers.WithTransform(func(obj any) (any, error) {
				if m, ok := obj.(metav1.Object); ok {
					m.SetManagedFields(nil)
				}
				return obj, nil
			}))
		c.pods = c.factory.Core().V1().Pods().Informer()
		c.svcs = c.factory.Core().V1().Services().Informer()
		byUser := cache.Indexers{userIndex: func(obj any) ([]string, error) {
			if m, ok := obj.(metav1.Object); ok {
				if u := m.GetLabels()[sandbox.LabelUser]; u != "" {
					return []string{u}, nil
				}
			}
			return nil, nil
		}}
		h := cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { c.notify() },
			UpdateFunc: func(any, any) { c.notify() },
			DeleteFunc: func(any) { c.notify() },
		}
		for _, inf := range []cache.SharedIndexInformer{c.pods, c.svcs} {
			_ = inf.AddIndexers(byUser)
			_, _ = inf.AddEventHandler(h)
			_ = inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
				c.mu.Lock()
				c.lastErr = err
				c.mu.Unlock()
				c.notify()
			})
		}
		c.factory.Start(c.stop)
	})
}

func (c *informerCache) notify() {
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

func (c *informerCache) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	close(c.stop)
	if c.factory != nil {
		c.factory.Shutdown()
	}
}

func (c *informerCache) synced() bool {
	return c.pods.HasSynced() && c.svcs.HasSynced()
}

// ready starts the informers and waits for their first list. While they
// are not synced it lists directly now and then, to return what keeps them
// from syncing (an unreachable server, a missing permission) instead of
// waiting for ctx; the informers themselves retry forever.
func (c *informerCache) ready(ctx context.Context) error {
	c.start()
	probe := time.NewTimer(500 * time.Millisecond)
	defer probe.Stop()
	for {
		ch := c.wait()
		if c.synced() {
			return nil
		}
		c.mu.Lock()
		failed := c.lastErr != nil
		c.lastErr = nil
		c.mu.Unlock()
		if !failed {
			select {
			case <-probe.C:
				failed = true
			default:
			}
		}
		if failed {
			// Ask directly, for an error that names what failed.
			if err := c.probe(ctx); err != nil && !c.synced() {
				return err
			}
			probe.Reset(3 * time.Second)
		}
		select {
		case <-ch:
		case <-probe.C:
			probe.Reset(0)
		case <-ctx.Done():
			return c.r.apiErr("list", "pods and services", "", fmt.Errorf("waiting for the sandbox list: %w", ctx.Err()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// probe lists one Pod and one Service the way the informers do.
func (c *informerCache) probe(ctx context.Context) error {
	lo := metav1.ListOptions{LabelSelector: c.r.selector(), Limit: 1}
	err := c.r.do(ctx, func() error {
		_, err := c.r.cs.CoreV1().Pods(c.r.ns).List(ctx, lo)
		return err
	})
	if err != nil {
		return c.r.apiErr("list", "pods", "", err)
	}
	err = c.r.do(ctx, func() error {
		_, err := c.r.cs.CoreV1().Services(c.r.ns).List(ctx, lo)
		return err
	})
	return c.r.apiErr("list", "services", "", err)
}

func (c *informerCache) wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// waitFor waits until cond holds in the cache, at most d; it reports whether
// it does.
func (c *informerCache) waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		ch := c.wait()
		if cond() {
			return true
		}
		select {
		case <-ch:
		case <-timer.C:
			return cond()
		case <-ctx.Done():
			return false
		}
	}
}

// user returns the cached Service and Pod of user (nil when missing). Of
// several Pods (never made by THON) the live one, then the newest, wins.
func (c *informerCache) user(name string) (*corev1.Service, *corev1.Pod) {
	var svc *corev1.Service
	if objs, _ := c.svcs.GetIndexer().ByIndex(userIndex, name); len(objs) > 0 {
		svc = objs[0].(*corev1.Service)
	}
	var pods []*corev1.Pod
	if objs, _ := c.pods.GetIndexer().ByIndex(userIndex, name); len(objs) > 0 {
		for _, o := range objs {
			pods = append(pods, o.(*corev1.Pod))
		}
	}
	if len(pods) == 0 {
		return svc, nil
	}
	slices.SortFunc(pods, func(a, b *corev1.Pod) int {
		if (a.DeletionTimestamp == nil) != (b.DeletionTimestamp == nil) {
			if a.DeletionTimestamp == nil {
				return -1
			}
			return 1
		}
		return b.CreationTimestamp.Compare(a.CreationTimestamp.Time)
	})
	return svc, pods[0]
}

// podGone: no cached Pod has uid.
func (c *informerCache) podGone(user string, uid types.UID) bool {
	objs, _ := c.pods.GetIndexer().ByIndex(userIndex, user)
	for _, o := range objs {
		if o.(*corev1.Pod).UID == uid {
			return false
		}
	}
	return true
}

// Inspect returns the user's sandbox from the informer cache; ErrNotFound
// when there is none.
func (r *Runtime) Inspect(ctx context.Context, user string) (sandbox.Instance, error) {
	if err := r.informers.ready(ctx); err != nil {
		return sandbox.Instance{}, fmt.Errorf("inspect sandbox %s: %w", user, err)
	}
	svc, pod := r.informers.user(user)
	if svc == nil && pod == nil {
		return sandbox.Instance{}, fmt.Errorf("inspect sandbox %s: %w", user, sandbox.ErrNotFound)
	}
	return instanceOf(svc, pod), nil
}

// List returns every sandbox of this instance from the informer cache,
// sorted by user.
func (r *Runtime) List(ctx context.Context) ([]sandbox.Instance, error) {
	if err := r.informers.ready(ctx); err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	users := map[string]bool{}
	for _, o := range r.informers.svcs.GetStore().List() {
		users[o.(*corev1.Service).Labels[sandbox.LabelUser]] = true
	}
	for _, o := range r.informers.pods.GetStore().List() {
		users[o.(*corev1.Pod).Labels[sandbox.LabelUser]] = true
	}
	delete(users, "")
	out := make([]sandbox.Instance, 0, len(users))
	for u := range users {
		svc, pod := r.informers.user(u)
		out = append(out, instanceOf(svc, pod))
	}
	slices.SortFunc(out, func(a, b sandbox.Instance) int {
		return cmp.Or(cmp.Compare(a.User, b.User), a.Created.Compare(b.Created))
	})
	return out, nil
}

// instanceOf describes the sandbox made of svc (its record) and pod (its
// IDE, nil while stopped); either may be nil, not both.
func instanceOf(svc *corev1.Service, pod *corev1.Pod) sandbox.Instance {
	var inst sandbox.Instance
	var meta metav1.Object = svc
	if svc == nil {
		meta = pod
	}
	l := meta.GetLabels()
	inst.ID = string(meta.GetUID())
	inst.User = l[sandbox.LabelUser]
	inst.Group = l[sandbox.LabelGroup]
	inst.SpecHash = l[sandbox.LabelSpec]
	inst.Image = meta.GetAnnotations()[AnnotationImage]
	inst.Created = meta.GetCreationTimestamp().Time
	if pod == nil {
		inst.Name = meta.GetName()
		inst.State = sandbox.StateStopped
		return inst
	}
	inst.Name = pod.Name
	inst.State, inst.ExitCode, inst.Reason = stateOf(pod)
	if inst.State == sandbox.StateRunning {
		inst.Endpoint = endpoint(svc, pod)
		if inst.Endpoint == "" {
			inst.State = sandbox.StateStarting // no Service (yet): nothing to reach
		}
	}
	return inst
}

// endpoint is the Service's ClusterIP and port.
func endpoint(svc *corev1.Service, pod *corev1.Pod) string {
	if svc == nil || len(svc.Spec.Ports) == 0 {
		return ""
	}
	port := strconv.Itoa(int(svc.Spec.Ports[0].Port))
	ip := svc.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone {
		return net.JoinHostPort(svc.Name+"."+svc.Namespace+".svc", port)
	}
	return net.JoinHostPort(ip, port)
}

// Waiting reasons that will not go away by waiting.
var stuckReasons = map[string]string{
	"ErrImagePull":               "the image cannot be pulled",
	"ImagePullBackOff":           "the image cannot be pulled",
	"InvalidImageName":           "the image name is invalid",
	"ErrImageNeverPull":          "the image is not on the node",
	"CreateContainerConfigError": "the container cannot be configured",
	"CreateContainerError":       "the container cannot be created",
	"RunContainerError":          "the container cannot be started",
}

// stateOf maps a Pod to a sandbox state, with an exit code and a reason for
// a sandbox that stopped or cannot start.
func stateOf(p *corev1.Pod) (sandbox.State, int, string) {
	if p.DeletionTimestamp != nil {
		return sandbox.StateStopped, 0, "stopping"
	}
	switch p.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		if code, reason, ok := terminated(p.Status.ContainerStatuses); ok {
			return sandbox.StateStopped, code, reason
		}
		reason := strings.TrimSpace(p.Status.Reason + ": " + p.Status.Message)
		if p.Status.Reason == "" {
			reason = "the pod " + strings.ToLower(string(p.Status.Phase))
		}
		return sandbox.StateStopped, 0, reason
	case corev1.PodUnknown:
		return sandbox.StateStopped, 0, "the node running it is unreachable"
	}
	// Pending or Running: a container stuck, or crash-looping, is stopped for
	// THON's purposes (a Start makes the Pod again).
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, cs := range list {
			w := cs.State.Waiting
			if w == nil {
				continue
			}
			if what, ok := stuckReasons[w.Reason]; ok {
				return sandbox.StateStopped, 0, strings.TrimSuffix(what+": "+w.Message, ": ")
			}
			if w.Reason == "CrashLoopBackOff" {
				code, reason, _ := terminated([]corev1.ContainerStatus{{Name: cs.Name, State: cs.LastTerminationState}})
				if reason == "" {
					reason = "crashed"
				}
				if cs.Name == initName {
					reason = "writing its files " + reason
				}
				return sandbox.StateStopped, code, reason + fmt.Sprintf(" (restarted %d times)", cs.RestartCount)
			}
		}
	}
	if p.Status.Phase == corev1.PodRunning && podReady(p) {
		return sandbox.StateRunning, 0, ""
	}
	return sandbox.StateStarting, 0, ""
}

// terminated describes the first terminated container among statuses.
func terminated(statuses []corev1.ContainerStatus) (int, string, bool) {
	for _, cs := range statuses {
		t := cs.State.Terminated
		if t == nil {
			continue
		}
		reason := fmt.Sprintf("exited with code %d", t.ExitCode)
		switch {
		case t.Reason == "OOMKilled":
			reason = "OOM-killed"
		case t.Message != "":
			reason += ": " + t.Message
		}
		return int(t.ExitCode), reason, true
	}
	return 0, "", false
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
