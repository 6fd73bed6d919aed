#!/usr/bin/env bash
# Builds the pinned command-line tools the tests need from the Go module proxy into ./bin.
# Nothing is downloaded from release pages: every tool is built from its Go module, and a
# tool already built at the pinned version is kept (the Go build cache makes rebuilds cheap).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOPROXY="${GOPROXY_OVERRIDE:-https://proxy.golang.org}" GOFLAGS=-mod=mod CGO_ENABLED=0
bin="$PWD/bin"
mkdir -p "$bin"

# name  package@version  ldflags
tools=(
  "helm3|helm.sh/helm/v3/cmd/helm@v3.22.0|-X helm.sh/helm/v3/internal/version.version=v3.22.0"
  "helm4|helm.sh/helm/v4/cmd/helm@v4.3.1|-X helm.sh/helm/v4/internal/version.version=v4.3.1"
  "kubeconform|github.com/yannh/kubeconform/cmd/kubeconform@v0.8.0|"
  "registry|github.com/distribution/distribution/v3/cmd/registry@v3.1.2|"
  "kustomize|sigs.k8s.io/kustomize/kustomize/v5@v5.8.2|"
  "helm-docs|github.com/norwoodj/helm-docs/cmd/helm-docs@v1.14.2|-X main.version=v1.14.2"
  "promtool|github.com/prometheus/prometheus/cmd/promtool@v0.316.0|-X github.com/prometheus/common/version.Version=0.316.0"
  "oci-conformance|github.com/opencontainers/distribution-spec/conformance@v0.0.0-20260831232431-97274622c111|-X main.Version=v0.0.0-20260831232431-97274622c111"
  "actionlint|github.com/rhysd/actionlint/cmd/actionlint@v1.7.12|-X github.com/rhysd/actionlint.version=v1.7.12"
)
# The release tools (make release, make release-verify): a cold build costs about 6 minutes each on 2 cores, so
# `bash ci/tools.sh` (all) leaves them out; name them to build them: `bash ci/tools.sh syft cosign`.
release_tools=(
  "syft|github.com/anchore/syft/cmd/syft@v1.57.2|-X main.version=v1.57.2"
  "cosign|github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5|-X sigs.k8s.io/release-utils/version.gitVersion=v2.6.5"
)

want=${*:-all}
for entry in "${tools[@]}" "${release_tools[@]}"; do
  IFS='|' read -r name pkg ldflags <<<"$entry"
  if [ "$want" = all ]; then
    if printf '%s\n' "${release_tools[@]}" | grep -qxF -- "$entry"; then continue; fi
  elif ! grep -qw -- "$name" <<<"$want"; then continue; fi
  stamp="$bin/.$name.version"
  if [ -x "$bin/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$pkg" ]; then continue; fi
  echo "tools: building $name from $pkg" >&2
  tmp=$(mktemp -d)
  GOBIN="$tmp" go install -trimpath -ldflags "-s -w $ldflags" "$pkg"
  mv "$tmp"/* "$bin/$name"
  rm -rf "$tmp"
  echo "$pkg" >"$stamp"
done
