package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"strconv"
	"text/template"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
)

// nginx is the baseline: Debian's nginx started by the benchmark in its own
// prefix (config, pid, logs, temp paths all in a temporary directory), never
// the system service.
type nginx struct {
	*benchkit.Proc
	port int
	pool *x509.CertPool // trusts the throwaway CA that issued its certificate
	dir  string
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
` + benchkit.NginxHTTPPrelude + `
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
// configuration, and starts nginx (benchkit.StartNginx), then waits until
// it answers GET /healthz through to the backend.
func startNginx(ctx context.Context, bin, version, dir, backend string) (*nginx, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	pool, err := benchkit.WriteCertificate(dir, "bench/proxy")
	if err != nil {
		return nil, err
	}
	port, err := benchkit.FreePort()
	if err != nil {
		return nil, err
	}
	var conf bytes.Buffer
	if err := nginxConf.Execute(&conf, map[string]any{
		"Prefix": dir, "Port": port, "Backend": backend,
		"HTTP2Directive": benchkit.VersionAtLeast(version, "1.25.1"),
	}); err != nil {
		return nil, err
	}
	p, err := benchkit.StartNginx(ctx, bin, dir, conf.Bytes())
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := benchkit.WaitNginx(ctx, p, dir, func(ctx context.Context) error { return probe(ctx, addr, cfg) }); err != nil {
		return nil, err
	}
	return &nginx{Proc: p, port: port, pool: pool, dir: dir}, nil
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

func (n *nginx) logTail() string { return n.LogTail(20) + benchkit.NginxErrors(n.dir, 20) }

// pids are the master and its workers (for CPU accounting).
func (n *nginx) pids() []int {
	return append([]int{n.PID()}, benchkit.ChildrenOf(n.PID())...)
}

func (n *nginx) stop() {
	if n != nil {
		n.Stop(10 * time.Second)
	}
}
