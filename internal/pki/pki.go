// Package pki gives the front door its TLS certificates: a local certificate
// authority (mkcert-style, created once in the data directory and reused so
// participants trust it once) issuing short-lived server certificates that are
// reissued in memory when the names change or expiry nears, or the
// organizer's own certificate, reloaded when its files change; and, beside
// either, certificates for DNS names from an ACME CA such as Let's Encrypt
// (certmagic: HTTP-01 and TLS-ALPN-01, renewed in the background), with the
// local CA's or the organizer's certificate served for a name until it has
// one.
//
// Certificates are chosen per handshake (GetCertificate), so none of this
// needs a restart.
package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mholt/acmez/v3"
)

// File names inside Options.Dir.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// Lifetimes and timing.
const (
	caValidityYears = 10
	leafValidity    = 90 * 24 * time.Hour
	leafBackdate    = time.Hour
	// caExpiryWarning is when Open starts warning that the CA is ending.
	caExpiryWarning = 180 * 24 * time.Hour
	// ownCheckInterval is how often (at most) a handshake looks at the
	// organizer's certificate files for changes.
	ownCheckInterval = 3 * time.Second
)

// Options configures Open.
type Options struct {
	// Dir holds ca.crt (0644) and ca.key (0600); created 0700 if missing.
	// Unused with the organizer's own certificate.
	Dir string
	// Hosts are the names the server certificate must hold: IP addresses and
	// DNS names ("*.example.org" for subdomain mode). "localhost",
	// "127.0.0.1" and "::1" are always added.
	Hosts []string
	// CertFile and KeyFile name the organizer's own certificate and key
	// (PEM), used instead of the local CA. Both or neither.
	CertFile, KeyFile string
	// ACME, when set, gets certificates for its names from an ACME CA;
	// the local CA (or the organizer's certificate) serves everything else,
	// and those names until they have one. Call StartACME once the front
	// door listens.
	ACME *ACME
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives warnings and rotation notices; nil discards them.
	Logger *slog.Logger
}

// Authority serves the front door's certificate: a leaf issued by the local
// CA, or the organizer's own certificate. Its methods are safe for
// concurrent use.
type Authority struct {
	log *slog.Logger
	now func() time.Time

	// Local CA mode (ca != nil).
	ca    *localCA
	mu    sync.Mutex           // serialises issuing and SetHosts
	hosts hostSet              // guarded by mu
	gen   atomic.Uint64        // bumped by SetHosts when the set changes
	leaf  atomic.Pointer[leaf] // the certificate being served

	// Organizer's own certificate mode (own != nil).
	own *ownCert

	// Certificates from an ACME CA for some names (beside either mode).
	acme *acmeManager
}

// leaf is one issued server certificate with the facts the hot path needs.
type leaf struct {
	cert    *tls.Certificate
	gen     uint64
	renewAt time.Time
}

// Open loads (or, on first start, creates) the local CA and issues a server
// certificate for o.Hosts; with o.CertFile and o.KeyFile it loads the
// organizer's certificate instead and checks it is usable.
func Open(o Options) (*Authority, error) {
	a := &Authority{log: o.Logger, now: o.Now}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	hosts, bad := parseHosts(o.Hosts)
	if len(bad) > 0 {
		return nil, fmt.Errorf("certificate hosts: %s: not an IP address or DNS name (check access.external_ip and access.hostnames)", strings.Join(quoteAll(bad), ", "))
	}

	if o.CertFile != "" || o.KeyFile != "" {
		if o.CertFile == "" || o.KeyFile == "" {
			return nil, errors.New("own certificate: set both access.cert_file and access.key_file, or neither to use the built-in local CA")
		}
		own, err := openOwn(o.CertFile, o.KeyFile, a.now(), a.log)
		if err != nil {
			return nil, err
		}
		a.own = own
		a.hosts = hosts
		if err := a.openACME(o.ACME); err != nil {
			return nil, err
		}
		own.warnUncovered(hosts, a.acmeNames())
		return a, nil
	}

	if o.Dir == "" {
		return nil, errors.New("local CA: no directory given (Options.Dir)")
	}
	ca, err := loadOrCreateCA(o.Dir, a.now(), a.log)
	if err != nil {
		return nil, err
	}
	a.ca = ca
	a.hosts = hosts
	if _, err := a.renew(a.now()); err != nil {
		return nil, err
	}
	if err := a.openACME(o.ACME); err != nil {
		return nil, err
	}
	return a, nil
}

