#!/usr/bin/env bash
# Debian packages the end-to-end tests use besides the cluster's own (tests/cluster installs containerd, runc, CNI
# plugins and iptables): openssl makes a certificate exactly as the Azure tutorial does.
set -euo pipefail
missing=()
command -v openssl >/dev/null || missing+=(openssl)
if ((${#missing[@]})); then
  echo "e2e-deps: apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
