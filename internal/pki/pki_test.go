package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	stdlog "log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// logBuf collects log output for assertions.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLogger() (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

func mustOpen(t *testing.T, o Options) *Authority {
	t.Helper()
	a, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return a
}

// serve runs a real HTTPS server (net/http, HTTP/2 enabled) with the
// Authority's TLS config on 127.0.0.1 and returns its port.
func serve(t *testing.T, a *Authority) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "ok "+r.Proto)
		}),
		TLSConfig: a.TLSConfig(),
		ErrorLog:  stdlog.New(io.Discard, "", 0),
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// handshake dials 127.0.0.1:port with cfg and returns the connection state.
func handshake(t *testing.T, port string, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", "127.0.0.1:"+port, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

func get(t *testing.T, tr *http.Transport, url string) *http.Response {
	t.Helper()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return resp
}

func TestLocalCAHandshake(t *testing.T) {
	a := mustOpen(t, Options{Dir: t.TempDir(), Hosts: []string{"203.0.113.7", "Thon.Example.org."}})
	port := serve(t, a)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: a.CAPool()}}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		get(t, tr, "https://"+host+":"+port+"/")
	}

	// The configured external IP and hostname verify over a real handshake.
	for _, name := range []string{"203.0.113.7", "thon.example.org", "localhost", "127.0.0.1"} {
		st, err := handshake(t, port, &tls.Config{RootCAs: a.CAPool(), ServerName: name})
		if err != nil {
			t.Fatalf("handshake as %s: %v", name, err)
		}
		if st.Version != tls.VersionTLS13 {
			t.Errorf("version %x, want TLS 1.3", st.Version)
		}
	}
	if _, err := handshake(t, port, &tls.Config{RootCAs: a.CAPool(), ServerName: "other.example.org"}); err == nil {
		t.Fatal("handshake for a name not in the certificate succeeded")
	}

	l, err := a.Leaf()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"localhost", "thon.example.org"}; !slices.Equal(l.DNSNames, want) {
		t.Errorf("DNS names %v, want %v", l.DNSNames, want)
	}
	var ips []string
	for _, ip := range l.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"127.0.0.1", "203.0.113.7", "::1"}; !slices.Equal(ips, want) {
		t.Errorf("IPs %v, want %v", ips, want)
	}
	if !slices.Equal(l.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("ext key usage %v", l.ExtKeyUsage)
	}
	if l.IsCA {
		t.Error("leaf is a CA")
	}
	if got := l.NotAfter.Sub(l.NotBefore); got != leafValidity {
		t.Errorf("leaf validity %v, want %v", got, leafValidity)
	}
	if d := time.Since(l.NotBefore); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("leaf not backdated by an hour: NotBefore %v ago", d)
	}
	if k, ok := l.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("leaf key %T, want ECDSA P-256", l.PublicKey)
	}

	ca, err := x509.ParseCertificate(a.CACertDER())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CheckSignatureFrom(ca); err != nil {
		t.Errorf("leaf not signed by the CA: %v", err)
	}
	host, _ := os.Hostname()
	if want := "THON local CA (" + host + ")"; ca.Subject.CommonName != want {
		t.Errorf("CA CN %q, want %q", ca.Subject.CommonName, want)
	}
	if !ca.IsCA || !ca.BasicConstraintsValid || ca.MaxPathLen != 0 || !ca.MaxPathLenZero {
		t.Errorf("CA constraints: IsCA %v valid %v MaxPathLen %d zero %v", ca.IsCA, ca.BasicConstraintsValid, ca.MaxPathLen, ca.MaxPathLenZero)
	}
	if ca.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("CA key usage %v", ca.KeyUsage)
	}
	if y := ca.NotAfter.Sub(ca.NotBefore).Hours() / 24 / 365; y < 9.99 || y > 10.01 {
		t.Errorf("CA validity %.2f years", y)
	}
	if k, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("CA key %T, want ECDSA P-256", ca.PublicKey)
	}
}

func TestSystemPoolRejects(t *testing.T) {
	a := mustOpen(t, Options{Dir: t.TempDir()})
	port := serve(t, a)
	_, err := handshake(t, port, &tls.Config{ServerName: "localhost"})
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Fatalf("client with the system pool: err %v, want unknown authority", err)
	}
}

