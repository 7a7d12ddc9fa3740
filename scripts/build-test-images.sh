#!/usr/bin/env bash
# build-test-images.sh builds the images the tests run, on the local Docker
# engine, from sources in this repository. Nothing is pulled: every image is
# FROM scratch around a static Go binary.
set -euo pipefail
cd "$(dirname "$0")/.."
go run ./internal/testimages/buildall
