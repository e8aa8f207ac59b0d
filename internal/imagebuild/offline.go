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

// offlineImage is what the offline pipeline makes one image from. Every
// image THON builds offline (the participant image, the LLM server image)
// goes through the same steps with its own offlineImage: debootstrap of
// suite from mirror, provision run in a chroot of it, the tree packed as a
// tarball cached under rootKey, imported into the engine as
// baseRepo:rootKey, finished by a local build of files FROM that import and
// labelled key, then what it replaced is tidied away.
type offlineImage struct {
	name    string // "the participant image": in messages
	command string // "thon setup image": in the log and in hints

	tag, cacheDir, mirror, suite string
	rebuild                      bool
	log                          io.Writer

	baseRepo  string // the imported root file systems: baseRepo:<rootKey>
	tarPrefix string // the cached tarballs: <cacheDir>/<tarPrefix><rootKey>.tar
	rootKey   string
	provision []byte       // the script run in the chroot, as root
	env       []string     // its environment, besides PATH, HOME, LC_ALL and the proxies
	caches    []cacheMount // cache directories mounted in the chroot besides apt's archives
	// prepare, when set, runs before the script: it may write files into
	// the root file system and returns more environment for the script.
	prepare     func(root string) ([]string, error)
	installStep string // the provisioning step, as progress shows it
	installHint string // what to check when provisioning fails
	// importChanges are the Dockerfile instructions the import applies (its
	// LABEL of the root key is added).
	importChanges []string
	// extensions, when there are any, are installed on top of the imported
	// base by bakeScript (run as bakeUser in a container without network)
	// and committed as <baseRef>-x<extensionsKey>, the finishing build's FROM.
	extensions []extension
	bakeScript []byte
	bakeUser   string

	key   string            // the finished image's LabelKey
	files map[string][]byte // the finishing build's context; "Dockerfile" is the finishing Dockerfile
	exec  []string          // the executable files among them
	args  map[string]string // its build arguments; BASE and IMAGE_KEY are added
	// baseArgs, when set, reads more build arguments from the imported
	// base (the llama-server version of the LLM image).
	baseArgs func(ctx context.Context, eng *engine, baseRef string, log io.Writer) (map[string]string, error)
	describe string // the build log's first line
}

// cacheMount is a directory of the cache (dir, relative to it) mounted at
// target in the root file system while it is provisioned.
type cacheMount struct{ dir, target string }

// cache is the layout of a cache directory.
type cache struct {
	dir    string
	prefix string // of the root file system tarballs
}

func (c cache) debs() string                 { return filepath.Join(c.dir, "debootstrap") } // debootstrap's .debs
func (c cache) apt() string                  { return filepath.Join(c.dir, "apt") }         // apt's archives
func (c cache) work() string                 { return filepath.Join(c.dir, "work") }        // root file system being made
func (c cache) log() string                  { return filepath.Join(c.dir, "build.log") }
func (c cache) tarball(key string) string    { return filepath.Join(c.dir, c.prefix+key+".tar") }
func (c cache) rootfs() string               { return filepath.Join(c.work(), "rootfs") }
func (c cache) lockFile() string             { return filepath.Join(c.dir, ".lock") }
func (c cache) tmpTarball(key string) string { return c.tarball(key) + ".part" }

// upToDate reports the image tag when it carries key (and rebuild is off).
func upToDate(ctx context.Context, eng *engine, tag, key string, rebuild bool) (imageInfo, bool, error) {
	info, ok, err := eng.inspect(ctx, tag)
	if err != nil || !ok {
		return imageInfo{}, false, err
	}
	return info, !rebuild && info.Labels[LabelKey] == key, nil
}

