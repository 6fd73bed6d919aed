#!/usr/bin/env bash
# make demo: on a fresh Linux machine, as root. Builds everything, starts the single-node cluster and a parent
# registry, installs the chart and pulls an image through it, then prints a report.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "demo: run as root (sudo make demo): it starts a Kubernetes node with containerd" >&2
  exit 1
fi
export GOPROXY="${GOPROXY:-https://proxy.golang.org}" GOFLAGS=-mod=mod
bash ci/tools.sh
exec go run ./tests/e2e/cmd/demo
