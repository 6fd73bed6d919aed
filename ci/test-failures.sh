#!/usr/bin/env bash
# Prints, after a failed `go test -v` run, each failed test with its own last messages (the t.Log, t.Error and
# t.Fatal lines, without the components' logs around them), so that the end of a long CI log says what failed.
# Usage: ci/test-failures.sh LOG
set -euo pipefail
log=$1
echo "==== failed tests (from $log) ===="
awk '
  /^=== RUN   [^\/ ]+$/ { name = $3; n = 0; next }
  /^[ ]+[A-Za-z0-9_]+\.go:[0-9]+: / { if (name != "") { msgs[n++ % 40] = $0; cont = 1 } ; next }
  # testify continues a message on lines indented by spaces and a tab ("        \tError: ...")
  cont && /^[ ]+\t/ { if (name != "") { msgs[n++ % 40] = $0 } ; next }
  { cont = 0 }
  /^--- FAIL: / {
    print $0
    start = (n > 40) ? n - 40 : 0
    for (i = start; i < n; i++) print msgs[i % 40]
    print ""
    next
  }
  /^[ ]+--- FAIL: / { print $0 }
  /^e2e: node .* under pressure: / { pressure[np++] = $0 }
  /^panic: / { print; p = 20 ; next }
  p > 0 { print; p-- }
  END { for (i = 0; i < np; i++) print pressure[i] }
' "$log"
