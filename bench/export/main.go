// Command export measures `thon export` — every participant's workspace
// streamed from Docker's archive API, gzipped, written as
// {group}/{user}.tar.gz with a manifest — against `docker cp` of the same
// workspaces out of the same containers, at the same parallelism, in the
// same run. It prints the wall times, MB/s of workspace content, and the
// ratio.
//
// The workspaces are filled through each sandbox's test IDE (PUT /files)
// with text that compresses like source code (words from a small
// vocabulary, about 3:1 with gzip's fastest level). It is a report: it
// exits 0 whatever the ratio, non-zero only when something failed to run.
//
//	go run ./bench/export                 # -n 100 -mb 20
//	go run ./bench/export -n 20 -mb 20    # quicker
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/bench/internal/benchkit"
	thon "github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/daemon"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/testenv"
)

type options struct {
	n, mb, files, parallel, rounds int
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 100, "participants (sandboxes)")
	flag.IntVar(&o.mb, "mb", 20, "MB of files in each workspace")
	flag.IntVar(&o.files, "files", 20, "files in each workspace")
	flag.IntVar(&o.parallel, "parallel", 4, "exports at once: sandbox.concurrency and thon export --parallel; docker cp processes at once")
	flag.IntVar(&o.rounds, "rounds", 2, "rounds; odd ones run docker cp first, even ones thon export")
	flag.Parse()
	if o.n < 1 || o.mb < 1 || o.files < 1 || o.parallel < 1 || o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "export: -n, -mb, -files, -parallel and -rounds must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "export:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) (err error) {
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("the baseline needs the docker CLI: %w", err)
	}
	root, err := testenv.FindModuleRoot()
	if err != nil {
		return err
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fmt.Errorf("Docker is not reachable: %w", err)
	}
	tmp, err := os.MkdirTemp("", "thon-bench-export-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	inst := "tbe" + benchkit.RandHex(4)
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if _, cerr := benchkit.CleanupPrefix(cctx, cli, inst); cerr != nil {
			fmt.Fprintf(os.Stderr, "cleanup of %s*: %v\n", inst, cerr)
			err = cmp.Or(err, cerr)
		}
	}()
	fmt.Fprintln(os.Stderr, "Building the test IDE image unless the engine has it, and thon...")
	image, err := testenv.BuildSandboxImage(ctx, cli)
	if err != nil {
		return fmt.Errorf("build the test IDE image: %w", err)
	}
	bin, err := benchkit.BuildThon(ctx, root, tmp)
	if err != nil {
		return err
	}

	port, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	dataDir := filepath.Join(tmp, "data")
	var y strings.Builder
	fmt.Fprintf(&y, "server:\n  data_dir: %s\n  listen: %s\nsandbox:\n  image: %s\n  port: 8080\n  health_path: /healthz\n  workspace: volume\n  concurrency: %d\n  limits: {cpu: 1, memory: 256Mi, pids: 256}\ngroups:\n", dataDir, listen, image, o.parallel)
	users := map[string][]string{}
	var groups []string
	for i := range o.n {
		g := fmt.Sprintf("group-%02d", i/25+1)
		if _, ok := users[g]; !ok {
			groups = append(groups, g)
		}
		users[g] = append(users[g], fmt.Sprintf("user-%03d", i+1))
	}
	for _, g := range groups {
		fmt.Fprintf(&y, "  %s: [%s]\n", g, strings.Join(users[g], ", "))
	}
	cfgPath := filepath.Join(tmp, "thon.yaml")
	if err := os.WriteFile(cfgPath, []byte(y.String()), 0o644); err != nil {
		return err
	}
	r := benchkit.Runner{Bin: bin, Dir: tmp, Env: append(os.Environ(), "THON_INSTANCE="+inst, "HOME="+tmp)}
	d, err := benchkit.StartDaemon(ctx, r, cfgPath, listen)
	if err != nil {
		return err
	}
	defer d.Stop()
	tok, err := os.ReadFile(filepath.Join(dataDir, daemon.TokenFile))
	if err != nil {
		return err
	}
	token := strings.TrimSpace(string(tok))
	fmt.Fprintf(os.Stderr, "Starting %d sandboxes (thon run)...\n", o.n)
	if _, err := r.OK(ctx, "run", "--config", cfgPath); err != nil {
		return err
	}
	c := thon.New(d.URL, token)
	list, err := c.Sandboxes(ctx, nil, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "Filling %d workspaces with %d MB each...\n", o.n, o.mb)
	content, err := fill(ctx, list.Items, o)
	if err != nil {
		return err
	}
	names, err := containerNames(ctx, inst)
	if err != nil {
		return err
	}

	fmt.Printf("export: %d workspaces of %d MB (%d files each, %.0f MB in all), %d at once, %d rounds; Docker, named volumes, the test IDE image\n\n",
		o.n, o.mb, o.files, float64(content)/1e6, o.parallel, o.rounds)
	var thonT, cpT []float64
	var gz int64
	for round := 1; round <= o.rounds; round++ {
		order := []string{"docker cp", "thon export"}
		if round%2 == 0 {
			order = []string{"thon export", "docker cp"}
		}
		for _, what := range order {
			out := filepath.Join(tmp, fmt.Sprintf("out-%d-%s", round, strings.ReplaceAll(what, " ", "-")))
			start := time.Now()
			if what == "thon export" {
				if _, err := r.OK(ctx, "export", "--server", d.URL, "--token", token, "--out", out, "--parallel", fmt.Sprint(o.parallel)); err != nil {
					return err
				}
				s := time.Since(start).Seconds()
				thonT = append(thonT, s)
				if gz, err = manifestBytes(out, o.n); err != nil {
					return err
				}
			} else {
				if err := dockerCp(ctx, list.Items, names, out, o.parallel); err != nil {
					return err
				}
				cpT = append(cpT, time.Since(start).Seconds())
			}
			fmt.Printf("round %d  %-12s %6.1f s  %6.1f MB/s\n", round, what, time.Since(start).Seconds(), float64(content)/1e6/time.Since(start).Seconds())
			os.RemoveAll(out)
		}
	}
	t, cp := benchkit.Median(thonT), benchkit.Median(cpT)
	fmt.Printf("\nmedian  thon export  %.1f s  %.1f MB/s of content  (%.0f MB of .tar.gz written, %.2f of the content)\n", t, float64(content)/1e6/t, float64(gz)/1e6, float64(gz)/float64(content))
	fmt.Printf("median  docker cp    %.1f s  %.1f MB/s of content  (uncompressed files)\n", cp, float64(content)/1e6/cp)
	fmt.Printf("ratio   thon export / docker cp = %.2f× the wall time\n", t/cp)
	return nil
}

