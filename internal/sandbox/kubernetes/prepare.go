package kubernetes

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/thon-dev/thon/internal/sandbox"
)

// Prepare checks the cluster answers and readies what all sandboxes share:
// the namespace (made when missing and THON may), the storage class (volume
// mode: the configured one exists, or the cluster has a default) and the
// instance's NetworkPolicy. The image cannot be checked: nodes pull it.
func (r *Runtime) Prepare(ctx context.Context, spec sandbox.Spec) error {
	if err := r.validateSpec(spec); err != nil {
		return err
	}
	if err := r.Ping(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	done := r.preparedNet
	r.mu.Unlock()
	if !done {
		if err := r.ensureNamespace(ctx); err != nil {
			return err
		}
		if err := r.ensurePolicy(ctx); err != nil {
			return err
		}
		r.mu.Lock()
		r.preparedNet = true
		r.mu.Unlock()
	}
	if workspaceMode(spec) == sandbox.WorkspaceVolume {
		return r.checkStorage(ctx)
	}
	return nil
}

// ensureNamespace makes the namespace when it is missing. Without the right
// to read namespaces (a Role limited to the namespace) it is taken to exist.
func (r *Runtime) ensureNamespace(ctx context.Context) error {
	err := r.do(ctx, func() error {
		_, err := r.cs.CoreV1().Namespaces().Get(ctx, r.ns, metav1.GetOptions{})
		return err
	})
	switch {
	case err == nil, apierrors.IsForbidden(err):
		return nil
	case !apierrors.IsNotFound(err):
		return r.apiErr("get", "namespaces", r.ns, err)
	}
	err = r.do(ctx, func() error {
		_, err := r.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: r.ns, Labels: map[string]string{"app.kubernetes.io/managed-by": "thon"},
		}}, metav1.CreateOptions{})
		return err
	})
	switch {
	case err == nil, apierrors.IsAlreadyExists(err):
		return nil
	case apierrors.IsForbidden(err):
		return &sandbox.UserError{
			Msg:  fmt.Sprintf("the namespace %s does not exist and THON may not create it", r.ns),
			Hint: fmt.Sprintf("create it: kubectl create namespace %s (or set sandbox.kubernetes.namespace to an existing one)", r.ns),
			Err:  err,
		}
	}
	return r.apiErr("create", "namespaces", r.ns, err)
}

// ensurePolicy creates or updates the instance's NetworkPolicy.
func (r *Runtime) ensurePolicy(ctx context.Context) error {
	want := r.policyFor()
	for attempt := 0; ; attempt++ {
		var cur *networkingv1.NetworkPolicy
		err := r.do(ctx, func() error {
			var err error
			cur, err = r.cs.NetworkingV1().NetworkPolicies(r.ns).Get(ctx, want.Name, metav1.GetOptions{})
			return err
		})
		switch {
		case apierrors.IsNotFound(err):
			err = r.do(ctx, func() error {
				_, err := r.cs.NetworkingV1().NetworkPolicies(r.ns).Create(ctx, want, metav1.CreateOptions{})
				return err
			})
			if apierrors.IsAlreadyExists(err) && attempt < 3 {
				continue
			}
			return r.apiErr("create", "networkpolicies", want.Name, err)
		case err != nil:
			return r.apiErr("get", "networkpolicies", want.Name, err)
		}
		if apiequality.Semantic.DeepEqual(cur.Spec, want.Spec) && cur.Labels[LabelInstance] == r.instance {
			return nil
		}
		next := cur.DeepCopy()
		next.Spec = want.Spec
		if next.Labels == nil {
			next.Labels = map[string]string{}
		}
		next.Labels[LabelInstance] = r.instance
		err = r.do(ctx, func() error {
			_, err := r.cs.NetworkingV1().NetworkPolicies(r.ns).Update(ctx, next, metav1.UpdateOptions{})
			return err
		})
		if apierrors.IsConflict(err) && attempt < 3 {
			continue
		}
		return r.apiErr("update", "networkpolicies", want.Name, err)
	}
}

// checkStorage checks, once, that workspace PVCs can be provisioned: the
// configured storage class exists, or the cluster has a default one. Without
// the right to read storage classes (cluster-wide) the check is skipped.
func (r *Runtime) checkStorage(ctx context.Context) error {
	r.mu.Lock()
	ok := r.storageOK
	r.mu.Unlock()
	if ok {
		return nil
	}
	var names []string
	var def string
	err := r.do(ctx, func() error {
		list, err := r.cs.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		names, def = nil, ""
		for _, sc := range list.Items {
			names = append(names, sc.Name)
			a := sc.Annotations
			if a["storageclass.kubernetes.io/is-default-class"] == "true" || a["storageclass.beta.kubernetes.io/is-default-class"] == "true" {
				def = sc.Name
			}
		}
		return nil
	})
	switch {
	case apierrors.IsForbidden(err):
		// Cannot tell: a PVC that cannot be provisioned stays Pending.
	case err != nil:
		return r.apiErr("list", "storageclasses", "", err)
	case r.class != "" && !slices.Contains(names, r.class):
		slices.Sort(names)
		have := "the cluster has none"
		if len(names) > 0 {
			have = "the cluster has: " + strings.Join(names, ", ")
		}
		return &sandbox.UserError{
			Msg:  fmt.Sprintf("the storage class %s for the workspace PersistentVolumeClaims does not exist (%s)", r.class, have),
			Hint: "set sandbox.kubernetes.storage_class to one of them, or leave it empty for the cluster's default",
		}
	case r.class == "" && def == "":
		slices.Sort(names)
		have := "it has none"
		if len(names) > 0 {
			have = "it has: " + strings.Join(names, ", ")
		}
		return &sandbox.UserError{
			Msg:  fmt.Sprintf("the cluster has no default storage class for the workspace PersistentVolumeClaims (%s)", have),
			Hint: "set sandbox.kubernetes.storage_class, or use workspace mode ephemeral",
		}
	}
	r.mu.Lock()
	r.storageOK = true
	r.mu.Unlock()
	return nil
}
