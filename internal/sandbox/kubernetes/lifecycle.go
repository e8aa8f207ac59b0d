package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/thon-dev/thon/internal/sandbox"
)

// How long to wait for the informer to show a write (it normally takes
// milliseconds), and for a deleted Pod or PVC to be gone.
const (
	cacheWait = 10 * time.Second
	goneWait  = 30 * time.Second
)

// undo deletes what a failed operation made, whatever ctx says.
type undo []func(context.Context)

func (u undo) run(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for i := len(u) - 1; i >= 0; i-- {
		u[i](ctx)
	}
}

// Create makes the sandbox of spec.User: its Secret (spec and files), its
// workspace PVC (volume mode; an existing one is kept), its Service and its
// Pod, which Kubernetes starts at once. ErrExists when the user has a
// sandbox. On an error nothing it made is left behind.
func (r *Runtime) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Instance, error) {
	if err := r.validateSpec(spec); err != nil {
		return sandbox.Instance{}, err
	}
	user := spec.User
	if workspaceMode(spec) == sandbox.WorkspaceVolume {
		if err := r.checkStorage(ctx); err != nil {
			return sandbox.Instance{}, err
		}
	}
	if err := r.informers.ready(ctx); err != nil {
		return sandbox.Instance{}, fmt.Errorf("create sandbox %s: %w", user, err)
	}
	if svc, pod := r.informers.user(user); svc != nil || pod != nil {
		return sandbox.Instance{}, fmt.Errorf("create sandbox %s: %w", user, sandbox.ErrExists)
	}
	hash := spec.Hash()
	var made undo
	fail := func(err error) (sandbox.Instance, error) {
		// ErrExists: a concurrent Create of the same user won the Service or
		// the Pod, and what this one made (the Secret, the PVC) is that
		// sandbox's now: leave it.
		if !errors.Is(err, sandbox.ErrExists) {
			made.run(ctx)
		}
		return sandbox.Instance{}, err
	}

	// The Secret first: the Pod needs its files, a later Start its spec.
	secret, err := r.secretFor(spec, hash)
	if err != nil {
		return fail(fmt.Errorf("create sandbox %s: %w", user, err))
	}
	switch err := r.create(ctx, "secrets", secret.Name, func() error {
		_, err := r.cs.CoreV1().Secrets(r.ns).Create(ctx, secret, metav1.CreateOptions{})
		return err
	}); {
	case err == nil:
		made = append(made, r.deleter("secrets", secret.Name))
	case apierrors.IsAlreadyExists(err):
		// Left by an interrupted create or remove (there is no Service or
		// Pod): take it over with this spec.
		if err := r.replaceSecret(ctx, secret); err != nil {
			return fail(err)
		}
	default:
		made = r.maybeMade(made, err, "secrets", secret.Name, user)
		return fail(err)
	}

	if workspaceMode(spec) == sandbox.WorkspaceVolume {
		created, err := r.ensureClaim(ctx, user, false)
		if err != nil {
			made = r.maybeMade(made, err, "persistentvolumeclaims", r.ClaimName(user), user)
			return fail(err)
		}
		if created {
			made = append(made, r.deleter("persistentvolumeclaims", r.ClaimName(user)))
		}
	}

	svc := r.serviceFor(spec, hash)
	var made1 *corev1.Service
	if err := r.create(ctx, "services", svc.Name, func() error {
		var err error
		made1, err = r.cs.CoreV1().Services(r.ns).Create(ctx, svc, metav1.CreateOptions{})
		return err
	}); err != nil {
		if apierrors.IsAlreadyExists(err) {
			err = r.conflict(ctx, "services", svc.Name, user, err)
		}
		made = r.maybeMade(made, err, "services", svc.Name, user)
		return fail(err)
	}
	made = append(made, r.deleter("services", svc.Name))

	pod, err := r.createPod(ctx, spec, hash)
	if err != nil {
		made = r.maybeMade(made, err, "pods", r.PodName(user), user)
		return fail(err)
	}
	r.informers.waitFor(ctx, cacheWait, func() bool {
		s, p := r.informers.user(user)
		return s != nil && p != nil && p.UID == pod.UID
	})
	return instanceOf(made1, pod), nil
}

// maybeMade adds the removal of an object whose create failed in a way
// that leaves unknown whether the server made it (a timeout, a lost
// connection): it is deleted if it exists and is user's.
func (r *Runtime) maybeMade(made undo, err error, resource, name, user string) undo {
	if !apierrors.IsTimeout(err) && !apierrors.IsServerTimeout(err) && !isUnreachable(err) && !errors.Is(err, context.Canceled) {
		return made
	}
	return append(made, func(ctx context.Context) { _, _ = r.deleteOurs(ctx, resource, name, user) })
}

