#!/usr/bin/env bash
# Runs every go test -fuzz target for a bounded time each (FUZZTIME, default 5s), one after the other.
# A failure leaves its input under the package's testdata/fuzz/<Target>/ (commit it: it becomes a
# regression test that plain `go test` runs). The first run compiles the dependencies with fuzzing
# instrumentation and takes a few minutes; later runs reuse the build cache.
#
#   scripts/fuzz.sh                 # all targets, 5s each
#   FUZZTIME=1m scripts/fuzz.sh     # longer
#   scripts/fuzz.sh ./policy        # only the targets of one package
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-5s}"
pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
	pkgs=(./bot ./policy ./grants/webhook)
fi
failed=0
for pkg in "${pkgs[@]}"; do
	targets=$(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true)
	for t in $targets; do
		echo "== $pkg $t ($FUZZTIME)"
		if go test -run '^$' -fuzz "^${t}\$" -fuzztime "$FUZZTIME" "$pkg"; then
			continue
		fi
		# A real finding is saved under testdata/fuzz/<Target>/ and fails again deterministically when the
		# seed corpus runs first. A failure that saved nothing is the fuzzing engine itself (a worker killed
		# on a loaded machine): run the target once more rather than fail the build on it.
		if [ -z "$(git status --porcelain -- "$pkg/testdata/fuzz/$t" 2>/dev/null)" ]; then
			echo "== $pkg $t failed without saving an input; running it once more" >&2
			go test -run '^$' -fuzz "^${t}\$" -fuzztime "$FUZZTIME" "$pkg" && continue
		fi
		echo "FAIL: $pkg $t (a failing input, if any, is under $pkg/testdata/fuzz/$t)" >&2
		failed=1
	done
done
exit $failed
