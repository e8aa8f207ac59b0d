package kubernetes

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"github.com/thon-dev/thon/internal/sandbox"
)

// writeBackoff retries a request the server asked to retry (429, conflicts,
// timeouts): about 12 s in all.
var writeBackoff = wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.3, Steps: 7}

// retriable: the server is busy or the object changed meanwhile; trying
// again (after a pause) can succeed.
func retriable(err error) bool {
	return apierrors.IsConflict(err) || apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) ||
		apierrors.IsTimeout(err) || apierrors.IsServiceUnavailable(err) ||
		(apierrors.IsInternalError(err) && suggestsDelay(err))
}

func suggestsDelay(err error) bool {
	_, ok := apierrors.SuggestsClientDelay(err)
	return ok
}

// do runs one API request with at most Concurrency in flight, retrying with
// backoff when the server says to.
func (r *Runtime) do(ctx context.Context, fn func() error) error {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-r.sem }()
	return retry.OnError(writeBackoff, func(err error) bool { return retriable(err) && ctx.Err() == nil }, fn)
}

var forbiddenUserRE = regexp.MustCompile(`User "([^"]+)"`)

// apiErr turns err from verb on resource name into an error that says what
// to fix: user-facing errors (sandbox.UserError) for an unreachable server,
// rejected credentials, a missing permission, an exhausted quota.
func (r *Runtime) apiErr(verb, resource, name string, err error) error {
	if err == nil {
		return nil
	}
	var ue *sandbox.UserError
	if errors.As(err, &ue) || errors.Is(err, sandbox.ErrNotFound) || errors.Is(err, sandbox.ErrExists) {
		return err
	}
	obj := resource
	if name != "" {
		obj += " " + name
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s %s: %w", verb, obj, err)
	}
	msg := apiMessage(err)
	switch {
	case apierrors.IsForbidden(err) && strings.Contains(msg, "exceeded quota"):
		return &sandbox.UserError{
			Msg:  fmt.Sprintf("cannot %s %s in namespace %s: a ResourceQuota is exhausted (%s)", verb, obj, r.ns, msg),
			Hint: fmt.Sprintf("raise the quota (kubectl -n %s describe resourcequota) or remove sandboxes", r.ns),
			Err:  err,
		}
	case apierrors.IsForbidden(err) && strings.Contains(msg, "must specify"):
		return &sandbox.UserError{
			Msg:  fmt.Sprintf("cannot %s %s in namespace %s: %s", verb, obj, r.ns, msg),
			Hint: "a ResourceQuota in the namespace requires these limits: set them in sandbox.limits",
			Err:  err,
		}
	case apierrors.IsForbidden(err) && strings.Contains(msg, "violates PodSecurity"):
		return &sandbox.UserError{
			Msg:  fmt.Sprintf("cannot %s %s in namespace %s: %s", verb, obj, r.ns, msg),
			Hint: "label the namespace for the \"restricted\" or \"baseline\" Pod Security level, which THON's sandboxes meet",
			Err:  err,
		}
	case apierrors.IsForbidden(err):
		who := "THON's ServiceAccount or user"
		if m := forbiddenUserRE.FindStringSubmatch(msg); m != nil {
			who = m[1]
		}
		res, _, _ := strings.Cut(resource, " ")
		return &sandbox.UserError{
			Msg: fmt.Sprintf("Kubernetes does not allow %s to %s %s in namespace %s (Forbidden)", who, verb, obj, r.ns),
			Hint: fmt.Sprintf("grant it verb %q on resource %q with a Role and RoleBinding in namespace %s (the ServiceAccount's Role needs it; see the permissions in THON's Kubernetes manifests)",
				verb, res, r.ns),
			Err: err,
		}
	case apierrors.IsUnauthorized(err):
		return &sandbox.UserError{
			Msg:  fmt.Sprintf("the Kubernetes API server %s rejected THON's credentials (from %s)", r.cfg.Host, r.source),
			Hint: "renew the token or certificate in the kubeconfig, or check the ServiceAccount",
			Err:  err,
		}
	case apierrors.IsNotFound(err) && strings.Contains(msg, "namespaces \""+r.ns+"\" not found"):
		return &sandbox.UserError{
			Msg:  fmt.Sprintf("cannot %s %s: the namespace %s does not exist", verb, obj, r.ns),
			Hint: fmt.Sprintf("create it (kubectl create namespace %s) or let THON prepare it", r.ns),
			Err:  err,
		}
	case apierrors.IsInvalid(err):
		return &sandbox.UserError{
			Msg:  fmt.Sprintf("Kubernetes rejected %s: %s", obj, msg),
			Hint: "check the sandbox settings (image, limits, node selector, tolerations)",
			Err:  err,
		}
	case isUnreachable(err):
		what := "is not reachable"
		if errors.Is(err, context.DeadlineExceeded) || apierrors.IsTimeout(err) {
			what = "did not answer in time"
		}
		return &sandbox.UserError{
			Msg:  fmt.Sprintf("the Kubernetes API server %s (from %s) %s: %v", r.cfg.Host, r.source, what, rootCause(err)),
			Hint: "check that the cluster is up and the kubeconfig's server address is right",
			Err:  err,
		}
	}
	return fmt.Errorf("%s %s: %w", verb, obj, err)
}

// apiMessage is the server's message for an API error.
func apiMessage(err error) string {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return se.Status().Message
	}
	return err.Error()
}

func isUnreachable(err error) bool {
	var ne net.Error
	var ue *url.Error
	var ce *x509.UnknownAuthorityError
	var he x509.HostnameError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) || errors.As(err, &ue) || errors.As(err, &ce) || errors.As(err, &he)
}

func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