// buildOffline makes img, or finds it up to date (cached). It returns the
// engine's view of the image.
func buildOffline(ctx context.Context, eng *engine, img offlineImage, progress Progress) (info imageInfo, cached bool, err error) {
	total := 7
	if len(img.extensions) > 0 {
		total++ // install the extensions
	}
	baseRef := img.baseRepo + ":" + img.rootKey
	c := cache{dir: filepath.Clean(img.cacheDir), prefix: img.tarPrefix}

	progress("check the image "+img.tag, 0, total)
	if info, ok, err := upToDate(ctx, eng, img.tag, img.key, img.rebuild); err != nil || ok {
		if ok {
			progress("image "+img.tag+" is up to date", total, total)
		}
		return info, ok, err
	}
	// Even with the root file system cached, the cache (root's) is written.
	if os.Geteuid() != 0 {
		return imageInfo{}, false, sandbox.Hintf(nil, "run it as root, e.g. sudo "+img.command,
			"%s is not up to date, and building %s offline needs root (debootstrap, chroot, bind mounts and the cache %s)",
			img.tag, img.name, c.dir)
	}

	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return imageInfo{}, false, sandbox.Hintf(err, "pick a writable cache directory (or run as root)",
			"cannot create the image cache %s: %v", c.dir, err)
	}
	// Mount points show up resolved in /proc/self/mountinfo: resolve too,
	// or a left-over mount could go unnoticed before a delete.
	if real, err := filepath.EvalSymlinks(c.dir); err == nil {
		c.dir = real
	}
	unlock, err := lockDir(ctx, c.lockFile(), img.log)
	if err != nil {
		return imageInfo{}, false, err
	}
	defer unlock()
	// Another build (another process) may have made it while this one
	// waited for the lock.
	old, ok, err := upToDate(ctx, eng, img.tag, img.key, img.rebuild)
	if err != nil || ok {
		if ok {
			progress("image "+img.tag+" is up to date (another build made it)", total, total)
		}
		return old, ok, err
	}
	haveOld := old.ID != ""

	logf, err := os.Create(c.log())
	if err != nil {
		return imageInfo{}, false, fmt.Errorf("create %s: %w", c.log(), err)
	}
	defer logf.Close()
	log := io.MultiWriter(img.log, logf)
	t0, outer := time.Now(), progress
	progress = func(step string, done, total int) {
		fmt.Fprintf(logf, "%s [%d/%d] %s (at %s)\n", img.command, done, total, step, time.Since(t0).Round(time.Second))
		outer(step, done, total)
	}
	fmt.Fprintf(log, "%s: %s (key %s)\n", img.command, img.describe, img.key)

	_, haveBase, err := eng.inspect(ctx, baseRef)
	if err != nil {
		return imageInfo{}, false, err
	}
	haveBase = haveBase && !img.rebuild
	_, statErr := os.Stat(c.tarball(img.rootKey))
	haveTar := statErr == nil && !img.rebuild

	switch {
	case haveBase:
		progress("use the imported root file system "+baseRef, 4, total)
	case haveTar:
		progress("use the cached root file system "+c.tarball(img.rootKey), 4, total)
	default:
		if err := preflight(img); err != nil {
			return imageInfo{}, false, err
		}
		if err := makeRootfs(ctx, c, img, log, progress, total); err != nil {
			return imageInfo{}, false, err
		}
	}
	if !haveBase {
		progress("import the root file system as "+baseRef, 4, total)
		changes := append(slices.Clone(img.importChanges), "LABEL "+LabelKey+"="+img.rootKey)
		if err := eng.importRootfs(ctx, c.tarball(img.rootKey), baseRef, changes, log); err != nil {
			return imageInfo{}, false, err
		}
	}

	from, keep := baseRef, []string{baseRef}
	if len(img.extensions) > 0 {
		extRef := baseRef + "-x" + extensionsKey(img.extensions)
		_, haveExt, err := eng.inspect(ctx, extRef)
		if err != nil {
			return imageInfo{}, false, err
		}
		// A base imported again is another image: install on top of it.
		if haveExt && haveBase {
			progress(fmt.Sprintf("use the %d extensions installed before in %s", len(img.extensions), extRef), 5, total)
		} else {
			progress(fmt.Sprintf("install %d extensions (%s)", len(img.extensions), extensionIDs(img.extensions)), 5, total)
			if err := eng.bakeExtensions(ctx, baseRef, extRef, img.bakeUser, img.bakeScript, img.extensions, log); err != nil {
				return imageInfo{}, false, err
			}
		}
		from = extRef
		keep = append(keep, extRef)
	}

	progress("finish the image "+img.tag, total-2, total)
	args := map[string]string{"BASE": from, "IMAGE_KEY": img.key}
	for k, v := range img.args {
		args[k] = v
	}
	if img.baseArgs != nil {
		more, err := img.baseArgs(ctx, eng, baseRef, log)
		if err != nil {
			return imageInfo{}, false, err
		}
		for k, v := range more {
			args[k] = v
		}
	}
	if err := eng.build(ctx, img.files, img.exec, img.tag, args, nil, log); err != nil {
		return imageInfo{}, false, err
	}
	info, ok, err = eng.inspect(ctx, img.tag)
	if err != nil {
		return imageInfo{}, false, err
	}
	if !ok || info.Labels[LabelKey] != img.key {
		return imageInfo{}, false, fmt.Errorf("build %s: the engine's image does not carry the key %s afterwards", img.tag, img.key)
	}

	progress("remove what the new image replaces", total-1, total)
	tidy(ctx, eng, c, img.baseRepo, img.rootKey, keep, old.ID, haveOld && old.ID != info.ID, log)
	progress("built "+img.tag, total, total)
	return info, false, nil
}

