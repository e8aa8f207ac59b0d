package setup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/thon-dev/thon/internal/config"
)

// Unit is the name of THON's systemd unit, and UnitPath where it goes.
const (
	Unit     = "thon.service"
	UnitPath = "/etc/systemd/system/" + Unit
)

// UnitFile is the systemd unit that runs the daemon for cfg (with
// binary), as `thon serve` with the configuration file and the data
// directory spelled out (the unit has no home directory to find them in).
func UnitFile(cfg *config.Config, binary, instance string) ([]byte, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("no thon.yaml: write one with thon init (the unit names it), then run sudo thon setup again")
	}
	dir, err := cfg.DataDir()
	if err != nil {
		return nil, err
	}
	after, wants := "network-online.target", "network-online.target"
	if cfg.Sandbox.Runtime != config.RuntimeKubernetes {
		after += " docker.service"
		wants += " docker.service"
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `# Written by "thon setup": THON's daemon for the event of %s.
# Run "sudo thon setup" again after moving thon.yaml, the data directory or thon.
[Unit]
Description=THON: the coding event's daemon (sandboxes, front door, AI gateway, dashboard, API)
Documentation=https://github.com/thon-dev/thon
After=%s
Wants=%s

[Service]
Type=simple
ExecStart=%s
WorkingDirectory=%s
`, cfg.Path, after, wants, execLine(binary, "serve", "--config", cfg.Path, "--data-dir", dir), strings.ReplaceAll(filepath.Dir(cfg.Path), "%", "%%"))
	if instance != "" {
		fmt.Fprintf(&b, "Environment=THON_INSTANCE=%s\n", instance)
	}
	b.WriteString(`Restart=on-failure
RestartSec=5
# The participants' sandboxes are the engine's containers, not THON's
# children: stopping the daemon leaves them running, and it adopts them again.
KillMode=mixed
TimeoutStopSec=30
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
`)
	return b.Bytes(), nil
}

// execLine is a command line for ExecStart=, quoted where needed.
func execLine(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = unitQuote(a)
	}
	return strings.Join(q, " ")
}

// unitQuote quotes a word for a unit file when it holds white space,
// quotes, backslashes or specifiers (%).
func unitQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	if !strings.ContainsAny(s, " \t\"'\\;$") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `$$`)
	return `"` + r.Replace(s) + `"`
}

// ExecStart reads the command of a unit file's ExecStart= line, unquoted
// the way systemd does it for the words THON writes.
func ExecStart(unit []byte) ([]string, error) {
	for _, l := range strings.Split(string(unit), "\n") {
		v, ok := strings.CutPrefix(l, "ExecStart=")
		if !ok {
			continue
		}
		var args []string
		var cur strings.Builder
		in, has := false, false
		for i := 0; i < len(v); i++ {
			c := v[i]
			switch {
			case c == '\\' && in && i+1 < len(v):
				i++
				cur.WriteByte(v[i])
			case c == '"':
				in, has = !in, true
			case (c == ' ' || c == '\t') && !in:
				if cur.Len() > 0 || has {
					args = append(args, cur.String())
					cur.Reset()
					has = false
				}
			case (c == '$' || c == '%') && i+1 < len(v) && v[i+1] == c:
				cur.WriteByte(c)
				i++
			default:
				cur.WriteByte(c)
			}
		}
		if cur.Len() > 0 || has {
			args = append(args, cur.String())
		}
		return args, nil
	}
	return nil, fmt.Errorf("no ExecStart= line")
}

