package main

import (
	"bytes"
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
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
)

// nginxMissing is what the benchmark says when there is no nginx to compare with.
const nginxMissing = "nginx is not on PATH; this benchmark compares THON's front door with it: install nginx: apt-get install -y nginx"

// nginx is the baseline: Debian's nginx started by the benchmark in its own
// prefix (config, pid, logs, temp paths all in a temporary directory), never
// the system service.
type nginx struct {
	bin     string
	version string
	prefix  string
	port    int
	pool    *x509.CertPool // trusts the throwaway CA that issued its certificate
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	log     string
}

// findNginx locates nginx on PATH and reads its version.
func findNginx() (bin, version string, err error) {
	bin, err = exec.LookPath("nginx")
	if err != nil {
		return "", "", errors.New(nginxMissing)
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

// versionAtLeast compares dotted versions ("1.22.1" >= "1.25.1").
func versionAtLeast(v, want string) bool {
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

// The configuration the seed ran: TLS termination, then every request and
// WebSocket upgrade proxied to the IDE, unbuffered, with long timeouts. The
// map sends "Connection: upgrade" for WebSockets and an empty Connection
// header otherwise, which is what lets upstream keep-alive work.
var nginxConf = template.Must(template.New("nginx.conf").Parse(`# written by bench/proxy; removed with its directory
worker_processes auto;
worker_rlimit_nofile 16384;
pid {{.Prefix}}/nginx.pid;
error_log {{.Prefix}}/error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log off;
    client_body_temp_path {{.Prefix}}/tmp/body;
    proxy_temp_path {{.Prefix}}/tmp/proxy;
    fastcgi_temp_path {{.Prefix}}/tmp/fastcgi;
    uwsgi_temp_path {{.Prefix}}/tmp/uwsgi;
    scgi_temp_path {{.Prefix}}/tmp/scgi;

    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      '';
    }

    upstream sandbox {
        server {{.Backend}};
        keepalive 64;
    }

    server {
        listen 127.0.0.1:{{.Port}} ssl{{if not .HTTP2Directive}} http2{{end}};
{{- if .HTTP2Directive}}
        http2 on;
{{- end}}
        server_name 127.0.0.1 localhost;

        ssl_certificate     {{.Prefix}}/server.crt;
        ssl_certificate_key {{.Prefix}}/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_session_timeout 1d;

        location / {
            proxy_pass http://sandbox;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $http_host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_read_timeout 86400s;
            proxy_send_timeout 86400s;
        }
    }
}
`))

// startNginx writes a throwaway CA and a certificate for 127.0.0.1, the
// configuration, checks it with nginx -t, starts nginx in the foreground (its
// own process group, so a Ctrl-C reaches the benchmark first, which then
// stops it) and waits until it answers GET /healthz through to the backend.
func startNginx(ctx context.Context, bin, version, dir, backend string) (*nginx, error) {
	n := &nginx{bin: bin, version: version, prefix: dir, log: filepath.Join(dir, "error.log")}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	// The workers may run as another user (nobody, when this runs as root):
	// let them through to the temp paths.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	pool, err := writeCertificate(dir)
	if err != nil {
		return nil, err
	}
	n.pool = pool
	port, err := benchkit.FreePort()
	if err != nil {
		return nil, err
	}
	n.port = port
	var conf bytes.Buffer
	if err := nginxConf.Execute(&conf, map[string]any{
		"Prefix": dir, "Port": port, "Backend": backend,
		"HTTP2Directive": versionAtLeast(version, "1.25.1"),
	}); err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	args := []string{"-p", dir + "/", "-c", confPath, "-e", n.log}
	if out, err := exec.CommandContext(ctx, bin, append(args, "-t")...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nginx -t rejects the generated %s: %w\n%s", confPath, err, out)
	}
	n.cmd = exec.Command(bin, append(args, "-g", "daemon off;")...)
	n.cmd.Dir = dir
	logf, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	// Pdeathsig: should the benchmark be killed outright, nginx goes too.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	n.done = make(chan struct{})
	go func() { n.err = n.cmd.Wait(); close(n.done) }()

	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		err := probe(wctx, addr, cfg)
		if err == nil {
			return n, nil
		}
		select {
		case <-n.done:
			return nil, fmt.Errorf("nginx exited at start (%v):\n%s", n.err, n.logTail())
		case <-wctx.Done():
			n.stop()
			return nil, fmt.Errorf("nginx did not answer GET /healthz through to %s within 15s (last: %v):\n%s", backend, err, n.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// probe sends one GET /healthz and wants 200 "ok".
func probe(ctx context.Context, addr string, cfg *tls.Config) error {
	t := &target{addr: addr, tls: cfg, host: addr}
	c, br, err := t.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(t.request()); err != nil {
		return err
	}
	_, err = readResponse(br)
	return err
}

func (n *nginx) logTail() string {
	var b []byte
	for _, f := range []string{"stderr.log", "error.log"} {
		x, _ := os.ReadFile(filepath.Join(n.prefix, f))
		b = append(b, x...)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

func (n *nginx) exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// pids are the master and its workers (for CPU accounting).
func (n *nginx) pids() []int {
	master := n.cmd.Process.Pid
	return append([]int{master}, benchkit.ChildrenOf(master)...)
}

// stop ends nginx: SIGTERM (fast shutdown), then SIGKILL to its process
// group after 10s. Safe to call twice.
func (n *nginx) stop() {
	if n == nil || n.cmd == nil || n.cmd.Process == nil {
		return
	}
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
		return
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.done
}

// writeCertificate makes a throwaway CA and a server certificate for
// 127.0.0.1, ::1 and localhost, both ECDSA P-256 like THON's, writes the
// leaf and its key for nginx and returns a pool that trusts the CA alone.
func writeCertificate(dir string) (*x509.CertPool, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"bench/proxy"}, CommonName: "bench/proxy throwaway CA"},
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
		Subject:      pkix.Name{Organization: []string{"bench/proxy"}, CommonName: "127.0.0.1"},
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
