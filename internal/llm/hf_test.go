package llm

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// hfServer speaks the part of Hugging Face's wire protocol THON uses: the
// repository tree API, and file downloads through /resolve/ with a
// redirect and Range requests. It breaks the first download of big.gguf
// half way, so a resume is needed.
type hfServer struct {
	*httptest.Server
	files  map[string][]byte
	broken atomic.Bool
	ranges atomic.Int32
	token  string
}

func newHFServer(t *testing.T, files map[string][]byte) *hfServer {
	h := &hfServer{files: files}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/models/{org}/{repo}/tree/main", func(w http.ResponseWriter, r *http.Request) {
		if h.token != "" && r.Header.Get("Authorization") != "Bearer "+h.token {
			http.Error(w, `{"error":"gated"}`, http.StatusUnauthorized)
			return
		}
		if r.PathValue("repo") != "Tiny-GGUF" {
			http.Error(w, `{"error":"Repository not found"}`, http.StatusNotFound)
			return
		}
		var list []map[string]any
		for name, data := range h.files {
			list = append(list, map[string]any{"type": "file", "path": name, "size": len(data), "lfs": map[string]any{"size": len(data)}})
		}
		list = append(list, map[string]any{"type": "directory", "path": "docs"})
		json.NewEncoder(w).Encode(list)
	})
	mux.HandleFunc("GET /org/{repo}/resolve/main/{file...}", func(w http.ResponseWriter, r *http.Request) {
		// Hugging Face redirects to its CDN.
		http.Redirect(w, r, "/cdn/"+r.PathValue("file"), http.StatusFound)
	})
	mux.HandleFunc("GET /cdn/{file...}", func(w http.ResponseWriter, r *http.Request) {
		data, ok := h.files[r.PathValue("file")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		start := 0
		if rg := r.Header.Get("Range"); rg != "" {
			h.ranges.Add(1)
			fmt.Sscanf(rg, "bytes=%d-", &start)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(data)-1, len(data)))
			w.Header().Set("Content-Length", strconv.Itoa(len(data)-start))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		}
		body := data[start:]
		if r.PathValue("file") == "big-Q4_K_M.gguf" && h.broken.CompareAndSwap(false, true) {
			w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // the connection breaks
		}
		w.Write(body)
	})
	h.Server = httptest.NewServer(mux)
	t.Cleanup(h.Close)
	return h
}

func TestDownloadCheckpoint(t *testing.T) {
	big := []byte("GGUF" + strings.Repeat("x", 3<<20))
	h := newHFServer(t, map[string][]byte{
		"big-Q4_K_M.gguf":        big,
		"big-Q8_0.gguf":          []byte("GGUF q8"),
		"mmproj-big-Q4_K_M.gguf": []byte("GGUF proj"),
		"README.md":              []byte("# tiny"),
	})
	dir := t.TempDir()
	var last PullProgress
	var reports int
	path, err := Download(context.Background(), nil, h.URL, "", dir, "org/Tiny-GGUF:Q4_K_M", func(p PullProgress) { last = p; reports++ })
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "org", "Tiny-GGUF", "big-Q4_K_M.gguf"); path != want {
		t.Fatalf("path %s, want %s", path, want)
	}
	got, _ := os.ReadFile(path)
	if string(got) != string(big) {
		t.Fatalf("the file has %d bytes, want %d", len(got), len(big))
	}
	if h.ranges.Load() == 0 {
		t.Fatal("the broken download was not resumed with a Range request")
	}
	if !last.Done || last.Percent != 100 || reports < 2 {
		t.Fatalf("progress: last %+v after %d reports", last, reports)
	}
	if _, err := os.Stat(path + ".part"); !os.IsNotExist(err) {
		t.Fatalf("a .part file is left: %v", err)
	}
	// DownloadedFile finds it; a second pull fetches nothing.
	if f, err := DownloadedFile(dir, "org/Tiny-GGUF:Q4_K_M"); err != nil || f != path {
		t.Fatalf("DownloadedFile: %s %v", f, err)
	}
	ranges := h.ranges.Load()
	if _, err := Download(context.Background(), nil, h.URL, "", dir, "org/Tiny-GGUF:Q4_K_M", nil); err != nil || h.ranges.Load() != ranges {
		t.Fatalf("second pull: %v", err)
	}

	// What the organizer gets wrong, said plainly.
	for cp, want := range map[string]string{
		"org/Tiny-GGUF:Q5_K_M": "has no GGUF file with Q5_K_M in its name (it has: Q4_K_M, Q8_0)",
		"org/Tiny-GGUF":        "has 2 GGUF models that match",
		"org/Missing-GGUF:Q4":  "has no model org/Missing-GGUF",
		"no-slash":             "write ORG/REPO[:QUANT]",
	} {
		if _, err := Download(context.Background(), nil, h.URL, "", t.TempDir(), cp, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", cp, err, want)
		}
	}
	if _, err := DownloadedFile(t.TempDir(), "org/Tiny-GGUF:Q4_K_M"); err == nil || !strings.Contains(err.Error(), "is not downloaded: thon llm pull") {
		t.Errorf("not downloaded: %v", err)
	}
	h.token = "secret"
	if _, err := Download(context.Background(), nil, h.URL, "", t.TempDir(), "org/Tiny-GGUF:Q8_0", nil); err == nil || !strings.Contains(err.Error(), "HF_TOKEN") {
		t.Errorf("gated without a token: %v", err)
	}
	if _, err := Download(context.Background(), nil, h.URL, "secret", t.TempDir(), "org/Tiny-GGUF:Q8_0", nil); err != nil {
		t.Errorf("gated with the token: %v", err)
	}
	if _, err := Download(context.Background(), nil, "http://127.0.0.1:1", "", t.TempDir(), "org/Tiny-GGUF:Q8_0", nil); err == nil || !strings.Contains(err.Error(), "needs the network") {
		t.Errorf("offline: %v", err)
	}
}

func TestPickSplitModels(t *testing.T) {
	c, _ := parseCheckpoint("org/Big-GGUF:Q4_K_M")
	files := []string{"Q4_K_M/big-Q4_K_M-00002-of-00002.gguf", "Q4_K_M/big-Q4_K_M-00001-of-00002.gguf", "Q8_0/big-Q8_0-00001-of-00003.gguf"}
	got, err := c.pick(files)
	if err != nil || len(got) != 2 || got[0] != "Q4_K_M/big-Q4_K_M-00001-of-00002.gguf" {
		t.Fatalf("pick: %v %v", got, err)
	}
}
