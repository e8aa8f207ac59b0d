package pki

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
	"io"
	stdlog "log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/pki/acmetest"
)

// door stands in for the front door: HTTPS with the Authority's TLS
// config, and plain HTTP that answers HTTP-01 and otherwise redirects. It
// counts the challenges that reached it.
type door struct {
	https, http net.Listener
	alpn        atomic.Int64 // acme-tls/1 handshakes (TLS-ALPN-01)
	challenges  atomic.Int64 // /.well-known/acme-challenge/ requests (HTTP-01)
}

func (d *door) httpsPort() int { return d.https.Addr().(*net.TCPAddr).Port }
func (d *door) httpPort() int  { return d.http.Addr().(*net.TCPAddr).Port }

// listenDoor opens the door's two ports (serve starts answering).
func listenDoor(t *testing.T) *door {
	t.Helper()
	d := &door{}
	var err error
	if d.https, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if d.http, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *door) serve(t *testing.T, a *Authority) {
	t.Helper()
	cfg := a.TLSConfig()
	get := cfg.GetCertificate
	cfg.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if len(h.SupportedProtos) == 1 && h.SupportedProtos[0] == "acme-tls/1" {
			d.alpn.Add(1)
		}
		return get(h)
	}
	quiet := stdlog.New(io.Discard, "", 0)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), ErrorLog: quiet}
	go srv.Serve(tls.NewListener(d.https, cfg))
	redirect := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://"+r.Host+r.URL.RequestURI(), http.StatusMovedPermanently)
	})
	challenge := a.HTTPChallenge(redirect)
	plain := &http.Server{ErrorLog: quiet, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			d.challenges.Add(1)
		}
		challenge.ServeHTTP(w, r)
	})}
	go plain.Serve(d.http)
	t.Cleanup(func() { srv.Close(); plain.Close() })
}

// dial handshakes with the door as a browser opening https://name/ would.
func (d *door) dial(name string, roots *x509.CertPool) (*x509.Certificate, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.1:"+strconv.Itoa(d.httpsPort()),
		&tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// waitFor polls cond until it holds (the CA works in the background);
// generous, since this machine is shared: a hang is what it catches.
func waitFor(t *testing.T, what string, cond func() error) {
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
		time.Sleep(100 * time.Millisecond)
	}
}

// events records what OnEvent is told.
type events struct {
	mu  sync.Mutex
	got []ACMEEvent
}

func (e *events) add(ev ACMEEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev)
}

func (e *events) list() []ACMEEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]ACMEEvent(nil), e.got...)
}

// acmeAuthority opens a local-CA Authority getting name from ca.
func acmeAuthority(t *testing.T, dir string, d *door, ca *acmetest.CA, http01, tlsALPN bool, ev *events, names ...string) *Authority {
	t.Helper()
	o := &ACME{Email: "ada@example.org", Directory: ca.Directory, CARoot: ca.RootFile, Dir: filepath.Join(dir, "acme"), Names: names}
	if http01 {
		o.HTTPPort = d.httpPort()
	}
	if tlsALPN {
		o.TLSPort = d.httpsPort()
	}
	if ev != nil {
		o.OnEvent = ev.add
	}
	log, _ := newLogger()
	a := mustOpen(t, Options{Dir: filepath.Join(dir, "ca"), Hosts: append([]string{"127.0.0.1"}, names...), ACME: o, Logger: log})
	t.Cleanup(a.Close)
	return a
}

// issued waits until the door serves name a certificate the CA issued.
func issued(t *testing.T, d *door, ca *acmetest.CA, name string) *x509.Certificate {
	t.Helper()
	var leaf *x509.Certificate
	waitFor(t, "a certificate from the ACME CA for "+name, func() (err error) {
		leaf, err = d.dial(name, ca.Roots())
		return err
	})
	return leaf
}

