#!/bin/sh
# Provision a debootstrapped Debian 13 ("trixie") root file system into the
# THON participant image. Runs INSIDE the chroot, as root, with /proc and /dev
# mounted, a working /etc/resolv.conf, the apt archive cache bind-mounted at
# /var/cache/apt/archives and the npm cache at /root/.npm (all done by
# `thon setup image`, internal/imagebuild).
#
# Network: only the Debian mirror (apt) and the npm registry. Everything
# code-server's install scripts would download from GitHub or nodejs.org is
# replaced:
#   - @vscode/ripgrep's postinstall (GitHub release download) -> Debian's ripgrep
#   - node-gyp header download (nodejs.org)                    -> libnode-dev (/usr/include/node)
#   - node-pre-gyp prebuilt binaries (argon2, GitHub)          -> built from source
#
# Environment:
#   CODE_SERVER_VERSION  code-server npm version (required), e.g. 4.100.3
#   NPM_VERSION          npm version left in the image for participants (default 10.9.9)
#   NPM_REGISTRY         npm registry; unset: npm's own default
#   BUILD_CA_FILE        CA bundle (path inside the chroot) trusted for npm
#                        during the build only, e.g. the host's bundle when a
#                        TLS-inspecting proxy sits in front of the registry;
#                        it is not left in the image
#   HTTP_PROXY, HTTPS_PROXY, NO_PROXY  passed on to apt and npm when set
set -eu

: "${CODE_SERVER_VERSION:?set CODE_SERVER_VERSION, e.g. 4.100.3}"
NPM_VERSION="${NPM_VERSION:-10.9.9}"

export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 LANG=C.UTF-8
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

# What the participant gets.
RUNTIME_PACKAGES="
	ca-certificates
	nodejs
	git
	curl
	ripgrep
	dumb-init
	nano
	vim-tiny
	less
	procps
	openssh-client
	python3
	bash-completion
	unzip
	xz-utils
	libkrb5-3
	libgssapi-krb5-2
"
# Only needed to build code-server's native modules; removed afterwards.
BUILD_PACKAGES="
	npm
	build-essential
	pkg-config
	libkrb5-dev
"

step() { printf '==> [%s] %s\n' "$(date +%T)" "$*"; }

step "apt: configure"
# Keep downloaded .deb files: /var/cache/apt/archives is THON's cache.
cat >/etc/apt/apt.conf.d/90thon <<'CONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT::Keep-Downloaded-Packages "true";
Acquire::Retries "3";
CONF
# No daemons start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d

step "apt: update"
apt-get update -q

step "apt: install runtime and build packages"
# shellcheck disable=SC2086
apt-get install -y -q $RUNTIME_PACKAGES $BUILD_PACKAGES

node_major=$(node -p 'process.versions.node.split(".")[0]')
step "node $(node --version), npm $(npm --version)"

# npm: registry, no audit/fund noise, native modules against Debian's headers,
# node-pre-gyp modules built from source instead of fetched from GitHub.
if [ -n "${NPM_REGISTRY:-}" ]; then
	export npm_config_registry="$NPM_REGISTRY"
fi
export npm_config_cache=/root/.npm
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
export npm_config_loglevel=warn
export npm_config_nodedir=/usr
export npm_config_build_from_source=true
export npm_config_unsafe_perm=true
export npm_config_jobs=max
# Every version here is exact (code-server, its shrinkwrap, npm): what is in
# the cache is what the registry would send, so do not ask it again.
export npm_config_prefer_offline=true
if [ -n "${BUILD_CA_FILE:-}" ]; then
	export npm_config_cafile="$BUILD_CA_FILE" NODE_EXTRA_CA_CERTS="$BUILD_CA_FILE"
fi
export JOBS=max

