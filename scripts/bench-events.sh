#!/usr/bin/env bash
# The event-path benchmark (not part of CI): builds the release on-image-available and
# on-copy-complete binaries, then starts each cold through a local Lambda Runtime API against
# the AWS stand-in (bench/standin.py) with 30 ms per call. Scenario, targets and the critical
# path: bench/event_bench.py and docs/critical-path.md.
#
#   bash scripts/bench-events.sh                  # 5 cold runs of the whole scenario
#   bash scripts/bench-events.sh --runs 10        # any option of bench/event_bench.py passes through
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== building the release event functions (cargo shows its progress; a first build takes several minutes)"
cargo build --release --locked -p on-image-available -p on-copy-complete
echo "== running the benchmark"
exec python3 bench/event_bench.py --dir target/release "$@"
