#!/usr/bin/env bash
# test.sh is the project's one test command: it starts the real services
# (scripts/testenv.sh), builds the test images if a script for that exists,
# then vets and tests every package with the race detector. Extra arguments
# go to `go test`, e.g. scripts/test.sh -run TestContract -v
set -euo pipefail

cd "$(dirname "$0")/.."

bash scripts/testenv.sh >/dev/null
eval "$(bash scripts/testenv.sh env)"

if [ -f scripts/build-test-images.sh ]; then
	echo "test.sh: building test images" >&2
	bash scripts/build-test-images.sh
fi

echo "test.sh: go vet ./..." >&2
go vet ./...

# Packages are compiled side by side, then tested one at a time (-p 1):
# packages running containers at once make Debian 12's engine (20.10)
# deadlock in its network code (moby/moby#42545), and a hung engine fails
# every test after it. Tests within a package still run in parallel.
echo "test.sh: compiling the tests" >&2
bins=$(mktemp -d)
trap 'rm -rf "$bins"' EXIT
go test -race -c -o "$bins/" ./... >/dev/null
echo "test.sh: go test -race -count=1 -p 1 -timeout 60m ./... $*" >&2
go test -race -count=1 -p 1 -timeout 60m ./... "$@"

# Every fuzz target runs briefly in CI (or when GEF_FUZZ is set), on top of
# its seed corpus, which the run above already checked.
# Go 1.26's fuzzing engine can fail a target with a bare "context deadline
# exceeded" as -fuzztime runs out (golang/go#75804): such a run, which
# wrote no failing input, runs once more. A real finding always fails.
fuzz() {
	local dir=$1 target=$2 out
	echo "test.sh: fuzz $dir $target for $fuzztime" >&2
	if out=$(go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$dir" 2>&1); then
		printf '%s\n' "$out"
		return 0
	fi
	printf '%s\n' "$out"
	if grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
		echo "test.sh: $target stopped at its deadline with no failing input (golang/go#75804); once more" >&2
		go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$dir"
		return
	fi
	return 1
}

if [ -n "${CI:-}" ] || [ -n "${GEF_FUZZ:-}" ]; then
	fuzztime=${GEF_FUZZTIME:-10s}
	grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u | while read -r dir; do
		for target in $(grep -h '^func Fuzz' "$dir"/*_test.go | sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/'); do
			fuzz "$dir" "$target"
		done
	done
fi
