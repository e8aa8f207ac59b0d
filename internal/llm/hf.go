package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/thon-dev/thon/internal/config"
)

// Hugging Face, where thon llm pull downloads GGUF checkpoints for the
// llamacpp backend. HF_ENDPOINT points elsewhere (a mirror), HF_TOKEN
// authenticates (gated models), as with Hugging Face's own tools.
const defaultHFEndpoint = "https://huggingface.co"

// HFEndpoint is $HF_ENDPOINT or Hugging Face.
func HFEndpoint() string {
	if e := strings.TrimRight(os.Getenv("HF_ENDPOINT"), "/"); e != "" {
		return e
	}
	return defaultHFEndpoint
}

// checkpoint is ORG/REPO[:QUANT] or ORG/REPO/FILE.gguf.
type checkpoint struct {
	repo  string // ORG/REPO
	quant string // Q4_K_M…, "" when none
	file  string // a path in the repository, "" when none
}

func parseCheckpoint(s string) (checkpoint, error) {
	repo, quant, _ := strings.Cut(s, ":")
	parts := strings.SplitN(repo, "/", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return checkpoint{}, fmt.Errorf("checkpoint %q: write ORG/REPO[:QUANT], e.g. unsloth/Qwen3-Coder-30B-A3B-Instruct-GGUF:Q4_K_M", s)
	}
	c := checkpoint{repo: parts[0] + "/" + parts[1], quant: quant}
	if len(parts) == 3 {
		c.file = parts[2]
	}
	return c, nil
}

// pick chooses the GGUF files of the checkpoint among a repository's
// files: the one named, or the one whose name holds the quantization
// (every part of a split model), never a vision projector.
func (c checkpoint) pick(files []string) ([]string, error) {
	if c.file != "" {
		if slices.Contains(files, c.file) {
			return []string{c.file}, nil
		}
		return nil, fmt.Errorf("%s has no file %s", c.repo, c.file)
	}
	var cands []string
	quants := map[string]bool{}
	for _, f := range files {
		base := strings.ToLower(path.Base(f))
		if !strings.HasSuffix(base, ".gguf") || strings.Contains(base, "mmproj") {
			continue
		}
		if q := quantOf(base); q != "" {
			quants[q] = true
		}
		if c.quant == "" || strings.Contains(base, strings.ToLower(c.quant)) {
			cands = append(cands, f)
		}
	}
	slices.Sort(cands)
	// The parts of one split model count as one.
	groups := map[string][]string{}
	var keys []string
	for _, f := range cands {
		k := splitRE.ReplaceAllString(f, ".gguf")
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], f)
	}
	known := slices.Sorted(func(yield func(string) bool) {
		for q := range quants {
			if !yield(q) {
				return
			}
		}
	})
	switch {
	case len(keys) == 1:
		return groups[keys[0]], nil
	case len(keys) == 0 && c.quant != "":
		return nil, fmt.Errorf("%s has no GGUF file with %s in its name (it has: %s)", c.repo, c.quant, strings.Join(known, ", "))
	case len(keys) == 0:
		return nil, fmt.Errorf("%s has no GGUF file", c.repo)
	}
	return nil, fmt.Errorf("%s has %d GGUF models that match (%s): name one, e.g. %s:%s", c.repo, len(keys), strings.Join(keys, ", "), c.repo, firstOr(known, "Q4_K_M"))
}

func firstOr(l []string, def string) string {
	if len(l) > 0 {
		return l[0]
	}
	return def
}

// quantOf finds a quantization tag (Q4_K_M, Q8_0, BF16, IQ3_XXS…) in a
// file name.
func quantOf(base string) string {
	base = strings.TrimSuffix(splitRE.ReplaceAllString(base, ".gguf"), ".gguf")
	for _, sep := range []string{"-", "."} {
		if i := strings.LastIndex(base, sep); i >= 0 {
			q := strings.ToUpper(base[i+1:])
			if len(q) >= 2 && (q[0] == 'Q' || strings.HasPrefix(q, "IQ") || q == "F16" || q == "BF16" || q == "F32") {
				return q
			}
		}
	}
	return ""
}

// DownloadedFile is the model file of a downloaded checkpoint in
// modelsDir (the first part of a split model), or an error saying to pull it.
func DownloadedFile(modelsDir, cp string) (string, error) {
	c, err := parseCheckpoint(cp)
	if err != nil {
		return "", err
	}
	dir := config.CheckpointFileDir(modelsDir, cp)
	var files []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".gguf") {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	picked, err := c.pick(files)
	if err != nil {
		return "", fmt.Errorf("%s is not downloaded: thon llm pull", cp)
	}
	return filepath.Join(dir, filepath.FromSlash(picked[0])), nil
}

// hfFile is one file of a repository's tree.
type hfFile struct {
	Type string `json:"type"`
	Path string `json:"path"`
	Size int64  `json:"size"`
	LFS  *struct {
		Size int64 `json:"size"`
	} `json:"lfs"`
}

