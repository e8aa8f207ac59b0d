package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/sandbox"
)

// engine is the Docker Engine API client, with the address for messages.
type engine struct {
	cli  *client.Client
	host string
}

// connect makes a client for host ("" = DOCKER_HOST or the default socket),
// negotiates the API version (so Docker 20.10, API 1.41, works) and checks
// that the engine answers.
func connect(ctx context.Context, host string) (*engine, error) {
	copts := []client.Opt{client.FromEnv}
	if host != "" {
		copts = append(copts, client.WithHost(host))
	}
	cli, err := client.New(copts...)
	if err != nil {
		return nil, sandbox.Hintf(err, "set DOCKER_HOST to an address such as unix:///var/run/docker.sock",
			"cannot use the Docker engine address: %v", err)
	}
	e := &engine{cli: cli, host: cli.DaemonHost()}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := cli.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		if strings.Contains(strings.ToLower(err.Error()), "permission denied") {
			return nil, sandbox.Hintf(err, "run as root (the offline build needs root anyway) or add your user to the docker group",
				"permission denied on the Docker socket %s", e.host)
		}
		return nil, sandbox.Hintf(err, "start Docker: sudo systemctl start docker (or: sudo dockerd &)",
			"Docker is not reachable at %s", e.host)
	}
	return e, nil
}

func (e *engine) Close() error { return e.cli.Close() }

// imageInfo is what Build needs to know about an image.
type imageInfo struct {
	ID     string
	Size   int64
	Labels map[string]string
}

// inspect returns the image ref, or ok=false when the engine has none.
func (e *engine) inspect(ctx context.Context, ref string) (imageInfo, bool, error) {
	r, err := e.cli.ImageInspect(ctx, ref)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return imageInfo{}, false, nil
		}
		return imageInfo{}, false, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	info := imageInfo{ID: r.ID, Size: r.Size}
	if r.Config != nil {
		info.Labels = r.Config.Labels
	}
	return info, true, nil
}

// pull pulls ref, writing the engine's messages to log.
func (e *engine) pull(ctx context.Context, ref string, log io.Writer) error {
	resp, err := e.cli.ImagePull(ctx, ref, client.ImagePullOptions{})
	if err != nil {
		return err
	}
	defer resp.Close()
	return readStream(resp, log)
}

// importRootfs imports the root file system tarball at path as ref.
func (e *engine) importRootfs(ctx context.Context, path, ref string, changes []string, log io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	resp, err := e.cli.ImageImport(ctx, client.ImageImportSource{Source: f, SourceName: "-"}, ref,
		client.ImageImportOptions{Message: "thon setup image", Changes: changes})
	if err != nil {
		return fmt.Errorf("import %s as %s: %w", path, ref, err)
	}
	defer resp.Close()
	if err := readStream(resp, log); err != nil {
		return fmt.Errorf("import %s as %s: %w", path, ref, err)
	}
	return nil
}

// build runs a classic-builder build of files (path → content; the
// executable ones listed in exec) tagged tag.
func (e *engine) build(ctx context.Context, files map[string][]byte, exec []string, tag string,
	args, labels map[string]string, log io.Writer) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	now := time.Unix(0, 0) // stable context: the builder's cache keys on content and metadata
	for _, name := range slices.Sorted(maps.Keys(files)) {
		for d := parentDir(name); d != "" && !dirs[d]; d = parentDir(d) {
			dirs[d] = true
		}
	}
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: now}); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		mode := int64(0o644)
		if slices.Contains(exec, name) {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode,
			Size: int64(len(files[name])), ModTime: now}); err != nil {
			return err
		}
		if _, err := tw.Write(files[name]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	bargs := map[string]*string{}
	for k, v := range args {
		bargs[k] = &v
	}
	resp, err := e.cli.ImageBuild(ctx, &buf, client.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  "Dockerfile",
		BuildArgs:   bargs,
		Labels:      labels,
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
	})
	if err != nil {
		return fmt.Errorf("build %s: %w", tag, err)
	}
	defer resp.Body.Close()
	if err := readStream(resp.Body, log); err != nil {
		return fmt.Errorf("build %s: %w", tag, err)
	}
	return nil
}

func parentDir(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return ""
}

// readStream copies the engine's JSON message stream to log as text and
// returns the first error message in it.
func readStream(r io.Reader, log io.Writer) error {
	dec := json.NewDecoder(r)
	for {
		var m jsonstream.Message
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read the engine's answer: %w", err)
		}
		if m.Error != nil {
			return errors.New(strings.TrimSpace(m.Error.Message))
		}
		switch {
		case m.Stream != "":
			io.WriteString(log, m.Stream)
		case m.Status != "" && m.Progress == nil:
			if m.ID != "" {
				fmt.Fprintf(log, "%s: %s\n", m.ID, m.Status)
			} else {
				fmt.Fprintln(log, m.Status)
			}
		}
	}
}

