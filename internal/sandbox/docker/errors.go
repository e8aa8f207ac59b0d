package docker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/sandbox"
)

// unreachable turns a failed connection into an error that says how to start
// the engine (or get access to it).
func (r *Runtime) unreachable(err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("docker at %s: %w", r.host, err)
	}
	if strings.Contains(strings.ToLower(err.Error()), "permission denied") {
		return &sandbox.UserError{
			Msg:  fmt.Sprintf("permission denied on the Docker socket %s", r.host),
			Hint: "add your user to the docker group: sudo usermod -aG docker $USER, then log out and in again (or run THON as root)",
			Err:  err,
		}
	}
	msg := fmt.Sprintf("Docker is not reachable at %s", r.host)
	if errors.Is(err, context.DeadlineExceeded) {
		msg = fmt.Sprintf("Docker at %s did not answer in time", r.host)
	}
	return &sandbox.UserError{
		Msg:  msg,
		Hint: "start Docker: sudo systemctl start docker (or: sudo dockerd &)",
		Err:  err,
	}
}

// wrap adds "{op} sandbox {user}: " to err, keeping user-facing errors as
// they are and turning connection failures into one.
func (r *Runtime) wrap(op, user string, err error) error {
	return r.wrapOp(op, "sandbox "+user, err)
}

func (r *Runtime) wrapOp(op, what string, err error) error {
	if err == nil {
		return nil
	}
	var ue *sandbox.UserError
	if errors.As(err, &ue) {
		return err
	}
	if client.IsErrConnectionFailed(err) {
		return r.unreachable(err)
	}
	return fmt.Errorf("%s %s: %w", op, what, err)
}

// containerErr wraps the error of a call on the user's container: the
// engine's "no such container" (removed meanwhile) becomes ErrNotFound.
func (r *Runtime) containerErr(op, user string, err error) error {
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("%s sandbox %s: %w", op, user, sandbox.ErrNotFound)
	}
	return r.wrap(op, user, err)
}
