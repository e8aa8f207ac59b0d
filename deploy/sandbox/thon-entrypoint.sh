#!/bin/sh
# Start code-server for one THON participant. POSIX sh.
#
# Contract with THON:
#   - starts as root, creates the workspace ${THON_WORKSPACE:-/workspace} and
#     hands its top directory (not its contents) to coder (1000:1000), then
#     drops to coder for good (setpriv); code-server never runs as root, and
#     no process in the container stays root: PID 1 is dumb-init as coder
#     (or the engine's init, with `docker run --init`, and dumb-init below it);
#   - THON writes assistant config files into /home/coder itself, and VS Code
#     user settings to $settings below: an existing file is never
#     overwritten, a missing one gets the telemetry-off defaults;
#   - extensions baked into the image are installed already (in
#     /home/coder/.local/share/code-server/extensions, when it was built);
#     the others are installed in the background, never delaying or failing
#     the start: every *.vsix in /etc/thon/extensions, and every non-empty,
#     non-comment line of /etc/thon/extensions.txt (a marketplace id such as
#     kilocode.kilo-code, optionally @version, or a path to a .vsix) whose
#     extension is not installed yet. Failures go to stderr and
#     /tmp/thon-extensions.log;
#   - git knows who commits: unless the participant set them, user.name is
#     $THON_USER and user.email $THON_USER_EMAIL (default
#     $THON_USER@thon.invalid).
#
# Environment: PORT (default 8080), THON_WORKSPACE (default /workspace),
# THON_EXTENSION_TIMEOUT (seconds per extension, default 180), THON_USER,
# THON_USER_EMAIL.
set -eu

ws="${THON_WORKSPACE:-/workspace}"
coder_home=/home/coder
user_dir="$coder_home/.local/share/code-server/User"
settings="$user_dir/settings.json"

if [ "$(id -u)" = 0 ]; then
	# A new volume mounted at the workspace path is owned by root: hand its
	# top directory (not its contents) to coder.
	mkdir -p "$ws"
	chown 1000:1000 "$ws"
	# code-server keeps its state next to the settings; if THON created
	# these directories as root, coder could not write there.
	for d in "$coder_home/.local" "$coder_home/.local/share" \
		"$coder_home/.local/share/code-server" "$user_dir"; do
		if [ ! -d "$d" ]; then
			mkdir "$d"
			chown 1000:1000 "$d"
		elif [ "$(stat -c %u "$d")" = 0 ]; then
			chown 1000:1000 "$d"
		fi
	done
	if [ -f "$settings" ] && [ "$(stat -c %u "$settings")" = 0 ]; then
		chown 1000:1000 "$settings"
	fi
	# Drop root for good; dumb-init (signals, zombies) runs this script
	# again, as coder.
	exec setpriv --reuid=1000 --regid=1000 --init-groups \
		env HOME="$coder_home" USER=coder LOGNAME=coder SHELL=/bin/bash \
		dumb-init -- "$0" "$@"
fi
if [ "$$" = 1 ]; then
	# Started as coder (e.g. Kubernetes runAsUser: 1000) without an init.
	exec dumb-init -- "$0" "$@"
fi

if [ ! -e "$settings" ]; then
	mkdir -p "$user_dir"
	cat >"$settings" <<'JSON'
{
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "extensions.autoCheckUpdates": false,
  "extensions.autoUpdate": false,
  "workbench.enableExperiments": false
}
JSON
fi

# Who commits. The participant's own settings (a later git config --global)
# win; this only fills in what is unset.
if [ -n "${THON_USER:-}" ]; then
	if ! git config --global user.name >/dev/null 2>&1; then
		git config --global user.name "$THON_USER" || true
	fi
	if ! git config --global user.email >/dev/null 2>&1; then
		git config --global user.email "${THON_USER_EMAIL:-$THON_USER@thon.invalid}" || true
	fi
fi

ext_log=/tmp/thon-extensions.log
ext_timeout="${THON_EXTENSION_TIMEOUT:-180}"

install_extension() {
	if timeout "$ext_timeout" code-server --install-extension "$1" \
		</dev/null >>"$ext_log" 2>&1; then
		echo "thon-entrypoint: installed extension $1" >>"$ext_log"
	else
		rc=$?
		why="exit $rc"
		if [ "$rc" = 124 ]; then why="timed out after ${ext_timeout}s"; fi
		msg="thon-entrypoint: installing extension $1 failed ($why); see $ext_log"
		echo "$msg" >>"$ext_log"
		echo "$msg" >&2
	fi
}

# installed says whether the extension of a marketplace id (publisher.name,
# or publisher.name@version for that version) is installed already, going
# by $installed_list (code-server --list-extensions --show-versions; ids
# are not case-sensitive).
installed() {
	want=$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')
	case "$want" in
	*@*) printf '%s\n' "$installed_list" | grep -qxF "$want" ;;
	*) printf '%s\n' "$installed_list" | sed 's/@.*//' | grep -qxF "$want" ;;
	esac
}

install_extensions() {
	for f in /etc/thon/extensions/*.vsix; do
		if [ -f "$f" ]; then
			install_extension "$f"
		fi
	done
	if [ -r /etc/thon/extensions.txt ]; then
		installed_list=$(timeout "$ext_timeout" code-server --list-extensions --show-versions </dev/null 2>>"$ext_log" |
			tr '[:upper:]' '[:lower:]') || true
		while IFS= read -r line || [ -n "$line" ]; do
			# Trim blanks (and a CR from files written on Windows).
			line=$(printf '%s' "$line" | tr -d '\r' | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
			case "$line" in
			'' | '#'*) continue ;;
			*.vsix) ;;
			*)
				if installed "$line"; then
					echo "thon-entrypoint: extension $line is installed already (baked into the image)" >>"$ext_log"
					continue
				fi
				;;
			esac
			install_extension "$line"
		done </etc/thon/extensions.txt
	fi
}

# Detached (double fork): the installer is reparented to PID 1, which reaps
# it, and nothing it does can hold up or fail code-server's start.
# Failures still reach the container's stderr.
(install_extensions </dev/null >/dev/null &) || true

exec code-server \
	--bind-addr "0.0.0.0:${PORT:-8080}" \
	--auth none \
	--disable-telemetry \
	--disable-update-check \
	"$@" "$ws"