func TestTLS11Refused(t *testing.T) {
	a := mustOpen(t, Options{Dir: t.TempDir()})
	port := serve(t, a)
	_, err := handshake(t, port, &tls.Config{RootCAs: a.CAPool(), ServerName: "localhost",
		MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err == nil {
		t.Fatal("TLS 1.1 handshake succeeded")
	}
	if !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("TLS 1.1 refused, but not for its version: %v", err)
	}
	// TLS 1.2 still works, with an AEAD ECDHE suite.
	st, err := handshake(t, port, &tls.Config{RootCAs: a.CAPool(), ServerName: "localhost", MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS 1.2: %v", err)
	}
	if st.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 && st.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 && st.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 {
		t.Errorf("TLS 1.2 suite %s", tls.CipherSuiteName(st.CipherSuite))
	}
	// A client offering only a CBC suite is refused.
	_, err = handshake(t, port, &tls.Config{RootCAs: a.CAPool(), ServerName: "localhost", MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}})
	if err == nil {
		t.Error("CBC-only TLS 1.2 client was accepted")
	}
}

func TestHTTP2Negotiated(t *testing.T) {
	a := mustOpen(t, Options{Dir: t.TempDir()})
	port := serve(t, a)
	tr := &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: a.CAPool()}}
	resp := get(t, tr, "https://localhost:"+port+"/")
	if resp.ProtoMajor != 2 || resp.TLS.NegotiatedProtocol != "h2" {
		t.Fatalf("proto %s, ALPN %q; want HTTP/2 over h2", resp.Proto, resp.TLS.NegotiatedProtocol)
	}
	// An HTTP/1.1-only client still gets in.
	st, err := handshake(t, port, &tls.Config{RootCAs: a.CAPool(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil || st.NegotiatedProtocol != "http/1.1" {
		t.Fatalf("http/1.1 client: ALPN %q, err %v", st.NegotiatedProtocol, err)
	}
}

func TestSetHostsNextHandshake(t *testing.T) {
	log, lb := newLogger()
	hosts := []string{"203.0.113.7", "thon.example.org"}
	a := mustOpen(t, Options{Dir: t.TempDir(), Hosts: hosts, Logger: log})
	port := serve(t, a)
	cfg := &tls.Config{RootCAs: a.CAPool(), ServerName: "new.example.org"}
	var he x509.HostnameError
	if _, err := handshake(t, port, cfg); !errors.As(err, &he) {
		t.Fatalf("before SetHosts: err %v, want hostname error", err)
	}
	before, _ := a.GetCertificate(nil)

	// The same set, reordered and re-cased: no reissue.
	a.SetHosts([]string{"THON.example.org", "203.0.113.7", "localhost"})
	if same, _ := a.GetCertificate(nil); same != before {
		t.Fatal("SetHosts with an unchanged set reissued the certificate")
	}

	a.SetHosts(append(hosts, "new.example.org"))
	st, err := handshake(t, port, cfg)
	if err != nil {
		t.Fatalf("handshake right after SetHosts: %v", err)
	}
	l := st.PeerCertificates[0]
	if !slices.Contains(l.DNSNames, "new.example.org") || !slices.Contains(l.DNSNames, "thon.example.org") {
		t.Fatalf("DNS names %v", l.DNSNames)
	}
	if l.SerialNumber.Cmp(before.Leaf.SerialNumber) == 0 {
		t.Fatal("same serial after SetHosts")
	}

	// Invalid names are skipped with a warning; the valid ones apply.
	a.SetHosts([]string{"bad name", "ok.example.org"})
	l2, _ := a.Leaf()
	if !slices.Equal(l2.DNSNames, []string{"localhost", "ok.example.org"}) {
		t.Fatalf("after SetHosts with a bad name: %v", l2.DNSNames)
	}
	if !strings.Contains(lb.String(), "bad name") {
		t.Error("bad host not logged")
	}
}

func TestConcurrentHandshakesIssueOnce(t *testing.T) {
	log, lb := newLogger()
	a := mustOpen(t, Options{Dir: t.TempDir(), Logger: log})
	a.SetHosts([]string{"x.example.org"})
	var wg sync.WaitGroup
	certs := make([]*tls.Certificate, 64)
	start := make(chan struct{})
	for i := range certs {
		wg.Go(func() {
			<-start
			c, err := a.GetCertificate(&tls.ClientHelloInfo{})
			if err != nil {
				t.Error(err)
			}
			certs[i] = c
		})
	}
	close(start)
	wg.Wait()
	for _, c := range certs {
		if c != certs[0] {
			t.Fatal("concurrent handshakes got different certificates")
		}
	}
	if n := strings.Count(lb.String(), "issued server certificate"); n != 2 {
		t.Fatalf("issued %d certificates, want 2 (at Open, after SetHosts)", n)
	}
}

func TestRenewalNearExpiry(t *testing.T) {
	clock := newClock(time.Now())
	a := mustOpen(t, Options{Dir: t.TempDir(), Now: clock.Now})
	port := serve(t, a)
	first, _ := a.Leaf()

	clock.Advance(59 * 24 * time.Hour) // a little over a third left: kept
	if l, _ := a.Leaf(); l != first {
		t.Fatal("reissued with more than a third of the lifetime left")
	}

	clock.Advance(11 * 24 * time.Hour) // day 70: 20 days left
	st, err := handshake(t, port, &tls.Config{RootCAs: a.CAPool(), ServerName: "localhost", Time: clock.Now})
	if err != nil {
		t.Fatalf("handshake at day 70: %v", err)
	}
	l := st.PeerCertificates[0]
	if !l.NotAfter.After(first.NotAfter) || l.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatalf("day 70: NotAfter %v (was %v), serial %v (was %v); want a new certificate", l.NotAfter, first.NotAfter, l.SerialNumber, first.SerialNumber)
	}
	if want := clock.Now().Add(-time.Hour).Add(leafValidity); l.NotAfter.Sub(want).Abs() > 2*time.Second {
		t.Errorf("new NotAfter %v, want about %v", l.NotAfter, want)
	}
}

func TestCAPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "pki")
	log, lb := newLogger()
	a1 := mustOpen(t, Options{Dir: dir, Logger: log})
	if !strings.Contains(lb.String(), "created local CA") {
		t.Error("creation not logged")
	}
	a2 := mustOpen(t, Options{Dir: dir})
	if !bytes.Equal(a1.CACertDER(), a2.CACertDER()) || a1.CAFingerprint() != a2.CAFingerprint() {
		t.Fatal("CA changed between Open calls")
	}
	l1, _ := a1.Leaf()
	l2, _ := a2.Leaf()
	if l1.SerialNumber.Cmp(l2.SerialNumber) == 0 {
		t.Error("leaf reused across starts; want a fresh one (its key lives in memory only)")
	}
	// A leaf from the second start verifies with the first start's pool.
	if _, err := l2.Verify(x509.VerifyOptions{Roots: a1.CAPool(), DNSName: "localhost"}); err != nil {
		t.Fatalf("verify: %v", err)
	}
	for name, want := range map[string]os.FileMode{".": 0o700, CAKeyFile: 0o600, CACertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %04o, want %04o", name, fi.Mode().Perm(), want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want ca.crt and ca.key only (no leaf key on disk)", len(entries))
	}
	if strings.Contains(lb.String(), "PRIVATE KEY") {
		t.Error("key material in the log")
	}
}

