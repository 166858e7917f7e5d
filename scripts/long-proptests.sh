#!/usr/bin/env bash
# The long randomised hunt for the SIP parser and the flow compiler (issue 13): the
# #[ignore]d proptests, LONG_PROPTEST_CASES cases each (200,000 by default), in
# release mode. Not part of CI; BENCHMARKS.md records the last run.
#
#   scripts/long-proptests.sh            # 200,000 cases of each of the 4 tests
#   LONG_PROPTEST_CASES=1000000 scripts/long-proptests.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export LONG_PROPTEST_CASES="${LONG_PROPTEST_CASES:-200000}"
start=$(date +%s)
cargo test --release --test prop_sip --test prop_compiler -- --ignored --test-threads 2
echo "long proptests: ${LONG_PROPTEST_CASES} cases each, $(( $(date +%s) - start )) s"
