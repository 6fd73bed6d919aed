#!/usr/bin/env bash
# make release: build, push, describe and sign everything a release publishes, into $RELEASE_OUT (_out/release):
#   images/     the product and registry images as OCI layout tarballs (go run ./ci/images build), the exact
#               images the tests run, for $RELEASE_PLATFORMS
#   digests.txt "REF@DIGEST" of every pushed image index and of the OCI chart
#   manifests.txt "REF@DIGEST OS/ARCH" of each platform's image
#   sbom/       an SPDX SBOM per image and platform (syft), each attached to that platform's image as a signed
#               cosign attestation (type spdxjson)
#   chart/      the chart .tgz with cert-manager vendored in charts/ (ci/stagechart), its Helm provenance file
#               (.prov, PGP) and the OCI chart pushed and cosign-signed
#   release.md  what was published and how to verify it
# Every image index (and, --recursive, each platform manifest) and the OCI chart is signed with cosign: with the
# key COSIGN_KEY (any cosign key reference; COSIGN_PASSWORD from the environment) or, without it, keyless (OIDC,
# as in .github/workflows/release.yaml).
#
# Environment:
#   RELEASE_REGISTRY     HOST[:PORT] to push to, over TLS (required)
#   RELEASE_NAMESPACE    repository path under it (default connected-registry): images at
#                        HOST/NAMESPACE/{connected-registry,distribution}, the chart at HOST/NAMESPACE/charts
#   RELEASE_USERNAME, RELEASE_PASSWORD   registry credentials (HTTP Basic / token exchange), both or neither
#   RELEASE_CA           PEM file of a CA to trust for the registry besides the system roots
#   RELEASE_PLATFORMS    default linux/amd64,linux/arm64
#   RELEASE_OUT          default _out/release
#   RELEASE_TLOG_UPLOAD  upload signatures to the Rekor transparency log (default false with COSIGN_KEY, always
#                        true keyless)
#   COSIGN_KEY, COSIGN_PASSWORD          the cosign key; empty signs keyless
#   HELM_KEYRING, HELM_SIGN_KEY, HELM_PASSPHRASE_FILE   the PGP secret keyring, key name and passphrase file of
#                        `helm package --sign`; RELEASE_HELM_PROVENANCE=false leaves the .prov out
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export GOPROXY="${GOPROXY:-https://proxy.golang.org}" GOFLAGS="${GOFLAGS:--mod=mod}"
# syft must not look for its own updates: the release runs offline.
export SYFT_CHECK_FOR_APP_UPDATE=false

fail() { echo "release: $*" >&2; exit 2; }
step() { echo "release: $* ($(( $(date +%s) - start )) s)"; }
start=$(date +%s)

registry=${RELEASE_REGISTRY:-}
[ -n "$registry" ] || fail "set RELEASE_REGISTRY=HOST[:PORT], the registry to push the images and the chart to"
case "$registry" in */* | *://*) fail "RELEASE_REGISTRY=$registry must be HOST[:PORT], without a scheme or path" ;; esac
namespace=${RELEASE_NAMESPACE:-connected-registry}
namespace=${namespace#/}
namespace=${namespace%/}
platforms=${RELEASE_PLATFORMS:-linux/amd64,linux/arm64}
out=${RELEASE_OUT:-_out/release}
case "$out" in /*) ;; *) out="$root/$out" ;; esac
user=${RELEASE_USERNAME:-}
password=${RELEASE_PASSWORD:-}
if { [ -n "$user" ] && [ -z "$password" ]; } || { [ -z "$user" ] && [ -n "$password" ]; }; then
  fail "give both RELEASE_USERNAME and RELEASE_PASSWORD, or neither"
fi
ca=${RELEASE_CA:-}
[ -z "$ca" ] || [ -r "$ca" ] || fail "RELEASE_CA=$ca is not a readable file"
key=${COSIGN_KEY:-}
if [ -n "$key" ]; then tlog=${RELEASE_TLOG_UPLOAD:-false}; else tlog=true; fi
case "$tlog" in true | false) ;; *) fail "RELEASE_TLOG_UPLOAD=$tlog must be true or false" ;; esac
provenance=${RELEASE_HELM_PROVENANCE:-true}
if [ "$provenance" = true ]; then
  [ -n "${HELM_KEYRING:-}" ] && [ -n "${HELM_SIGN_KEY:-}" ] ||
    fail "set HELM_KEYRING (a PGP secret keyring) and HELM_SIGN_KEY (the key's name) for the chart's provenance file, or RELEASE_HELM_PROVENANCE=false"
fi

bash ci/tools.sh helm3 syft cosign
helm=$root/bin/helm3 syft=$root/bin/syft cosign=$root/bin/cosign

rm -rf "$out"
mkdir -p "$out/images" "$out/sbom" "$out/chart"
# Credentials and the CA reach each tool through its own options, never through a shared docker config.
cosign_registry=()
helm_registry=()
if [ -n "$user" ]; then
  cosign_registry+=(--registry-username "$user" --registry-password "$password")
  helm_registry+=(--username "$user" --password "$password")
  export SYFT_REGISTRY_AUTH_AUTHORITY="$registry" SYFT_REGISTRY_AUTH_USERNAME="$user" SYFT_REGISTRY_AUTH_PASSWORD="$password"
fi
if [ -n "$ca" ]; then
  cosign_registry+=(--registry-cacert "$ca")
  helm_registry+=(--ca-file "$ca")
  export SYFT_REGISTRY_CA_CERT="$ca"
fi
sign_flags=(--yes "--tlog-upload=$tlog")
[ -z "$key" ] || sign_flags+=(--key "$key")

step "building the images for $platforms"
go run ./ci/images build --out "$out/images" --only connected-registry,registry --platforms "$platforms"

step "pushing the images to $registry/$namespace"
IMAGES_USERNAME="$user" IMAGES_PASSWORD="$password" IMAGES_CA="$ca" \
  go run ./ci/images push --image-dir "$out/images" --registry "$registry" \
    --refs-under ghcr.io/connected-registry --rename "connected-registry=$namespace" |
  tee "$out/push.log"
# "pushed SRC as DST@DIGEST in T"
sed -n 's/^pushed \([^ ]*\) as \([^ ]*\) in .*$/\1 \2/p' "$out/push.log" >"$out/pushed.txt"
[ "$(wc -l <"$out/pushed.txt")" -eq 2 ] || fail "expected two pushed images in $out/push.log"
# By digest only: REPO@DIGEST, the tag left out.
cut -d' ' -f2 "$out/pushed.txt" | sed -E 's/:[^:/@]+@/@/' >"$out/digests.txt"
# "SRC OS/ARCH DIGEST" of each platform's manifest
go run ./ci/release/platforms "$out"/images/*.tar >"$out/platforms.txt"
: >"$out/manifests.txt"

while read -r src pushed; do
  repo=${pushed%@*} digest=${pushed#*@}
  repo=${repo%:*}
  name=${repo##*/}
  step "signing $repo@$digest and each platform manifest"
  "$cosign" sign "${sign_flags[@]}" "${cosign_registry[@]}" --recursive "$repo@$digest" </dev/null
  while read -r s platform manifest; do
    [ "$s" = "$src" ] || continue
    # Each SBOM describes one platform's image and is attested on that image's manifest.
    sbom="$out/sbom/$name-${platform//\//-}.spdx.json"
    step "SBOM of $repo@$manifest ($platform)"
    "$syft" scan "registry:$repo@$manifest" --platform "$platform" --quiet -o "spdx-json=$sbom" </dev/null
    "$cosign" attest "${sign_flags[@]}" "${cosign_registry[@]}" --type spdxjson --predicate "$sbom" "$repo@$manifest" </dev/null
    echo "$repo@$manifest $platform" >>"$out/manifests.txt"
  done <"$out/platforms.txt"
