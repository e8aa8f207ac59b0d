package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// localCA is the loaded CA: certificate, its PEM, and the signing key.
type localCA struct {
	cert *x509.Certificate
	pem  []byte
	key  crypto.Signer
}

// loadOrCreateCA loads dir/ca.crt and dir/ca.key, or creates both when
// neither exists.
func loadOrCreateCA(dir string, now time.Time, log *slog.Logger) (*localCA, error) {
	certPath := filepath.Join(dir, CACertFile)
	keyPath := filepath.Join(dir, CAKeyFile)
	certExists, err := exists(certPath)
	if err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	keyExists, err := exists(keyPath)
	if err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	switch {
	case !certExists && !keyExists:
		ca, err := createCA(dir, certPath, keyPath, now)
		if err != nil {
			return nil, err
		}
		log.Info("created local CA; participants must trust it once (see /ca on the front door)",
			"cert", certPath, "subject", ca.cert.Subject.CommonName, "sha256", fingerprintSHA256(ca.cert.Raw))
		return ca, nil
	case certExists && !keyExists:
		return nil, fmt.Errorf("local CA: %s exists but %s is missing: restore the key, or %s", certPath, keyPath, recoverHint(dir))
	case !certExists && keyExists:
		return nil, fmt.Errorf("local CA: %s exists but %s is missing: restore the certificate, or %s", keyPath, certPath, recoverHint(dir))
	}
	ca, err := loadCA(certPath, keyPath, now, log)
	if err != nil {
		return nil, err
	}
	log.Debug("loaded local CA", "cert", certPath, "sha256", fingerprintSHA256(ca.cert.Raw))
	if left := ca.cert.NotAfter.Sub(now); left < caExpiryWarning {
		log.Warn("local CA expires soon; before the next event "+recoverHint(dir), "cert", certPath, "not_after", ca.cert.NotAfter)
	}
	return ca, nil
}

func recoverHint(dir string) string {
	return fmt.Sprintf("to start a new CA move %s and %s out of %s (participants must then trust the new CA)", CACertFile, CAKeyFile, dir)
}

func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, fmt.Errorf("check %s: %w", path, err)
}

func createCA(dir, certPath, keyPath string, now time.Time) (*localCA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("local CA: create directory: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("local CA: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown host"
	}
	notBefore := now.Add(-leafBackdate).UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   "THON local CA (" + host + ")",
			Organization: []string{"THON"},
		},
		NotBefore:             notBefore,
		NotAfter:              notBefore.AddDate(caValidityYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("local CA: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("local CA: parse new certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("local CA: encode key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// Key first: a crash in between leaves a key without a certificate,
	// which Open reports rather than silently replacing.
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, fmt.Errorf("local CA: write key: %w", err)
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("local CA: write certificate: %w", err)
	}
	return &localCA{cert: cert, pem: certPEM, key: key}, nil
}

// writeFileAtomic writes data to a temporary file next to path with the given
// mode, syncs it, and renames it into place.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func loadCA(certPath, keyPath string, now time.Time, log *slog.Logger) (*localCA, error) {
	dir := filepath.Dir(certPath)
	if err := fixKeyMode(keyPath, log); err != nil {
		return nil, err
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("local CA: read certificate: %w", err)
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("local CA: %s is not a usable certificate (%v): restore it from a backup, or %s", certPath, err, recoverHint(dir))
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("local CA: %s is not a CA certificate: restore it from a backup, or %s", certPath, recoverHint(dir))
	}
	if !now.Before(cert.NotAfter) {
		return nil, fmt.Errorf("local CA: %s expired on %s: %s", certPath, cert.NotAfter.Format(time.DateOnly), recoverHint(dir))
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("local CA: read key: %w", err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("local CA: %s is not a usable private key (%v): restore it from a backup, or %s", keyPath, err, recoverHint(dir))
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("local CA: %s does not belong to %s: restore the matching pair, or %s", keyPath, certPath, recoverHint(dir))
	}
	return &localCA{cert: cert, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), key: key}, nil
}

// fixKeyMode makes the CA key file 0600 when group or others can read it.
func fixKeyMode(keyPath string, log *slog.Logger) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	fi, err := os.Stat(keyPath)
	if err != nil {
		return fmt.Errorf("local CA: %w", err)
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(keyPath, 0o600); err != nil {
		return fmt.Errorf("local CA: %s is readable by other users (mode %04o) and could not be restricted: %w; run chmod 600 %s", keyPath, fi.Mode().Perm(), err, keyPath)
	}
	log.Warn("local CA key was readable by other users; restricted it to mode 0600", "path", keyPath, "was", fmt.Sprintf("%04o", fi.Mode().Perm()))
	return nil
}

func parseCertPEM(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM CERTIFICATE block")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

func parseKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM private key block")
		}
		switch b.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, err
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("unsupported key type %T", k)
			}
			return s, nil
		case "EC PRIVATE KEY":
			return x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			return x509.ParsePKCS1PrivateKey(b.Bytes)
		}
	}
}

// issue creates a server certificate for hosts, valid from an hour before
// now for leafValidity (never past the CA's own expiry). Its key lives only
// in memory.
func (ca *localCA) issue(hosts hostSet, now time.Time) (*tls.Certificate, error) {
	if !now.Before(ca.cert.NotAfter) {
		return nil, fmt.Errorf("issue server certificate: the local CA expired on %s: %s",
			ca.cert.NotAfter.Format(time.DateOnly), recoverHint("the data directory"))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issue server certificate: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("issue server certificate: %w", err)
	}
	notBefore := now.Add(-leafBackdate).UTC().Truncate(time.Second)
	notAfter := notBefore.Add(leafValidity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	ips := make([]net.IP, len(hosts.ips))
	for i, ip := range hosts.ips {
		ips[i] = net.IP(ip.AsSlice())
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   "THON front door",
			Organization: []string{"THON"},
		},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              hosts.dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue server certificate for %s: %w", strings.Join(hosts.strings(), ", "), err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issue server certificate: parse: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("random serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

// fingerprintSHA256 formats the SHA-256 of a DER certificate as "AB:CD:…".
func fingerprintSHA256(der []byte) string {
	sum := sha256.Sum256(der)
	return colonHex(sum[:])
}

// fingerprintSHA1 is the "thumbprint" Windows shows.
func fingerprintSHA1(der []byte) string {
	sum := sha1.Sum(der)
	return colonHex(sum[:])
}

func colonHex(b []byte) string {
	h := strings.ToUpper(hex.EncodeToString(b))
	var sb strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(h[i : i+2])
	}
	return sb.String()
}