// HTTP-01 alone: the CA fetches the challenge from the plain-HTTP port, the
// front door then serves the certificate for the name (and the local CA's
// for everything else), and a restart loads it from the data directory.
func TestACMEHTTP01(t *testing.T) {
	dir := t.TempDir()
	d := listenDoor(t)
	ca := acmetest.Start(t, acmetest.Options{HTTPPort: d.httpPort()}) // no TLS-ALPN-01 port
	ev := &events{}
	a := acmeAuthority(t, dir, d, ca, true, false, ev, "thon.test")
	d.serve(t, a)
	// Before it has one, the name gets the local CA's certificate: the
	// event is up at once.
	if _, err := d.dial("thon.test", a.CAPool()); err != nil {
		t.Fatalf("before ACME: %v", err)
	}
	if err := a.StartACME(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	leaf := issued(t, d, ca, "thon.test")
	if d.challenges.Load() == 0 || d.alpn.Load() != 0 {
		t.Fatalf("challenges: %d HTTP-01, %d TLS-ALPN-01; want HTTP-01 only", d.challenges.Load(), d.alpn.Load())
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "thon.test" {
		t.Fatalf("issued for %v", leaf.DNSNames)
	}
	// An address, or a name ACME is not for, still gets the local CA's.
	c, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(d.httpsPort()), &tls.Config{RootCAs: a.CAPool()})
	if err != nil {
		t.Fatalf("by IP address: %v", err)
	}
	c.Close()
	if _, err := d.dial("localhost", a.CAPool()); err != nil {
		t.Fatalf("localhost: %v", err)
	}
	s := a.Status()
	if s.Source != "local CA" || s.Warning != "" || len(s.ACME) != 1 || s.ACME[0].Name != "thon.test" || !s.ACME[0].NotAfter.Equal(leaf.NotAfter) {
		t.Fatalf("status: %+v", s)
	}
	if got := ev.list(); len(got) != 1 || got[0].Name != "thon.test" || got[0].Err != nil || got[0].Renewal {
		t.Fatalf("events: %+v", got)
	}
	// The account and certificate are kept private in the data directory.
	if fi, err := os.Stat(filepath.Join(dir, "acme")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("acme directory: %v %v", fi, err)
	}

	// Restart: the certificate comes from the data directory, the CA is
	// not asked again (so no challenge needs these new ports).
	a.Close()
	d2 := listenDoor(t)
	a2 := acmeAuthority(t, dir, d2, ca, true, false, nil, "thon.test")
	d2.serve(t, a2)
	a2.StartACME(context.Background(), true)
	again := issued(t, d2, ca, "thon.test")
	if again.SerialNumber.Cmp(leaf.SerialNumber) != 0 || ca.Issued() != 1 {
		t.Fatalf("after a restart: serial %v (was %v), %d certificates issued", again.SerialNumber, leaf.SerialNumber, ca.Issued())
	}
}

// TLS-ALPN-01 alone: the CA validates on the HTTPS port itself, with the
// acme-tls/1 protocol the front door's TLS config answers.
func TestACMETLSALPN01(t *testing.T) {
	d := listenDoor(t)
	ca := acmetest.Start(t, acmetest.Options{TLSPort: d.httpsPort()}) // no HTTP-01 port
	a := acmeAuthority(t, t.TempDir(), d, ca, false, true, nil, "thon.test", "www.thon.test")
	d.serve(t, a)
	if err := a.StartACME(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"thon.test", "www.thon.test"} {
		if leaf := issued(t, d, ca, n); leaf.VerifyHostname(n) != nil {
			t.Fatalf("%s: certificate for %v", n, leaf.DNSNames)
		}
	}
	if d.alpn.Load() == 0 || d.challenges.Load() != 0 {
		t.Fatalf("challenges: %d HTTP-01, %d TLS-ALPN-01; want TLS-ALPN-01 only", d.challenges.Load(), d.alpn.Load())
	}
}

// Certificates are renewed in the background, without a restart, and the
// next handshake gets the new one.
func TestACMERenewal(t *testing.T) {
	d := listenDoor(t)
	// Short-lived certificates, looked at every half second: certmagic
	// renews within each one's lifetime (ARI window or a third left).
	ca := acmetest.Start(t, acmetest.Options{HTTPPort: d.httpPort(), TLSPort: d.httpsPort(), Validity: 30 * time.Second})
	ev := &events{}
	o := &ACME{Email: "ada@example.org", Directory: ca.Directory, CARoot: ca.RootFile, Dir: filepath.Join(t.TempDir(), "acme"),
		Names: []string{"thon.test"}, HTTPPort: d.httpPort(), TLSPort: d.httpsPort(), RenewCheckInterval: 500 * time.Millisecond, OnEvent: ev.add}
	log, _ := newLogger()
	a := mustOpen(t, Options{Dir: t.TempDir(), Hosts: []string{"thon.test"}, ACME: o, Logger: log})
	t.Cleanup(a.Close)
	d.serve(t, a)
	a.StartACME(context.Background(), true)
	first := issued(t, d, ca, "thon.test")
	waitFor(t, "a renewed certificate served", func() error {
		leaf, err := d.dial("thon.test", ca.Roots())
		if err != nil {
			return err
		}
		if leaf.SerialNumber.Cmp(first.SerialNumber) == 0 {
			return errors.New("still the first certificate")
		}
		return nil
	})
	renewed := false
	for _, e := range ev.list() {
		renewed = renewed || (e.Renewal && e.Err == nil)
	}
	if !renewed {
		t.Fatalf("no renewal event: %+v", ev.list())
	}
}

// When no certificate can be had (the CA refuses the name, or cannot be
// reached), the name keeps the local CA's certificate, and Status and the
// events say why.
func TestACMEFallsBackToTheLocalCA(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := "https://" + closed.Addr().String() + "/dir"
	closed.Close()
	for _, c := range []struct {
		name  string
		ca    acmetest.Options
		dir   string // "" is the CA's
		error string
	}{
		{"refused", acmetest.Options{Refuse: []string{"thon.test"}}, "", "rejectedIdentifier"},
		{"unreachable", acmetest.Options{}, unreachable, "connection refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := listenDoor(t)
			c.ca.HTTPPort, c.ca.TLSPort = d.httpPort(), d.httpsPort()
			ca := acmetest.Start(t, c.ca)
			if c.dir != "" {
				ca.Directory = c.dir
			}
			ev := &events{}
			a := acmeAuthority(t, t.TempDir(), d, ca, true, true, ev, "thon.test")
			d.serve(t, a)
			if err := a.StartACME(context.Background(), true); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the failure reported", func() error {
				if s := a.Status(); !strings.Contains(s.Warning, "no certificate from the ACME CA for thon.test yet") || !strings.Contains(s.Warning, c.error) ||
					!strings.Contains(s.Warning, "the local CA's certificate") || !strings.Contains(s.ACME[0].Error, c.error) || !s.ACME[0].NotAfter.IsZero() {
					return errors.New("status: " + s.Warning)
				}
				return nil
			})
			if _, err := d.dial("thon.test", a.CAPool()); err != nil {
				t.Fatalf("the local CA's certificate for the name: %v", err)
			}
			if _, err := d.dial("thon.test", ca.Roots()); err == nil {
				t.Fatal("a certificate from the CA after all")
			}
			if got := ev.list(); len(got) != 1 || got[0].Err == nil || !strings.Contains(got[0].Err.Error(), c.error) {
				t.Fatalf("events: %+v", got)
			}
		})
	}
}

