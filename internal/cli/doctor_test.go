package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/doctor"
	"github.com/thon-dev/thon/internal/testenv"
)

// thon doctor with no daemon checks in-process, prints every check with
// its fix, and exits 1 when one fails.
func TestDoctorWithoutADaemon(t *testing.T) {
	prefix := testenv.Prefix(t)
	t.Cleanup(func() { testenv.Cleanup(t, prefix) })
	image := testenv.SandboxImage(t)
	free := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "thon.yaml")
	write := func(gateway string) {
		os.WriteFile(path, []byte(fmt.Sprintf(`server: {data_dir: %s, listen: "127.0.0.1:%d"}
access: {external_ip: 127.0.0.1, https_port: %d, http_port: 0, port_range: 42000-42009}
sandbox: {image: %s}
llm: {enabled: false}
gateway: {listen: "%s"}
groups: {alpha: [alice, bob]}
`, filepath.Join(dir, "data"), free(), free(), image, gateway)), 0o644)
	}
	write(fmt.Sprintf("0.0.0.0:%d", free()))
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Execute(context.Background(), "dev", append([]string{"--config", path}, args...), &IO{In: strings.NewReader(""), Out: &out, Err: &errb,
			Getenv: func(k string) (string, bool) {
				if k == "THON_INSTANCE" {
					return prefix, true
				}
				return "", false
			}})
		return code, out.String(), errb.String()
	}
	code, stdout, stderr := run("doctor", "-o", "json", "--no-probe")
	var rep doctor.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("exit %d: %v\n%s\n%s", code, err, stdout, stderr)
	}
	if rep.Daemon || rep.Participants != 2 || rep.Status == doctor.Fail || code != 0 {
		t.Fatalf("exit %d, report %+v", code, rep)
	}
	if c, _ := rep.Check("image"); c.Status != doctor.Warn {
		t.Errorf("the test image has no code-server label: %+v", c)
	}

	// Another program on the gateway's port: the check fails, and so does the command.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	write(taken.Addr().String())
	code, stdout, _ = run("doctor", "--no-probe")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{"THON doctor: 2 participants, " + path + ", checked by this process", "fail  Ports", "in use by another program", "fix: find it with: sudo ss -ltnp",
		"warn  AI gateway from a sandbox", "Capacity: not measured: no sandbox runs", "Not ready: 1 failed"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if code, _, stderr := run("doctor", "-o", "yaml"); code != 1 || !strings.Contains(stderr, `--output "yaml": use text or json`) {
		t.Errorf("-o yaml: %d %s", code, stderr)
	}
}