// fill writes o.files files of text into every workspace through its IDE
// and returns the bytes written in all.
func fill(ctx context.Context, items []thon.Status, o options) (int64, error) {
	size := o.mb * 1_000_000 / o.files
	words := strings.Fields("func return if else for range var const type struct interface package import err nil string int byte map chan go defer select case switch default true false len cap append make new print fmt os io http json context time sync")
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int64
	var first error
	for i, s := range items {
		if s.Endpoint == "" {
			return 0, fmt.Errorf("%s is %s, not running", s.User, s.State)
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for f := range o.files {
				var b bytes.Buffer
				b.Grow(size + 16)
				for b.Len() < size {
					b.WriteString(words[rng.IntN(len(words))])
					if rng.IntN(8) == 0 {
						b.WriteByte('\n')
					} else {
						b.WriteByte(' ')
					}
				}
				b.Truncate(size)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPut, fmt.Sprintf("http://%s/files/file-%02d.go", s.Endpoint, f), &b)
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusCreated {
						err = fmt.Errorf("PUT a file in %s's workspace: %s", s.User, resp.Status)
					}
				}
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if err == nil {
					total += int64(size)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return total, first
}

// containerNames maps each user to their container's name.
func containerNames(ctx context.Context, inst string) (map[string]string, error) {
	out, err := exec.CommandContext(ctx, "docker", "ps", "--filter", "label=io.thon.instance="+inst,
		"--format", `{{.Names}} {{.Label "`+sandbox.LabelUser+`"}}`).Output()
	if err != nil {
		return nil, fmt.Errorf("docker ps: %w", err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if name, user, ok := strings.Cut(l, " "); ok {
			m[user] = name
		}
	}
	return m, nil
}

// dockerCp copies every workspace out with `docker cp`, parallel at once.
func dockerCp(ctx context.Context, items []thon.Status, names map[string]string, out string, parallel int) error {
	sem := make(chan struct{}, parallel)
	errs := make(chan error, len(items))
	var wg sync.WaitGroup
	for _, s := range items {
		name, ok := names[s.User]
		if !ok {
			return fmt.Errorf("no container for %s", s.User)
		}
		dst := filepath.Join(out, s.Group)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			b, err := exec.CommandContext(ctx, "docker", "cp", name+":"+sandbox.WorkspacePath(s.Group, s.User), filepath.Join(dst, s.User)).CombinedOutput()
			if err != nil {
				errs <- fmt.Errorf("docker cp %s: %v: %s", s.User, err, b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// manifestBytes checks thon export's manifest and sums its archives' bytes.
func manifestBytes(out string, n int) (int64, error) {
	b, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		return 0, err
	}
	var m struct {
		Items []struct {
			User  string
			Bytes int64
			Error string
		}
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return 0, err
	}
	if len(m.Items) != n {
		return 0, fmt.Errorf("the manifest lists %d participants, want %d", len(m.Items), n)
	}
	var total int64
	for _, it := range m.Items {
		if it.Error != "" {
			return 0, fmt.Errorf("export of %s: %s", it.User, it.Error)
		}
		total += it.Bytes
	}
	return total, nil
}
