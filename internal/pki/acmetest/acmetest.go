// Package acmetest runs a real ACME certificate authority for tests:
// Pebble, Let's Encrypt's test CA, in-process, with a DNS server of its own
// that resolves every name to 127.0.0.1, so Pebble's HTTP-01 and
// TLS-ALPN-01 validations reach the test's front door on the ports given.
//
//	ca := acmetest.Start(t, acmetest.Options{HTTPPort: 8080, TLSPort: 8443})
//	// access.acme: {email: ..., directory: ca.Directory, ca_root: ca.RootFile}
//	// a client trusting ca.Roots() verifies what the CA issued
//
// Pebble's own listener certificate is made here, for 127.0.0.1: nothing of
// Pebble's test files is used.
package acmetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// Options configures the CA.
type Options struct {
	// HTTPPort and TLSPort are where Pebble validates HTTP-01 and
	// TLS-ALPN-01 on 127.0.0.1 (a real CA: 80 and 443). 0 is a port
	// nothing listens on.
	HTTPPort, TLSPort int
	// Validity is the lifetime of the certificates issued (default 90
	// days, as Let's Encrypt's).
	Validity time.Duration
	// Refuse lists names the CA refuses to issue for (rejectedIdentifier).
	Refuse []string
}

// CA is a running Pebble.
type CA struct {
	// Directory is the ACME directory URL (access.acme.directory).
	Directory string
	// RootFile is a PEM file of the root the directory's HTTPS chains to
	// (access.acme.ca_root).
	RootFile string
	ca       *ca.CAImpl

	mu     sync.Mutex
	issued map[string]bool // certificate ids downloaded
}

// Issued is how many certificates clients have downloaded.
func (c *CA) Issued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.issued)
}

// Start runs Pebble until the test ends. Its validations do not sleep
// (PEBBLE_VA_NOSLEEP) and it rejects no nonces, so tests are quick and
// steady; everything else is Pebble's normal behaviour.
func Start(t testing.TB, o Options) *CA {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	logs := &testLog{t: t}
	t.Cleanup(logs.close)
	logger := log.New(logs, "pebble ", 0)

	resolver := startDNS(t)
	store := db.NewMemoryStore()
	validity := uint64(o.Validity / time.Second)
	c := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "test", ValidityPeriod: validity}})
	v := va.New(logger, o.HTTPPort, o.TLSPort, false, resolver, store)
	for _, name := range o.Refuse {
		if err := store.AddBlockedDomain(name); err != nil {
			t.Fatal(err)
		}
	}
	w := wfe.New(logger, store, v, c, []string{"pebble.letsencrypt.org"}, false, false, 3, 5)

	out := &CA{ca: c, issued: map[string]bool{}}
	handler := w.Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if id, ok := strings.CutPrefix(r.URL.Path, "/certZ/"); ok {
			id, _, _ = strings.Cut(id, "/") // alternate chains: /certZ/ID/N
			out.mu.Lock()
			out.issued[id] = true
			out.mu.Unlock()
		}
		handler.ServeHTTP(rw, r)
	}))
	root, leaf := listenerCert(t)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)

	out.Directory = srv.URL + wfe.DirectoryPath
	out.RootFile = filepath.Join(t.TempDir(), "pebble-listener-root.pem")
	if err := os.WriteFile(out.RootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// Roots is the pool of Pebble's issuing root: a client that trusts the CA.
func (c *CA) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.ca.GetRootCert(0).Cert)
	return p
}

// listenerCert makes a root and a certificate for 127.0.0.1 it signed.
func listenerCert(t testing.TB) (*x509.Certificate, tls.Certificate) {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "acmetest listener root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, tmpl, root, key.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	return root, tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
}

// startDNS serves DNS over TCP (what Pebble asks with) on 127.0.0.1:
// every name has the A record 127.0.0.1 and nothing else.
func startDNS(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Net: "tcp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		for _, qq := range q.Question {
			if qq.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// testLog sends Pebble's log to the test's, until the test ends (Pebble's
// goroutines outlive it).
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (l *testLog) close() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
}
