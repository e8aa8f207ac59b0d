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
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
)

// LetsEncrypt is Let's Encrypt's production ACME directory, the default.
const LetsEncrypt = certmagic.LetsEncryptProductionCA

// ACME configures certificates from an ACME certificate authority (RFC
// 8555), got and renewed by certmagic, for DNS names that resolve to this
// machine. Until a name has one, and whenever its certificate cannot be
// had, handshakes for it get the local CA's (or the organizer's)
// certificate, and Status says why.
type ACME struct {
	// Email is the account's contact address at the CA. THON agrees to
	// the CA's subscriber agreement on the organizer's behalf.
	Email string
	// Directory is the CA's directory URL; "" is Let's Encrypt's.
	Directory string
	// CARoot is a PEM file with the root the CA's own HTTPS chains to (a
	// private ACME CA), trusted beside the system's roots; "" trusts the
	// system's roots only.
	CARoot string
	// Dir keeps the account, certificates and locks; created 0700.
	Dir string
	// Names are the DNS names to get certificates for, one each. Wildcards,
	// IP addresses and names the organizer's certificate covers are
	// skipped (with a log line).
	Names []string
	// HTTPPort is where the front door answers HTTP-01 (with
	// HTTPChallenge); 0 leaves HTTP-01 out. TLSPort is where it answers
	// TLS-ALPN-01 (with TLSConfig); 0 leaves TLS-ALPN-01 out. A public CA
	// validates on 80 and 443 only.
	HTTPPort, TLSPort int
	// RenewCheckInterval is how often certificates are looked at for
	// renewal; 0 is certmagic's default (10 minutes). Tests shorten it.
	RenewCheckInterval time.Duration
	// OnEvent, when set, is told of each certificate obtained or renewed
	// and of each failure, once per change of state (for the audit log).
	// It must return quickly.
	OnEvent func(ACMEEvent)
}

// ACMEEvent is a certificate obtained or renewed (Err nil), or an attempt
// that failed.
type ACMEEvent struct {
	Name    string
	Renewal bool
	Err     error
}

// Status says which certificates the front door serves, for the dashboard,
// the API and `thon status`.
type Status struct {
	// Source is "local CA" or "own certificate": what every handshake
	// that is not for an ACME name gets, and ACME names without one.
	Source string `json:"source"`
	// ACME lists the names certificates are got for with ACME.
	ACME []ACMEName `json:"acme,omitempty"`
	// Warning says, in a sentence an organizer can act on, what is not
	// served as configured; "" when all is well.
	Warning string `json:"warning,omitempty"`
}

// ACMEName is one name's certificate from the ACME CA.
type ACMEName struct {
	Name string `json:"name"`
	// NotAfter is when the certificate served for it expires; zero while
	// it has none (it gets the Source's certificate meanwhile).
	NotAfter time.Time `json:"not_after,omitzero"`
	// Error is the last attempt's failure; "" when it succeeded, or none
	// has ended yet.
	Error string `json:"error,omitempty"`
}

// acmeManager holds certmagic's state for one Authority.
type acmeManager struct {
	log      *slog.Logger
	cfg      *certmagic.Config
	issuer   *certmagic.ACMEIssuer
	cache    *certmagic.Cache
	names    []string
	onEvent  func(ACMEEvent)
	fallback string // whose certificate a name without one gets, for messages
	dir      string

	mu      sync.Mutex
	failed  map[string]string // name → last error, while failing
	cancel  context.CancelFunc
	stopped bool
}

