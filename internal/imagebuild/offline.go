package imagebuild

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/sandbox"
)

// Paths inside the root file system during provisioning.
const (
	chrootScript = "/tmp/thon-provision.sh"
	chrootCA     = "/tmp/thon-build-ca.crt"
)

// cache is the layout of Options.CacheDir.
type cache struct{ dir string }

func (c cache) debs() string                 { return filepath.Join(c.dir, "debootstrap") } // debootstrap's .debs
func (c cache) apt() string                  { return filepath.Join(c.dir, "apt") }         // apt's archives
func (c cache) npm() string                  { return filepath.Join(c.dir, "npm") }         // npm's cache
func (c cache) work() string                 { return filepath.Join(c.dir, "work") }        // root file system being made
func (c cache) log() string                  { return filepath.Join(c.dir, "build.log") }
func (c cache) tarball(key string) string    { return filepath.Join(c.dir, "rootfs-"+key+".tar") }
func (c cache) rootfs() string               { return filepath.Join(c.work(), "rootfs") }
func (c cache) lockFile() string             { return filepath.Join(c.dir, ".lock") }
func (c cache) tmpTarball(key string) string { return c.tarball(key) + ".part" }

// buildOffline builds the image from the Debian mirror and the npm registry.
func buildOffline(ctx context.Context, eng *engine, opts Options, progress Progress) (Result, error) {
	const total = 7
	provision := embedded("offline/provision.sh")
	rkey := rootfsKey(opts, provision)
	files := contextFiles("offline/Dockerfile.finish")
	fkey := finishKey(rkey, files, opts.ThonVersion)
	baseRef := BaseRepository + ":" + rkey
	res := Result{Image: opts.Tag, CodeServerVersion: opts.CodeServerVersion, Mode: ModeOffline}
	c := cache{dir: filepath.Clean(opts.CacheDir)}

	progress("check the image "+opts.Tag, 0, total)
	old, haveOld, err := eng.inspect(ctx, opts.Tag)
	if err != nil {
		return Result{}, err
	}
	if !opts.Rebuild && haveOld && old.Labels[LabelKey] == fkey {
		progress("image "+opts.Tag+" is up to date", total, total)
		res.ID, res.Size, res.Cached = old.ID, old.Size, true
		return res, nil
	}

	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return Result{}, sandbox.Hintf(err, "pick a writable cache directory (or run as root)",
			"cannot create the image cache %s: %v", c.dir, err)
	}
	// Mount points show up resolved in /proc/self/mountinfo: resolve too,
	// or a left-over mount could go unnoticed before a delete.
	if real, err := filepath.EvalSymlinks(c.dir); err == nil {
		c.dir = real
	}
	unlock, err := lockDir(ctx, c.lockFile(), opts.Log)
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	logf, err := os.Create(c.log())
	if err != nil {
		return Result{}, fmt.Errorf("create %s: %w", c.log(), err)
	}
	defer logf.Close()
	log := io.MultiWriter(opts.Log, logf)
	t0, outer := time.Now(), progress
	progress = func(step string, done, total int) {
		fmt.Fprintf(logf, "thon setup image [%d/%d] %s (at %s)\n", done, total, step, time.Since(t0).Round(time.Second))
		outer(step, done, total)
	}
	fmt.Fprintf(log, "thon setup image: %s, code-server %s, Debian %s from %s, npm from %s (key %s)\n",
		opts.Tag, opts.CodeServerVersion, opts.Suite, opts.Mirror, opts.NPMRegistry, fkey)

	_, haveBase, err := eng.inspect(ctx, baseRef)
	if err != nil {
		return Result{}, err
	}
	haveBase = haveBase && !opts.Rebuild
	_, statErr := os.Stat(c.tarball(rkey))
	haveTar := statErr == nil && !opts.Rebuild

	switch {
	case haveBase:
		progress("use the imported root file system "+baseRef, 4, total)
	case haveTar:
		progress("use the cached root file system "+c.tarball(rkey), 4, total)
	default:
		if err := preflight(opts); err != nil {
			return Result{}, err
		}
		if err := makeRootfs(ctx, c, opts, provision, rkey, log, progress, total); err != nil {
			return Result{}, err
		}
	}
	if !haveBase {
		progress("import the root file system as "+baseRef, 4, total)
		changes := []string{
			"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"LABEL " + LabelKey + "=" + rkey,
			`CMD ["/bin/bash"]`,
		}
		if err := eng.importRootfs(ctx, c.tarball(rkey), baseRef, changes, log); err != nil {
			return Result{}, err
		}
	}

	progress("finish the image "+opts.Tag, 5, total)
	args := map[string]string{
		"BASE":                baseRef,
		"THON_VERSION":        opts.ThonVersion,
		"CODE_SERVER_VERSION": opts.CodeServerVersion,
		"IMAGE_KEY":           fkey,
	}
	if err := eng.build(ctx, files, []string{"thon-entrypoint.sh"}, opts.Tag, args, nil, log); err != nil {
		return Result{}, err
	}
	info, ok, err := eng.inspect(ctx, opts.Tag)
	if err != nil {
		return Result{}, err
	}
	if !ok || info.Labels[LabelKey] != fkey {
		return Result{}, fmt.Errorf("build %s: the engine's image does not carry the key %s afterwards", opts.Tag, fkey)
	}

	progress("remove what the new image replaces", 6, total)
	tidy(ctx, eng, c, rkey, baseRef, old.ID, haveOld && old.ID != info.ID, log)
	progress("built "+opts.Tag, total, total)
	res.ID, res.Size = info.ID, info.Size
	return res, nil
}