// create runs one create request and explains its error.
func (r *Runtime) create(ctx context.Context, resource, name string, fn func() error) error {
	err := r.do(ctx, fn)
	if err == nil || apierrors.IsAlreadyExists(err) {
		return err
	}
	return r.apiErr("create", resource, name, err)
}

// deleter deletes an object this operation made.
func (r *Runtime) deleter(resource, name string) func(context.Context) {
	return func(ctx context.Context) {
		_ = r.do(ctx, func() error {
			var err error
			opts := metav1.DeleteOptions{}
			switch resource {
			case "secrets":
				err = r.cs.CoreV1().Secrets(r.ns).Delete(ctx, name, opts)
			case "services":
				err = r.cs.CoreV1().Services(r.ns).Delete(ctx, name, opts)
			case "persistentvolumeclaims":
				err = r.cs.CoreV1().PersistentVolumeClaims(r.ns).Delete(ctx, name, opts)
			case "pods":
				opts.GracePeriodSeconds = ptr(int64(0))
				err = r.cs.CoreV1().Pods(r.ns).Delete(ctx, name, opts)
			}
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		})
	}
}

// conflict explains why an object name is taken.
func (r *Runtime) conflict(ctx context.Context, resource, name, user string, cause error) error {
	var meta metav1.Object
	err := r.do(ctx, func() error {
		var err error
		switch resource {
		case "services":
			meta, err = r.cs.CoreV1().Services(r.ns).Get(ctx, name, metav1.GetOptions{})
		case "pods":
			meta, err = r.cs.CoreV1().Pods(r.ns).Get(ctx, name, metav1.GetOptions{})
		case "secrets":
			meta, err = r.cs.CoreV1().Secrets(r.ns).Get(ctx, name, metav1.GetOptions{})
		case "persistentvolumeclaims":
			meta, err = r.cs.CoreV1().PersistentVolumeClaims(r.ns).Get(ctx, name, metav1.GetOptions{})
		}
		return err
	})
	if err != nil {
		return r.apiErr("create", resource, name, cause)
	}
	l := meta.GetLabels()
	switch {
	case r.ours(meta, user):
		return fmt.Errorf("create sandbox %s: %w", user, sandbox.ErrExists)
	case l[sandbox.LabelManaged] == "true" && l[LabelInstance] == r.instance:
		return &sandbox.UserError{
			Msg:  fmt.Sprintf("cannot create the sandbox of %s: the name %s (%s) is taken by the sandbox of user %s", user, name, resource, l[sandbox.LabelUser]),
			Hint: "user names this long collide once cut to 63 characters; rename one of the users",
			Err:  cause,
		}
	}
	return &sandbox.UserError{
		Msg:  fmt.Sprintf("cannot create the sandbox of %s: %s %s already exists in namespace %s and THON does not manage it", user, resource, name, r.ns),
		Hint: fmt.Sprintf("delete it (kubectl -n %s delete %s %s; check it is not needed first), or give THON another instance name", r.ns, resource, name),
		Err:  cause,
	}
}

// replaceSecret overwrites the user's leftover Secret with s.
func (r *Runtime) replaceSecret(ctx context.Context, s *corev1.Secret) error {
	user := s.Labels[sandbox.LabelUser]
	for attempt := 0; ; attempt++ {
		var cur *corev1.Secret
		err := r.do(ctx, func() error {
			var err error
			cur, err = r.cs.CoreV1().Secrets(r.ns).Get(ctx, s.Name, metav1.GetOptions{})
			return err
		})
		if err != nil {
			return r.apiErr("get", "secrets", s.Name, err)
		}
		if !r.ours(cur, user) {
			return r.conflict(ctx, "secrets", s.Name, user, apierrors.NewAlreadyExists(corev1.Resource("secrets"), s.Name))
		}
		next := s.DeepCopy()
		next.ResourceVersion = cur.ResourceVersion
		err = r.do(ctx, func() error {
			_, err := r.cs.CoreV1().Secrets(r.ns).Update(ctx, next, metav1.UpdateOptions{})
			return err
		})
		if (apierrors.IsConflict(err) || apierrors.IsNotFound(err)) && attempt < 3 {
			continue
		}
		return r.apiErr("update", "secrets", s.Name, err)
	}
}

