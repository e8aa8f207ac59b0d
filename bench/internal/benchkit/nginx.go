package benchkit

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// NginxHTTPPrelude is the start of an http block that keeps every file
// nginx writes in the benchmark's own prefix (Prefix in the template's
// data) and logs no requests.
const NginxHTTPPrelude = `    access_log off;
    client_body_temp_path {{.Prefix}}/tmp/body;
    proxy_temp_path {{.Prefix}}/tmp/proxy;
    fastcgi_temp_path {{.Prefix}}/tmp/fastcgi;
    uwsgi_temp_path {{.Prefix}}/tmp/uwsgi;
    scgi_temp_path {{.Prefix}}/tmp/scgi;
`

// FindNginx locates nginx on PATH and reads its version; why says what the
// benchmark compares with it, for the error when it is missing.
func FindNginx(why string) (bin, version string, err error) {
	bin, err = exec.LookPath("nginx")
	if err != nil {
		return "", "", fmt.Errorf("nginx is not on PATH; %s: install nginx: apt-get install -y nginx", why)
	}
	out, err := exec.Command(bin, "-v").CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("%s -v: %w\n%s", bin, err, out)
	}
	m := regexp.MustCompile(`nginx/(\d+\.\d+\.\d+)`).FindSubmatch(out)
	if m == nil {
		return "", "", fmt.Errorf("%s -v: no version in %q", bin, out)
	}
	return bin, string(m[1]), nil
}

// VersionAtLeast compares dotted versions ("1.22.1" >= "1.25.1").
func VersionAtLeast(v, want string) bool {
	a, b := strings.Split(v, "."), strings.Split(want, ".")
	for i := range max(len(a), len(b)) {
		var x, y int
		if i < len(a) {
			x, _ = strconv.Atoi(a[i])
		}
		if i < len(b) {
			y, _ = strconv.Atoi(b[i])
		}
		if x != y {
			return x > y
		}
	}
	return true
}

// StartNginx writes conf as dir/nginx.conf, checks it with nginx -t and
// runs nginx in the foreground with dir as its prefix (pid, logs and temp
// paths there; never the system service), as a Proc. Whether it answers
// is the caller's to wait for.
func StartNginx(ctx context.Context, bin, dir string, conf []byte) (*Proc, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	// The workers may run as another user (nobody, when this runs as root):
	// let them through to the temp paths.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		return nil, err
	}
	args := []string{"-p", dir + "/", "-c", confPath, "-e", filepath.Join(dir, "error.log")}
	if out, err := exec.CommandContext(ctx, bin, append(args, "-t")...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nginx -t rejects the generated %s: %w\n%s", confPath, err, out)
	}
	cmd := exec.Command(bin, append(args, "-g", "daemon off;")...)
	cmd.Dir = dir
	return StartProc("nginx", filepath.Join(dir, "stderr.log"), cmd)
}

// NginxErrors is the tail of nginx's error log in its prefix dir.
func NginxErrors(dir string, n int) string {
	b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
	return tail(string(b), n)
}

// WriteCertificate makes a throwaway CA and a server certificate for
// 127.0.0.1, ::1 and localhost, both ECDSA P-256 like THON's, writes the
// leaf and its key as dir/server.crt and dir/server.key and returns a pool
// that trusts the CA alone. org names the benchmark in the certificates.
func WriteCertificate(dir, org string) (*x509.CertPool, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{org}, CommonName: org + " throwaway CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{org}, CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "server.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "server.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// WaitNginx calls ready until it succeeds, nginx exits or 15 s pass.
func WaitNginx(ctx context.Context, p *Proc, dir string, ready func(context.Context) error) error {
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		err := ready(wctx)
		if err == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("nginx exited at start (%v):\n%s%s", p.Err(), p.LogTail(20), NginxErrors(dir, 20))
		case <-wctx.Done():
			p.Stop(10 * time.Second)
			return fmt.Errorf("nginx did not answer within 15s (last: %v):\n%s%s", err, p.LogTail(20), NginxErrors(dir, 20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}