// openACME prepares certmagic for o; it starts nothing (Start does).
// covered reports names the organizer's certificate already serves.
func openACME(o ACME, log *slog.Logger, fallback string, covered func(string) bool) (*acmeManager, error) {
	if o.Email == "" {
		return nil, errors.New("ACME: no e-mail address (access.acme.email)")
	}
	if o.Dir == "" {
		return nil, errors.New("ACME: no directory to keep certificates in (ACME.Dir)")
	}
	var names []string
	for _, raw := range o.Names {
		n := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(raw), "."))
		switch {
		case n == "" || slices.Contains(names, n):
		case strings.HasPrefix(n, "*."):
			log.Warn("ACME cannot get a wildcard certificate (that needs DNS-01): give it in access.cert_file", "name", n)
		case isIP(n) || !validDNSName(n):
			log.Warn("ACME gets certificates for DNS names only; skipped", "name", n)
		case covered != nil && covered(n):
			log.Info("ACME: the organizer's certificate covers this name; not getting another", "name", n)
		default:
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	slices.Sort(names)

	directory := o.Directory
	if directory == "" {
		directory = LetsEncrypt
	}
	var roots *x509.CertPool
	if o.CARoot != "" {
		pemBytes, err := os.ReadFile(o.CARoot)
		if err != nil {
			return nil, fmt.Errorf("ACME: access.acme.ca_root: %w", err)
		}
		if roots, err = x509.SystemCertPool(); err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("ACME: access.acme.ca_root %s holds no PEM certificate", o.CARoot)
		}
	}

	m := &acmeManager{log: log, names: names, onEvent: o.OnEvent, fallback: fallback, dir: o.Dir, failed: map[string]string{}}
	zl := zapToSlog(log.Handler())
	var cfg *certmagic.Config
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil },
		RenewCheckInterval: o.RenewCheckInterval,
		Logger:             zl,
	})
	cfg = certmagic.New(m.cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: o.Dir},
		Logger:  zl,
		OnEvent: m.event,
		// Every handshake would emit one: not worth the allocation.
		ShouldEmitFunc: func(event string) bool { return event != "tls_get_certificate" },
	})
	m.issuer = certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
		CA:           directory,
		Email:        o.Email,
		Agreed:       true,
		TrustedRoots: roots,
		// The front door holds the ports; certmagic finds them taken and
		// leaves the answering to HTTPChallenge and GetCertificate.
		DisableHTTPChallenge:    o.HTTPPort == 0,
		DisableTLSALPNChallenge: o.TLSPort == 0,
		AltHTTPPort:             o.HTTPPort,
		AltTLSALPNPort:          o.TLSPort,
		Logger:                  zl,
	})
	cfg.Issuers = []certmagic.Issuer{m.issuer}
	m.cfg = cfg
	if o.HTTPPort == 0 && o.TLSPort == 0 {
		log.Warn("ACME has no port to answer challenges on (access.http_port and https_port): no certificate can be had", "names", names)
	}
	return m, nil
}

// start begins getting (or loading from Dir) and renewing certificates in
// the background; a failed attempt is retried with backoff for up to 30
// days (certmagic's ManageAsync).
func (m *acmeManager) start(ctx context.Context, http01 bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cancel != nil || m.stopped {
		return nil
	}
	if !http01 && !m.issuer.DisableHTTPChallenge {
		m.issuer.DisableHTTPChallenge = true
		m.log.Warn("ACME: the HTTP port is not open, so HTTP-01 is not tried; TLS-ALPN-01 on the HTTPS port still is")
	}
	ctx, m.cancel = context.WithCancel(ctx)
	m.log.Info("ACME: getting certificates", "names", m.names, "ca", m.issuer.CA,
		"http01", !m.issuer.DisableHTTPChallenge, "tls_alpn01", !m.issuer.DisableTLSALPNChallenge, "storage", m.dir)
	return m.cfg.ManageAsync(ctx, m.names)
}

func (m *acmeManager) stop() {
	m.mu.Lock()
	cancel, stopped := m.cancel, m.stopped
	m.stopped = true
	m.mu.Unlock()
	if stopped {
		return
	}
	if cancel != nil {
		cancel()
	}
	m.cache.Stop()
}

