package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
)

// exportItem is one participant's line in manifest.json.
type exportItem struct {
	User  string `json:"user"`
	Group string `json:"group"`
	// File is the archive's path under the output directory.
	File         string    `json:"file,omitempty"`
	Bytes        int64     `json:"bytes"`
	Files        int       `json:"files"`
	ContentBytes int64     `json:"content_bytes"`
	SHA256       string    `json:"sha256,omitempty"`
	Time         time.Time `json:"time"`
	Seconds      float64   `json:"seconds"`
	// Missing: the participant has no sandbox, so no workspace to export.
	Missing bool   `json:"missing,omitempty"`
	Error   string `json:"error,omitempty"`
}

type exportManifest struct {
	Time    time.Time    `json:"time"`
	Seconds float64      `json:"seconds"`
	Items   []exportItem `json:"items"`
}

func newExportCmd(e *env) *cobra.Command {
	var groups, users []string
	var out string
	var parallel int
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Download every participant's workspace: one {group}/{user}.tar.gz each and a manifest.json",
		Long: `Export downloads the participants' workspaces at the end of the event: one
DIR/{group}/{user}.tar.gz per participant, streamed from the engine (Docker's
archive API; a tar through exec on Kubernetes) and gzipped by the daemon, and
DIR/manifest.json saying, for each, the file, its bytes, the number of files in
it, its sha256 and when it was read.

Running and stopped sandboxes both work (on Kubernetes a stopped sandbox is
started for its export and stopped again). A participant without a sandbox has
no workspace: they are listed in the manifest as missing and the export goes
on. The daemon exports at most sandbox.concurrency workspaces at once; every
download is checked against the daemon's sha256, and an archive is written
under its name only once complete. The exit status is 1 when any export failed
(missing workspaces do not count).

Participants download their own workspace from their IDE's origin:
https://…/_thon/export.`,
		Example: `  thon export --out results
  thon export --group alpha --out alpha-work
  thon export --user alice --user bob`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, g := range groups {
				if err := config.ValidName("group", g); err != nil {
					return fmt.Errorf("--group: %w", err)
				}
			}
			for _, u := range users {
				if err := config.ValidName("user", u); err != nil {
					return fmt.Errorf("--user: %w", err)
				}
			}
			if parallel < 1 {
				return fmt.Errorf("--parallel %d: use 1 or more downloads at once", parallel)
			}
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			list, err := c.Sandboxes(cmd.Context(), groups, users)
			if err != nil {
				return err
			}
			if len(list.Items) == 0 {
				return errors.New("no participant matches: see thon status for who there is")
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return fmt.Errorf("--out %s: %w", out, err)
			}
			m, failed := runExport(cmd.Context(), e, c, list.Items, out, parallel)
			b, _ := json.MarshalIndent(m, "", "  ")
			if err := os.WriteFile(filepath.Join(out, "manifest.json"), append(b, '\n'), 0o644); err != nil {
				return err
			}
			var bytes int64
			missing := 0
			for _, it := range m.Items {
				bytes += it.Bytes
				if it.Missing {
					missing++
				}
			}
			fmt.Fprintf(e.stderr(), "Exported %d of %d workspaces (%s, %.1f MB/s) into %s in %.1fs; manifest: %s\n",
				len(m.Items)-missing-failed, len(m.Items), humanBytes(bytes), float64(bytes)/1e6/max(m.Seconds, 1e-3),
				out, m.Seconds, filepath.Join(out, "manifest.json"))
			if missing > 0 {
				fmt.Fprintf(e.stderr(), "%d without a sandbox, so without a workspace (missing in the manifest)\n", missing)
			}
			if failed > 0 {
				fmt.Fprintf(e.stderr(), "%d failed: see their errors above and in the manifest; run the export again for them with --user\n", failed)
				return ExitError{Code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&groups, "group", "g", nil, "only this group (repeatable)")
	cmd.Flags().StringArrayVarP(&users, "user", "u", nil, "only this participant (repeatable)")
	cmd.Flags().StringVar(&out, "out", "export", "directory to write {group}/{user}.tar.gz and manifest.json into")
	cmd.Flags().IntVar(&parallel, "parallel", 8, "downloads at once (the daemon still exports at most sandbox.concurrency at a time)")
	return cmd
}

// runExport downloads every participant's workspace, parallel at once,
// printing a line as each ends, and returns the manifest and how many failed.
func runExport(ctx context.Context, e *env, c *client.Client, items []client.Status, out string, parallel int) (exportManifest, int) {
	start := time.Now()
	m := exportManifest{Time: start.UTC(), Items: make([]exportItem, len(items))}
	var mu sync.Mutex
	var done, failed atomic.Int64
	width := len(fmt.Sprint(len(items)))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(parallel, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				it := exportOne(ctx, c, items[i], out)
				m.Items[i] = it
				n := done.Add(1)
				line := fmt.Sprintf("[%*d/%d] %s (%s): ", width, n, len(items), it.User, it.Group)
				switch {
				case it.Missing:
					line += "no sandbox, no workspace: " + it.Error
				case it.Error != "":
					failed.Add(1)
					line += "failed: " + it.Error
				default:
					line += fmt.Sprintf("%s, %d files, %.1fs → %s", humanBytes(it.Bytes), it.Files, it.Seconds, it.File)
				}
				mu.Lock()
				fmt.Fprintln(e.stderr(), line)
				mu.Unlock()
			}
		}()
	}
	for i := range items {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	m.Seconds = time.Since(start).Seconds()
	return m, int(failed.Load())
}

// exportOne downloads one workspace into out/{group}/{user}.tar.gz through
// a temporary name, renamed once the download checks out.
func exportOne(ctx context.Context, c *client.Client, s client.Status, out string) exportItem {
	it := exportItem{User: s.User, Group: s.Group, Time: time.Now().UTC()}
	begun := time.Now()
	rel := filepath.Join(s.Group, s.User+".tar.gz")
	dir := filepath.Join(out, s.Group)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		it.Error = err.Error()
		return it
	}
	f, err := os.CreateTemp(dir, "."+s.User+".*.part")
	if err != nil {
		it.Error = err.Error()
		return it
	}
	x, err := c.Export(ctx, s.User, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(out, rel))
	}
	if err != nil {
		os.Remove(f.Name())
		it.Missing = client.IsNotFound(err)
		it.Error = err.Error()
		it.Seconds = time.Since(begun).Seconds()
		return it
	}
	it.File, it.Bytes, it.Files, it.ContentBytes, it.SHA256 = rel, x.Bytes, x.Files, x.ContentBytes, x.SHA256
	if x.Group != "" {
		it.Group = x.Group
	}
	it.Seconds = time.Since(begun).Seconds()
	return it
}
