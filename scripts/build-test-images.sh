#!/usr/bin/env bash
# build-test-images.sh builds the images the tests run, on the local Docker
# engine, from sources in this repository. Nothing is pulled: the test and
# example images are FROM scratch around a static Go binary, and the CDO
# example's base is a Debian root file system made with debootstrap
# (services/cdo/base.sh; minutes the first time, nothing once it exists).
set -euo pipefail
cd "$(dirname "$0")/.."
go run ./internal/testimages/buildall
bash services/cdo/base.sh
