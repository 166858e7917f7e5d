#!/usr/bin/env bash
# Instructions callflow executes per hand-off call, counted by valgrind's callgrind
# (Debian package valgrind): deterministic where CPU time on this shared machine
# drifts by 10% between runs, so an A/B of two builds shows a change of 1-2%.
# It runs examples/load_handoff at 20 calls/s under callgrind twice, with 200 and
# with 600 calls, and divides the difference by 400: start-up (config, flows, TLS
# roots) cancels out. User space only: the kernel's share of a call (sending and
# receiving datagrams, being woken) is not counted. Not part of CI; BENCHMARKS.md
# records the runs (issue 12).
#
#   cargo build --release --examples
#   scripts/instructions-per-call.sh                       # target/release/examples
#   scripts/instructions-per-call.sh /tmp/before /tmp/after  # directories holding
#                                       # load_handoff and partner_webhook builds
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)"; exit 1; }
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(target/release/examples)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Instructions of the whole load_handoff process for $2 calls of build dir $1.
instructions() {
  rm -f "$out"/cg.*
  # Kamailio's comparison round is left out (PATH without /usr/sbin); the example
  # then ends with a message about it, after callflow's part is done.
  env PATH=/usr/bin:/bin valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" \
    "$1/load_handoff" 20 "$2" >"$out/log" 2>&1 || true
  grep -q "^failed calls *0$" "$out/log" || { echo "calls failed under callgrind:" >&2; cat "$out/log" >&2; exit 1; }
  # The largest profile is the example's own process (forks before exec leave small ones).
  grep -h "^summary:" "$(ls -S "$out"/cg.* | head -n 1)" | awk '{print $2}'
}

for dir in "${dirs[@]}"; do
  few=$(instructions "$dir" 200)
  many=$(instructions "$dir" 600)
  echo "$dir: $(( (many - few) / 400 )) instructions per hand-off call"
done
