#!/usr/bin/env bash
# Runs every fuzz target (go test -fuzz) for FUZZTIME each (default 30s).
# The targets cover every parser of user- or guest-controlled bytes: the
# bzImage setup header, guest memory bounds checks, the port-I/O devices.
# Crashers are saved by Go under the package's testdata/fuzz/ and then run
# as regression cases by every plain `go test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fuzztime=${FUZZTIME:-30s}
status=0
while IFS=: read -r file target; do
  pkg="./$(dirname "$file")"
  echo "fuzz: $pkg $target for $fuzztime" >&2
  go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" || status=1
done < <(grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | sed 's|^\./||; s|:func |:|')
exit $status
