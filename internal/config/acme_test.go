package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeRoot writes a self-signed CA certificate as PEM into dir.
func writeRoot(t *testing.T, dir string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ACME root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestACMEProblems(t *testing.T) {
	dir := t.TempDir()
	root := writeRoot(t, dir)
	notPEM := filepath.Join(dir, "key.txt")
	os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600)
	cert := filepath.Join(dir, "cert.pem")
	os.WriteFile(cert, []byte("x"), 0o600)
	own := "cert_file: " + cert + ", key_file: " + cert + ", "
	const on = "acme: {email: ada@example.org}"
	cases := []struct {
		name, access, want, hint string
	}{
		{"directory without email", "{hostnames: [thon.example.org], acme: {directory: https://ca.example.org/dir}}",
			"access.acme.email: must be set to use ACME", "ACME is on once email is set"},
		{"bad email", "{hostnames: [thon.example.org], acme: {email: ada}}", `access.acme.email: "ada" is not an e-mail address`, "you@example.org"},
		{"email with a name", "{hostnames: [thon.example.org], acme: {email: \"Ada <ada@example.org>\"}}", "is not an e-mail address", ""},
		{"email without a domain", "{hostnames: [thon.example.org], acme: {email: ada@localhost}}", "is not an e-mail address", ""},
		{"http directory", "{hostnames: [thon.example.org], acme: {email: ada@example.org, directory: \"http://ca.example.org/dir\"}}",
			`access.acme.directory: "http://ca.example.org/dir" is not an https:// URL`, LetsEncryptDirectory},
		{"empty directory", "{hostnames: [thon.example.org], acme: {email: ada@example.org, directory: \"\"}}", "access.acme.directory", ""},
		{"missing ca_root", "{hostnames: [thon.example.org], acme: {email: ada@example.org, ca_root: /nonexistent/root.pem}}",
			"access.acme.ca_root: cannot read /nonexistent/root.pem", "PEM file"},
		{"ca_root not PEM", "{hostnames: [thon.example.org], acme: {email: ada@example.org, ca_root: " + notPEM + "}}",
			"holds no PEM certificate", ""},
		{"no hostnames", "{" + on + "}", "access.acme: needs access.hostnames", "hostnames: [thon.example.org]"},
		{"an IP address", "{hostnames: [192.0.2.10], " + on + "}", `access.hostnames.0: "192.0.2.10" is not a host name`, "access.external_ip"},
		{"a wildcard", "{hostnames: [\"*.thon.example.org\"], " + on + "}", `ACME cannot issue the wildcard "*.thon.example.org"`, "DNS-01"},
		{"localhost", "{hostnames: [localhost], " + on + "}", `"localhost" is not a name an ACME CA validates`, ""},
		{"one label", "{hostnames: [thon], " + on + "}", `"thon" is not a name an ACME CA validates`, ""},
		{"internal name at Let's Encrypt", "{hostnames: [thon.test], " + on + "}", `"thon.test" is not a public DNS name`, "private ACME CA"},
		{"subdomain mode", "{mode: subdomain, domain: event.example.org, hostnames: [thon.example.org], " + on + "}",
			"access.acme: subdomain mode serves {user}.event.example.org, which needs a wildcard certificate for *.event.example.org", "access.cert_file"},
		{"own certificate, only wildcards", "{mode: subdomain, domain: event.example.org, hostnames: [\"*.event.example.org\"], " + own + on + "}",
			"access.acme: needs access.hostnames", "does not cover"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := "access: " + c.access + "\n"
			ps := parseProblems(t, src)
			var found *Problem
			for i, p := range ps {
				if strings.Contains(p.String(), c.want) {
					found = &ps[i]
				}
			}
			if found == nil {
				t.Fatalf("got\n%s\nwant a problem containing %q", listProblems(ps), c.want)
			}
			if !strings.Contains(found.Hint, c.hint) {
				t.Errorf("hint %q does not say %q", found.Hint, c.hint)
			}
			if found.Line != 1 {
				t.Errorf("problem without its line: %s", found)
			}
		})
	}

	// What works: a private CA with its root; an own wildcard certificate
	// for subdomain mode with ACME beside it for another name; internal
	// names at a private CA.
	for _, ok := range []string{
		"{hostnames: [thon.example.org, dash.example.org], acme: {email: ada@example.org}}",
		"{hostnames: [thon.test], acme: {email: ada@example.org, directory: \"https://127.0.0.1:14000/dir\", ca_root: " + root + "}}",
		"{mode: subdomain, domain: event.example.org, hostnames: [\"*.event.example.org\", thon.example.org], " + own + on + "}",
		"{mode: subdomain, domain: event.example.org, " + own[:len(own)-2] + "}",
	} {
		if _, err := Parse([]byte("access: "+ok+"\n"), "thon.yaml"); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

// A problem sits at its own line, and a relative ca_root starts at
// thon.yaml's directory.
func TestACMEFile(t *testing.T) {
	dir := t.TempDir()
	writeRoot(t, dir)
	path := filepath.Join(dir, "thon.yaml")
	src := "access:\n  hostnames: [thon.example.org]\n  acme:\n    email: ada@example.org\n    directory: https://ca.example.org/acme/directory\n    ca_root: root.pem\n"
	os.WriteFile(path, []byte(src), 0o600)
	t.Chdir(t.TempDir())
	c, err := load(path, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "root.pem"); c.Access.ACME.CARoot != want || !c.Access.ACME.Enabled() {
		t.Fatalf("acme: %+v, want ca_root %s", c.Access.ACME, want)
	}

	os.WriteFile(path, []byte(strings.Replace(src, "ada@example.org", "ada", 1)), 0o600)
	_, err = load(path, func(string) (string, bool) { return "", false })
	if err == nil || !strings.Contains(err.Error(), "thon.yaml:4:12: access.acme.email") {
		t.Fatalf("bad email: %v", err)
	}
	// From the environment, the variable is named.
	_, err = load(path, func(k string) (string, bool) { return "bob", k == "THON_ACCESS_ACME_EMAIL" })
	if err == nil || !strings.Contains(err.Error(), "$THON_ACCESS_ACME_EMAIL: access.acme.email: \"bob\"") {
		t.Fatalf("bad email from the environment: %v", err)
	}
}
