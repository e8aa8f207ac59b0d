package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/thon-dev/thon/internal/llm/gguf"
)

// checkpointRE is a Hugging Face checkpoint: ORG/REPO, optionally :QUANT
// (a quantization the file name contains, e.g. Q4_K_M) or /FILE.gguf.
var checkpointRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(:[A-Za-z0-9._-]+|/[^:]+\.gguf)?$`)

// checkModelFile checks one model of backend llamacpp: the files THON
// mounts into the managed server exist and are GGUF models, and the context
// each participant gets fits the model's trained context.
func (c *Config) checkModelFile(bad func(path, hint, format string, args ...any), path string, m LLMModel, managed bool) {
	if m.Checkpoint != "" && !checkpointRE.MatchString(m.Checkpoint) {
		bad(path+".checkpoint", "a Hugging Face GGUF repository, e.g. checkpoint: unsloth/Qwen3-Coder-30B-A3B-Instruct-GGUF:Q4_K_M", "%q is not ORG/REPO[:QUANT]", m.Checkpoint)
	}
	for _, f := range []struct{ key, file string }{{"file", m.File}, {"mmproj", m.MMProj}} {
		if f.file == "" {
			continue
		}
		if !managed {
			bad(path+"."+f.key, "your llama-server at llm.url loads its own models: remove "+f.key+", or remove url and THON runs the server with this file", "is set, but THON does not run the server")
			continue
		}
		p, err := c.path(f.file)
		if err != nil {
			bad(path+"."+f.key, "give the model file's path", "%v", err)
			continue
		}
		info, err := ModelFileInfo(p)
		if err != nil {
			hint := "download a GGUF model (thon llm pull downloads a checkpoint), or fix the path (relative paths start at thon.yaml's directory)"
			if errors.Is(err, gguf.ErrNotGGUF) {
				hint = "llama.cpp loads GGUF files (.gguf): convert the model, or download its GGUF version"
			}
			bad(path+"."+f.key, hint, "%s: %v", f.file, err)
			continue
		}
		if f.key == "file" {
			if n := info.ContextLength(); n > 0 && m.CtxPerUser > n {
				bad(path+".ctx_per_user", fmt.Sprintf("llama-server gives no slot more than the model's trained context: set ctx_per_user to %d or less", n),
					"%d is more than %s was trained for (%d tokens)", m.CtxPerUser, filepath.Base(f.file), n)
			}
		}
	}
}

// ModelFileInfo reads the GGUF header of a model file, with errors that say
// what is wrong: missing, a directory, unreadable, not GGUF.
func ModelFileInfo(path string) (gguf.Info, error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return gguf.Info{}, errors.New("no such file")
	case err != nil:
		return gguf.Info{}, unwrapPath(err)
	case st.IsDir():
		return gguf.Info{}, errors.New("is a directory, not a model file")
	}
	info, err := gguf.ReadInfo(path)
	if errors.Is(err, gguf.ErrNotGGUF) {
		return gguf.Info{}, fmt.Errorf("not a GGUF model: %w", gguf.ErrNotGGUF)
	}
	if err != nil {
		return gguf.Info{}, unwrapPath(err)
	}
	return info, nil
}

// GPU device nodes; a variable so tests can point it elsewhere.
var devDir = "/dev"

// MissingGPU says why this machine has no GPU of the given kind ("" when it
// has one, or the kind is auto or none).
func MissingGPU(kind string) string {
	has := func(p string) bool { _, err := os.Stat(filepath.Join(devDir, p)); return err == nil }
	switch kind {
	case "nvidia":
		if !has("nvidiactl") {
			return "gpu is nvidia, but this machine has no NVIDIA GPU (no " + filepath.Join(devDir, "nvidiactl") + ")"
		}
	case "amd":
		if !has("kfd") || !hasRenderNode() {
			return "gpu is amd, but this machine has no AMD GPU (no " + filepath.Join(devDir, "kfd") + " and render node)"
		}
	case "intel":
		if !hasRenderNode() {
			return "gpu is intel, but this machine has no GPU render node (" + filepath.Join(devDir, "dri", "renderD*") + ")"
		}
	}
	return ""
}

func hasRenderNode() bool {
	m, _ := filepath.Glob(filepath.Join(devDir, "dri", "renderD*"))
	return len(m) > 0
}

// DetectGPU is what gpu: auto picks on this machine: nvidia, amd, intel
// (any other GPU with a render node: Vulkan) or none.
func DetectGPU() string {
	for _, k := range []string{"nvidia", "amd", "intel"} {
		if MissingGPU(k) == "" {
			return k
		}
	}
	return "none"
}

// ModelsDir is where thon llm pull puts downloaded models.
func (c *Config) ModelsDir() (string, error) {
	dir, err := c.DataDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "models"), nil
}

// CheckpointFileDir is the directory a checkpoint's files are downloaded
// into: server.data_dir/models/ORG/REPO.
func CheckpointFileDir(modelsDir, checkpoint string) string {
	repo, _, _ := strings.Cut(checkpoint, ":")
	parts := strings.SplitN(repo, "/", 3)
	if len(parts) < 2 {
		return filepath.Join(modelsDir, repo)
	}
	return filepath.Join(modelsDir, parts[0], parts[1])
}
