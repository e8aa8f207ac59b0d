package testenv

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/imagebuild"
)

var llmImage struct {
	once sync.Once
	ref  string
	err  error
}

// LLMImage returns the tag of THON's LLM server image (llama.cpp's
// llama-server from Debian, imagebuild.BuildLLM, what `thon setup llm`
// builds), building it when the engine does not have it up to date.
//
// Like the participant image in the end-to-end tests, it is built once per
// machine and kept between runs: the image stays in the engine (a later
// build whose key matches returns at once) and its root file system and
// packages in imagebuild.DefaultLLMCacheDir; test processes that ask at the
// same time wait for the one that builds (the cache's lock). The first build
// needs root, debootstrap and the Debian mirror, and takes a minute or a few.
// THON_TEST_LLM_IMAGE and THON_TEST_LLM_IMAGE_CACHE choose another tag and
// cache directory.
//
// It fails the test when the image cannot be built, saying why and what to
// do; it skips only with -short (the fast tier).
func LLMImage(t testing.TB) string {
	t.Helper()
	skipShort(t) // the image is built on, and run by, the Docker engine
	llmImage.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		llmImage.ref, llmImage.err = buildLLMImage(ctx, llmImageOptions(), func(format string, args ...any) {
			t.Logf(format, args...)
		})
	})
	if llmImage.err != nil {
		t.Fatal(llmImage.err)
	}
	return llmImage.ref
}

// llmImageOptions are the options of LLMImage's build.
func llmImageOptions() imagebuild.LLMOptions {
	return imagebuild.LLMOptions{
		Tag:      os.Getenv("THON_TEST_LLM_IMAGE"),
		CacheDir: os.Getenv("THON_TEST_LLM_IMAGE_CACHE"),
	}
}

// buildLLMImage builds (or finds) the LLM server image, logging its steps.
func buildLLMImage(ctx context.Context, opts imagebuild.LLMOptions, logf func(string, ...any)) (string, error) {
	t0 := time.Now()
	res, err := imagebuild.BuildLLM(ctx, opts, func(step string, done, total int) {
		logf("LLM image %6s [%d/%d] %s", time.Since(t0).Round(time.Second), done, total, step)
	})
	if err != nil {
		tag := cmpOr(opts.Tag, imagebuild.DefaultLLMTag)
		cache := cmpOr(opts.CacheDir, imagebuild.DefaultLLMCacheDir)
		return "", fmt.Errorf("testenv.LLMImage: cannot build THON's LLM server image %s as `sudo thon setup llm` does "+
			"(it needs root, the debootstrap package, Docker and the Debian mirror; full log: %s/build.log): %w",
			tag, cache, err)
	}
	logf("LLM server image %s: llama-server %s, %.0f MB, cached %v, %s",
		res.Image, res.LLMVersion, float64(res.Size)/1e6, res.Cached, res.Took.Round(time.Millisecond))
	return res.Image, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
