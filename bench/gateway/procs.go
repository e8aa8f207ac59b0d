package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
)

// server is one process on the measured path (or beside it, like Redis).
type server struct {
	*benchkit.Proc
	addr  string    // where clients connect
	ctl   string    // the gateway's control address (usage, metrics, pprof)
	stdin io.Closer // the child's stdin: it stops when this ends
}

// stop ends the process: SIGTERM, SIGKILL after 10s.
func (s *server) stop() {
	if s == nil {
		return
	}
	if s.stdin != nil {
		s.stdin.Close()
	}
	s.Proc.Stop(10 * time.Second)
}

// startSelf runs this executable again as one of its servers (see
// serveFlag) and waits for its address.
func startSelf(ctx context.Context, dir, name string, args ...string) (*server, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addrFile := filepath.Join(dir, name+".addr")
	cmd := exec.Command(exe, append([]string{serveFlag, name, "-addr-file", addrFile}, args...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	p, err := benchkit.StartProc(name, filepath.Join(dir, name+".log"), cmd)
	if err != nil {
		stdin.Close()
		return nil, err
	}
	s := &server{Proc: p, stdin: stdin}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		if b, err := os.ReadFile(addrFile); err == nil {
			f := strings.Fields(string(b))
			if len(f) > 0 {
				s.addr = f[0]
			}
			if len(f) > 1 {
				s.ctl = f[1]
			}
			return s, nil
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("%s exited at start (%v):\n%s", name, p.Err(), p.LogTail(20))
		case <-wctx.Done():
			s.stop()
			return nil, fmt.Errorf("%s did not start within 15s:\n%s", name, p.LogTail(20))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// --- nginx ---

// nginx as one would put it in front of a model server: plain HTTP,
// keep-alive to the upstream (HTTP/1.1 with an empty Connection header),
// no buffering so that streams pass event by event. keepalive_requests is
// raised on both sides (the default closes a connection every 1000
// requests), as Go's servers never close a busy keep-alive connection: the
// baseline gets its best case.
var nginxConf = template.Must(template.New("nginx.conf").Parse(`# written by bench/gateway; removed with its directory
worker_processes auto;
worker_rlimit_nofile 16384;
pid {{.Prefix}}/nginx.pid;
error_log {{.Prefix}}/error.log warn;

events {
    worker_connections 4096;
}

http {
` + benchkit.NginxHTTPPrelude + `    keepalive_requests 1000000;

    upstream llm {
        server {{.Upstream}};
        keepalive 64;
        keepalive_requests 1000000;
    }

    server {
        listen {{.Listen}};

        location / {
            proxy_pass http://llm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 600s;
            proxy_send_timeout 600s;
        }
    }
}
`))

// startNginx runs nginx (benchkit.StartNginx) with the configuration
// above and waits until it listens with its workers up.
func startNginx(ctx context.Context, bin, dir, upstream string) (*server, int, error) {
	port, err := benchkit.FreePort()
	if err != nil {
		return nil, 0, err
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var conf bytes.Buffer
	if err := nginxConf.Execute(&conf, map[string]any{"Prefix": dir, "Listen": listen, "Upstream": upstream}); err != nil {
		return nil, 0, err
	}
	p, err := benchkit.StartNginx(ctx, bin, dir, conf.Bytes())
	if err != nil {
		return nil, 0, err
	}
	// Ready when it answers; the workers are its children.
	var workers int
	err = benchkit.WaitNginx(ctx, p, dir, func(context.Context) error {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err != nil {
			return err
		}
		c.Close()
		if workers = len(benchkit.ChildrenOf(p.PID())); workers == 0 {
			return errors.New("no worker yet")
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return &server{Proc: p, addr: listen}, workers, nil
}

// pids are nginx's master and workers.
func (s *server) withChildren() []int {
	return append([]int{s.PID()}, benchkit.ChildrenOf(s.PID())...)
}

// --- Redis ---

const redisMissing = "redis-server is not on PATH; install it (apt-get install -y redis-server) or leave redis out of -paths"

func redisVersion(bin string) string {
	out, _ := exec.Command(bin, "--version").Output()
	if m := regexp.MustCompile(`v=(\S+)`).FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return "?"
}

// startRedis runs a private redis-server on a free loopback port, without
// persistence, its files in dir.
func startRedis(ctx context.Context, bin, dir string) (*server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	port, err := benchkit.FreePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--protected-mode", "no", "--daemonize", "no")
	cmd.Dir = dir
	p, err := benchkit.StartProc("redis-server", filepath.Join(dir, "redis.log"), cmd)
	if err != nil {
		return nil, err
	}
	s := &server{Proc: p, addr: addr}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		if r, err := redisCommand(addr, "PING"); err == nil && r == "+PONG" {
			return s, nil
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("redis-server exited at start (%v):\n%s", p.Err(), p.LogTail(20))
		case <-wctx.Done():
			s.stop()
			return nil, fmt.Errorf("redis-server did not answer PING on %s within 15s:\n%s", addr, p.LogTail(20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// redisCommand sends one inline command and returns the first line of the
// reply (e.g. "+PONG", ":42").
func redisCommand(addr, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}