// Download fetches a checkpoint's GGUF files from Hugging Face into
// modelsDir/ORG/REPO, resuming a file a broken download left (.part), and
// reports progress. Files already complete are not fetched again.
func Download(ctx context.Context, hc *http.Client, endpoint, token, modelsDir, cp string, progress func(PullProgress)) (string, error) {
	c, err := parseCheckpoint(cp)
	if err != nil {
		return "", err
	}
	if hc == nil {
		hc = &http.Client{}
	}
	if progress == nil {
		progress = func(PullProgress) {}
	}
	list, err := hfTree(ctx, hc, endpoint, token, c.repo)
	if err != nil {
		return "", err
	}
	sizes := map[string]int64{}
	var names []string
	for _, f := range list {
		if f.Type != "file" {
			continue
		}
		size := f.Size
		if f.LFS != nil && f.LFS.Size > 0 {
			size = f.LFS.Size
		}
		sizes[f.Path] = size
		names = append(names, f.Path)
	}
	picked, err := c.pick(names)
	if err != nil {
		return "", err
	}
	dir := config.CheckpointFileDir(modelsDir, cp)
	var total, done int64
	for _, f := range picked {
		total += sizes[f]
	}
	for i, f := range picked {
		dest := filepath.Join(dir, filepath.FromSlash(f))
		if st, err := os.Stat(dest); err == nil && st.Size() == sizes[f] {
			done += sizes[f]
			progress(PullProgress{File: f, FileIndex: i + 1, TotalFiles: len(picked), BytesDone: done, BytesTotal: total, Percent: percent(done, total)})
			continue
		}
		base := done
		err := hfFetch(ctx, hc, endpoint, token, c.repo, f, dest, sizes[f], func(n int64) {
			done = base + n
			progress(PullProgress{File: f, FileIndex: i + 1, TotalFiles: len(picked), BytesDone: done, BytesTotal: total, Percent: percent(done, total)})
		})
		if err != nil {
			return "", err
		}
		done = base + sizes[f]
	}
	progress(PullProgress{TotalFiles: len(picked), BytesDone: total, BytesTotal: total, Percent: 100, Done: true})
	return filepath.Join(dir, filepath.FromSlash(picked[0])), nil
}

func percent(done, total int64) float64 {
	if total <= 0 {
		return 0
	}
	return float64(done) * 100 / float64(total)
}

func hfRequest(ctx context.Context, method, u, token string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "thon")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req, nil
}

func hfTree(ctx context.Context, hc *http.Client, endpoint, token, repo string) ([]hfFile, error) {
	u := endpoint + "/api/models/" + repo + "/tree/main?recursive=true"
	req, err := hfRequest(ctx, http.MethodGet, u, token)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot reach %s (%v): this machine needs the network to download models; or download the GGUF file yourself and set llm.chat_model.file", ErrUnreachable, endpoint, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%s has no model %s: check the checkpoint", endpoint, repo)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("%s refuses to list %s (%d): a gated model needs HF_TOKEN set to a token that may read it", endpoint, repo, resp.StatusCode)
	case resp.StatusCode/100 != 2:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s answered %d listing %s: %s", endpoint, resp.StatusCode, repo, strings.TrimSpace(string(b)))
	}
	var files []hfFile
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&files); err != nil {
		return nil, fmt.Errorf("%s answered the file list of %s with unexpected JSON: %v", endpoint, repo, err)
	}
	return files, nil
}

// hfFetch downloads one file into dest through dest.part, resuming it.
func hfFetch(ctx context.Context, hc *http.Client, endpoint, token, repo, file, dest string, size int64, progress func(int64)) error {
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dest), err)
	}
	part := dest + ".part"
	for attempt := 0; ; attempt++ {
		have := int64(0)
		if st, err := os.Stat(part); err == nil {
			have = st.Size()
		}
		err := hfFetchOnce(ctx, hc, endpoint, token, repo, file, part, have, progress)
		if err == nil {
			break
		}
		if ctx.Err() != nil || attempt >= 4 || errors.Is(err, errPermanent) {
			return fmt.Errorf("download %s: %w (run thon llm pull again: it resumes)", file, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt+1) * time.Second):
		}
	}
	if st, err := os.Stat(part); err != nil || (size > 0 && st.Size() != size) {
		got := int64(-1)
		if err == nil {
			got = st.Size()
		}
		os.Remove(part)
		return fmt.Errorf("download %s: got %d bytes, want %d; run thon llm pull again", file, got, size)
	}
	return os.Rename(part, dest)
}

var errPermanent = errors.New("not worth trying again")

func hfFetchOnce(ctx context.Context, hc *http.Client, endpoint, token, repo, file, part string, have int64, progress func(int64)) error {
	u := endpoint + "/" + repo + "/resolve/main/" + (&url.URL{Path: file}).EscapedPath()
	req, err := hfRequest(ctx, http.MethodGet, u, token)
	if err != nil {
		return err
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	flags := os.O_CREATE | os.O_WRONLY
	switch resp.StatusCode {
	case http.StatusPartialContent:
		flags |= os.O_APPEND
	case http.StatusOK:
		flags |= os.O_TRUNC
		have = 0
	case http.StatusRequestedRangeNotSatisfiable:
		return nil // complete already
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%w: %s refuses %s (%d): set HF_TOKEN", errPermanent, endpoint, file, resp.StatusCode)
	case http.StatusNotFound:
		return fmt.Errorf("%w: %s has no file %s", errPermanent, endpoint, file)
	default:
		return fmt.Errorf("%s answered %d for %s", endpoint, resp.StatusCode, file)
	}
	f, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return fmt.Errorf("%w: %v", errPermanent, err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	n := have
	last := time.Time{}
	for {
		k, rerr := resp.Body.Read(buf)
		if k > 0 {
			if _, err := f.Write(buf[:k]); err != nil {
				return fmt.Errorf("%w: write %s: %v", errPermanent, part, err)
			}
			n += int64(k)
			if time.Since(last) > 200*time.Millisecond {
				progress(n)
				last = time.Now()
			}
		}
		if rerr == io.EOF {
			progress(n)
			return f.Sync()
		}
		if rerr != nil {
			return rerr
		}
	}
}