func TestKeyModeFixed(t *testing.T) {
	dir := t.TempDir()
	mustOpen(t, Options{Dir: dir})
	key := filepath.Join(dir, CAKeyFile)
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	log, lb := newLogger()
	mustOpen(t, Options{Dir: dir, Logger: log})
	fi, _ := os.Stat(key)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %04o after Open, want 0600", fi.Mode().Perm())
	}
	if !strings.Contains(lb.String(), "level=WARN") || !strings.Contains(lb.String(), "0600") {
		t.Fatalf("no warning logged: %s", lb.String())
	}
}

func TestBrokenCAFiles(t *testing.T) {
	newDir := func() string {
		dir := t.TempDir()
		mustOpen(t, Options{Dir: dir})
		return dir
	}
	otherKey := func() []byte {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	cases := []struct {
		name  string
		spoil func(dir string)
		want  []string
	}{
		{"corrupt cert", func(dir string) { os.WriteFile(filepath.Join(dir, CACertFile), []byte("garbage"), 0o644) },
			[]string{CACertFile, "not a usable certificate", "move ca.crt and ca.key out of", "trust the new CA"}},
		{"corrupt key", func(dir string) {
			os.WriteFile(filepath.Join(dir, CAKeyFile), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
		},
			[]string{CAKeyFile, "not a usable private key", "move ca.crt and ca.key out of"}},
		{"mismatched key", func(dir string) { os.WriteFile(filepath.Join(dir, CAKeyFile), otherKey(), 0o600) },
			[]string{CAKeyFile, "does not belong to", CACertFile, "move ca.crt and ca.key out of"}},
		{"missing cert", func(dir string) { os.Remove(filepath.Join(dir, CACertFile)) },
			[]string{CACertFile + " is missing", "move ca.crt and ca.key out of"}},
		{"missing key", func(dir string) { os.Remove(filepath.Join(dir, CAKeyFile)) },
			[]string{CAKeyFile + " is missing"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := newDir()
			c.spoil(dir)
			_, err := Open(Options{Dir: dir})
			if err == nil {
				t.Fatal("Open succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestInvalidHostsAtOpen(t *testing.T) {
	_, err := Open(Options{Dir: t.TempDir(), Hosts: []string{"ok.example.org", "not a name", "0.0.0.0"}})
	if err == nil || !strings.Contains(err.Error(), `"not a name"`) || !strings.Contains(err.Error(), `"0.0.0.0"`) {
		t.Fatalf("err %v", err)
	}
}

func TestParseHosts(t *testing.T) {
	set, bad := parseHosts([]string{" Example.ORG. ", "[2001:db8::1]", "::ffff:192.0.2.9", "*.ws.example.org", "127.0.0.1", "", "a..b", "-x.org", "*.localhost", "*", "a.*.org", "fe80::1%eth0", "ünï.org"})
	if want := []string{"*.localhost", "*.ws.example.org", "example.org", "localhost"}; !slices.Equal(set.dns, want) {
		t.Errorf("dns %v, want %v", set.dns, want)
	}
	var ips []string
	for _, ip := range set.ips {
		ips = append(ips, ip.String())
	}
	if want := []string{"127.0.0.1", "192.0.2.9", "::1", "2001:db8::1", "fe80::1"}; !slices.Equal(ips, want) {
		t.Errorf("ips %v, want %v", ips, want)
	}
	if want := []string{"a..b", "-x.org", "*", "a.*.org", "ünï.org"}; !slices.Equal(bad, want) {
		t.Errorf("bad %v, want %v", bad, want)
	}
}

func TestWildcardHost(t *testing.T) {
	a := mustOpen(t, Options{Dir: t.TempDir(), Hosts: []string{"*.thon.example.org", "thon.example.org"}})
	port := serve(t, a)
	if _, err := handshake(t, port, &tls.Config{RootCAs: a.CAPool(), ServerName: "alice.thon.example.org"}); err != nil {
		t.Fatalf("subdomain handshake: %v", err)
	}
}

func TestNoAllocCached(t *testing.T) {
	a := mustOpen(t, Options{Dir: t.TempDir()})
	hello := &tls.ClientHelloInfo{ServerName: "localhost"}
	first, _ := a.GetCertificate(hello)
	allocs := testing.AllocsPerRun(1000, func() {
		if c, _ := a.GetCertificate(hello); c != first {
			t.Fatal("cached call returned another certificate")
		}
	})
	if allocs != 0 {
		t.Fatalf("cached GetCertificate allocates %.1f times per call", allocs)
	}
}

// throwaway is a CA made in the test, standing in for the organizer's
// public CA.
type throwaway struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newThrowaway(t testing.TB) *throwaway {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Throwaway Test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &throwaway{cert: cert, key: key}
}

func (c *throwaway) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// issue writes a leaf with the given serial and its key (PEM); an empty
// file name skips that file.
func (c *throwaway) issue(t testing.TB, certFile, keyFile string, serial int64, notAfter time.Time) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "thon.example.org"},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"thon.example.org", "localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	if certFile != "" {
		if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if keyFile != "" {
		if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// touch moves a file's mtime forward so a change is seen even on
// filesystems with coarse timestamps.
func touch(t *testing.T, path string, d time.Duration) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	m := fi.ModTime().Add(d)
	if err := os.Chtimes(path, m, m); err != nil {
		t.Fatal(err)
	}
}

func TestOwnCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ta := newThrowaway(t)
	ta.issue(t, certFile, keyFile, 1001, time.Now().Add(12*time.Hour))
	clock := newClock(time.Now())
	log, lb := newLogger()
	a := mustOpen(t, Options{CertFile: certFile, KeyFile: keyFile, Hosts: []string{"thon.example.org", "other.example.net"}, Now: clock.Now, Logger: log})
	if a.CACertPEM() != nil || a.CACertDER() != nil || a.CAPool() != nil || a.CAFingerprint() != "" {
		t.Fatal("CA accessors answer with the organizer's certificate")
	}
	if !strings.Contains(lb.String(), "other.example.net") {
		t.Error("uncovered host not warned about")
	}
	port := serve(t, a)
	serial := func() int64 {
		t.Helper()
		st, err := handshake(t, port, &tls.Config{RootCAs: ta.pool(), ServerName: "thon.example.org"})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		return st.PeerCertificates[0].SerialNumber.Int64()
	}
	if s := serial(); s != 1001 {
		t.Fatalf("serial %d, want 1001", s)
	}
	if _, err := handshake(t, port, &tls.Config{ServerName: "thon.example.org"}); err == nil {
		t.Fatal("system pool trusted the throwaway CA")
	}

	// Renewed files: picked up at the next check, not before.
	ta.issue(t, certFile, keyFile, 1002, time.Now().Add(24*time.Hour))
	touch(t, certFile, time.Second)
	touch(t, keyFile, time.Second)
	if s := serial(); s != 1001 {
		t.Fatalf("files re-read before the check interval: serial %d", s)
	}
	clock.Advance(ownCheckInterval)
	if s := serial(); s != 1002 {
		t.Fatalf("after renewal: serial %d, want 1002", s)
	}
	if l, _ := a.Leaf(); l.SerialNumber.Int64() != 1002 {
		t.Fatalf("Leaf serial %d", l.SerialNumber.Int64())
	}
	if !strings.Contains(lb.String(), "reloaded own certificate") {
		t.Error("reload not logged")
	}

	// A bad reload (new key only: mismatched pair) keeps the old one.
	ta.issue(t, "", keyFile, 9999, time.Now().Add(24*time.Hour))
	touch(t, keyFile, 2*time.Second)
	clock.Advance(ownCheckInterval)
	if s := serial(); s != 1002 {
		t.Fatalf("after a failed reload: serial %d, want 1002 kept", s)
	}
	if !strings.Contains(lb.String(), "reload own certificate failed") {
		t.Errorf("failed reload not logged: %s", lb.String())
	}
	// Completing the pair later recovers.
	ta.issue(t, certFile, keyFile, 1003, time.Now().Add(24*time.Hour))
	touch(t, certFile, 3*time.Second)
	touch(t, keyFile, 3*time.Second)
	clock.Advance(ownCheckInterval)
	if s := serial(); s != 1003 {
		t.Fatalf("after fixing the files: serial %d, want 1003", s)
	}
	// Files removed: keep serving.
	os.Remove(keyFile)
	clock.Advance(ownCheckInterval)
	if s := serial(); s != 1003 {
		t.Fatalf("after removal: serial %d", s)
	}
	if strings.Contains(lb.String(), "PRIVATE KEY") {
		t.Error("key material in the log")
	}

	// SetHosts in this mode only warns about uncovered names.
	a.SetHosts([]string{"third.example.com"})
	if !strings.Contains(lb.String(), "third.example.com") {
		t.Error("uncovered host after SetHosts not warned about")
	}

	// The CA endpoints say there is no CA.
	h := a.Handler()
	for _, p := range []string{"/ca.crt", "/ca.der", "/ca"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != 404 || !strings.Contains(rec.Body.String(), "publicly trusted certificate") {
			t.Errorf("%s: %d %q", p, rec.Code, rec.Body.String())
		}
	}
}

func TestOwnCertificateErrors(t *testing.T) {
	dir := t.TempDir()
	ta := newThrowaway(t)
	good, goodKey := filepath.Join(dir, "good.crt"), filepath.Join(dir, "good.key")
	ta.issue(t, good, goodKey, 1, time.Now().Add(time.Hour))
	otherKey := filepath.Join(dir, "other.key")
	ta.issue(t, "", otherKey, 2, time.Now().Add(time.Hour))
	expired, expiredKey := filepath.Join(dir, "expired.crt"), filepath.Join(dir, "expired.key")
	ta.issue(t, expired, expiredKey, 3, time.Now().Add(-time.Minute))

	cases := []struct {
		name      string
		cert, key string
		want      string
	}{
		{"cert only", good, "", "set both access.cert_file and access.key_file"},
		{"key only", "", goodKey, "set both"},
		{"missing cert", filepath.Join(dir, "nope.crt"), goodKey, "access.cert_file"},
		{"missing key", good, filepath.Join(dir, "nope.key"), "access.key_file"},
		{"mismatched pair", good, otherKey, "private key does not match public key"},
		{"expired", expired, expiredKey, "expired on"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Open(Options{CertFile: c.cert, KeyFile: c.key})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestHandler(t *testing.T) {
	a := mustOpen(t, Options{Dir: t.TempDir()})
	h := a.Handler()
	do := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 200 {
			t.Fatalf("%s: %d", path, rec.Code)
		}
		return rec
	}

	rec := do("/ca.crt")
	if ct := rec.Header().Get("Content-Type"); ct != "application/x-pem-file" {
		t.Errorf("ca.crt content type %q", ct)
	}
	if cd := rec.Header().Get("Content-Disposition"); cd != `attachment; filename="thon-ca.crt"` {
		t.Errorf("ca.crt disposition %q", cd)
	}
	blk, rest := pem.Decode(rec.Body.Bytes())
	if blk == nil || blk.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("ca.crt is not one PEM certificate: %q", rec.Body.String())
	}
	if !bytes.Equal(blk.Bytes, a.CACertDER()) {
		t.Fatal("ca.crt is not the CA")
	}
	if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
		t.Fatal(err)
	}

	rec = do("/ca.der")
	if ct := rec.Header().Get("Content-Type"); ct != "application/pkix-cert" {
		t.Errorf("ca.der content type %q", ct)
	}
	c, err := x509.ParseCertificate(rec.Body.Bytes())
	if err != nil || !bytes.Equal(c.Raw, a.CACertDER()) {
		t.Fatalf("ca.der: %v", err)
	}

	rec = do("/ca")
	body := rec.Body.String()
	if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("page content type %q", ct)
	}
	sum := sha256.Sum256(a.CACertDER())
	fp := a.CAFingerprint()
	if len(fp) != 95 || strings.ReplaceAll(fp, ":", "") != strings.ToUpper(string(hexOf(sum[:]))) {
		t.Fatalf("fingerprint %q", fp)
	}
	for _, w := range []string{fp, "Windows", "macOS", "Linux", "Debian", "Fedora", "Firefox", "Chrom", "NSS", "Android", "iOS", `lang="en"`, `href="ca.crt"`} {
		if !strings.Contains(body, w) {
			t.Errorf("page lacks %q", w)
		}
	}
	for _, w := range []string{"http://", "https://", "<script", "src="} {
		if strings.Contains(body, w) {
			t.Errorf("page is not self-contained: has %q", w)
		}
	}
	// The CSP allows exactly the inline style served.
	i, j := strings.Index(body, "<style>"), strings.Index(body, "</style>")
	css := body[i+len("<style>") : j]
	cssSum := sha256.Sum256([]byte(css))
	csp := rec.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "'sha256-"+base64.StdEncoding.EncodeToString(cssSum[:])+"'") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q does not allow the served style", csp)
	}

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/ca.crt", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /ca.crt: %d", rec.Code)
	}
}

