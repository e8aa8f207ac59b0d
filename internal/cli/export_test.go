package cli_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/thontest"
)

// put writes a file into user's workspace through their running IDE.
func put(t *testing.T, h *thontest.Harness, user, name, data string) {
	t.Helper()
	s, err := h.Client.Sandbox(context.Background(), user)
	if err != nil || s.Endpoint == "" {
		t.Fatalf("%s's sandbox: %+v %v", user, s, err)
	}
	req, _ := http.NewRequest(http.MethodPut, "http://"+s.Endpoint+"/files/"+name, strings.NewReader(data))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("put %s in %s's workspace: %v %v", name, user, resp, err)
	}
	resp.Body.Close()
}

// readTarGz reads a .tar.gz file into name → content of its regular files.
func readTarGz(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	tr := tar.NewReader(zr)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			files[h.Name] = string(b)
		}
	}
}

// thon export writes {group}/{user}.tar.gz for running and stopped
// sandboxes and a manifest whose digests are the files'; a participant
// without a sandbox is reported as missing and the export goes on.
func TestExportCommand(t *testing.T) {
	ctx := context.Background()
	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice", "bob"}}, config.Group{Name: "beta", Users: []string{"carol"}}), thontest.FakeEngine())
	for _, u := range []string{"alice", "carol"} {
		if r := thon(t, h, "instance", "start", u); r.code != 0 {
			t.Fatalf("start %s: %+v", u, r)
		}
	}
	put(t, h, "alice", "main.go", "package main\n")
	put(t, h, "carol", "app.py", "print('hi')\n")
	if r := thon(t, h, "instance", "stop", "carol"); r.code != 0 {
		t.Fatalf("stop carol: %+v", r)
	}

	out := t.TempDir()
	r := thon(t, h, "export", "--out", out)
	if r.code != 0 || !strings.Contains(r.stderr, "/3] alice (alpha): ") || !strings.Contains(r.stderr, "bob (alpha): no sandbox") ||
		!strings.Contains(r.stderr, "Exported 2 of 3 workspaces") || !strings.Contains(r.stderr, "1 without a sandbox") {
		t.Fatalf("export: %+v", r)
	}
	if got := readTarGz(t, filepath.Join(out, "alpha", "alice.tar.gz")); got["alice/main.go"] != "package main\n" {
		t.Errorf("alice's archive: %q", got)
	}
	if got := readTarGz(t, filepath.Join(out, "beta", "carol.tar.gz")); got["carol/app.py"] != "print('hi')\n" {
		t.Errorf("carol's archive (stopped sandbox): %q", got)
	}
	if _, err := os.Stat(filepath.Join(out, "alpha", "bob.tar.gz")); !os.IsNotExist(err) {
		t.Errorf("an archive for bob, who has no sandbox: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Items []struct {
			User, Group, File, SHA256, Error string
			Bytes                            int64
			Files                            int
			Missing                          bool
		}
	}
	if err := json.Unmarshal(b, &m); err != nil || len(m.Items) != 3 {
		t.Fatalf("manifest: %v\n%s", err, b)
	}
	for _, it := range m.Items {
		if it.User == "bob" {
			if !it.Missing || it.File != "" || !strings.Contains(it.Error, "no sandbox") {
				t.Errorf("bob in the manifest: %+v", it)
			}
			continue
		}
		data, err := os.ReadFile(filepath.Join(out, it.File))
		sum := sha256.Sum256(data)
		if err != nil || it.SHA256 != hex.EncodeToString(sum[:]) || it.Bytes != int64(len(data)) || it.Files != 1 || it.Missing {
			t.Errorf("%s in the manifest: %+v (file: %d bytes, %v)", it.User, it, len(data), err)
		}
	}
	if s, _ := h.Client.Sandbox(ctx, "carol"); s.State != "stopped" {
		t.Errorf("carol is %s after the export", s.State)
	}

	// One group, one participant; bad names say what is wrong.
	out2 := t.TempDir()
	if r := thon(t, h, "export", "--group", "beta", "--out", out2); r.code != 0 || !strings.Contains(r.stderr, "[1/1] carol (beta)") {
		t.Fatalf("export --group beta: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(out2, "alpha")); !os.IsNotExist(err) {
		t.Errorf("export --group beta wrote alpha: %v", err)
	}
	if r := thon(t, h, "export", "--user", "Not A Name"); r.code == 0 || !strings.Contains(r.stderr, "--user") {
		t.Fatalf("export --user with a bad name: %+v", r)
	}
}

// What sandboxes use: status -o wide and -o json after a sample, the
// running hours in thon usage, the per-group aggregates in /metrics.
func TestUsageInStatusAndMetrics(t *testing.T) {
	ctx := context.Background()
	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice", "bob"}}), thontest.FakeEngine())
	if r := thon(t, h, "instance", "start", "alice"); r.code != 0 {
		t.Fatalf("start: %+v", r)
	}
	put(t, h, "alice", "data.bin", strings.Repeat("x", 1<<20))
	for range 2 { // CPU is the CPU time between two samples
		if err := h.Daemon.Orch.SampleUsage(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r := thon(t, h, "status", "-o", "json")
	var list client.SandboxList
	if r.code != 0 || json.Unmarshal([]byte(r.out), &list) != nil {
		t.Fatalf("status -o json: %+v", r)
	}
	a := list.Items[0]
	if a.User != "alice" || a.Memory == nil || *a.Memory < 1<<20 || a.CPU == nil || a.Disk == nil || *a.Disk < 1<<20 {
		t.Fatalf("alice's usage: %+v", a)
	}
	if b := list.Items[1]; b.Memory != nil || b.CPU != nil || b.Disk != nil {
		t.Errorf("bob, without a sandbox, has usage: %+v", b)
	}
	if res := list.Resources; res.Sandboxes != 1 || res.Memory != *a.Memory || res.MachineCPUs <= 0 || res.MachineMemory <= 0 || res.At.IsZero() {
		t.Errorf("resources: %+v", res)
	}
	r = thon(t, h, "status", "-o", "wide")
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if r.code != 0 || len(lines) != 4 || !strings.Contains(lines[0], "CPU") || !strings.Contains(lines[0], "RUNNING") ||
		!strings.Contains(lines[1], "MiB") || !strings.HasPrefix(lines[3], "TOTAL (1 running)") || !strings.Contains(lines[3], " GiB") {
		t.Fatalf("status -o wide:\n%s%s", r.out, r.stderr)
	}
	if r := thon(t, h, "status", "-o", "yaml"); r.code == 0 || !strings.Contains(r.stderr, "table, wide or json") {
		t.Errorf("status -o yaml: %+v", r)
	}

	r = thon(t, h, "usage", "-o", "json")
	var rows []struct {
		User         string
		RunningHours float64 `json:"running_hours"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.out), &rows) != nil || len(rows) != 2 || rows[0].User != "alice" || rows[0].RunningHours < 0 || rows[1].RunningHours != 0 {
		t.Fatalf("usage -o json: %+v", r)
	}
	if r := thon(t, h, "usage"); r.code != 0 || !strings.Contains(r.out, "RUNNING") || !strings.Contains(r.out, "TOTAL") {
		t.Fatalf("usage: %+v", r)
	}

	resp, err := http.Get(h.Daemon.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`thon_group_memory_bytes{group="alpha"}`, `thon_group_cpu_cores{group="alpha"}`, `thon_group_workspace_bytes{group="alpha"}`, `thon_group_running_seconds{group="alpha"}`, "thon_machine_cpus 4", "thon_machine_memory_bytes"} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	if strings.Contains(string(metrics), `user="alice"`) || strings.Contains(string(metrics), `"alice"`) {
		t.Error("/metrics has a series per participant")
	}
}