step "npm: code-server@$CODE_SERVER_VERSION (scripts off, run by hand below)"
npm install -g --ignore-scripts "code-server@$CODE_SERVER_VERSION"
cs="$(npm root -g)/code-server"
want_node=$(node -p "require('$cs/package.json').engines.node")
if [ "$want_node" != "$node_major" ]; then
	echo "code-server $CODE_SERVER_VERSION needs Node.js $want_node, this Debian has Node.js $node_major;" >&2
	echo "pick a code-server version whose engines.node is $node_major (npm view code-server@4 engines.node)." >&2
	exit 1
fi

step "npm: build code-server's own native modules (argon2)"
(cd "$cs" && npm rebuild argon2)

# What code-server's postinstall.sh does, minus the downloads.
step "npm: VS Code dependencies (lib/vscode)"
cd "$cs/lib/vscode"
npm install --omit=dev --ignore-scripts
# @vscode/ripgrep's postinstall downloads rg from GitHub unless bin/ exists.
mkdir -p node_modules/@vscode/ripgrep/bin
ln -sf /usr/bin/rg node_modules/@vscode/ripgrep/bin/rg
step "npm: build VS Code native modules from source (node-pty, spdlog, kerberos, ...)"
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
for (const m of ['node-pty', '@vscode/spdlog', 'kerberos', 'native-watchdog', '@vscode/deviceid', '@parcel/watcher']) {
  require(p + m);
  console.log('  ok', m);
}
require('$cs/node_modules/argon2'); console.log('  ok argon2');
"
"$cs/lib/vscode/node_modules/@vscode/ripgrep/bin/rg" --version | head -n1

step "npm: npm@$NPM_VERSION for participants (Debian's npm is a build tool here)"
npm install -g "npm@$NPM_VERSION"

step "apt: remove build packages"
# shellcheck disable=SC2086
apt-mark manual $RUNTIME_PACKAGES >/dev/null
# shellcheck disable=SC2086
apt-get purge -y -q $BUILD_PACKAGES
# Recommends would keep the compiler (dpkg-dev recommends gcc); nothing was
# installed for a recommendation, so none is needed.
apt-get autoremove -y -q --purge \
	-o APT::AutoRemove::RecommendsImportant=false \
	-o APT::AutoRemove::SuggestsImportant=false
for p in gcc cpp make libc6-dev binutils dpkg-dev libnode-dev node-gyp; do
	if dpkg -s "$p" >/dev/null 2>&1; then
		echo "build package $p is still installed after the clean-up" >&2
		exit 1
	fi
done
hash -r
test -x /usr/local/bin/npm
node -e "require('$cs/lib/vscode/node_modules/node-pty')"
code-server --version

step "user: coder (uid 1000), /workspace"
if ! id coder >/dev/null 2>&1; then
	groupadd --gid 1000 coder
	useradd --uid 1000 --gid 1000 --create-home --home-dir /home/coder --shell /bin/bash coder
fi
mkdir -p /workspace /opt/thon/extensions /etc/thon/extensions
chown coder:coder /workspace

step "clean up"
# Build leftovers of native modules (object files), keep the .node files.
find "$cs" -type d \( -name obj.target -o -name .deps \) -path '*/build/*' -prune -exec rm -rf {} +
# Source maps (about 150 MB) only serve debugging VS Code itself; the
# musl build of the file watcher is never loaded on Debian (glibc).
find "$cs" -type f -name '*.map' -delete
rm -rf "$cs/lib/vscode/node_modules/@parcel/watcher-linux-x64-musl"
unset NODE_EXTRA_CA_CERTS npm_config_cafile
node -e "require('$cs/lib/vscode/node_modules/node-pty'); require('$cs/node_modules/argon2')"
version=$(code-server --version | head -n1)
rm -rf /root/.cache /root/.config /root/.local /root/.node-gyp /root/.npmrc /tmp/* /var/tmp/*
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old
rm -rf /var/log/apt/* /var/log/dpkg.log /var/log/alternatives.log
rm -rf /usr/sbin/policy-rc.d /etc/apt/apt.conf.d/90thon
rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/*
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
# The engine provides these at run time; do not ship the build host's.
: >/etc/resolv.conf
printf 'localhost\n' >/etc/hostname
step "done: code-server $version"
