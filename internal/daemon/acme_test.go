package daemon_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/pki/acmetest"
	"github.com/thon-dev/thon/internal/thontest"
)

// Challenges Pebble can validate (the other one finds nothing listening).
const (
	http01    = "http-01"
	tlsALPN01 = "tls-alpn-01"
)

// acmeEvent starts a daemon whose front door gets thon.test's certificate
// from a Pebble that validates on its ports (only on the port of one
// challenge, if set), with alice's sandbox running. change adjusts the
// configuration first.
func acmeEvent(t *testing.T, only string, pebble acmetest.Options, change func(*config.Config)) (*thontest.Harness, *acmetest.CA) {
	t.Helper()
	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice"}}))
	h.Stop()
	a := &h.Config.Access
	var first, last int
	fmt.Sscanf(a.PortRange, "%d-%d", &first, &last)
	for a.HTTPPort = thontest.FreePort(t); a.HTTPPort >= first && a.HTTPPort <= last; {
		a.HTTPPort = thontest.FreePort(t) // the kernel picked one inside the participants' ports: pick again
	}
	a.Hostnames = []string{"thon.test"}
	if only != tlsALPN01 {
		pebble.HTTPPort = a.HTTPPort
	}
	if only != http01 {
		pebble.TLSPort = a.HTTPSPort
	}
	ca := acmetest.Start(t, pebble)
	a.ACME = config.ACME{Email: "ada@example.org", Directory: ca.Directory, CARoot: ca.RootFile}
	if change != nil {
		change(h.Config)
	}
	if err := h.Config.Validate(); err != nil {
		t.Fatal(err)
	}
	h.Start()
	if _, err := h.Client.Action(context.Background(), "alice", "start"); err != nil {
		t.Fatal(err)
	}
	return h, ca
}

// browserFor is a browser that trusts roots, on which every name resolves
// to the front door (as the DNS records of a real event would make it).
func browserFor(roots *x509.CertPool) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:     jar,
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, _ := net.SplitHostPort(addr)
				return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
			},
		},
	}
}

