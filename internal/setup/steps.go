package setup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/imagebuild"
	"github.com/thon-dev/thon/internal/llm"
	"github.com/thon-dev/thon/wire"
)

// dockerProbes ping Docker and inspect its images, from the environment
// (DOCKER_HOST or the default socket).
func dockerProbes(runtime string) (func(context.Context) (string, error), func(context.Context, string) (map[string]string, int64, bool, error)) {
	connect := func() (*client.Client, error) { return client.New(client.FromEnv) }
	engine := func(ctx context.Context) (string, error) {
		if runtime == config.RuntimeKubernetes {
			return "kubernetes", nil
		}
		cli, err := connect()
		if err != nil {
			return "", err
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
			return "", err
		}
		v, err := cli.ServerVersion(ctx, client.ServerVersionOptions{})
		if err != nil {
			return "", err
		}
		return v.Version, nil
	}
	image := func(ctx context.Context, ref string) (map[string]string, int64, bool, error) {
		cli, err := connect()
		if err != nil {
			return nil, 0, false, err
		}
		defer cli.Close()
		r, err := cli.ImageInspect(ctx, ref)
		if cerrdefs.IsNotFound(err) {
			return nil, 0, false, nil
		}
		if err != nil {
			return nil, 0, false, err
		}
		var labels map[string]string
		if r.Config != nil {
			labels = r.Config.Labels
		}
		return labels, r.Size, true, nil
	}
	return engine, image
}

