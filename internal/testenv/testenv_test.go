package testenv

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

func TestModuleRoot(t *testing.T) {
	root := ModuleRoot(t)
	if _, err := os.Stat(filepath.Join(root, "test", "sandboxd", "main.go")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
}

func TestSandboxImage(t *testing.T) {
	ref := SandboxImage(t)
	if again := SandboxImage(t); again != ref {
		t.Fatalf("second call: %s, want %s", again, ref)
	}
	if !strings.HasPrefix(ref, SandboxRepo+":") {
		t.Fatalf("ref %s", ref)
	}
	cli := Docker(t)
	img, err := cli.ImageInspect(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(img.Config.Entrypoint, []string{"/sandboxd"}) {
		t.Fatalf("entrypoint %v", img.Config.Entrypoint)
	}
	nr := SandboxImageNonRoot(t)
	img, err = cli.ImageInspect(t.Context(), nr)
	if err != nil {
		t.Fatal(err)
	}
	if img.Config.User != "1000:1000" {
		t.Fatalf("non-root image user %q", img.Config.User)
	}
}

func TestCleanup(t *testing.T) {
	cli := Docker(t)
	ctx := t.Context()
	prefix := Prefix(t)
	keep := Prefix(t)
	t.Cleanup(func() { Cleanup(t, prefix); Cleanup(t, keep) })
	image := SandboxImage(t)

	for _, p := range []string{prefix, keep} {
		if _, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: p + "-c", Config: &container.Config{Image: image}}); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.VolumeCreate(ctx, client.VolumeCreateOptions{Name: p + "-v"}); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.NetworkCreate(ctx, p+"-n", client.NetworkCreateOptions{Driver: "bridge"}); err != nil {
			t.Fatal(err)
		}
	}
	Cleanup(t, prefix)

	exists := func(ctx context.Context, p string) [3]bool {
		_, cerr := cli.ContainerInspect(ctx, p+"-c", client.ContainerInspectOptions{})
		_, verr := cli.VolumeInspect(ctx, p+"-v", client.VolumeInspectOptions{})
		_, nerr := cli.NetworkInspect(ctx, p+"-n", client.NetworkInspectOptions{})
		for _, err := range []error{cerr, verr, nerr} {
			if err != nil && !cerrdefs.IsNotFound(err) {
				t.Fatal(err)
			}
		}
		return [3]bool{cerr == nil, verr == nil, nerr == nil}
	}
	if got := exists(ctx, prefix); got != [3]bool{} {
		t.Fatalf("after Cleanup(%s): container, volume, network exist = %v", prefix, got)
	}
	if got := exists(ctx, keep); got != [3]bool{true, true, true} {
		t.Fatalf("Cleanup(%s) touched %s: exist = %v", prefix, keep, got)
	}
}