// ideAnswers opens alice's access link with c and asks her IDE who she is.
func ideAnswers(t *testing.T, h *thontest.Harness, c *http.Client) error {
	t.Helper()
	l, err := h.Client.IssueLink(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(l.Link)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("her link: %s", resp.Status)
	}
	resp, err = c.Get(l.URL + "whoami")
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"alice"`) {
		return fmt.Errorf("her IDE: %s %s", resp.Status, b)
	}
	return nil
}

func waitForACME(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func hasEvent(h *thontest.Harness, action, target string) error {
	evs, err := h.Client.Events(context.Background(), 0, 100)
	if err != nil {
		return err
	}
	for _, e := range evs {
		if e.Action == action && e.Target == target {
			return nil
		}
	}
	return fmt.Errorf("no %s event for %s in %+v", action, target, evs)
}

// With access.acme, the front door gets a certificate for the event's host
// name from the ACME CA (here with HTTP-01, on the front door's plain-HTTP
// port): browsers that trust that CA (as every browser trusts Let's
// Encrypt) reach the API and the participant's own port without trusting
// THON's local CA.
func TestACMECertificateForTheEventsHostName(t *testing.T) {
	h, ca := acmeEvent(t, http01, acmetest.Options{}, nil)
	b := browserFor(ca.Roots())
	main := "https://thon.test:" + strconv.Itoa(h.Config.Access.HTTPSPort) + "/api/v1/health"
	waitForACME(t, "the CA's certificate on the main port", func() error {
		resp, err := b.Get(main)
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	// Her link names thon.test (the host name wins over the address), and
	// her own port serves the same certificate.
	if u := h.Daemon.FrontDoor.URL("alice"); !strings.HasPrefix(u, "https://thon.test:") {
		t.Fatalf("alice's URL: %s", u)
	}
	if err := ideAnswers(t, h, b); err != nil {
		t.Fatal(err)
	}
	info, err := h.Client.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tl := info.TLS; tl == nil || tl.Source != "local CA" || tl.Warning != "" || len(tl.ACME) != 1 || tl.ACME[0].Name != "thon.test" || tl.ACME[0].NotAfter.IsZero() {
		t.Fatalf("info.tls: %+v", info.TLS)
	}
	if err := hasEvent(h, "tls.certificate.obtained", "thon.test"); err != nil {
		t.Fatal(err)
	}
	// Kept in the data directory: a restart serves it without a new order.
	if _, err := os.Stat(filepath.Join(h.Config.Server.DataDir, "acme")); err != nil {
		t.Fatal(err)
	}
	h.Stop()
	h.Start()
	waitForACME(t, "the certificate after a restart", func() error {
		resp, err := b.Get(main)
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	if n := ca.Issued(); n != 1 {
		t.Fatalf("%d certificates issued, want 1", n)
	}
}

// When the CA refuses (or cannot be reached), the event still starts: the
// host name gets the local CA's certificate, the API and the audit log say
// why, and participants who trust the local CA get in as ever.
func TestACMEFailureFallsBackToTheLocalCA(t *testing.T) {
	h, ca := acmeEvent(t, "", acmetest.Options{Refuse: []string{"thon.test"}}, func(c *config.Config) {
		c.Auth.AdminPassword = "a long admin password"
	})
	waitForACME(t, "the warning", func() error {
		info, err := h.Client.Info(context.Background())
		if err != nil {
			return err
		}
		if info.TLS == nil || !strings.Contains(info.TLS.Warning, "no certificate from the ACME CA for thon.test") ||
			!strings.Contains(info.TLS.Warning, "rejectedIdentifier") || !strings.Contains(info.TLS.Warning, "the local CA's certificate") {
			return fmt.Errorf("info.tls: %+v", info.TLS)
		}
		return nil
	})
	if err := hasEvent(h, "tls.certificate.failed", "thon.test"); err != nil {
		t.Fatal(err)
	}
	local := browserFor(h.Daemon.CA.CAPool())
	if err := ideAnswers(t, h, local); err != nil {
		t.Fatalf("with the local CA: %v", err)
	}
	// The dashboard's settings page shows it too.
	dash := h.Daemon.FrontDoor.DashboardURL()
	req, _ := http.NewRequest("POST", dash+"login", strings.NewReader("password=a+long+admin+password"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", strings.TrimSuffix(dash, "/"))
	resp, err := local.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = local.Get(dash + "settings")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "no certificate from the ACME CA for thon.test yet") || !strings.Contains(string(page), "thon.test (ACME)") {
		t.Fatalf("settings page: %s\n%s", resp.Status, page)
	}
	if err := ideAnswers(t, h, browserFor(ca.Roots())); err == nil {
		t.Fatal("a browser trusting only the ACME CA got in: it issued after all?")
	}
}

// Subdomain mode with the organizer's wildcard certificate (got with
// DNS-01) for *.event.test and event.test: every participant's subdomain
// is served with it, and ACME beside it gets the certificate of the
// organizers' host name outside the domain (here with TLS-ALPN-01, on the
// front door's HTTPS port).
func TestACMEBesideTheOrganizersWildcardCertificate(t *testing.T) {
	dir := t.TempDir()
	roots, certFile, keyFile := wildcardCert(t, dir, "event.test")
	h, ca := acmeEvent(t, tlsALPN01, acmetest.Options{}, func(c *config.Config) {
		a := &c.Access
		a.Mode, a.Domain = config.ModeSubdomain, "event.test"
		a.CertFile, a.KeyFile = certFile, keyFile
	})
	b := browserFor(ca.Roots())
	waitForACME(t, "the CA's certificate for thon.test", func() error {
		resp, err := b.Get("https://thon.test:" + strconv.Itoa(h.Config.Access.HTTPSPort) + "/api/v1/health")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	if u := h.Daemon.FrontDoor.URL("alice"); u != "https://alice.event.test:"+strconv.Itoa(h.Config.Access.HTTPSPort)+"/" {
		t.Fatalf("alice's URL: %s", u)
	}
	if err := ideAnswers(t, h, browserFor(roots)); err != nil {
		t.Fatalf("alice on her subdomain with the wildcard certificate: %v", err)
	}
	info, err := h.Client.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tl := info.TLS; tl == nil || tl.Source != "own certificate" || len(tl.ACME) != 1 || tl.ACME[0].Name != "thon.test" || tl.Warning != "" {
		t.Fatalf("info.tls: %+v", info.TLS)
	}
	if ca.Issued() != 1 {
		t.Fatalf("%d certificates from the CA, want thon.test's only", ca.Issued())
	}
}

// wildcardCert writes a certificate for *.domain and domain, signed by a
// CA of its own, as an organizer would get with certbot's DNS plugin.
func wildcardCert(t *testing.T, dir, domain string) (*x509.CertPool, string, string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "organizer's CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "*." + domain},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"*." + domain, domain},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "wildcard.crt"), filepath.Join(dir, "wildcard.key")
	if err := errors.Join(
		os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644),
		os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600),
	); err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AddCert(caCert)
	return p, certFile, keyFile
}
