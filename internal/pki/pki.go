// Package pki gives the front door its TLS certificates: a local certificate
// authority (mkcert-style, created once in the data directory and reused so
// participants trust it once) issuing short-lived server certificates that are
// reissued in memory when the names change or expiry nears, or the
// organizer's own certificate, reloaded when its files change.
//
// Certificates are chosen per handshake (GetCertificate), so none of this
// needs a restart.
package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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
		own.warnUncovered(hosts)
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
	return a, nil
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
		a.own.warnUncovered(set)
		return
	}
	a.gen.Add(1)
	a.log.Info("certificate hosts changed; reissuing on the next handshake", "hosts", set.strings())
}

// GetCertificate returns the certificate for a handshake; it is meant for
// tls.Config.GetCertificate. The same certificate is returned (without
// allocating) until the names change or a third of its lifetime remains.
// The hello is not consulted: every name the front door answers for is in
// the one certificate.
func (a *Authority) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	now := a.now()
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
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: a.GetCertificate,
	}
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
// if it is due, as a handshake would).
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