// ensureClaim makes the user's workspace PVC unless it exists; it reports
// whether it made it. It tries to create first (one request for a new
// participant) and looks only when the name is taken; with lookFirst (the
// PVC most likely exists) the other way round. A PVC still being deleted (a
// purge just before) is waited for.
func (r *Runtime) ensureClaim(ctx context.Context, user string, lookFirst bool) (bool, error) {
	name := r.ClaimName(user)
	deadline := time.Now().Add(goneWait)
	for {
		if !lookFirst {
			err := r.create(ctx, "persistentvolumeclaims", name, func() error {
				_, err := r.cs.CoreV1().PersistentVolumeClaims(r.ns).Create(ctx, r.claimFor(user), metav1.CreateOptions{})
				return err
			})
			if !apierrors.IsAlreadyExists(err) {
				return err == nil, err
			}
		}
		lookFirst = false
		var cur *corev1.PersistentVolumeClaim
		err := r.do(ctx, func() error {
			var err error
			cur, err = r.cs.CoreV1().PersistentVolumeClaims(r.ns).Get(ctx, name, metav1.GetOptions{})
			return err
		})
		switch {
		case apierrors.IsNotFound(err):
			continue // deleted meanwhile: create again
		case err != nil:
			return false, r.apiErr("get", "persistentvolumeclaims", name, err)
		case !r.ours(cur, user):
			return false, &sandbox.UserError{
				Msg:  fmt.Sprintf("cannot use the workspace of %s: the PersistentVolumeClaim %s exists in namespace %s and THON does not manage it", user, name, r.ns),
				Hint: fmt.Sprintf("delete it (kubectl -n %s delete pvc %s; check its files are not needed first), or give THON another instance name", r.ns, name),
			}
		case cur.DeletionTimestamp == nil:
			return false, nil
		}
		if time.Now().After(deadline) {
			return false, sandbox.Hintf(nil, fmt.Sprintf("check what still uses it: kubectl -n %s describe pvc %s", r.ns, name),
				"the workspace PersistentVolumeClaim %s of %s is still being deleted", name, user)
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// createPod creates the sandbox's Pod.
func (r *Runtime) createPod(ctx context.Context, spec sandbox.Spec, hash string) (*corev1.Pod, error) {
	pod := r.podFor(spec, hash)
	var made *corev1.Pod
	err := r.create(ctx, "pods", pod.Name, func() error {
		var err error
		made, err = r.cs.CoreV1().Pods(r.ns).Create(ctx, pod, metav1.CreateOptions{})
		return err
	})
	if apierrors.IsAlreadyExists(err) {
		err = r.conflict(ctx, "pods", pod.Name, spec.User, err)
	}
	return made, err
}

// Start makes the sandbox's Pod again when it was stopped (or crashed, or
// cannot pull its image); a live Pod is only returned.
func (r *Runtime) Start(ctx context.Context, user string) (sandbox.Instance, error) {
	if err := r.informers.ready(ctx); err != nil {
		return sandbox.Instance{}, fmt.Errorf("start sandbox %s: %w", user, err)
	}
	svc, pod := r.informers.user(user)
	if svc == nil && pod == nil {
		return sandbox.Instance{}, fmt.Errorf("start sandbox %s: %w", user, sandbox.ErrNotFound)
	}
	if pod != nil {
		if state, _, _ := stateOf(pod); state != sandbox.StateStopped {
			return instanceOf(svc, pod), nil
		}
		// Dead, stuck or being deleted: make it anew.
		if err := r.deletePod(ctx, user, pod, 0); err != nil {
			return sandbox.Instance{}, err
		}
	}
	name := r.SecretName(user)
	var secret *corev1.Secret
	err := r.do(ctx, func() error {
		var err error
		secret, err = r.cs.CoreV1().Secrets(r.ns).Get(ctx, name, metav1.GetOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return sandbox.Instance{}, sandbox.Hintf(err, "recreate the sandbox (thon instance recreate "+user+")",
			"cannot start the sandbox of %s: its Secret %s is missing", user, name)
	}
	if err != nil {
		return sandbox.Instance{}, r.apiErr("get", "secrets", name, err)
	}
	spec, hash, err := specFrom(secret)
	if err != nil {
		return sandbox.Instance{}, sandbox.Hintf(err, "recreate the sandbox (thon instance recreate "+user+")",
			"cannot start the sandbox of %s: its Secret %s holds no valid spec", user, name)
	}
	if workspaceMode(spec) == sandbox.WorkspaceVolume {
		if _, err := r.ensureClaim(ctx, user, true); err != nil {
			return sandbox.Instance{}, err
		}
	}
	made, err := r.createPod(ctx, spec, hash)
	if errors.Is(err, sandbox.ErrExists) {
		// Started meanwhile by someone else.
		r.informers.waitFor(ctx, cacheWait, func() bool { _, p := r.informers.user(user); return p != nil })
		return r.Inspect(ctx, user)
	}
	if err != nil {
		return sandbox.Instance{}, err
	}
	r.informers.waitFor(ctx, cacheWait, func() bool { _, p := r.informers.user(user); return p != nil && p.UID == made.UID })
	svc, _ = r.informers.user(user)
	return instanceOf(svc, made), nil
}

// Stop deletes the sandbox's Pod, giving the IDE grace to exit (grace <= 0:
// the Pod's own 10 s), and waits until it is gone. The PVC, Service and
// Secret stay. Stopping a stopped sandbox does nothing.
func (r *Runtime) Stop(ctx context.Context, user string, grace time.Duration) error {
	if err := r.informers.ready(ctx); err != nil {
		return fmt.Errorf("stop sandbox %s: %w", user, err)
	}
	svc, pod := r.informers.user(user)
	if svc == nil && pod == nil {
		return fmt.Errorf("stop sandbox %s: %w", user, sandbox.ErrNotFound)
	}
	if pod == nil {
		return nil
	}
	return r.deletePod(ctx, user, pod, grace)
}

// deletePod deletes pod and waits until the informer no longer has it; a
// Pod that outlives its grace period by goneWait (its node is down) is
// deleted by force.
func (r *Runtime) deletePod(ctx context.Context, user string, pod *corev1.Pod, grace time.Duration) error {
	opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}}
	secs := int64(10)
	if grace > 0 {
		secs = int64(math.Ceil(grace.Seconds()))
		opts.GracePeriodSeconds = &secs
	} else if pod.Spec.TerminationGracePeriodSeconds != nil {
		secs = *pod.Spec.TerminationGracePeriodSeconds
	}
	del := func(opts metav1.DeleteOptions) error {
		err := r.do(ctx, func() error { return r.cs.CoreV1().Pods(r.ns).Delete(ctx, pod.Name, opts) })
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) { // gone, or another Pod by now
			return nil
		}
		return r.apiErr("delete", "pods", pod.Name, err)
	}
	if pod.DeletionTimestamp == nil {
		if err := del(opts); err != nil {
			return err
		}
	}
	gone := func() bool { return r.informers.podGone(user, pod.UID) }
	if r.informers.waitFor(ctx, time.Duration(secs)*time.Second+goneWait, gone) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("stop sandbox %s: %w", user, err)
	}
	opts.GracePeriodSeconds = ptr(int64(0))
	if err := del(opts); err != nil {
		return err
	}
	if !r.informers.waitFor(ctx, goneWait, gone) {
		return sandbox.Hintf(nil, fmt.Sprintf("check the Pod: kubectl -n %s describe pod %s", r.ns, pod.Name),
			"the Pod %s of %s is not going away", pod.Name, user)
	}
	return nil
}

// Pause stops the sandbox: Kubernetes cannot freeze a Pod (see Capabilities.PauseIsStop).
func (r *Runtime) Pause(ctx context.Context, user string) error {
	if err := r.Stop(ctx, user, 0); err != nil {
		return fmt.Errorf("pause (stop, on Kubernetes): %w", err)
	}
	return nil
}

// Resume starts the sandbox again (see Capabilities.PauseIsStop).
func (r *Runtime) Resume(ctx context.Context, user string) error {
	_, err := r.Start(ctx, user)
	return err
}

// Remove deletes the sandbox's Pod (at once), Service and Secret; with purge
// also its workspace PVC, even when there was no sandbox (then it still
// returns ErrNotFound).
func (r *Runtime) Remove(ctx context.Context, user string, purge bool) error {
	if err := r.informers.ready(ctx); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", user, err)
	}
	svc, pod := r.informers.user(user)
	existed := svc != nil || pod != nil
	if pod != nil {
		if err := r.deletePod(ctx, user, pod, time.Second); err != nil {
			return err
		}
	}
	// By name too: one made a moment ago may not be in the cache yet.
	for _, o := range []struct{ resource, name string }{
		{"pods", r.PodName(user)}, {"services", r.ServiceName(user)}, {"secrets", r.SecretName(user)},
	} {
		found, err := r.deleteOurs(ctx, o.resource, o.name, user)
		if err != nil {
			return err
		}
		existed = existed || found
	}
	if purge {
		if _, err := r.deleteOurs(ctx, "persistentvolumeclaims", r.ClaimName(user), user); err != nil {
			return err
		}
	}
	r.informers.waitFor(ctx, cacheWait, func() bool { s, p := r.informers.user(user); return s == nil && p == nil })
	if !existed {
		return fmt.Errorf("remove sandbox %s: %w", user, sandbox.ErrNotFound)
	}
	return nil
}