// preflight checks the commands the offline build needs from the host (root
// is checked before).
func preflight(img offlineImage) error {
	var errs []error
	for _, t := range []struct{ cmd, pkg string }{
		{"debootstrap", "debootstrap"},
		{"chroot", "coreutils"},
		{"tar", "tar"},
	} {
		if _, err := exec.LookPath(t.cmd); err != nil {
			errs = append(errs, sandbox.Hintf(err, "install it: apt-get install "+t.pkg,
				"building %s offline needs the %s command", img.name, t.cmd))
		}
	}
	if _, err := exec.LookPath("debootstrap"); err == nil {
		dir := cmpOr(os.Getenv("DEBOOTSTRAP_DIR"), "/usr/share/debootstrap")
		if _, err := os.Stat(filepath.Join(dir, "scripts", img.suite)); err != nil {
			errs = append(errs, sandbox.Hintf(err,
				"install a debootstrap that knows it (Debian 12: apt-get install -t bookworm-backports debootstrap, or a current debootstrap .deb)",
				"this debootstrap cannot make Debian %q (no %s)", img.suite, filepath.Join(dir, "scripts", img.suite)))
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

// makeRootfs runs debootstrap and the provisioning script and packs the
// result as the cached tarball of img.rootKey.
func makeRootfs(ctx context.Context, c cache, img offlineImage, log io.Writer, progress Progress, total int) error {
	dirs := []string{c.debs(), c.apt(), c.work()}
	for _, m := range img.caches {
		dirs = append(dirs, filepath.Join(c.dir, m.dir))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	root := c.rootfs()
	if err := removeTree(root); err != nil {
		return err
	}

	progress(fmt.Sprintf("debootstrap Debian %s from %s", img.suite, mirrorName(img.mirror)), 1, total)
	args := []string{"--variant=minbase", "--cache-dir=" + c.debs()}
	if kr := "/usr/share/keyrings/debian-archive-keyring.gpg"; fileExists(kr) {
		args = append(args, "--keyring="+kr)
	}
	args = append(args, img.suite, root)
	if img.mirror != "" { // else debootstrap's own default
		args = append(args, img.mirror)
	}
	if err := run(ctx, log, c.log(), nil, "debootstrap", args...); err != nil {
		var ue *sandbox.UserError
		if errors.As(err, &ue) {
			return err
		}
		return debootstrapError(err, img)
	}

	progress(img.installStep, 2, total)
	if err := provisionRootfs(ctx, c, img, log); err != nil {
		return err
	}

	progress("pack the root file system", 3, total)
	part := c.tmpTarball(img.rootKey)
	err := run(ctx, log, c.log(), nil, "tar", "--numeric-owner", "--xattrs", "--xattrs-include=*",
		"--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "--exclude=./tmp/*",
		"-C", root, "-cf", part, ".")
	if err != nil {
		os.Remove(part)
		return fmt.Errorf("pack the root file system %s: %w", root, err)
	}
	if err := os.Rename(part, c.tarball(img.rootKey)); err != nil {
		return err
	}
	return removeTree(root)
}

// provisionRootfs runs the provisioning script in a chroot of the root file
// system, with /proc, /dev and the package caches mounted, and unmounts them
// afterwards.
func provisionRootfs(ctx context.Context, c cache, img offlineImage, log io.Writer) (err error) {
	root := c.rootfs()
	if err := writeInRoot(root, chrootScript, img.provision, 0o755); err != nil {
		return err
	}
	if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		if err := writeInRoot(root, "/etc/resolv.conf", b, 0o644); err != nil {
			return err
		}
	}
	env := append([]string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"LC_ALL=C.UTF-8",
	}, img.env...)
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	if img.prepare != nil {
		more, err := img.prepare(root)
		if err != nil {
			return err
		}
		env = append(env, more...)
	}

	type mnt struct {
		src, dst, fstype string
		flags            uintptr
	}
	mounts := []mnt{
		{"proc", "proc", "proc", syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC},
		{"/dev", "dev", "", syscall.MS_BIND},
		{"/dev/pts", "dev/pts", "", syscall.MS_BIND},
		{c.apt(), "var/cache/apt/archives", "", syscall.MS_BIND},
	}
	for _, m := range img.caches {
		mounts = append(mounts, mnt{filepath.Join(c.dir, m.dir), strings.TrimPrefix(m.target, "/"), "", syscall.MS_BIND})
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
		return sandbox.Hintf(err, img.installHint+", then run again: downloads so far are cached",
			"provisioning %s in the Debian %s root file system failed (%v)", img.name, img.suite, err)
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

func debootstrapError(err error, img offlineImage) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "signed by unknown key") || strings.Contains(msg, "NO_PUBKEY") ||
		strings.Contains(msg, "Release signed"):
		return sandbox.Hintf(err, "install a current keyring: apt-get install debian-archive-keyring (it must know Debian "+img.suite+")",
			"debootstrap cannot check the signature of Debian %s", img.suite)
	case strings.Contains(msg, "Failed getting release file") || strings.Contains(msg, "Couldn't download"):
		return sandbox.Hintf(err, "check the mirror URL and that this host reaches it (the mirror option; a proxy: set http_proxy)",
			"debootstrap cannot download Debian %s from %s", img.suite, mirrorName(img.mirror))
	}
	return sandbox.Hintf(err, "see the log for the cause, fix it and run again",
		"debootstrap of Debian %s from %s failed", img.suite, mirrorName(img.mirror))
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
// older imported bases (all tags of baseRepo but keep), and the previous
// image when nothing uses it. Errors are only logged: the build succeeded.
func tidy(ctx context.Context, eng *engine, c cache, baseRepo, rkey string, keep []string, oldID string, removeOld bool, log io.Writer) {
	removeOlderTarballs(c, rkey, log)
	list, err := eng.cli.ImageList(ctx, client.ImageListOptions{
		Filters: make(client.Filters).Add("reference", baseRepo),
	})
	if err == nil {
		for _, im := range list.Items {
			for _, tag := range im.RepoTags {
				if !slices.Contains(keep, tag) && strings.HasPrefix(tag, baseRepo+":") {
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

// removeOlderTarballs removes the cached root file systems of this kind of
// image (c.prefix) but rkey's; another kind's, in the same directory, stay.
func removeOlderTarballs(c cache, rkey string, log io.Writer) {
	olds, _ := filepath.Glob(filepath.Join(c.dir, c.prefix+"*.tar"))
	for _, f := range olds {
		if f != c.tarball(rkey) {
			fmt.Fprintf(log, "remove the older root file system %s\n", f)
			os.Remove(f)
		}
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