// openACME prepares the ACME side when o is set.
func (a *Authority) openACME(o *ACME) error {
	if o == nil {
		return nil
	}
	fallback, covered := "the local CA's", func(string) bool { return false }
	if a.own != nil {
		fallback = "the organizer's (access.cert_file)"
		covered = func(name string) bool { return a.own.cur.Load().Leaf.VerifyHostname(name) == nil }
	}
	m, err := openACME(*o, a.log, fallback, covered)
	if err != nil {
		return err
	}
	a.acme = m
	return nil
}

// acmeNames are the names ACME gets certificates for (nil: none).
func (a *Authority) acmeNames() []string {
	if a.acme == nil {
		return nil
	}
	return a.acme.names
}

// StartACME begins getting and renewing the ACME names' certificates in
// the background, loading those already in ACME.Dir first; call it once
// the front door listens on ACME.HTTPPort and TLSPort, since the CA
// connects to them. http01 says whether the HTTP port is open (HTTP-01 is
// not tried when it is not). Without ACME it does nothing. ctx ends the
// management (Close does too).
func (a *Authority) StartACME(ctx context.Context, http01 bool) error {
	if a.acme == nil {
		return nil
	}
	return a.acme.start(ctx, http01)
}

// HTTPChallenge wraps the plain-HTTP port's handler so ACME HTTP-01
// challenges are answered there; without ACME it returns next.
func (a *Authority) HTTPChallenge(next http.Handler) http.Handler {
	if a.acme == nil {
		return next
	}
	return a.acme.httpHandler(next)
}

// Close stops ACME's background work (renewals, retries); certificates
// already had are still served. Safe to call more than once.
func (a *Authority) Close() {
	if a.acme != nil {
		a.acme.stop()
	}
}

// Status says which certificates are served and what is wrong, if anything.
func (a *Authority) Status() Status {
	s := Status{Source: "local CA"}
	if a.own != nil {
		s.Source = "own certificate"
	}
	if a.acme != nil {
		s.ACME, s.Warning = a.acme.status(a.now())
	}
	return s
}

// SetHosts replaces the names the server certificate must hold. When the set
// differs from the current one, the next handshake is served a newly issued
// certificate. Names that are neither an IP address nor a DNS name are
// skipped with a warning.
func (a *Authority) SetHosts(hosts []string) {
	set, bad := parseHosts(hosts)
	if len(bad) > 0 {
		a.log.Warn("certificate hosts skipped: not an IP address or DNS name", "hosts", bad)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if set.equal(a.hosts) {
		return
	}
	a.hosts = set
	if a.own != nil {
		a.own.warnUncovered(set, a.acmeNames())
		return
	}
	a.gen.Add(1)
	a.log.Info("certificate hosts changed; reissuing on the next handshake", "hosts", set.strings())
}

// GetCertificate returns the certificate for a handshake; it is meant for
// tls.Config.GetCertificate. The same certificate is returned (without
// allocating) until the names change or a third of its lifetime remains.
// Every name the front door answers for is in that one certificate; with
// ACME, a name the ACME CA has issued a certificate for gets that one
// instead, and a TLS-ALPN-01 challenge its answer.
func (a *Authority) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	now := a.now()
	if a.acme != nil && hello != nil {
		if c, ok, err := a.acme.get(hello, now); ok {
			return c, err
		}
	}
	if a.own != nil {
		return a.own.get(now), nil
	}
	if l := a.leaf.Load(); l != nil && l.gen == a.gen.Load() && now.Before(l.renewAt) {
		return l.cert, nil
	}
	return a.renew(now)
}

// renew issues a new leaf unless another goroutine already did.
func (a *Authority) renew(now time.Time) (*tls.Certificate, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	gen := a.gen.Load()
	old := a.leaf.Load()
	if old != nil && old.gen == gen && now.Before(old.renewAt) {
		return old.cert, nil
	}
	cert, err := a.ca.issue(a.hosts, now)
	if err != nil {
		if old != nil && now.Before(old.cert.Leaf.NotAfter) {
			a.log.Error("reissue server certificate failed; serving the previous one", "err", err)
			return old.cert, nil
		}
		return nil, err
	}
	l := cert.Leaf
	renewAt := l.NotAfter.Add(-l.NotAfter.Sub(l.NotBefore) / 3)
	if !l.NotAfter.Before(a.ca.cert.NotAfter) {
		// Cut short by the CA's own expiry: a reissue could not last longer.
		renewAt = l.NotAfter
	}
	a.leaf.Store(&leaf{cert: cert, gen: gen, renewAt: renewAt})
	a.log.Info("issued server certificate", "dns", l.DNSNames, "ips", l.IPAddresses, "not_after", l.NotAfter)
	return cert, nil
}