// deleteOurs deletes resource name when it belongs to user's sandbox; it
// reports whether it existed. One THON does not manage is left alone.
func (r *Runtime) deleteOurs(ctx context.Context, resource, name, user string) (bool, error) {
	var meta metav1.Object
	err := r.do(ctx, func() error {
		var err error
		switch resource {
		case "pods":
			meta, err = r.cs.CoreV1().Pods(r.ns).Get(ctx, name, metav1.GetOptions{})
		case "services":
			meta, err = r.cs.CoreV1().Services(r.ns).Get(ctx, name, metav1.GetOptions{})
		case "secrets":
			meta, err = r.cs.CoreV1().Secrets(r.ns).Get(ctx, name, metav1.GetOptions{})
		case "persistentvolumeclaims":
			meta, err = r.cs.CoreV1().PersistentVolumeClaims(r.ns).Get(ctx, name, metav1.GetOptions{})
		}
		return err
	})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, r.apiErr("get", resource, name, err)
	}
	if !r.ours(meta, user) {
		return false, nil
	}
	if resource == "pods" {
		return true, r.deletePod(ctx, user, meta.(*corev1.Pod), time.Second)
	}
	uid := meta.GetUID()
	err = r.do(ctx, func() error {
		opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
		switch resource {
		case "services":
			return r.cs.CoreV1().Services(r.ns).Delete(ctx, name, opts)
		case "secrets":
			return r.cs.CoreV1().Secrets(r.ns).Delete(ctx, name, opts)
		default:
			return r.cs.CoreV1().PersistentVolumeClaims(r.ns).Delete(ctx, name, opts)
		}
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return true, nil
	}
	return true, r.apiErr("delete", resource, name, err)
}