// preflight checks what the offline build needs from the host.
func preflight(opts Options) error {
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, sandbox.Hintf(nil, "run it as root, e.g. sudo thon setup image --offline",
			"the offline image build needs root (debootstrap, chroot and bind mounts)"))
	}
	for _, t := range []struct{ cmd, pkg string }{
		{"debootstrap", "debootstrap"},
		{"chroot", "coreutils"},
		{"tar", "tar"},
	} {
		if _, err := exec.LookPath(t.cmd); err != nil {
			errs = append(errs, sandbox.Hintf(err, "install it: apt-get install "+t.pkg,
				"the offline image build needs the %s command", t.cmd))
		}
	}
	if _, err := exec.LookPath("debootstrap"); err == nil {
		dir := cmpOr(os.Getenv("DEBOOTSTRAP_DIR"), "/usr/share/debootstrap")
		if _, err := os.Stat(filepath.Join(dir, "scripts", opts.Suite)); err != nil {
			errs = append(errs, sandbox.Hintf(err,
				"install a debootstrap that knows it (Debian 12: apt-get install -t bookworm-backports debootstrap, or a current debootstrap .deb)",
				"this debootstrap cannot make Debian %q (no %s)", opts.Suite, filepath.Join(dir, "scripts", opts.Suite)))
		}
	}
	return errors.Join(errs...)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// makeRootfs runs debootstrap and provision.sh and packs the result as the
