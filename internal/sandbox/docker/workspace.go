package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/sandbox"
)

// labelEphemeral marks the anonymous volume of an ephemeral workspace.
const labelEphemeral = "io.thon.ephemeral"

// workspaceUID owns a new bind-mounted workspace directory: the non-root user
// of the code-server image.
const workspaceUID = 1000

// workspaceMounts prepares spec's workspace and returns how to mount it at
// /workspace/{group}/{user}.
func (r *Runtime) workspaceMounts(ctx context.Context, spec sandbox.Spec) ([]mount.Mount, error) {
	target := spec.WorkspacePath()
	switch spec.Workspace {
	case sandbox.WorkspaceEphemeral:
		// An anonymous volume, removed with the container. Not the
		// container's own filesystem: a directory there is made by the
		// engine for root, and nothing could hand it to a non-root IDE.
		return []mount.Mount{{Type: mount.TypeVolume, Target: target, VolumeOptions: &mount.VolumeOptions{
			Labels: map[string]string{
				sandbox.LabelManaged: "true",
				LabelInstance:        r.prefix,
				sandbox.LabelUser:    spec.User,
				labelEphemeral:       "true",
			},
		}}}, nil
	case sandbox.WorkspaceBind:
		dir, err := bindDir(spec)
		if err != nil {
			return nil, err
		}
		return []mount.Mount{{Type: mount.TypeBind, Source: dir, Target: target}}, nil
	default: // volume, the default
		name, err := r.ensureVolume(ctx, spec.User)
		if err != nil {
			return nil, err
		}
		return []mount.Mount{{Type: mount.TypeVolume, Source: name, Target: target}}, nil
	}
}

// bindDir creates {WorkspaceDir}/{user} on this host (mode 0755; owned by
// uid 1000 when THON runs as root, so the IDE's non-root user can write).
// An existing directory is used as it is. The engine must run on this host
// for a bind mount to make sense.
func bindDir(spec sandbox.Spec) (string, error) {
	base, err := filepath.Abs(spec.WorkspaceDir)
	if err != nil {
		return "", fmt.Errorf("workspace directory %s: %w", spec.WorkspaceDir, err)
	}
	dir := filepath.Join(base, spec.User)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("workspace directory: %w", err)
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", sandbox.Hintf(err, "check the workspace directory setting and its permissions", "cannot create the workspace directory %s: %v", base, err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", sandbox.Hintf(err, "check the workspace directory setting and its permissions", "cannot create the workspace directory %s: %v", dir, err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, workspaceUID, workspaceUID); err != nil {
			return "", fmt.Errorf("workspace directory %s: %w", dir, err)
		}
	}
	return dir, nil
}

// ensureVolume creates the user's workspace volume unless it exists, and
// refuses a volume of that name THON does not manage.
func (r *Runtime) ensureVolume(ctx context.Context, user string) (string, error) {
	name := r.VolumeName(user)
	v, err := r.cli.VolumeInspect(ctx, name, client.VolumeInspectOptions{})
	switch {
	case err == nil:
		if err := r.checkVolume(name, user, v.Volume.Labels); err != nil {
			return "", err
		}
		return name, nil
	case !cerrdefs.IsNotFound(err):
		return "", fmt.Errorf("inspect volume %s: %w", name, err)
	}
	// Creating an existing volume returns it: a concurrent create is fine.
	res, err := r.cli.VolumeCreate(ctx, client.VolumeCreateOptions{
		Name:   name,
		Driver: "local",
		Labels: map[string]string{
			sandbox.LabelManaged: "true",
			LabelInstance:        r.prefix,
			sandbox.LabelUser:    user,
		},
	})
	if err != nil {
		return "", fmt.Errorf("create volume %s: %w", name, err)
	}
	if err := r.checkVolume(name, user, res.Volume.Labels); err != nil {
		return "", err
	}
	return name, nil
}

func (r *Runtime) checkVolume(name, user string, labels map[string]string) error {
	if labels[sandbox.LabelManaged] == "true" && labels[LabelInstance] == r.prefix && labels[sandbox.LabelUser] == user {
		return nil
	}
	return &sandbox.UserError{
		Msg:  fmt.Sprintf("a Docker volume named %s exists and THON does not manage it", name),
		Hint: fmt.Sprintf("remove it with: docker volume rm %s (check its files are not needed first), or give THON another name prefix", name),
	}
}

