#!/usr/bin/env bash
# The sweeper benchmark (not part of CI): builds the release nightly-sweeper binary, then runs
# it through a local Lambda Runtime API against the paginating, latency-injecting, throttling
# AWS stand-in (bench/standin.py). Scenarios and targets: bench/sweeper_bench.py.
#
#   bash scripts/bench.sh                 # both scenarios, 100 ms per call, throttling on
#   bash scripts/bench.sh --scenario a    # one; any option of bench/sweeper_bench.py passes through
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== building the release nightly-sweeper (cargo shows its progress; a first build takes several minutes)"
cargo build --release --locked -p nightly-sweeper
echo "== running the benchmark"
exec python3 bench/sweeper_bench.py --binary target/release/nightly-sweeper "$@"
