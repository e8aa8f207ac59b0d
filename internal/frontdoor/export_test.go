package frontdoor_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/config"
)

// A participant downloads their own workspace from their IDE's origin,
// through the front door, with their browser session; another
// participant's session, or none, is refused.
func TestParticipantExportsTheirOwnWorkspace(t *testing.T) {
	h := event(t, config.ModePort)
	c := browser(t, h)
	alice := signIn(t, h, c, "alice")
	bobURL := h.Daemon.FrontDoor.URL("bob")

	// Alice writes a file through her IDE, through the front door.
	req, _ := http.NewRequest(http.MethodPut, alice+"files/main.go", strings.NewReader("package main\n"))
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("put a file through the front door: %v %v", resp, err)
	}
	resp.Body.Close()

	resp, err = c.Get(alice + "_thon/export")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/gzip" ||
		!strings.Contains(resp.Header.Get("Content-Disposition"), `filename="alice.tar.gz"`) {
		t.Fatalf("alice's export: %d %v %v", resp.StatusCode, resp.Header, err)
	}
	sum := sha256.Sum256(body)
	if got := resp.Trailer.Get("Thon-Sha256"); got != hex.EncodeToString(sum[:]) {
		t.Errorf("trailer sha256 %q, the body's %x", got, sum)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	found := ""
	for {
		hd, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not a tar: %v", err)
		}
		if hd.Name == "alice/main.go" {
			b, _ := io.ReadAll(tr)
			found = string(b)
		}
		if !strings.HasPrefix(hd.Name, "alice/") {
			t.Errorf("entry %q outside alice's workspace", hd.Name)
		}
	}
	if found != "package main\n" {
		t.Errorf("alice/main.go in the export: %q", found)
	}

	// Alice's session on bob's origin: refused; no session: refused.
	if code, body := get(t, c, bobURL+"_thon/export"); code != http.StatusForbidden || strings.Contains(body, "\x1f\x8b") {
		t.Errorf("alice's session exporting bob's workspace: %d", code)
	}
	if code, _ := get(t, &http.Client{Transport: c.Transport}, alice+"_thon/export"); code != http.StatusUnauthorized {
		t.Errorf("no session exporting alice's workspace: %d", code)
	}
	if code, _ := get(t, &http.Client{Transport: c.Transport}, bobURL+"_thon/export", "Cookie", "thon_bob=forged"); code != http.StatusUnauthorized {
		t.Errorf("a forged session exporting bob's workspace: %d", code)
	}
	// Only GET.
	req, _ = http.NewRequest(http.MethodPost, alice+"_thon/export", nil)
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST export: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// Recorded as done by alice.
	evs, err := h.Client.Events(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	ok := false
	for _, e := range evs {
		if e.Action == "sandbox.export" && e.Target == "alice" && e.Actor == "alice" {
			ok = true
		}
		if e.Action == "sandbox.export" && e.Target == "bob" {
			t.Errorf("bob's workspace was exported: %+v", e)
		}
	}
	if !ok {
		t.Errorf("no sandbox.export by alice in the audit log: %+v", evs)
	}
}