// TLSConfig returns a server configuration for the front door: TLS 1.2 and
// up, ECDHE with AEAD ciphers only for TLS 1.2 (TLS 1.3 suites are not
// configurable and all modern), HTTP/2 and HTTP/1.1 by ALPN, and the
// certificate chosen per handshake. Each call returns a new config.
func (a *Authority) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		NextProtos:     a.nextProtos(),
		GetCertificate: a.GetCertificate,
	}
}

// nextProtos are the ALPN protocols offered: with ACME, acme-tls/1 too,
// which only a CA validating TLS-ALPN-01 asks for (alone).
func (a *Authority) nextProtos() []string {
	if a.acme != nil {
		return []string{"h2", "http/1.1", acmez.ACMETLS1Protocol}
	}
	return []string{"h2", "http/1.1"}
}

// CACertPEM returns the local CA certificate in PEM form, or nil when the
// organizer's own certificate is used.
func (a *Authority) CACertPEM() []byte {
	if a.ca == nil {
		return nil
	}
	return slices.Clone(a.ca.pem)
}

// CACertDER returns the local CA certificate in DER form, or nil when the
// organizer's own certificate is used.
func (a *Authority) CACertDER() []byte {
	if a.ca == nil {
		return nil
	}
	return slices.Clone(a.ca.cert.Raw)
}

// CAFingerprint returns the SHA-256 fingerprint of the local CA certificate
// as colon-separated upper-case hex (as browsers show it), or "" when the
// organizer's own certificate is used.
func (a *Authority) CAFingerprint() string {
	if a.ca == nil {
		return ""
	}
	return fingerprintSHA256(a.ca.cert.Raw)
}

// CAPool returns a new pool holding only the local CA, for clients that
// should trust nothing else; nil when the organizer's own certificate is
// used.
func (a *Authority) CAPool() *x509.CertPool {
	if a.ca == nil {
		return nil
	}
	p := x509.NewCertPool()
	p.AddCert(a.ca.cert)
	return p
}

// Leaf returns the server certificate currently served (reissuing it first
// if it is due, as a handshake would): the local CA's or the organizer's;
// Status describes the ACME names' certificates.
func (a *Authority) Leaf() (*x509.Certificate, error) {
	c, err := a.GetCertificate(nil)
	if err != nil {
		return nil, err
	}
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	l, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parse served certificate: %w", err)
	}
	return l, nil
}

// hostSet is a normalised, de-duplicated, sorted set of certificate names.
type hostSet struct {
	dns []string
	ips []netip.Addr
}

// alwaysHosts are in every local-CA certificate.
var alwaysHosts = []string{"localhost", "127.0.0.1", "::1"}

// parseHosts normalises names (case, trailing dot, [IPv6] brackets, IPv4 in
// IPv6 form), adds alwaysHosts, de-duplicates and sorts. Entries that are
// neither an IP address nor a DNS name are returned in bad.
func parseHosts(in []string) (set hostSet, bad []string) {
	seenDNS := map[string]bool{}
	seenIP := map[netip.Addr]bool{}
	for _, raw := range slices.Concat(alwaysHosts, in) {
		h := strings.ToLower(strings.TrimSpace(raw))
		if h == "" {
			continue
		}
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			h = h[1 : len(h)-1]
		}
		if ip, err := netip.ParseAddr(h); err == nil {
			ip = ip.Unmap().WithZone("")
			if ip.IsUnspecified() {
				bad = append(bad, raw)
				continue
			}
			if !seenIP[ip] {
				seenIP[ip] = true
				set.ips = append(set.ips, ip)
			}
			continue
		}
		h = strings.TrimSuffix(h, ".")
		if !validDNSName(h) {
			bad = append(bad, raw)
			continue
		}
		if !seenDNS[h] {
			seenDNS[h] = true
			set.dns = append(set.dns, h)
		}
	}
	slices.Sort(set.dns)
	slices.SortFunc(set.ips, netip.Addr.Compare)
	return set, bad
}

// validDNSName accepts LDH labels (letters, digits, hyphens; underscores are
// tolerated), with an optional "*" as the whole first label.
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for i, l := range labels {
		if l == "*" && i == 0 && len(labels) >= 2 {
			continue
		}
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func (s hostSet) equal(o hostSet) bool {
	return slices.Equal(s.dns, o.dns) && slices.Equal(s.ips, o.ips)
}

func (s hostSet) strings() []string {
	out := slices.Clone(s.dns)
	for _, ip := range s.ips {
		out = append(out, ip.String())
	}
	return out
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}
