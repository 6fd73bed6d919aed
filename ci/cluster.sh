#!/usr/bin/env bash
# The single-node Kubernetes v1.37.2 test cluster (tests/cluster). Needs root.
#   ci/cluster.sh up|down|status|env|build|import TAR...   the cluster CLI
#   ci/cluster.sh test                                      up, smoke test, down
# A cold run builds Kubernetes from the Go module proxy (~13 min on 2 cores);
# the Go build cache makes later runs cheap. State: /var/lib/cr-cluster
# (CLUSTER_STATE_DIR).
set -euo pipefail
cd "$(dirname "$0")/../tests/cluster"
export GOPROXY="${GOPROXY:-https://proxy.golang.org}" GOFLAGS=-mod=mod CGO_ENABLED=0
cmd="${1:-test}"
case "$cmd" in
test)
  shift || true
  CLUSTER_E2E=1 exec go test -count=1 -timeout 60m -v -run '^TestCluster$' . "$@"
  ;;
*)
  exec go run ./cmd/cluster "$@"
  ;;
esac