// event receives certmagic's events (synchronously: it must be quick).
func (m *acmeManager) event(_ context.Context, event string, data map[string]any) error {
	name, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtained":
		m.mu.Lock()
		_, wasFailing := m.failed[name]
		delete(m.failed, name)
		m.mu.Unlock()
		if renewal {
			m.log.Info("ACME: certificate renewed", "name", name)
		} else {
			m.log.Info("ACME: certificate obtained; served from the next handshake", "name", name, "recovered", wasFailing)
		}
		if m.onEvent != nil {
			m.onEvent(ACMEEvent{Name: name, Renewal: renewal})
		}
	case "cert_failed":
		err, _ := data["error"].(error)
		if err == nil {
			err = errors.New("unknown error")
		}
		msg := err.Error()
		m.mu.Lock()
		last, wasFailing := m.failed[name]
		m.failed[name] = msg
		m.mu.Unlock()
		if renewal {
			m.log.Warn("ACME: renewing the certificate failed; the current one is served until it expires, and renewal is retried", "name", name, "err", msg)
		} else {
			m.log.Warn("ACME: no certificate could be had; handshakes for the name get "+m.fallback+" certificate until one can (retried with backoff)", "name", name, "err", msg)
		}
		if m.onEvent != nil && (!wasFailing || last != msg) {
			m.onEvent(ACMEEvent{Name: name, Renewal: renewal, Err: err})
		}
	}
	return nil
}

// certFor returns the valid certificate the CA issued for name, or nil.
func (m *acmeManager) certFor(name string, now time.Time) *tls.Certificate {
	var best *tls.Certificate
	for _, c := range m.cache.AllMatchingCertificates(name) {
		l := c.Leaf
		if l == nil || now.Before(l.NotBefore) || !now.Before(l.NotAfter) {
			continue
		}
		if best == nil || l.NotAfter.After(best.Leaf.NotAfter) {
			tc := c.Certificate
			best = &tc
		}
	}
	return best
}

// get answers a handshake the ACME side is for: a TLS-ALPN-01 challenge,
// or a name with a certificate. ok is false when the fallback answers.
func (m *acmeManager) get(hello *tls.ClientHelloInfo, now time.Time) (cert *tls.Certificate, ok bool, err error) {
	if hello.ServerName != "" && len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmez.ACMETLS1Protocol {
		cert, err = m.cfg.GetCertificate(hello)
		return cert, true, err
	}
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" || !slices.Contains(m.names, name) {
		return nil, false, nil
	}
	if c := m.certFor(name, now); c != nil {
		return c, true, nil
	}
	return nil, false, nil
}

// status lists every name and builds the warning.
func (m *acmeManager) status(now time.Time) ([]ACMEName, string) {
	m.mu.Lock()
	failed := make(map[string]string, len(m.failed))
	for k, v := range m.failed {
		failed[k] = v
	}
	m.mu.Unlock()
	out := make([]ACMEName, 0, len(m.names))
	var warn []string
	for _, n := range m.names {
		s := ACMEName{Name: n, Error: failed[n]}
		if c := m.certFor(n, now); c != nil {
			s.NotAfter = c.Leaf.NotAfter
		}
		switch {
		case s.Error != "" && s.NotAfter.IsZero():
			warn = append(warn, fmt.Sprintf("no certificate from the ACME CA for %s yet (%s): it gets %s certificate, and THON keeps trying", n, s.Error, m.fallback))
		case s.Error != "":
			warn = append(warn, fmt.Sprintf("renewing %s's certificate failed (%s): it expires %s unless a retry succeeds", n, s.Error, s.NotAfter.UTC().Format(time.RFC3339)))
		}
		out = append(out, s)
	}
	return out, strings.Join(warn, "; ")
}

// httpHandler wraps next so HTTP-01 challenges are answered first.
func (m *acmeManager) httpHandler(next http.Handler) http.Handler {
	return m.issuer.HTTPChallengeHandler(next)
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return err == nil
}
