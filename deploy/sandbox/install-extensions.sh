#!/bin/sh
# Install every .vsix in DIR (default /opt/thon/extensions) into
# code-server's extensions directory, as coder, while the image is built:
# the participants' sandboxes start with them, without a marketplace. POSIX
# sh. Used by both builds: `docker build` of ../Dockerfile runs it, and
# `thon setup image` (internal/imagebuild) runs it in a container of the
# provisioned root file system, without network, and commits the result.
#
# It prints the installed extensions (code-server --list-extensions
# --show-versions) at the end, and fails if one was not installed.
set -eu

dir="${1:-/opt/thon/extensions}"
export HOME=/home/coder
if [ "$(id -u)" = 0 ]; then
	echo "install-extensions.sh: run it as coder, not root" >&2
	exit 2
fi

n=0
for f in "$dir"/*.vsix; do
	[ -f "$f" ] || continue
	echo "==> install $f"
	code-server --install-extension "$f" </dev/null
	n=$((n + 1))
done
echo "==> installed extensions"
code-server --list-extensions --show-versions </dev/null
# What code-server wrote besides the extensions has no place in an image: a
# config file with a random password, logs, a cache of the .vsix files.
rm -rf "$HOME/.config/code-server" "$HOME/.cache/code-server"
if [ -d "$HOME/.local/share/code-server" ]; then
	find "$HOME/.local/share/code-server" -mindepth 1 -maxdepth 1 ! -name extensions -exec rm -rf {} +
fi
echo "==> $n extension(s) from $dir"
