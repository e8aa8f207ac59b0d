#!/bin/sh
# Provision a debootstrapped Debian unstable ("sid") root file system into
# THON's LLM server image: llama.cpp's llama-server from Debian, with ggml's
# CPU backends (libggml0) and its Vulkan backend (libggml0-backend-vulkan),
# Mesa's Vulkan drivers for AMD and Intel GPUs, and the user llm (uid and gid
# 10001). Runs INSIDE the chroot, as root, with /proc and /dev mounted, a
# working /etc/resolv.conf and the apt archive cache bind-mounted at
# /var/cache/apt/archives (all done by `thon setup llm`, internal/imagebuild).
#
# Network: only the Debian mirror (apt).
#
# Environment:
#   DEBIAN_SUITE  the suite debootstrap made (for messages), e.g. sid
#   HTTP_PROXY, HTTPS_PROXY, NO_PROXY  passed on to apt when set
set -eu

SUITE="${DEBIAN_SUITE:-sid}"

export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 LANG=C.UTF-8
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

# What the image runs. llama.cpp-tools brings libllama0 and libggml0 (the
# CPU backends, one per x86 level, chosen at run time); the Vulkan backend
# needs a Vulkan driver for the GPU: Mesa's (RADV for AMD, ANV for Intel),
# or NVIDIA's, which the NVIDIA container toolkit mounts in at run time.
PACKAGES="
	llama.cpp-tools
	libggml0-backend-vulkan
	mesa-vulkan-drivers
"

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
# No daemons start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d

step "apt: update"
# Debian unstable's Release file carries a Valid-Until date a week ahead; on
# a machine whose clock is past it apt refuses the suite. Then, and only
# then, the check is turned off for this build, and said so: the Release
# file's signature is still checked.
update_log=/tmp/thon-apt-update.log
if apt-get update -q >"$update_log" 2>&1; then
	cat "$update_log"
elif grep -q 'is expired' "$update_log"; then
	cat "$update_log"
	echo "NOTE: Debian $SUITE's Release file is expired against this machine's clock ($(date -u '+%Y-%m-%d %H:%M UTC'))."
	echo "NOTE: building with apt -o Acquire::Check-Valid-Until=false: the Release file's date is not checked (its signature still is)."
	echo 'Acquire::Check-Valid-Until "false";' >>/etc/apt/apt.conf.d/90thon
	apt-get update -q
else
	cat "$update_log"
	exit 1
fi
rm -f "$update_log"

step "apt: install llama.cpp (llama-server), the Vulkan backend and Mesa's Vulkan drivers"
# shellcheck disable=SC2086
apt-get install -y -q $PACKAGES
apt-mark manual $PACKAGES >/dev/null

step "check: llama-server and its backends"
version=$(llama-server --version 2>&1 | sed -n 's/^version: //p' | head -n 1)
if [ -z "$version" ]; then
	echo "llama-server --version printed no version:" >&2
	llama-server --version >&2 || true
	exit 1
fi
echo "  llama-server $version"
backends=$(dirname "$(dpkg -L libggml0-backend-vulkan | grep '/libggml-vulkan\.so$')")
for so in libggml-vulkan.so libggml-cpu-x64.so; do
	test -f "$backends/$so" || { echo "ggml backend $backends/$so is missing" >&2; exit 1; }
	echo "  ok $backends/$so"
done
for icd in radeon intel; do
	test -f "/usr/share/vulkan/icd.d/${icd}_icd.json" || test -f "/usr/share/vulkan/icd.d/${icd}_icd.$(uname -m).json" || {
		echo "Mesa's Vulkan driver $icd is missing from /usr/share/vulkan/icd.d" >&2
		exit 1
	}
done
ls /usr/share/vulkan/icd.d | sed 's/^/  ok vulkan driver /'

step "user: llm (uid and gid 10001)"
if ! id llm >/dev/null 2>&1; then
	groupadd --gid 10001 llm
	useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin llm
fi
mkdir -p /etc/thon/llm

step "clean up"
rm -rf /root/.cache /tmp/* /var/tmp/*
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
step "done: llama-server $version"
