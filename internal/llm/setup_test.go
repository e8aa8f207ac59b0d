package llm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLemonadeSetup(t *testing.T) {
	root := t.TempDir()
	var calls []string
	s := LemonadeSetup{Root: root, Systemctl: func(_ context.Context, args ...string) error {
		calls = append(calls, strings.Join(args, " "))
		return nil
	}}
	const key, admin = "regular0123456789", "adminkey0123456789"

	// No Lemonade: a clear refusal, nothing written.
	if _, err := s.Plan(key, admin); err == nil || !strings.Contains(err.Error(), "lemond.service or lemonade-server.service") {
		t.Fatalf("without Lemonade: %v", err)
	}
	if _, err := s.Plan("", admin); err == nil || !strings.Contains(err.Error(), "llm.api_key") {
		t.Fatalf("without keys: %v", err)
	}
	if _, err := s.Plan("a b", admin); err == nil {
		t.Fatal("a key with a space accepted")
	}

	unit := filepath.Join(root, "usr/lib/systemd/system/lemond.service")
	os.MkdirAll(filepath.Dir(unit), 0o755)
	os.WriteFile(unit, []byte("[Service]\nExecStart=/usr/bin/lemond\n"), 0o644)
	p, err := s.Plan(key, admin)
	if err != nil {
		t.Fatal(err)
	}
	if p.Unit != "lemond.service" || p.DropIn != "/etc/systemd/system/lemond.service.d/thon.conf" || p.Current || len(p.Steps) != 3 {
		t.Fatalf("plan: %+v", p)
	}
	// The plan shown to the organizer never holds the keys.
	if shown := strings.Join(p.Steps, "\n"); strings.Contains(shown, key) || strings.Contains(shown, admin) {
		t.Fatalf("the steps show a key:\n%s", shown)
	}
	if err := s.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(root, p.DropIn))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("drop-in: %v %v", fi.Mode(), err)
	}
	data, _ := os.ReadFile(filepath.Join(root, p.DropIn))
	if !strings.Contains(string(data), "Environment=LEMONADE_API_KEY="+key+"\n") || !strings.Contains(string(data), "Environment=LEMONADE_ADMIN_API_KEY="+admin+"\n") {
		t.Fatalf("drop-in:\n%s", data)
	}
	if strings.Join(calls, ";") != "daemon-reload;restart lemond.service" {
		t.Fatalf("systemctl calls: %v", calls)
	}
	// Again: nothing to do, no restart.
	calls = nil
	if p, err = s.Plan(key, admin); err != nil || !p.Current {
		t.Fatalf("second plan: %+v %v", p, err)
	}
	if err := s.Apply(context.Background(), p); err != nil || len(calls) != 0 {
		t.Fatalf("second apply: %v %v", calls, err)
	}
	// Lemonade older than 10.3.
	os.Remove(unit)
	old := filepath.Join(root, "lib/systemd/system/lemonade-server.service")
	os.MkdirAll(filepath.Dir(old), 0o755)
	os.WriteFile(old, nil, 0o644)
	if p, err = s.Plan(key, admin); err != nil || p.Unit != "lemonade-server.service" {
		t.Fatalf("old unit: %+v %v", p, err)
	}
}
