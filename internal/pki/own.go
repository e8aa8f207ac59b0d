package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ownCert is the organizer's certificate, reloaded when its files change.
type ownCert struct {
	certFile, keyFile string
	log               *slog.Logger

	cur       atomic.Pointer[tls.Certificate]
	nextCheck atomic.Int64 // unix nanoseconds; before it, handshakes do not stat

	mu        sync.Mutex // one checker at a time; guards the fields below
	certStamp fileStamp
	keyStamp  fileStamp
	statErr   string // last stat error logged, to log each problem once
}

// fileStamp identifies a version of a file.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

func openOwn(certFile, keyFile string, now time.Time, log *slog.Logger) (*ownCert, error) {
	o := &ownCert{certFile: certFile, keyFile: keyFile, log: log}
	var err error
	if o.certStamp, err = stampOf(certFile); err != nil {
		return nil, fmt.Errorf("own certificate: access.cert_file: %w", err)
	}
	if o.keyStamp, err = stampOf(keyFile); err != nil {
		return nil, fmt.Errorf("own certificate: access.key_file: %w", err)
	}
	c, err := loadOwn(certFile, keyFile, now)
	if err != nil {
		return nil, err
	}
	o.cur.Store(c)
	o.nextCheck.Store(now.Add(ownCheckInterval).UnixNano())
	l := c.Leaf
	if now.Before(l.NotBefore) {
		log.Warn("own certificate is not valid yet", "cert", certFile, "not_before", l.NotBefore)
	}
	log.Info("using the organizer's certificate", "cert", certFile, "subject", l.Subject.String(),
		"dns", l.DNSNames, "ips", l.IPAddresses, "not_after", l.NotAfter)
	return o, nil
}

// loadOwn reads and checks the pair: readable, matching, not expired.
func loadOwn(certFile, keyFile string, now time.Time) (*tls.Certificate, error) {
	for _, f := range []struct{ key, path string }{{"access.cert_file", certFile}, {"access.key_file", keyFile}} {
		fh, err := os.Open(f.path)
		if err != nil {
			return nil, fmt.Errorf("own certificate: %s: %w", f.key, err)
		}
		fh.Close()
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("own certificate: load %s and %s (PEM certificate chain and its private key, which must match): %w", certFile, keyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("own certificate: parse %s: %w", certFile, err)
		}
	}
	if !now.Before(c.Leaf.NotAfter) {
		return nil, fmt.Errorf("own certificate: %s expired on %s: renew it, or unset access.cert_file and access.key_file to use the built-in local CA",
			certFile, c.Leaf.NotAfter.Format(time.RFC3339))
	}
	return &c, nil
}

// get returns the current certificate, first reloading it when the files
// changed (looked at no more than once per ownCheckInterval).
func (o *ownCert) get(now time.Time) *tls.Certificate {
	if now.UnixNano() < o.nextCheck.Load() {
		return o.cur.Load()
	}
	if !o.mu.TryLock() {
		return o.cur.Load() // another handshake is checking
	}
	defer o.mu.Unlock()
	o.nextCheck.Store(now.Add(ownCheckInterval).UnixNano())
	cs, err1 := stampOf(o.certFile)
	ks, err2 := stampOf(o.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		if msg := err.Error(); msg != o.statErr {
			o.statErr = msg
			o.log.Warn("own certificate files not readable; serving the loaded certificate", "err", err)
		}
		return o.cur.Load()
	}
	o.statErr = ""
	if cs == o.certStamp && ks == o.keyStamp {
		return o.cur.Load()
	}
	// Remember this version even if it fails to load: a half-written pair
	// changes again when the writer finishes, and a bad one is logged once.
	o.certStamp, o.keyStamp = cs, ks
	c, err := loadOwn(o.certFile, o.keyFile, now)
	if err != nil {
		o.log.Error("reload own certificate failed; serving the previous one", "err", err)
		return o.cur.Load()
	}
	o.cur.Store(c)
	o.log.Info("reloaded own certificate", "cert", o.certFile, "subject", c.Leaf.Subject.String(), "not_after", c.Leaf.NotAfter)
	return c
}

// warnUncovered logs the hosts the organizer's certificate does not cover
// (loopback names excepted: organizers' certificates rarely hold them, and
// so are names ACME gets certificates for).
func (o *ownCert) warnUncovered(hosts hostSet, acme []string) {
	l := o.cur.Load().Leaf
	var missing []string
	for _, h := range hosts.strings() {
		switch {
		case h == "localhost" || h == "127.0.0.1" || h == "::1", slices.Contains(acme, h):
			continue
		}
		probe := h
		if rest, ok := strings.CutPrefix(h, "*."); ok {
			probe = "wildcard-probe." + rest // covered only by a matching wildcard
		}
		if l.VerifyHostname(probe) != nil {
			missing = append(missing, h)
		}
	}
	if len(missing) > 0 {
		o.log.Warn("own certificate does not cover these names; browsers will warn on them", "cert", o.certFile, "names", missing)
	}
}
