#!/usr/bin/env bash
# A profile-guided release build of callflow (rustc's -Cprofile-generate and
# -Cprofile-use). Not part of CI; BENCHMARKS.md, session 21, has what it measured
# (issue 12).
#
# Why: callgrind's cache simulation of a plain call (BENCHMARKS.md, session 21)
# counts about 12,500 instruction-cache misses and 4,500 mispredicted branches
# against 296,000 instructions: the path a call takes through callflow, tokio and
# the parsers is long and straight, and the front end waits on it. A profile lets
# LLVM lay hot code together, move cold paths (errors, logging) out of the way and
# inline where calls are hot.
#
# How: it builds the load examples instrumented, runs plain calls and hand-offs
# through them with SIPp (Kamailio left out), merges the profiles with
# llvm-profdata of the LLVM rustc is built on (Debian's llvm-NN; rustc 1.95 is
# LLVM 22: apt-get install llvm-22), then builds the release binary and the
# examples with the profile. The training load is what the benchmarks measure, so
# they measure the build an operator would run.
#
# What the profile covers: UDP calls from a pstn number to a trunk, and the seed's
# hand-off (two webhooks over HTTP, a re-target). Code the training never runs (TCP
# and TLS transports, the HTTP API and store, media through rtpengine) is taken by
# LLVM as cold and optimised for size: it behaves the same, with less inlining than
# in the plain release build. A deployment whose calls take those paths adds its own
# load to the training step (train, below).
#
#   scripts/pgo-build.sh            # needs sip-tester and llvm-NN
#   target/pgo/optimised/release/callflow serve
#   target/pgo/optimised/release/examples/vs_kamailio 500 10000 0 3
set -euo pipefail
cd "$(dirname "$0")/.."

major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
profdata=$(command -v "llvm-profdata-$major" || true)
[ -n "$profdata" ] || { echo "needs llvm-profdata-$major (apt-get install llvm-$major)" >&2; exit 1; }
command -v sipp >/dev/null || { echo "needs SIPp (apt-get install sip-tester)" >&2; exit 1; }

work="$PWD/target/pgo"
rm -rf "$work/profiles"
mkdir -p "$work/profiles"
examples=(--example vs_kamailio --example load_handoff --example partner_webhook)

echo "1/4 instrumented build"
RUSTFLAGS="-Cprofile-generate=$work/profiles" CARGO_TARGET_DIR="$work/instrumented" \
  cargo build --release "${examples[@]}"

echo "2/4 training: plain calls, then hand-offs (Kamailio's rounds left out)"
bin="$work/instrumented/release/examples"
log="$work/training.log"
# Without /usr/sbin on PATH the examples skip Kamailio (and may say so in their exit
# status once callflow's part is done); what counts is that every call went through.
train() {
  env PATH=/usr/bin:/bin "$@" >"$log" 2>&1 || true
}
train "$bin/vs_kamailio" 200 4000 0 1
grep -q "4000 ok .* 0 failed" "$log" || { echo "training calls failed:" >&2; cat "$log" >&2; exit 1; }
train "$bin/load_handoff" 100 2000
grep -q "^failed calls *0$" "$log" || { echo "training hand-offs failed:" >&2; cat "$log" >&2; exit 1; }

echo "3/4 merging the profiles"
"$profdata" merge -o "$work/callflow.profdata" "$work/profiles"

echo "4/4 optimised build"
RUSTFLAGS="-Cprofile-use=$work/callflow.profdata" CARGO_TARGET_DIR="$work/optimised" \
  cargo build --release --bins --examples
echo "built: $work/optimised/release/callflow and its examples"
