# shellcheck shell=bash
# tests/json-lib.sh - read sparsebak's `--json` output with a real JSON parser (jq),
# so the suites do not depend on how serde_json lays the text out.
#
# Sourced by tests/dest-lib.sh (on the host) and by tests/vm/scenarios/lib.sh (in the
# qemu guest: tests/vm/run-suite.sh copies this file into the share beside lib.sh, and
# tests/vm/build.sh puts jq into the guest image).

# json_sessions FIELD...: read `sparsebak list VOL --json` on stdin and print, per
# session (oldest first, as listed), the given fields separated by single spaces.
# A field is a jq path below the session object, e.g. `name`, `volsize`, `chunks`.
#   sparsebak list vol1 --json | json_sessions name volsize chunks
json_sessions() {
  [ "$#" -gt 0 ] || { echo "json_sessions: no field named" >&2; return 2; }
  local f filter=
  for f in "$@"; do
    case $f in
      *[!A-Za-z0-9_]*) echo "json_sessions: bad field name: $f" >&2; return 2 ;;
    esac
    filter+="${filter:+, }(.$f | tostring)"
  done
  jq -r "if type == \"array\" then .[] else error(\"list --json did not print an array\") end | [$filter] | join(\" \")"
}
