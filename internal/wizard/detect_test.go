package wizard

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/llm/lemonadetest"
	"github.com/thon-dev/thon/internal/testenv"
)

// What Detect finds: why Docker does not answer (TestDetectDocker has one
// that does), a Lemonade Server listening (with or without a key), a
// port in use and one free.
func TestDetect(t *testing.T) {
	lem := lemonadetest.New(lemonadetest.Options{})
	defer lem.Close()
	keyed := lemonadetest.New(lemonadetest.Options{Key: "k"})
	defer keyed.Close()
	busy, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	free := freePort(t)

	t.Setenv("DOCKER_HOST", "unix://"+t.TempDir()+"/docker.sock") // no engine: TestDetectDocker has one
	d := Detect(context.Background(), DetectOptions{LemonadeURL: lem.URL, LlamaURL: lem.URL, Ports: []int{busyPort, free}, ProbeTimeout: slowMachine})
	if d.Lemonade != lem.URL || d.Llama != "" {
		t.Errorf("Lemonade at %s: found lemonade %q, llama %q", lem.URL, d.Lemonade, d.Llama)
	}
	if p := d.PortFree(busyPort); p.Free || p.Why != "in use by another program" {
		t.Errorf("port in use: %+v", p)
	}
	if p := d.PortFree(free); !p.Free {
		t.Errorf("free port: %+v", p)
	}
	if d.GPU == "" {
		t.Errorf("no GPU kind")
	}
	for _, want := range []string{"LLM:        Lemonade answers at " + lem.URL, strconv.Itoa(busyPort) + ": in use by another program"} {
		if !strings.Contains(d.Summary(), want) {
			t.Errorf("summary lacks %q:\n%s", want, d.Summary())
		}
	}
	a := Defaults(d)
	if a.LLM != LLMLemonade || a.LLMURL != lem.URL {
		t.Errorf("Lemonade found, proposed %+v", a)
	}

	// A Lemonade with a key; nothing at all; Docker not answering.
	d = Detect(context.Background(), DetectOptions{LemonadeURL: keyed.URL, LlamaURL: "http://127.0.0.1:" + strconv.Itoa(free), Ports: []int{}, ProbeTimeout: slowMachine})
	if d.Lemonade != keyed.URL || d.Llama != "" {
		t.Errorf("Lemonade with a key: %+v", d)
	}
	if d.Docker != "" || !strings.Contains(d.DockerErr, "docker.sock") || !strings.Contains(d.Summary(), "thon setup installs it") {
		t.Errorf("no engine: %+v\n%s", d, d.Summary())
	}
	if a := Defaults(Detection{}); a.LLM != LLMManaged || a.HTTPSPort != 443 || a.HTTPPort != 80 {
		t.Errorf("nothing found: %+v", a)
	}
}

// The engine answering is found, with its version.
func TestDetectDocker(t *testing.T) {
	testenv.Docker(t)
	d := Detect(context.Background(), DetectOptions{Ports: []int{}})
	if d.Docker == "" || d.DockerErr != "" || !strings.Contains(d.Summary(), "Docker:     "+d.Docker+" answers") {
		t.Errorf("the engine here answers: %+v\n%s", d, d.Summary())
	}
}

// A llama.cpp llama-server listening is found (and not taken for Lemonade).
func TestDetectLlamaServer(t *testing.T) {
	l := testenv.LlamaServer(t, testenv.LlamaOptions{Image: testenv.LLMImage(t)})
	d := Detect(context.Background(), DetectOptions{LemonadeURL: l.URL, LlamaURL: l.URL, Ports: []int{}, ProbeTimeout: slowMachine})
	if d.Llama != l.URL || d.Lemonade != "" {
		t.Errorf("llama-server at %s: %+v", l.URL, d)
	}
	if a := Defaults(d); a.LLM != LLMLlama || a.LLMURL != l.URL {
		t.Errorf("proposed %+v", a)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// slowMachine bounds the probes of servers the tests started: a loaded
// machine may take longer than the product's 2 seconds to answer.
const slowMachine = 30 * time.Second
