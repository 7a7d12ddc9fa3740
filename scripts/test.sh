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

echo "test.sh: go test -race -count=1 -timeout 60m ./... $*" >&2
go test -race -count=1 -timeout 60m ./... "$@"
