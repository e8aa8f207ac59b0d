# Steps of a test run that go on after a failure, and one summary at the end.
# Sourced by scripts/test (and by scripts/steps_test.go, which checks it):
#
#   source scripts/steps.bash
#   step vet go vet ./...        # output to the terminal and to $steps_logs/vet.log
#   step unit go test ./...      # runs even when vet failed
#   steps_finish                 # every failing test, then exit 1; or return
#
# A step's NAME names its log, so it is a word (letters, digits, - and _).
# steps_finish lists every failing test of every failed step as
# "  PACKAGE TEST" (the innermost failing subtests, "(N runs)" when it failed
# in several runs, "still running at the timeout" for a test that hung), and
# a failed step with no failing test (a build error, a panic outside a test,
# a command that is not go test) by its name and its log.

steps_logs=$(mktemp -d "${TMPDIR:-/tmp}/thon-test.XXXXXX")
steps_failed=()

step() { # step NAME COMMAND...
	local -
	set -o pipefail # the step's status is the command's, not tee's
	local name=$1 rc=0
	shift
	"$@" 2>&1 | tee "$steps_logs/$name.log" || rc=$?
	if ((rc != 0)); then
		steps_failed+=("$name")
	fi
	return 0
}

# steps_failures LOG: "  PACKAGE TEST" for every test that failed in the go
# test output LOG, and "  PACKAGE (...)" for a package that failed with none.
steps_failures() {
	awk '
		function flush(pkg,   i, j, leaf, seen, order, k) {
			k = 0
			for (i = 1; i <= n; i++) {
				leaf = 1
				for (j = 1; j <= n; j++)
					if (index(fails[j], fails[i] "/") == 1) leaf = 0
				if (!leaf) continue
				if (!(fails[i] in seen)) order[++k] = fails[i]
				seen[fails[i]]++
			}
			if (k == 0) printf "  %s (no test failed: a build error, or a panic outside a test; see the log)\n", pkg
			for (i = 1; i <= k; i++)
				printf "  %s %s%s\n", pkg, order[i], (seen[order[i]] > 1 ? " (" seen[order[i]] " runs)" : "")
			n = 0
			split("", fails)
		}
		/^\trunning tests:$/ { running = 1; next }
		running && /^\t\t[^ \t]/ { fails[++n] = $1 " (still running at the timeout)"; next }
		{ running = 0 }
		/^ *--- FAIL: / { sub(/^ +/, ""); fails[++n] = $3; next }
		/^FAIL[ \t]+[^ \t]+/ { flush($2) }
	' "$1"
}

steps_finish() {
	local name out
	if ((${#steps_failed[@]} == 0)); then
		return 0
	fi
	printf '\033[1m==> failed: %s (full output in %s)\033[0m\n' "${steps_failed[*]}" "$steps_logs" >&2
	for name in "${steps_failed[@]}"; do
		out=$(steps_failures "$steps_logs/$name.log")
		if [ -n "$out" ]; then
			printf '%s\n' "$out" >&2
		else
			printf '  %s failed (see %s)\n' "$name" "$steps_logs/$name.log" >&2
		fi
	done
	exit 1
}