// PurgeWorkspace deletes the workspace PVC of spec.User, who must not have a
// sandbox.
func (r *Runtime) PurgeWorkspace(ctx context.Context, spec sandbox.Spec) error {
	user := spec.User
	if err := r.informers.ready(ctx); err != nil {
		return fmt.Errorf("purge workspace of %s: %w", user, err)
	}
	if svc, pod := r.informers.user(user); svc != nil || pod != nil {
		return &sandbox.UserError{
			Msg:  fmt.Sprintf("cannot purge the workspace of %s: the user still has a sandbox", user),
			Hint: "remove the sandbox first",
			Err:  sandbox.ErrExists,
		}
	}
	if _, err := r.deleteOurs(ctx, "persistentvolumeclaims", r.ClaimName(user), user); err != nil {
		return fmt.Errorf("purge workspace of %s: %w", user, err)
	}
	return nil
}

// Logs streams the IDE's output (Kubernetes merges stdout and stderr). A
// crash-looping IDE shows its previous run; a Pod whose files could not be
// written shows the init container's. A stopped sandbox has no logs: they
// went with its Pod.
func (r *Runtime) Logs(ctx context.Context, user string, opts sandbox.LogOptions) (io.ReadCloser, error) {
	if err := r.informers.ready(ctx); err != nil {
		return nil, fmt.Errorf("logs of sandbox %s: %w", user, err)
	}
	svc, pod := r.informers.user(user)
	if svc == nil && pod == nil {
		return nil, fmt.Errorf("logs of sandbox %s: %w", user, sandbox.ErrNotFound)
	}
	if pod == nil {
		return nil, sandbox.Hintf(nil, "start it to see new output", "the sandbox of %s is stopped: Kubernetes keeps no logs of a deleted Pod", user)
	}
	lo := &corev1.PodLogOptions{Container: containerName, Follow: opts.Follow}
	if opts.Tail > 0 {
		lo.TailLines = ptr(int64(opts.Tail))
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == containerName && cs.State.Running == nil && cs.RestartCount > 0 && !opts.Follow {
			lo.Previous = true
		}
	}
	for _, cs := range pod.Status.InitContainerStatuses {
		if cs.Name == initName && cs.State.Terminated == nil && cs.RestartCount > 0 ||
			cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0 {
			lo.Container, lo.Previous = initName, cs.State.Running == nil && !opts.Follow && cs.State.Terminated == nil
		}
	}
	var rc io.ReadCloser
	err := r.do(ctx, func() error {
		var err error
		rc, err = r.cs.CoreV1().Pods(r.ns).GetLogs(pod.Name, lo).Stream(ctx)
		return err
	})
	if err != nil {
		return nil, r.apiErr("get", "pods/log", pod.Name, err)
	}
	return rc, nil
}