// engine: Docker installed (Debian's docker.io) and running.
func (s *Setup) engine(ctx context.Context) Step {
	st := Step{Title: "Docker engine"}
	if s.o.Config.Sandbox.Runtime == config.RuntimeKubernetes {
		st.Ready, st.State = true, "sandboxes run on the cluster (sandbox.runtime: kubernetes): no engine here"
		return st
	}
	if v, err := s.o.Engine(ctx); err == nil {
		st.Ready, st.State = true, "Docker "+v+" answers"
		return st
	}
	st.Root = true
	systemd := s.o.Systemd()
	var steps [][]string
	if _, err := s.o.LookPath("dockerd"); err != nil {
		if _, err := s.o.LookPath("apt-get"); err != nil {
			st.State = "Docker is not installed, and this machine has no apt-get"
			st.Fix = "install Docker Engine yourself (https://docs.docker.com/engine/install/), then run sudo thon setup again"
			return st
		}
		st.State = "Docker is not installed"
		steps = append(steps, []string{"apt-get", "update", "-q"}, []string{"apt-get", "install", "-y", "-q", "docker.io"})
	} else {
		st.State = "Docker is installed but does not answer"
	}
	if systemd {
		steps = append(steps, []string{"systemctl", "enable", "--now", "docker.service"})
	}
	for _, c := range steps {
		st.Do = append(st.Do, strings.Join(c, " "))
	}
	if !systemd {
		st.Do = append(st.Do, "start dockerd in the background (no systemd here; log: /var/log/thon-dockerd.log)")
	}
	st.Do = append(st.Do, "wait until it answers")
	st.apply = func(ctx context.Context) error {
		for _, c := range steps {
			if err := s.o.Command(ctx, s.o.Log, c[0], c[1:]...); err != nil {
				return err
			}
		}
		if !systemd {
			if err := startDetached(s.path("var/log/thon-dockerd.log"), "dockerd"); err != nil {
				return fmt.Errorf("start dockerd: %w", err)
			}
		}
		deadline := time.Now().Add(s.o.Wait)
		for {
			_, err := s.o.Engine(ctx)
			if err == nil {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("Docker does not answer after %s (%v): see journalctl -u docker.service, or /var/log/thon-dockerd.log", s.o.Wait, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	return st
}

// image: the participant image, built by THON when it is missing.
func (s *Setup) image(ctx context.Context) Step {
	ref := s.o.Config.Sandbox.Image
	st := Step{Title: "Participant image " + ref}
	labels, size, ok, err := s.o.Image(ctx, ref)
	if err != nil {
		st.State, st.Fix = "cannot ask the engine: "+err.Error(), "start Docker (the step before) and run this again"
		return st
	}
	want := imagebuild.DefaultCodeServerVersion
	have := labels[imagebuild.LabelCodeServerVersion]
	switch {
	case ok && have == want:
		st.Ready, st.State = true, fmt.Sprintf("present: code-server %s, %d MiB (sudo thon setup image --rebuild builds it again)", have, size>>20)
		return st
	case ok && have == "":
		st.Ready, st.State = true, fmt.Sprintf("present, %d MiB, not built by THON (its code-server version is unknown; thon doctor checks it)", size>>20)
		return st
	case ok:
		st.State = fmt.Sprintf("present with code-server %s; this THON is made for %s", have, want)
		st.Do = []string{"rebuild " + ref + " with code-server " + want + " (cached parts are reused)"}
	default:
		st.State = "not on the engine"
		st.Do = []string{"build " + ref + ": code-server " + want + ", the terminal agents and tools, from a container registry or, without one, from Debian's mirror (" + imagebuild.HostMirror() + ") and npm; about 6 minutes the first time on 2 quiet cores"}
	}
	st.Root = true
	st.apply = func(ctx context.Context) error {
		res, err := imagebuild.Build(ctx, imagebuild.Options{Tag: ref, ThonVersion: s.o.Version, Log: s.o.Log}, s.o.Progress)
		if err != nil {
			return err
		}
		fmt.Fprintf(s.o.Log, "%s: code-server %s, %d MB, %s build\n", res.Image, res.CodeServerVersion, res.Size>>20, res.Mode)
		return nil
	}
	return st
}

// llmImage: the image of the LLM server THON runs.
func (s *Setup) llmImage(ctx context.Context) Step {
	ref := s.o.Config.LLM.Image
	st := Step{Title: "LLM server image " + ref}
	labels, size, ok, err := s.o.Image(ctx, ref)
	switch {
	case err != nil:
		st.State, st.Fix = "cannot ask the engine: "+err.Error(), "start Docker and run this again"
		return st
	case ok:
		st.Ready, st.State = true, fmt.Sprintf("present: llama-server %s, %d MiB (sudo thon setup llm --rebuild builds it again)", orUnknown(labels[imagebuild.LabelLLMVersion]), size>>20)
		return st
	}
	st.State, st.Root = "not on the engine", true
	st.Do = []string{"build " + ref + ": llama.cpp's llama-server with its CPU and Vulkan backends, from Debian's mirror (" + imagebuild.HostMirror() + "); about a minute the first time"}
	st.apply = func(ctx context.Context) error {
		_, err := imagebuild.BuildLLM(ctx, imagebuild.LLMOptions{Tag: ref, ThonVersion: s.o.Version}, s.o.Progress)
		return err
	}
	return st
}

func orUnknown(s string) string {
	if s == "" {
		return "(version unknown)"
	}
	return s
}

// lemonade: Lemonade's keys (made when thon.yaml has none, and written
// there), its systemd drop-in and config.json settings, then a restart.
func (s *Setup) lemonade(ctx context.Context) Step {
	st := Step{Title: "Lemonade Server", Root: true}
	l := s.o.Config.LLM
	var newKeys [][2]string
	if l.APIKey == "" || l.AdminAPIKey == "" {
		if s.o.Config.Path == "" {
			st.State, st.Fix = "thon.yaml sets no llm.api_key and llm.admin_api_key, and there is no thon.yaml to write them to", "write one with thon init, then run sudo thon setup again"
			return st
		}
		if l.APIKey == "" {
			l.APIKey = newKey()
			newKeys = append(newKeys, [2]string{"llm.api_key", l.APIKey})
		}
		if l.AdminAPIKey == "" {
			l.AdminAPIKey = newKey()
			newKeys = append(newKeys, [2]string{"llm.admin_api_key", l.AdminAPIKey})
		}
	}
	ls := llm.LemonadeSetup{Root: s.o.Root, Systemctl: func(ctx context.Context, args ...string) error {
		return s.o.Command(ctx, s.o.Log, "systemctl", args...)
	}}
	p, err := ls.Plan(l)
	if err != nil {
		st.State = err.Error()
		return st
	}
	if p.Current && len(newKeys) == 0 {
		st.Ready, st.State = true, p.Unit+" has thon.yaml's keys and THON's settings"
		return st
	}
	st.State = p.Unit + " is installed"
	if len(newKeys) > 0 {
		var names []string
		for _, kv := range newKeys {
			names = append(names, kv[0])
		}
		st.Do = append(st.Do, "make "+strings.Join(names, " and ")+" (random) and write them into "+s.o.Config.Path+" (then readable by its owner only)")
	}
	st.Do = append(st.Do, p.Steps...)
	st.Do = append(st.Do, "wait until Lemonade answers at "+l.ServerURL())
	st.apply = func(ctx context.Context) error {
		if len(newKeys) > 0 {
			if err := config.SetInFile(s.o.Config.Path, newKeys); err != nil {
				return fmt.Errorf("write Lemonade's keys: %w", err)
			}
			s.o.Config.LLM.APIKey, s.o.Config.LLM.AdminAPIKey = l.APIKey, l.AdminAPIKey
		}
		if err := ls.Apply(ctx, p); err != nil {
			return err
		}
		if p.Current {
			return nil
		}
		return waitHTTP(ctx, l.ServerURL()+"/live", s.o.Wait)
	}
	return st
}

// newKey is a random key of letters and digits.
func newKey() string {
	b := make([]byte, 24)
	rand.Read(b)
	return "thon-" + hex.EncodeToString(b)
}

// models: the models thon.yaml configures, downloaded.
func (s *Setup) models(ctx context.Context) Step {
	cfg := s.o.Config
	l := cfg.LLM
	st := Step{Title: "LLM models"}
	dir, err := cfg.DataDir()
	if err != nil {
		st.State = err.Error()
		return st
	}
	modelsDir := filepath.Join(dir, "models")
	if l.Backend == config.BackendLemonade {
		return s.lemonadeModels(ctx, st)
	}
	var have, missing []string
	var bad []string
	for _, rm := range llm.Configured(l) {
		m := rm.Model
		switch {
		case l.TestModel(m):
			have = append(have, rm.Role+": THON's built-in test model")
		case m.File != "":
			if _, err := os.Stat(m.File); err != nil {
				bad = append(bad, fmt.Sprintf("llm.%s_model.file %s: %v", rm.Role, m.File, errors.Unwrap(err)))
				continue
			}
			have = append(have, rm.Role+": "+m.File)
		default:
			if f, err := llm.DownloadedFile(modelsDir, m.Checkpoint); err == nil {
				have = append(have, rm.Role+": "+f)
				continue
			}
			missing = append(missing, m.Checkpoint)
		}
	}
	if len(bad) > 0 {
		st.State, st.Fix = strings.Join(bad, "; "), "put the GGUF file there, or correct the path in thon.yaml"
		return st
	}
	if len(missing) == 0 {
		st.Ready, st.State = true, strings.Join(have, "; ")
		return st
	}
	st.State = "not downloaded: " + strings.Join(missing, ", ")
	endpoint := s.o.HFEndpoint
	if endpoint == "" {
		endpoint = llm.HFEndpoint()
	}
	st.Do = []string{"download " + strings.Join(missing, ", ") + " from " + endpoint + " into " + modelsDir + " (gigabytes: a broken download resumes; HF_TOKEN for a gated model)"}
	st.apply = func(ctx context.Context) error { return s.pull(ctx, modelsDir) }
	return st
}

// pull downloads the configured models: through the daemon when one runs
// (its LLM server then serves them at once), else here.
func (s *Setup) pull(ctx context.Context, modelsDir string) error {
	if c, ok := s.daemon(ctx); ok {
		return c.LLMPull(ctx, "", func(model string, p wire.PullProgress) {
			if s.o.Pull != nil {
				s.o.Pull(model, llm.PullProgress(p))
			}
		})
	}
	svc := llm.NewService(s.o.Config.LLM, llm.ServiceOptions{ModelsDir: modelsDir, HFEndpoint: s.o.HFEndpoint})
	return svc.Pull(ctx, "setup", "", s.o.Pull)
}

// lemonadeModels: Lemonade has every configured model downloaded.
func (s *Setup) lemonadeModels(ctx context.Context, st Step) Step {
	svc := llm.NewService(s.o.Config.LLM, llm.ServiceOptions{})
	status := svc.Status(ctx)
	if !status.Reachable {
		st.State, st.Fix = "Lemonade does not answer: "+status.Error, "start it (sudo systemctl start lemond) and run sudo thon setup again"
		return st
	}
	var missing, have []string
	for _, m := range status.Configured {
		if m.Downloaded {
			have = append(have, m.Model)
		} else {
			missing = append(missing, m.Model)
		}
	}
	if len(missing) == 0 {
		st.Ready, st.State = true, "Lemonade has "+strings.Join(have, ", ")
		return st
	}
	st.State = "Lemonade lacks " + strings.Join(missing, ", ")
	st.Do = []string{"pull " + strings.Join(missing, ", ") + " into Lemonade (from their checkpoints; gigabytes)"}
	st.apply = func(ctx context.Context) error { return s.pull(ctx, "") }
	return st
}