// cached tarball for rkey.
func makeRootfs(ctx context.Context, c cache, opts Options, provision []byte, rkey string,
	log io.Writer, progress Progress, total int) error {
	for _, d := range []string{c.debs(), c.apt(), c.npm(), c.work()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	root := c.rootfs()
	if err := removeTree(root); err != nil {
		return err
	}

	progress(fmt.Sprintf("debootstrap Debian %s from %s", opts.Suite, opts.Mirror), 1, total)
	args := []string{"--variant=minbase", "--cache-dir=" + c.debs()}
	if kr := "/usr/share/keyrings/debian-archive-keyring.gpg"; fileExists(kr) {
		args = append(args, "--keyring="+kr)
	}
	args = append(args, opts.Suite, root, opts.Mirror)
	if err := run(ctx, log, c.log(), nil, "debootstrap", args...); err != nil {
		var ue *sandbox.UserError
		if errors.As(err, &ue) {
			return err
		}
		return debootstrapError(err, opts)
	}

	progress(fmt.Sprintf("install Node.js and code-server %s (apt, npm, native modules)", opts.CodeServerVersion), 2, total)
	if err := provisionRootfs(ctx, c, opts, provision, log); err != nil {
		return err
	}

	progress("pack the root file system", 3, total)
	part := c.tmpTarball(rkey)
	err := run(ctx, log, c.log(), nil, "tar", "--numeric-owner", "--xattrs", "--xattrs-include=*",
		"--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "--exclude=./tmp/*",
		"-C", root, "-cf", part, ".")
	if err != nil {
		os.Remove(part)
		return fmt.Errorf("pack the root file system %s: %w", root, err)
	}
	if err := os.Rename(part, c.tarball(rkey)); err != nil {
		return err
	}
	return removeTree(root)
}

// provisionRootfs runs provision.sh in a chroot of the root file system, with
// /proc, /dev and the package caches mounted, and unmounts them afterwards.
func provisionRootfs(ctx context.Context, c cache, opts Options, provision []byte, log io.Writer) (err error) {
	root := c.rootfs()
	if err := writeInRoot(root, chrootScript, provision, 0o755); err != nil {
		return err
	}
	if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		if err := writeInRoot(root, "/etc/resolv.conf", b, 0o644); err != nil {
			return err
		}
	}
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"LC_ALL=C.UTF-8",
		"CODE_SERVER_VERSION=" + opts.CodeServerVersion,
		"NPM_VERSION=" + DefaultNPMVersion,
		"NPM_REGISTRY=" + opts.NPMRegistry,
	}
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	if ca := caFile(opts); ca != "" {
		b, err := os.ReadFile(ca)
		if err != nil {
			return sandbox.Hintf(err, "point the CA option at a readable PEM file", "cannot read the CA bundle %s", ca)
		}
		if err := writeInRoot(root, chrootCA, b, 0o644); err != nil {
			return err
		}
		env = append(env, "BUILD_CA_FILE="+chrootCA)
	}

	mounts := []struct {
		src, dst, fstype string
		flags            uintptr
	}{
		{"proc", "proc", "proc", syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC},
		{"/dev", "dev", "", syscall.MS_BIND},
		{"/dev/pts", "dev/pts", "", syscall.MS_BIND},
		{c.apt(), "var/cache/apt/archives", "", syscall.MS_BIND},
		{c.npm(), "root/.npm", "", syscall.MS_BIND},
	}
	defer func() {
		if uerr := unmountBelow(root); uerr != nil && err == nil {
			err = uerr
		}
	}()
	for _, m := range mounts {
		dst := filepath.Join(root, m.dst)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		if err := syscall.Mount(m.src, dst, m.fstype, m.flags, ""); err != nil {
			return sandbox.Hintf(err, "run as root on a host (or a privileged container) that allows mounts",
				"cannot mount %s on %s: %v", m.src, dst, err)
		}
	}
	err = run(ctx, log, c.log(), env, "chroot", root, "/bin/sh", chrootScript)
	if err != nil {
		return sandbox.Hintf(err,
			fmt.Sprintf("check that this host reaches the Debian mirror %s and the npm registry %s (a proxy: set HTTPS_PROXY; a TLS-inspecting one: its CA bundle as the CA option), then run again: downloads so far are cached", opts.Mirror, opts.NPMRegistry),
			"installing code-server %s in the Debian %s root file system failed (%v)", opts.CodeServerVersion, opts.Suite, err)
	}
	return nil
}

// writeInRoot writes the file at path inside the root file system root,
// replacing what is there. A symbolic link there (etc/resolv.conf often is
// one, pointing at an absolute path) is replaced, never followed out of the
// root into this host's files.
func writeInRoot(root, path string, data []byte, mode os.FileMode) error {
	p := filepath.Join(root, path)
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replace %s: %w", p, err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	return f.Close()
}

// caFile is the CA bundle npm trusts during the build ("" = none).
func caFile(opts Options) string {
	if opts.CAFile != "" {
		return opts.CAFile
	}
	for _, f := range []string{os.Getenv("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"} {
		if f != "" && fileExists(f) {
			return f
		}
	}
	return ""
}

func debootstrapError(err error, opts Options) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "signed by unknown key") || strings.Contains(msg, "NO_PUBKEY") ||
		strings.Contains(msg, "Release signed"):
		return sandbox.Hintf(err, "install a current keyring: apt-get install debian-archive-keyring (it must know Debian "+opts.Suite+")",
			"debootstrap cannot check the signature of Debian %s", opts.Suite)
	case strings.Contains(msg, "Failed getting release file") || strings.Contains(msg, "Couldn't download"):
		return sandbox.Hintf(err, "check the mirror URL and that this host reaches it (the mirror option; a proxy: set http_proxy)",
			"debootstrap cannot download Debian %s from %s", opts.Suite, opts.Mirror)
	}
	return sandbox.Hintf(err, "see the log for the cause, fix it and run again",
		"debootstrap of Debian %s from %s failed", opts.Suite, opts.Mirror)
}

// run runs name with args, its output to log; env nil keeps this process's
// environment. Its error carries the last lines of output and names the full
// log. Cancelling ctx kills the command's whole process group.
func run(ctx context.Context, log io.Writer, logPath string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	tail := &tailWriter{max: 12}
	cmd.Stdout = io.MultiWriter(log, tail)
	cmd.Stderr = cmd.Stdout
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	fmt.Fprintf(log, "+ %s %s\n", name, strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s: %w; last output:\n%s\n(full log: %s)", name, err, tail.String(), logPath)
	}
	return nil
}

// tailWriter keeps the last max lines written to it.
type tailWriter struct {
	mu    sync.Mutex
	max   int
	lines []string
	part  []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part = append(t.part, p...)
	for {
		i := bytes.IndexByte(t.part, '\n')
		if i < 0 {
			break
		}
		t.lines = append(t.lines, string(t.part[:i]))
		t.part = t.part[i+1:]
		if len(t.lines) > t.max {
			t.lines = t.lines[len(t.lines)-t.max:]
		}
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(t.part) > 0 {
		lines = append(slices.Clone(lines), string(t.part))
	}
	if len(lines) > t.max {
		lines = lines[len(lines)-t.max:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// mountsBelow lists the mount points strictly below dir, deepest first.
func mountsBelow(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	prefix := strings.TrimSuffix(filepath.Clean(dir), "/") + "/"
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if strings.HasPrefix(mp, prefix) && mp != prefix {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	// Deepest (longest) first; the same point mounted twice comes twice.
	slices.SortStableFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var n int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &n); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountBelow unmounts everything mounted below dir and fails if anything
// stays mounted.
func unmountBelow(dir string) error {
	for range 3 {
		mps, err := mountsBelow(dir)
		if err != nil {
			return fmt.Errorf("list mounts below %s: %w", dir, err)
		}
		if len(mps) == 0 {
			return nil
		}
		for _, mp := range mps {
			if err := syscall.Unmount(mp, 0); err != nil {
				_ = syscall.Unmount(mp, syscall.MNT_DETACH)
			}
		}
	}
	mps, err := mountsBelow(dir)
	if err == nil && len(mps) > 0 {
		err = fmt.Errorf("still mounted: %s", strings.Join(mps, ", "))
	}
	if err != nil {
		return sandbox.Hintf(err, "unmount them by hand (umount -l PATH), then run again",
			"cannot unmount below %s", dir)
	}
	return nil
}

// removeTree deletes a root file system, first unmounting anything a crashed
// earlier build left mounted in it, and never deleting through a mount.
func removeTree(dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unmountBelow(dir); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// lockDir takes an exclusive lock on path, waiting (until ctx ends) while
// another build holds it.
func lockDir(ctx context.Context, path string, log io.Writer) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open the cache lock %s: %w", path, err)
	}
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !told {
			fmt.Fprintf(log, "another image build holds %s; waiting for it\n", path)
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// tidy removes what the new image replaced: older root file system tarballs,
// older imported bases, and the previous image when nothing uses it. Errors
// are only logged: the build succeeded.
func tidy(ctx context.Context, eng *engine, c cache, rkey, baseRef, oldID string, removeOld bool, log io.Writer) {
	if olds, _ := filepath.Glob(filepath.Join(c.dir, "rootfs-*.tar")); len(olds) > 0 {
		for _, f := range olds {
			if f != c.tarball(rkey) {
				fmt.Fprintf(log, "remove the older root file system %s\n", f)
				os.Remove(f)
			}
		}
	}
	list, err := eng.cli.ImageList(ctx, client.ImageListOptions{
		Filters: make(client.Filters).Add("reference", BaseRepository),
	})
	if err == nil {
		for _, im := range list.Items {
			for _, tag := range im.RepoTags {
				if tag != baseRef && strings.HasPrefix(tag, BaseRepository+":") {
					fmt.Fprintf(log, "untag the older base %s\n", tag)
					_, _ = eng.cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{PruneChildren: true})
				}
			}
		}
	}
	if removeOld {
		removePrevious(ctx, eng, oldID, log)
	}
}

// removePrevious removes the image a build replaced, with its untagged
// parents (the finishing build's intermediate layers). It stays while a
// container uses it.
func removePrevious(ctx context.Context, eng *engine, id string, log io.Writer) {
	if id == "" {
		return
	}
	if _, err := eng.cli.ImageRemove(ctx, id, client.ImageRemoveOptions{PruneChildren: true}); err == nil {
		fmt.Fprintf(log, "removed the previous image %s\n", id)
	} else {
		fmt.Fprintf(log, "keep the previous image %s: %v\n", id, err)
	}
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