// removeVolume deletes the user's workspace volume; a missing one is fine.
func (r *Runtime) removeVolume(ctx context.Context, user string) error {
	name := r.VolumeName(user)
	v, err := r.cli.VolumeInspect(ctx, name, client.VolumeInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect volume %s: %w", name, err)
	}
	if err := r.checkVolume(name, user, v.Volume.Labels); err != nil {
		return err
	}
	if _, err := r.cli.VolumeRemove(ctx, name, client.VolumeRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		if cerrdefs.IsConflict(err) {
			return sandbox.Hintf(err, "remove the container using it first (docker ps -a --filter volume="+name+")",
				"volume %s is still in use", name)
		}
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	return nil
}

// ownWorkspace hands a workspace volume to the image's user when that user
// is not root. The engine makes a new volume (and the mount point) owned by
// root, so an IDE running as a normal user (code-server runs as "coder", uid
// 1000) could not write to its own workspace, and with no-new-privileges it
// cannot sudo. So a short-lived helper container of the same image runs, as
// root with only CAP_CHOWN and no network, "chown USER /w" on the volume's
// top directory (not its contents): the image needs a chown command, as
// every distribution image has. Bind-mounted host directories are left
// alone: bindDir prepared them.
func (r *Runtime) ownWorkspace(ctx context.Context, c container.InspectResponse, spec sandbox.Spec) error {
	if c.Config == nil || isRootUser(c.Config.User) {
		return nil
	}
	owner := c.Config.User
	var vol string
	for _, m := range c.Mounts {
		if m.Destination == spec.WorkspacePath() && m.Type == mount.TypeVolume {
			vol = m.Name
		}
	}
	if vol == "" {
		return nil
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	name := r.prefix + "-wsinit-" + spec.User + "-" + hex.EncodeToString(suffix[:])
	res, err := r.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{
			Image:      spec.Image,
			User:       "0:0",
			Entrypoint: []string{"chown", owner, "/w"},
			WorkingDir: "/",
			// Not io.thon.managed: a helper is no sandbox.
			Labels: map[string]string{LabelInstance: r.prefix, labelHelper: "chown"},
		},
		HostConfig: &container.HostConfig{
			NetworkMode: "none",
			CapDrop:     []string{"ALL"},
			CapAdd:      []string{"CHOWN"},
			SecurityOpt: []string{"no-new-privileges:true"},
			Mounts:      []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: "/w"}},
		},
	})
	if err != nil {
		return fmt.Errorf("hand workspace to %s: create helper: %w", owner, err)
	}
	defer r.cli.ContainerRemove(context.WithoutCancel(ctx), res.ID, client.ContainerRemoveOptions{Force: true})
	if _, err := r.cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("hand workspace to %s: start helper: %w", owner, err)
	}
	wait := r.cli.ContainerWait(ctx, res.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	var code int64
	select {
	case w := <-wait.Result:
		code = w.StatusCode
	case err := <-wait.Error:
		return fmt.Errorf("hand workspace to %s: wait for helper: %w", owner, err)
	}
	if code == 0 {
		return nil
	}
	out := ""
	if rc, err := r.cli.ContainerLogs(ctx, res.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true}); err == nil {
		var buf bytes.Buffer
		_, _ = stdcopy.StdCopy(&buf, &buf, io.LimitReader(rc, 4096))
		rc.Close()
		out = strings.TrimSpace(buf.String())
	}
	return sandbox.Hintf(nil, "the sandbox image needs a chown command (or should run as root and drop privileges itself)",
		"cannot hand the workspace volume %s to the image's user %s: chown exited with code %d: %s", vol, owner, code, out)
}

// labelHelper marks short-lived helper containers (not sandboxes).
const labelHelper = "io.thon.helper"

// isRootUser: the container user ("name", "uid", "name:group", ...) is root.
func isRootUser(u string) bool {
	name, _, _ := strings.Cut(u, ":")
	return name == "" || name == "0" || name == "root"
}