func hexOf(b []byte) []byte {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return out
}

func TestDetectExternalIP(t *testing.T) {
	ip, err := DetectExternalIP()
	if err != nil {
		t.Fatal(err)
	}
	if ip.To4() == nil || ip.IsLoopback() || !ip.IsGlobalUnicast() {
		t.Fatalf("external IP %v: want a non-loopback global-unicast IPv4", ip)
	}
	t.Logf("external IP: %v", ip)
}

func TestParseDefaultRoutes(t *testing.T) {
	const fixture = `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
wlan0	00000000	0101A8C0	0003	0	0	600	00000000	0	0	0
eth0	00000000	010200C0	0003	0	0	100	00000000	0	0	0
docker0	000011AC	00000000	0001	0	0	0	0000FFFF	0	0	0
eth0	000200C0	00000000	0001	0	0	100	00FFFFFF	0	0	0
tun0	00000000	00000000	0002	0	0	50	00000000	0	0	0
wg0	00000000	00000000	0001	0	0	700	00000000	0	0	0
`
	routes, err := parseDefaultRoutes(strings.NewReader(fixture))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range routes {
		names = append(names, r.iface)
	}
	if want := []string{"eth0", "wlan0", "wg0"}; !slices.Equal(names, want) {
		t.Fatalf("default routes %v, want %v (down route skipped, lowest metric first)", names, want)
	}
	if routes[2].gateway != nil {
		t.Errorf("wg0 gateway %v, want none", routes[2].gateway)
	}
	// The file prints network-order bytes as a host-order integer.
	little := routeAddr(0x01020304)[0] == 4
	if little {
		if got := routes[0].gateway.String(); got != "192.0.2.1" {
			t.Errorf("eth0 gateway %s, want 192.0.2.1", got)
		}
		if got := routes[1].gateway.String(); got != "192.168.1.1" {
			t.Errorf("wlan0 gateway %s, want 192.168.1.1", got)
		}
	}

	if _, err := parseDefaultRoutes(strings.NewReader("Iface Destination Gateway Flags RefCnt Use Metric Mask\neth0 zz 0 3 0 0 0 0\n")); err == nil {
		t.Error("malformed line accepted")
	}
	if r, err := parseDefaultRoutes(strings.NewReader("")); err != nil || len(r) != 0 {
		t.Errorf("empty table: %v %v", r, err)
	}
}

