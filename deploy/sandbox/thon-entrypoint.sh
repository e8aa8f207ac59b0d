#!/bin/sh
# Start code-server for one THON participant.
set -eu
ws="${THON_WORKSPACE:-/workspace}"

if [ "$(id -u)" = 0 ]; then
	# A new volume mounted at the workspace path is owned by root: hand its
	# top directory (not its contents) to coder, then drop root for good.
	mkdir -p "$ws"
	chown 1000:1000 "$ws"
	exec setpriv --reuid=1000 --regid=1000 --init-groups \
		env HOME=/home/coder USER=coder "$0" "$@"
fi

exec dumb-init code-server \
	--bind-addr "0.0.0.0:${PORT:-8080}" \
	--auth none \
	--disable-telemetry \
	--disable-update-check \
	"$@" "$ws"
