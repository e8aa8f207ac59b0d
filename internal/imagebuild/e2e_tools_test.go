package imagebuild

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
)

// Parts of TestOfflineImageBuild (opt-in, THON_E2E_IMAGE=1): the tools of
// the image, each run as coder in a container without network, and an
// image with an extension baked in.

// offline runs script with sh as coder in a new container of image without
// network and returns its output; it fails the test unless it exits 0.
func offline(ctx context.Context, t *testing.T, eng *engine, image, what, script string) string {
	t.Helper()
	out, code, err := eng.runOnce(ctx, image, "coder", []string{"/bin/sh", "-ec", script})
	out = strings.TrimSpace(out)
	if err != nil || code != 0 {
		t.Errorf("%s (offline, as coder): exit %d, %v:\n%s", what, code, err, out)
	}
	return out
}

// checkTools: what the participant finds in the image works without network.
func checkTools(ctx context.Context, t *testing.T, eng *engine, image string) {
	// (The first run writes code-server's config file, and says so.)
	if out := offline(ctx, t, eng, image, "code-server --version", "code-server --version | tail -n 1"); !strings.HasPrefix(out, DefaultCodeServerVersion+" ") {
		t.Errorf("code-server --version = %q, want %s", out, DefaultCodeServerVersion)
	}
	major, _, _ := strings.Cut(DefaultNodeVersion, ".")
	if out := offline(ctx, t, eng, image, "node and npm", "node --version; npm --version; command -v node"); out != "v"+DefaultNodeVersion+"\n"+DefaultNPMVersion+"\n/usr/local/bin/node" || !strings.HasPrefix(out, "v"+major+".") {
		t.Errorf("node, npm = %q, want v%s (Node.js %s), npm %s", out, DefaultNodeVersion, major, DefaultNPMVersion)
	}
	for _, tool := range Tools {
		if tool.Command == "" {
			continue
		}
		// From the workspace, as a participant types it.
		out := offline(ctx, t, eng, image, tool.Command+" --version", "cd /workspace && "+tool.Command+" --version </dev/null")
		if !strings.Contains(out, tool.Version) {
			t.Errorf("%s --version = %q, want %s %s", tool.Command, out, tool.Package, tool.Version)
		}
	}
	if out := offline(ctx, t, eng, image, "python3 -m venv", `python3 -m venv /tmp/venv && /tmp/venv/bin/pip --version && /tmp/venv/bin/python -c 'import sys; print(sys.prefix)'`); !strings.HasSuffix(out, "/tmp/venv") || !strings.Contains(out, "pip ") {
		t.Errorf("python3 -m venv: %q", out)
	}
	if out := offline(ctx, t, eng, image, "a JDK compiles and runs Java", `cd /tmp
printf 'class Hello { public static void main(String[] a) { System.out.println("hello " + Runtime.version().feature()); } }\n' >Hello.java
java -version 2>&1 | head -n 1; javac Hello.java && java Hello`); !strings.Contains(out, "openjdk version") || !strings.Contains(out, "hello ") {
		t.Errorf("java: %q", out)
	}
	if out := offline(ctx, t, eng, image, "build-essential compiles C and C++", `cd /tmp
gcc --version | head -n 1
printf '#include <stdio.h>\nint main(void) { puts("hello c"); return 0; }\n' >h.c && gcc -O2 -o hc h.c && ./hc
printf '#include <iostream>\nint main() { std::cout << "hello c++" << std::endl; }\n' >h.cc && g++ -o hcc h.cc && ./hcc
make --version | head -n 1`); !strings.Contains(out, "gcc") || !strings.Contains(out, "hello c\nhello c++") {
		t.Errorf("gcc: %q", out)
	}
	if out := offline(ctx, t, eng, image, "chromium --version", "chromium --version"); !strings.HasPrefix(out, "Chromium ") {
		t.Errorf("chromium --version = %q", out)
	}
	// Playwright's driver with Debian's Chromium, headless: no browser download.
	pw := `cd /tmp && cat >pw.js <<'JS'
const { chromium } = require('/usr/local/lib/node_modules/playwright-core');
(async () => {
  const browser = await chromium.launch({ executablePath: process.env.PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH, headless: true });
  const page = await browser.newPage();
  await page.goto('data:text/html,<title>THON playwright ' + (40 + 2) + '</title><p>hello</p>');
  console.log(await page.title());
  await browser.close();
})().catch(e => { console.error(e); process.exit(1); });
JS
timeout 120 node pw.js`
	if out := offline(ctx, t, eng, image, "playwright-core drives the system Chromium", pw); !strings.HasSuffix(out, "THON playwright 42") {
		t.Errorf("playwright: %q, want the page's title", out)
	}
	// A native module builds against the image's Node.js headers (no
	// download from nodejs.org), through npm, without warnings about npm's
	// configuration.
	gyp := `mkdir -p /tmp/addon && cd /tmp/addon
cat >package.json <<'JSON'
{"name": "addon", "version": "1.0.0", "gypfile": true}
JSON
cat >binding.gyp <<'GYP'
{"targets": [{"target_name": "hello", "sources": ["hello.c"]}]}
GYP
cat >hello.c <<'C'
#include <node_api.h>
static napi_value Hello(napi_env env, napi_callback_info info) {
  napi_value s;
  napi_create_string_utf8(env, "hello addon", NAPI_AUTO_LENGTH, &s);
  return s;
}
NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "hello", NAPI_AUTO_LENGTH, Hello, NULL, &fn);
  napi_set_named_property(env, exports, "hello", fn);
  return exports;
}
C
npm install --offline --no-audit --no-fund 2>&1
node -p "require('./build/Release/hello.node').hello()"`
	if out := offline(ctx, t, eng, image, "npm builds a native module offline", gyp); !strings.HasSuffix(out, "hello addon") || strings.Contains(out, "npm warn") {
		t.Errorf("native module: %q, want it built and loaded, without npm warnings", out)
	}
	// Kilo's codebase index: LanceDB is there and works.
	lance := `cd /tmp && node --input-type=module -e "
const lancedb = await import(process.env.KILO_LANCEDB_PATH);
const db = await lancedb.connect('/tmp/index');
const table = await db.createTable('code', [{ id: 1, vector: [0.1, 0.2] }, { id: 2, vector: [0.3, 0.4] }]);
console.log('rows', await table.countRows());
"`
	if out := offline(ctx, t, eng, image, "LanceDB for Kilo's codebase index", lance); !strings.HasSuffix(out, "rows 2") {
		t.Errorf("lancedb: %q", out)
	}
	if out := offline(ctx, t, eng, image, "pnpm", "pnpm --version"); out != toolVersion("pnpm") {
		t.Errorf("pnpm --version = %q", out)
	}
	// The git MCP server (assistants.git_mcp), started as Kilo and OpenCode
	// start it (stdio, in a workspace), answers MCP's initialize and lists
	// its git tools.
	mcp := `mkdir -p /tmp/repo && cd /tmp/repo && git init -q . && cat >/tmp/mcp.js <<'JS'
const { spawn } = require('child_process');
const p = spawn('git-mcp-server', [], { env: { ...process.env, MCP_TRANSPORT_TYPE: 'stdio', GIT_BASE_DIR: '/tmp/repo' }, stdio: ['pipe', 'pipe', 'inherit'] });
const send = m => p.stdin.write(JSON.stringify({ jsonrpc: '2.0', ...m }) + '\n');
let buf = '', info;
p.stdout.on('data', d => {
  buf += d;
  for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) {
    const line = buf.slice(0, i).trim();
    if (!line.startsWith('{')) continue;
    const m = JSON.parse(line);
    if (m.id === 1) {
      info = m.result.serverInfo;
      send({ method: 'notifications/initialized' });
      send({ id: 2, method: 'tools/list' });
    } else if (m.id === 2) {
      console.log(info.name, info.version, m.result.tools.map(t => t.name).filter(n => n.startsWith('git_')).length, 'git tools');
      p.kill(); process.exit(0);
    }
  }
});
send({ id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'thon-e2e', version: '1' } } });
setTimeout(() => { console.error('no answer'); process.exit(1); }, 60000);
JS
node /tmp/mcp.js`
	if out := offline(ctx, t, eng, image, "git-mcp-server answers MCP", mcp); !strings.Contains(out, toolVersion("@cyanheads/git-mcp-server")) || !strings.HasSuffix(out, " git tools") || strings.HasSuffix(out, " 0 git tools") {
		t.Errorf("git-mcp-server: %q, want its name, version %s and its git tools", out, toolVersion("@cyanheads/git-mcp-server"))
	}
}