done <"$out/pushed.txt"

step "packaging the chart with cert-manager vendored"
staged=$(go run ./ci/stagechart --out "$out/stage")
package=(package "$staged" --destination "$out/chart")
if [ "$provenance" = true ]; then
  package+=(--sign --keyring "$HELM_KEYRING" --key "$HELM_SIGN_KEY")
  [ -z "${HELM_PASSPHRASE_FILE:-}" ] || package+=(--passphrase-file "$HELM_PASSPHRASE_FILE")
fi
"$helm" "${package[@]}"
tgz=$(ls "$out"/chart/connected-registry-*.tgz)
rm -rf "$out/stage"

step "pushing the chart to oci://$registry/$namespace/charts"
export HELM_REGISTRY_CONFIG="$out/.helm-registry.json"
"$helm" push "$tgz" "oci://$registry/$namespace/charts" "${helm_registry[@]}" 2>&1 | tee "$out/chart-push.log"
chartRef=$(sed -n 's/^Pushed: *//p' "$out/chart-push.log")
chartDigest=$(sed -n 's/^Digest: *//p' "$out/chart-push.log")
[ -n "$chartRef" ] && [ -n "$chartDigest" ] || fail "helm push printed no reference and digest"
chartRef=${chartRef%:*}@$chartDigest
"$cosign" sign "${sign_flags[@]}" "${cosign_registry[@]}" "$chartRef"
echo "$chartRef" >>"$out/digests.txt"
rm -f "$out/.helm-registry.json"

if [ -n "$key" ]; then
  "$cosign" public-key --key "$key" >"$out/cosign.pub"
  verify=(--key cosign.pub)
else
  verify=(--certificate-identity-regexp "'^https://github.com/.+/.github/workflows/release.yaml@refs/tags/'"
    --certificate-oidc-issuer https://token.actions.githubusercontent.com)
fi
[ "$tlog" = true ] || verify+=(--insecure-ignore-tlog=true)
{
  echo "# Release $(basename "$tgz" .tgz)"
  echo
  echo "Published, by digest:"
  echo
  sed 's/^/    /' "$out/digests.txt"
  echo
  echo "Verify an image, its SBOM attestations and the OCI chart (docs/release.md explains each):"
  echo
  while read -r ref; do echo "    cosign verify ${verify[*]} $ref"; done <"$out/digests.txt"
  echo
  echo "Each platform's image, with its SPDX SBOM attested on it:"
  echo
  while read -r ref platform; do
    echo "    cosign verify-attestation ${verify[*]} --type spdxjson $ref   # $platform"
  done <"$out/manifests.txt"
  if [ "$provenance" = true ]; then
    version=$(basename "$tgz" .tgz)
    echo "    helm pull oci://$registry/$namespace/charts/connected-registry --version ${version#connected-registry-} --verify --keyring pubring.gpg"
  fi
} >"$out/release.md"
step "done: $out/release.md"
