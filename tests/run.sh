#!/bin/sh
# Runs the unit test binaries and the integration tests, and prints one
# closing "N passed, N failed" line for all of them.  Usage:
#   tests/run.sh [unit|integration]     (default: both)
# BUILD names the build directory (build/release or build/asan).
set -u
BUILD=${BUILD:-build/release}
PYTHON=${PYTHON:-/usr/bin/python3}
what=${1:-all}
here=$(cd "$(dirname "$0")/.." && pwd)
: "${BCDAD_FIXTURES:=$here/tests/fixtures}"
export BCDAD_FIXTURES
BCDAD_PYTHON=$PYTHON
export BCDAD_PYTHON
passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

tally() {
	# Adds the counts of every "N passed, N failed" line in $log.
	p=$(sed -n 's/.*: \([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
	f=$(sed -n 's/.*: \([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed.*/\2/p' "$log" | awk '{s+=$1} END {print s+0}')
	passed=$((passed + p))
	failed=$((failed + f))
}

if [ "$what" = all ] || [ "$what" = unit ]; then
	for t in "$BUILD"/tests/test_*; do
		[ -x "$t" ] || continue
		if ! "$t" >"$log" 2>&1; then
			cat "$log"
			grep -q ' passed, ' "$log" || failed=$((failed + 1))
		else
			tail -n 1 "$log"
		fi
		tally
	done
fi
if [ "$what" = all ] || [ "$what" = integration ]; then
	BCDAD_BIN="$here/$BUILD/bcdad" "$PYTHON" "$here/tests/integration/run.py" >"$log" 2>&1
	rc=$?
	cat "$log"
	tally
	[ $rc -eq 0 ] || grep -q ' passed, ' "$log" || failed=$((failed + 1))
fi
echo "check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