// unit: THON installed as Binary, its systemd unit installed, enabled and
// running, the API answering.
func (s *Setup) unit(ctx context.Context) Step {
	st := Step{Title: "systemd unit " + Unit + " (the daemon, started at boot)", Root: true}
	exe := s.o.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			st.State = "cannot find this program: " + err.Error()
			return st
		}
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	content, err := UnitFile(s.o.Config, s.o.Binary, s.o.Instance)
	if err != nil {
		st.State = err.Error()
		return st
	}
	installBinary := !sameFile(exe, s.path(s.o.Binary))
	old, _ := os.ReadFile(s.path(UnitPath))
	writeUnit := !bytes.Equal(old, content)
	if !s.o.Systemd() {
		st.State = "systemd does not run this machine (a container?)"
		st.Fix = "start THON with thon run (it starts the daemon in the background) or thon serve under your own supervisor; sudo thon setup --no-unit leaves this step out"
		return st
	}
	enabled := s.o.Command(ctx, io.Discard, "systemctl", "is-enabled", "--quiet", Unit) == nil
	active := s.o.Command(ctx, io.Discard, "systemctl", "is-active", "--quiet", Unit) == nil
	_, answers := s.daemon(ctx)
	if !installBinary && !writeUnit && enabled && active && answers {
		st.Ready, st.State = true, Unit+" is enabled and running; the API answers at "+s.o.Config.Server.Listen
		return st
	}
	var states []string
	switch {
	case len(old) == 0:
		states = append(states, "not installed")
	case writeUnit:
		states = append(states, "installed, for other settings")
	case !enabled:
		states = append(states, "installed, not enabled")
	case !active:
		states = append(states, "installed, not running")
	}
	if installBinary {
		states = append(states, s.o.Binary+" is not this thon")
	}
	outside := answers && !active
	if outside {
		states = append(states, "a THON daemon runs outside systemd")
	}
	st.State = strings.Join(states, "; ")
	if st.State == "" {
		st.State = "running, but the API does not answer at " + s.o.Config.Server.Listen
	}
	if installBinary {
		st.Do = append(st.Do, "install "+exe+" as "+s.o.Binary)
	}
	if writeUnit {
		st.Do = append(st.Do, "write "+UnitPath+" running: "+execLine(s.o.Binary, "serve", "--config", s.o.Config.Path)+" …")
		st.Do = append(st.Do, "systemctl daemon-reload")
	}
	if !enabled {
		st.Do = append(st.Do, "systemctl enable "+Unit+" (started at every boot)")
	}
	if outside {
		st.Do = append(st.Do, "stop the THON daemon running outside systemd (thon down: sandboxes keep running)")
	}
	restart := installBinary || writeUnit || !active || outside || !answers
	if restart {
		st.Do = append(st.Do, "systemctl restart "+Unit)
	}
	st.Do = append(st.Do, "wait until the API answers at "+s.o.Config.Server.Listen)
	st.apply = func(ctx context.Context) error {
		if installBinary {
			if err := copyFile(exe, s.path(s.o.Binary), 0o755); err != nil {
				return fmt.Errorf("install %s: %w", s.o.Binary, err)
			}
		}
		if writeUnit {
			if err := os.MkdirAll(filepath.Dir(s.path(UnitPath)), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(s.path(UnitPath), content, 0o644); err != nil {
				return fmt.Errorf("write %s: %w", UnitPath, err)
			}
			if err := s.o.Command(ctx, s.o.Log, "systemctl", "daemon-reload"); err != nil {
				return err
			}
		}
		if !enabled {
			if err := s.o.Command(ctx, s.o.Log, "systemctl", "enable", Unit); err != nil {
				return err
			}
		}
		if outside {
			if c, ok := s.daemon(ctx); ok {
				err := c.Shutdown(ctx) // it may close the connection as it goes
				if gone := waitGone(ctx, s, s.o.Wait); gone != nil {
					if err != nil {
						return fmt.Errorf("stop the THON daemon running outside systemd: %w (stop it with thon down)", err)
					}
					return gone
				}
			}
		}
		if restart {
			if err := s.o.Command(ctx, s.o.Log, "systemctl", "restart", Unit); err != nil {
				return fmt.Errorf("%w\nsee: journalctl -u %s -n 50", err, Unit)
			}
		}
		if err := waitHTTP(ctx, "http://"+s.o.Config.Server.Listen+"/api/v1/health", s.o.Wait); err != nil {
			return fmt.Errorf("%s runs, but %v: see journalctl -u %s -n 50", Unit, err, Unit)
		}
		return nil
	}
	return st
}

// waitGone waits until no daemon answers.
func waitGone(ctx context.Context, s *Setup, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if _, ok := s.daemon(ctx); !ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("the THON daemon outside systemd still answers: stop it with thon down")
}

// sameFile reports whether a and b hold the same bytes.
func sameFile(a, b string) bool {
	ha, err1 := fileHash(a)
	hb, err2 := fileHash(b)
	return err1 == nil && err2 == nil && ha == hb
}

func fileHash(p string) ([32]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, err
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out, nil
}

// copyFile installs src at dst (through a temporary file: a running dst
// keeps running).
func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".thon-tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

// startDetached starts a program in the background, in a session of its
// own (it outlives thon setup), its output appended to logPath.
func startDetached(logPath, name string, args ...string) error {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}
