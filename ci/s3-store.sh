#!/usr/bin/env bash
# Builds the S3-compatible store the `make e2e-s3` and `make bench-storage` targets run on the test host: MinIO,
# from its Go module (no semver tags; the pseudo-version below is the one tried in the 2026-12 anchors), into
# ./bin/minio. A cold build takes about 17 minutes on 2 cores, so it is kept out of .ci/run; a binary already built
# at the pinned version is kept. MinIO is AGPLv3: it is a test tool here, never shipped in an image.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOPROXY="${GOPROXY_OVERRIDE:-https://proxy.golang.org}" GOFLAGS=-mod=mod CGO_ENABLED=0
pkg=github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c
bin="$PWD/bin"
stamp="$bin/.minio.version"
mkdir -p "$bin"
if [ -x "$bin/minio" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$pkg" ]; then exit 0; fi
echo "s3-store: building minio from $pkg (cold: about 17 minutes on 2 cores)" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" nice -n 19 go install -trimpath -ldflags "-s -w" "$pkg"
mv "$tmp/minio" "$bin/minio"
echo "$pkg" >"$stamp"