func toolVersion(pkg string) string {
	for _, t := range Tools {
		if t.Package == pkg {
			return t.Version
		}
	}
	return ""
}

// checkBakedExtension builds the image with an extension baked in (its root
// file system is the one just built: only the extension and the finishing
// build are new) and checks that a sandbox of it has the extension at once,
// that the entrypoint does not install it again, and that no .vsix is left
// in the image.
func checkBakedExtension(ctx context.Context, t *testing.T, eng *engine, opts Options) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "baked.vsix"), makeVSIX(t, "thon-e2e", "baked", "1.2.3"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := opts
	o.Tag, o.ExtensionsDir = bakedTag(opts.Tag), dir
	t0 := time.Now()
	res, err := Build(ctx, o, func(step string, done, total int) {
		t.Logf("%6s [%d/%d] %s", time.Since(t0).Round(time.Second), done, total, step)
	})
	if err != nil {
		t.Fatalf("build with an extension: %v", err)
	}
	t.Cleanup(func() {
		bg := context.Background()
		eng.cli.ImageRemove(bg, o.Tag, client.ImageRemoveOptions{PruneChildren: true})
		list, _ := eng.cli.ImageList(bg, client.ImageListOptions{Filters: make(client.Filters).Add("reference", BaseRepository)})
		for _, im := range list.Items {
			for _, tag := range im.RepoTags {
				if strings.Contains(tag, "-x") {
					eng.cli.ImageRemove(bg, tag, client.ImageRemoveOptions{PruneChildren: true})
				}
			}
		}
	})
	t.Logf("with the extension: %s, %.0f MB, took %s", res.ID, float64(res.Size)/1e6, res.Took.Round(time.Second))
	if len(res.Extensions) != 1 || res.Extensions[0] != "thon-e2e.baked@1.2.3" {
		t.Errorf("baked %v, want thon-e2e.baked@1.2.3", res.Extensions)
	}
	again, err := Build(ctx, o, nil)
	if err != nil || !again.Cached || again.ID != res.ID {
		t.Errorf("the same build again: cached=%v id=%s err=%v, want the image %s", again.Cached, again.ID, err, res.ID)
	}

	// In the image, before any sandbox starts: installed, owned by coder, no
	// .vsix and no config of code-server's left behind.
	out := offline(ctx, t, eng, o.Tag, "the baked extension in the image", `test ! -e ~/.config/code-server
ls /opt/thon/extensions /tmp
stat -c %U ~/.local/share/code-server/extensions/thon-e2e.baked-1.2.3
code-server --list-extensions --show-versions`)
	if !strings.Contains(out, "coder\n") || !strings.HasSuffix(out, "thon-e2e.baked@1.2.3") || strings.Contains(out, ".vsix") {
		t.Errorf("in the image: %q", out)
	}

	etc := t.TempDir()
	os.WriteFile(filepath.Join(etc, "extensions.txt"), []byte("thon-e2e.baked\nTHON-E2E.Baked@1.2.3\nthon-e2e.baked@9.9.9\n"), 0o644)
	id, _ := runContainer(ctx, t, eng, o.Tag, []string{"THON_EXTENSION_TIMEOUT=30"},
		[]mount.Mount{{Type: mount.TypeBind, Source: etc, Target: "/etc/thon", ReadOnly: true}}, nil)
	if out := mustExec(ctx, t, eng, id, "coder", "code-server", "--list-extensions"); !strings.Contains(out, "thon-e2e.baked") {
		t.Errorf("at start: %q, want thon-e2e.baked", out)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		log, _, _ := execIn(ctx, eng, id, "coder", "cat", "/tmp/thon-extensions.log")
		if strings.Count(log, "thon-entrypoint: extension ") >= 2 && strings.Contains(log, "thon-e2e.baked@9.9.9") {
			if !strings.Contains(log, "extension thon-e2e.baked is installed already") ||
				!strings.Contains(log, "extension THON-E2E.Baked@1.2.3 is installed already") {
				t.Errorf("the baked extension was not recognised as installed:\n%s", log)
			}
			// Another version than the baked one is asked for from the
			// marketplace (unreachable here: it fails, logged).
			if !strings.Contains(log, "installing extension thon-e2e.baked@9.9.9 failed") {
				t.Errorf("another version was not tried:\n%s", log)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("extensions.txt not processed in time:\n%s", log)
		}
		time.Sleep(time.Second)
	}
}

// bakedTag is the tag of the image with a baked extension, beside tag.
func bakedTag(tag string) string {
	repo, version := tag, "latest"
	if i := strings.LastIndex(tag, ":"); i > strings.LastIndex(tag, "/") {
		repo, version = tag[:i], tag[i+1:]
	}
	return fmt.Sprintf("%s:%s-e2e-baked", repo, version)
}
