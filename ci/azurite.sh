#!/usr/bin/env bash
# Installs Azurite (the Azure Blob emulator, npm `azurite`, pinned) into ./bin/azurite for the object-storage tests
# (internal/storecheck's unit tests and the e2e replica test on the `azure` driver) and prints the path of its
# azurite-blob launcher. An install already at the pinned version is kept. Azurite 3.37.0 declares node >= 22;
# it runs on node 20 all the same (npm's EBADENGINE warning is expected).
set -euo pipefail
cd "$(dirname "$0")/.."
version=3.37.0
dir="$PWD/bin/azurite"
stamp="$dir/.version"
if ! [ -x "$dir/node_modules/.bin/azurite-blob" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$version" ]; then
  command -v npm >/dev/null || { echo "azurite: npm is missing; apt-get install npm" >&2; exit 1; }
  echo "azurite: npm install azurite@$version into $dir" >&2
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && echo '{"name":"azurite-cache","private":true}' >package.json &&
    nice -n 10 npm install --no-audit --no-fund --loglevel=error "azurite@$version" >&2)
  echo "$version" >"$stamp"
fi
echo "$dir/node_modules/.bin/azurite-blob"