// Subdomain mode: the organizer's wildcard certificate (got with DNS-01)
// serves *.event.test and event.test, and ACME beside it gets a
// certificate for the one name it does not cover.
func TestACMEBesideAWildcardCertificate(t *testing.T) {
	dir := t.TempDir()
	own := newThrowaway(t)
	certFile, keyFile := filepath.Join(dir, "wildcard.crt"), filepath.Join(dir, "wildcard.key")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "*.event.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"*.event.test", "event.test"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, own.cert, key.Public(), own.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)

	d := listenDoor(t)
	ca := acmetest.Start(t, acmetest.Options{HTTPPort: d.httpPort(), TLSPort: d.httpsPort()})
	log, logs := newLogger()
	a := mustOpen(t, Options{
		Hosts: []string{"127.0.0.1", "event.test", "*.event.test", "thon.test"}, CertFile: certFile, KeyFile: keyFile, Logger: log,
		ACME: &ACME{Email: "ada@example.org", Directory: ca.Directory, CARoot: ca.RootFile, Dir: filepath.Join(dir, "acme"),
			Names: []string{"*.event.test", "event.test", "thon.test"}, HTTPPort: d.httpPort(), TLSPort: d.httpsPort()},
	})
	t.Cleanup(a.Close)
	if s := a.Status(); s.Source != "own certificate" || len(s.ACME) != 1 || s.ACME[0].Name != "thon.test" {
		t.Fatalf("status: %+v", s)
	}
	if strings.Contains(logs.String(), "does not cover") {
		t.Fatalf("a name ACME gets was reported uncovered:\n%s", logs)
	}
	d.serve(t, a)
	a.StartACME(context.Background(), true)
	issued(t, d, ca, "thon.test")
	for _, n := range []string{"alice.event.test", "bob.event.test", "event.test"} {
		if _, err := d.dial(n, own.pool()); err != nil {
			t.Errorf("%s with the wildcard certificate: %v", n, err)
		}
	}
	if ca.Issued() != 1 {
		t.Fatalf("%d certificates from the CA, want only thon.test's", ca.Issued())
	}
}