func BenchmarkGetCertificate(b *testing.B) {
	a, err := Open(Options{Dir: b.TempDir(), Hosts: []string{"203.0.113.7", "thon.example.org"}})
	if err != nil {
		b.Fatal(err)
	}
	hello := &tls.ClientHelloInfo{ServerName: "thon.example.org"}
	b.ReportAllocs()
	for b.Loop() {
		a.GetCertificate(hello)
	}
}

func BenchmarkGetCertificateParallel(b *testing.B) {
	a, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	hello := &tls.ClientHelloInfo{}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a.GetCertificate(hello)
		}
	})
}

func BenchmarkGetCertificateOwn(b *testing.B) {
	dir := b.TempDir()
	ta := newThrowaway(b)
	certFile, keyFile := filepath.Join(dir, "c"), filepath.Join(dir, "k")
	ta.issue(b, certFile, keyFile, 1, time.Now().Add(time.Hour))
	a, err := Open(Options{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		b.Fatal(err)
	}
	hello := &tls.ClientHelloInfo{}
	b.ReportAllocs()
	for b.Loop() {
		a.GetCertificate(hello)
	}
}

// BenchmarkIssue is the cost of a reissue (what the first handshake after
// SetHosts or near expiry pays).
func BenchmarkIssue(b *testing.B) {
	a, err := Open(Options{Dir: b.TempDir(), Hosts: []string{"203.0.113.7", "thon.example.org"}})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.ca.issue(a.hosts, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandshake is a full TLS 1.3 handshake (over an in-memory pipe)
// against the front door's config, for scale.
func BenchmarkHandshake(b *testing.B) {
	a, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	srvCfg := a.TLSConfig()
	srvCfg.SessionTicketsDisabled = true // nobody reads tickets over the pipe
	cliCfg := &tls.Config{RootCAs: a.CAPool(), ServerName: "localhost"}
	b.ReportAllocs()
	for b.Loop() {
		c1, c2 := net.Pipe()
		srv := tls.Server(c1, srvCfg)
		done := make(chan error, 1)
		go func() { done <- srv.Handshake() }()
		cli := tls.Client(c2, cliCfg)
		if err := cli.Handshake(); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		c1.Close()
		c2.Close()
	}
}

func TestCAExpiry(t *testing.T) {
	dir := t.TempDir()
	a := mustOpen(t, Options{Dir: dir})
	ca, _ := x509.ParseCertificate(a.CACertDER())

	// Ten days before the CA ends: warned, and the leaf is cut short to the
	// CA's end without being reissued on every handshake.
	clock := newClock(ca.NotAfter.Add(-10 * 24 * time.Hour))
	log, lb := newLogger()
	b := mustOpen(t, Options{Dir: dir, Now: clock.Now, Logger: log})
	if !strings.Contains(lb.String(), "local CA expires soon") {
		t.Error("no warning near CA expiry")
	}
	l, _ := b.Leaf()
	if !l.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("leaf NotAfter %v, want the CA's %v", l.NotAfter, ca.NotAfter)
	}
	clock.Advance(8 * 24 * time.Hour)
	if again, _ := b.Leaf(); again != l {
		t.Error("leaf reissued although a new one could not last longer")
	}

	clock.Advance(3 * 24 * time.Hour)
	_, err := Open(Options{Dir: dir, Now: clock.Now})
	if err == nil || !strings.Contains(err.Error(), "expired on") || !strings.Contains(err.Error(), "move ca.crt and ca.key out of") {
		t.Fatalf("expired CA: err %v", err)
	}
}