// runOnce runs cmd (as the entrypoint) in a new container of image as user,
// without network, and returns its output (stdout and stderr) and exit code.
// The container is removed afterwards.
func (e *engine) runOnce(ctx context.Context, image, user string, cmd []string) (string, int, error) {
	res, err := e.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config:     &container.Config{Image: image, User: user, Entrypoint: cmd, Cmd: []string{}},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err != nil {
		return "", -1, fmt.Errorf("create a container of %s: %w", image, err)
	}
	defer e.cli.ContainerRemove(context.WithoutCancel(ctx), res.ID, client.ContainerRemoveOptions{Force: true})
	wait := e.cli.ContainerWait(ctx, res.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := e.cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		return "", -1, fmt.Errorf("start a container of %s: %w", image, err)
	}
	code := -1
	select {
	case r := <-wait.Result:
		code = int(r.StatusCode)
	case err := <-wait.Error:
		return "", -1, fmt.Errorf("wait for the container of %s: %w", image, err)
	}
	logs, err := e.cli.ContainerLogs(ctx, res.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "", code, fmt.Errorf("read the output of the container of %s: %w", image, err)
	}
	defer logs.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, logs); err != nil {
		return out.String(), code, fmt.Errorf("read the output of the container of %s: %w", image, err)
	}
	return out.String(), code, nil
}

// bakeDir is where bakeExtensions copies the .vsix files and the script
// into the container (and removes them before the commit).
const bakeDir = "/tmp/thon-extensions"

// bakeExtensions installs exts on top of the image from: script (as
// install-extensions.sh DIR) runs as user in a container without network,
// with the files copied in beforehand, and the container is committed as
// to, with from's command. Only what the installation leaves (the
// extensions) is in the new layer: the .vsix files are removed first. It
// fails unless every extension is installed afterwards.
func (e *engine) bakeExtensions(ctx context.Context, from, to, user string, script []byte, exts []extension, log io.Writer) error {
	uid, gid := 0, 0
	fmt.Sscanf(user, "%d:%d", &uid, &gid)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	hdr := func(name string, mode int64, size int, typ byte) error {
		return tw.WriteHeader(&tar.Header{Typeflag: typ, Name: name, Mode: mode, Size: int64(size),
			Uid: uid, Gid: gid, ModTime: now, Format: tar.FormatPAX})
	}
	if err := hdr(strings.TrimPrefix(bakeDir, "/")+"/", 0o755, 0, tar.TypeDir); err != nil {
		return err
	}
	files := map[string][]byte{"install-extensions.sh": script}
	for _, x := range exts {
		files[x.File] = x.Data
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := hdr(strings.TrimPrefix(bakeDir, "/")+"/"+name, 0o644, len(files[name]), tar.TypeReg); err != nil {
			return err
		}
		if _, err := tw.Write(files[name]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}

	cmd := `sh ` + bakeDir + `/install-extensions.sh ` + bakeDir + `; rc=$?; rm -rf ` + bakeDir + `; exit $rc`
	res, err := e.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: from, User: user, Entrypoint: []string{"/bin/sh", "-c", cmd}, Cmd: []string{},
			WorkingDir: "/tmp"},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err != nil {
		return fmt.Errorf("create a container of %s: %w", from, err)
	}
	id := res.ID
	defer e.cli.ContainerRemove(context.WithoutCancel(ctx), id, client.ContainerRemoveOptions{Force: true})
	// The archive's owners are kept: the files are the user's.
	if _, err := e.cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: "/", Content: &buf}); err != nil {
		return fmt.Errorf("copy the extensions into a container of %s: %w", from, err)
	}
	wait := e.cli.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := e.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start a container of %s: %w", from, err)
	}
	code := -1
	select {
	case r := <-wait.Result:
		code = int(r.StatusCode)
	case err := <-wait.Error:
		return fmt.Errorf("wait for the container of %s: %w", from, err)
	}
	var out bytes.Buffer
	if logs, err := e.cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true}); err == nil {
		stdcopy.StdCopy(&out, &out, logs)
		logs.Close()
	}
	log.Write(out.Bytes())
	if code != 0 {
		return sandbox.Hintf(nil, "see the log; a .vsix that needs other extensions needs them baked in too",
			"installing the extensions failed (exit %d):\n%s", code, tailLines(out.String(), 12))
	}
	if missing := missingExtensions(out.String(), exts); len(missing) > 0 {
		return sandbox.Hintf(nil, "see the log for code-server's reason",
			"code-server did not install %s:\n%s", strings.Join(missing, ", "), tailLines(out.String(), 12))
	}
	// The installing container's command is not the image's.
	if _, err := e.cli.ContainerCommit(ctx, id, client.ContainerCommitOptions{
		Reference: to,
		Comment:   "thon setup image: " + extensionIDs(exts),
		Changes:   []string{"USER root", "WORKDIR /", "ENTRYPOINT []", `CMD ["/bin/bash"]`},
	}); err != nil {
		return fmt.Errorf("commit the extensions as %s: %w", to, err)
	}
	return nil
}

// missingExtensions are the exts that `code-server --list-extensions
// --show-versions` (in out) does not list.
func missingExtensions(out string, exts []extension) []string {
	listed := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		listed[strings.ToLower(strings.TrimSpace(line))] = true
	}
	var missing []string
	for _, x := range exts {
		if id := strings.ToLower(x.ID + "@" + x.Version); !listed[id] {
			missing = append(missing, x.ID+"@"+x.Version)
		}
	}
	return missing
}

// extensionIDs is exts for messages: id@version, comma-separated.
func extensionIDs(exts []extension) string {
	ids := make([]string, len(exts))
	for i, x := range exts {
		ids[i] = x.ID + "@" + x.Version
	}
	return strings.Join(ids, ", ")
}

// tailLines is the last n lines of s, indented.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}
