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

	"github.com/thon-dev/thon/internal/imagebuild"
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

func TestLLMImage(t *testing.T) {
	ref := LLMImage(t)
	if again := LLMImage(t); again != ref {
		t.Fatalf("second call: %s, want %s", again, ref)
	}
	if want := cmpOr(os.Getenv("THON_TEST_LLM_IMAGE"), imagebuild.DefaultLLMTag); ref != want {
		t.Fatalf("ref %s, want %s", ref, want)
	}
	img, err := Docker(t).ImageInspect(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(img.Config.Entrypoint, []string{imagebuild.LLMEntrypoint}) || img.Config.User != imagebuild.LLMUser ||
		img.Config.Labels[imagebuild.LabelLLMVersion] == "" || img.Config.Labels[imagebuild.LabelKey] == "" {
		t.Fatalf("%s: entrypoint %v, user %q, labels %v", ref, img.Config.Entrypoint, img.Config.User, img.Config.Labels)
	}
}

func TestLLMImageFailsClearly(t *testing.T) {
	_, err := buildLLMImage(t.Context(), imagebuild.LLMOptions{Tag: "Not A Tag"}, t.Logf)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"testenv.LLMImage: cannot build", "sudo thon setup llm", "debootstrap", imagebuild.DefaultLLMCacheDir + "/build.log", `invalid image tag "Not A Tag"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
