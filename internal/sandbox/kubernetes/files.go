package kubernetes

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/thon-dev/thon/internal/sandbox"
)

// Where the init container sees the Secret's files and the home overlays.
const (
	filesMount   = "/thon/files"
	overlayMount = "/thon/home"
	filesVolume  = "thon-files"
)

// filesScript writes the sandbox's files, run by the init container as the
// sandbox user: "$@" is a list of steps,
//
//	seed SRC DST        copy the image's directory SRC into the overlay DST
//	dir DIR             make DIR unless it exists (owned by us, mode 0755)
//	file SRC DST MODE   write SRC's bytes to DST and set MODE (octal)
//
// A home directory of the image that cannot be copied whole (files only root
// may read) is a warning, not a failure.
const filesScript = `set -eu
umask 022
while [ "$#" -gt 0 ]; do
	case "$1" in
	seed)
		if [ -d "$2" ]; then
			cp -a "$2/." "$3/" 2>/dev/null || echo "thon-files: warning: not all of the image's $2 could be copied" >&2
		fi
		shift 3 ;;
	dir)
		[ -d "$2" ] || mkdir "$2"
		shift 2 ;;
	file)
		rm -f "$3"
		cat "$2" >"$3"
		chmod "$4" "$3"
		shift 4 ;;
	*)
		echo "thon-files: unknown step $1" >&2
		exit 2 ;;
	esac
done
`

// filesPlan is how a Pod gets Spec.Files (see the package documentation).
type filesPlan struct {
	homes      []string           // home directories made overlays, in order
	steps      []string           // the init container's arguments
	items      []corev1.KeyToPath // the Secret's keys the Pod sees
	rootMounts []corev1.VolumeMount
}

// fileKey is the Secret key of the i-th file.
func fileKey(i int) string { return "f" + strconv.Itoa(i) }

// homeOf returns /home/NAME for a path inside a home directory, else "".
func homeOf(p string) string {
	parts := strings.Split(p, "/") // "", "home", NAME, …
	if len(parts) < 4 || parts[1] != "home" || parts[2] == "" {
		return ""
	}
	return "/home/" + parts[2]
}

// planFiles plans the volumes, mounts and init steps that put files in place.
func planFiles(files []sandbox.File) filesPlan {
	var p filesPlan
	overlay := map[string]string{} // home → its mount in the init container
	for _, f := range files {
		if h := homeOf(f.Path); h != "" && overlay[h] == "" {
			overlay[h] = overlayMount + "/" + strconv.Itoa(len(p.homes))
			p.homes = append(p.homes, h)
		}
	}
	for i, h := range p.homes {
		p.steps = append(p.steps, "seed", h, overlayMount+"/"+strconv.Itoa(i))
	}
	made := map[string]bool{}
	for i, f := range files {
		key := fileKey(i)
		h := homeOf(f.Path)
		if h == "" {
			// Outside a home directory: mounted read-only from the Secret.
			p.items = append(p.items, corev1.KeyToPath{Key: key, Path: key, Mode: ptr(int32(f.Mode & 0o7777))})
			p.rootMounts = append(p.rootMounts, corev1.VolumeMount{Name: filesVolume, MountPath: f.Path, SubPath: key, ReadOnly: true})
			continue
		}
		// Readable by the init container (group 1000 through fsGroup).
		p.items = append(p.items, corev1.KeyToPath{Key: key, Path: key, Mode: ptr(int32(0o440))})
		in := func(q string) string { return overlay[h] + strings.TrimPrefix(q, h) }
		for _, d := range sandbox.OwnedDirs(f.Path) {
			if d == h || made[d] {
				continue
			}
			made[d] = true
			p.steps = append(p.steps, "dir", in(d))
		}
		p.steps = append(p.steps, "file", path.Join(filesMount, key), in(f.Path), fmt.Sprintf("%o", f.Mode&0o7777))
	}
	return p
}

// apply adds the plan to a Pod spec whose first container is the sandbox.
func (p filesPlan) apply(ps *corev1.PodSpec, secret string, init corev1.Container) {
	if len(p.items) == 0 {
		return
	}
	ps.Volumes = append(ps.Volumes, corev1.Volume{Name: filesVolume, VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: secret, Items: p.items, DefaultMode: ptr(int32(0o440))},
	}})
	c := &ps.Containers[0]
	c.VolumeMounts = append(c.VolumeMounts, p.rootMounts...)
	if len(p.homes) == 0 {
		return
	}
	init.Name = initName
	init.Command = append([]string{"/bin/sh", "-c", filesScript, initName}, p.steps...)
	init.Args = nil
	init.Ports = nil
	init.ReadinessProbe = nil
	init.VolumeMounts = []corev1.VolumeMount{{Name: filesVolume, MountPath: filesMount, ReadOnly: true}}
	for i, h := range p.homes {
		vol := "thon-home-" + strconv.Itoa(i)
		ps.Volumes = append(ps.Volumes, corev1.Volume{Name: vol, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		init.VolumeMounts = append(init.VolumeMounts, corev1.VolumeMount{Name: vol, MountPath: overlayMount + "/" + strconv.Itoa(i)})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: vol, MountPath: h})
	}
	ps.InitContainers = append(ps.InitContainers, init)
	slices.SortStableFunc(c.VolumeMounts, func(a, b corev1.VolumeMount) int { return len(a.MountPath) - len(b.MountPath) })
}

func ptr[T any](v T) *T { return &v }
