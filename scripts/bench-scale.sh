#!/usr/bin/env bash
# The organization-scale benchmarks (not part of CI): builds the release event functions and
# sweeper, then runs, against the AWS stand-in (bench/standin.py, 30 ms per call, EC2 and KMS
# token buckets on):
#   accounts  bench/accounts_bench.py: 50 and 5,000 consumer accounts, key_policy and grants
#   burst     bench/burst_bench.py: 200 images within 10 s through the queues' concurrency bound
#   night     bench/sweeper_bench.py --scenario k: the steady night of a 5,000-account organization
#   targets   bench/targets_bench.py: copy_into over 5,000 accounts x 2 Regions, every event lost,
#             10,000 managed images alongside, 100 ms per call (not in `all`: ~10 minutes)
#   patchday  bench/copy_line_bench.py: 200 images x 2 Regions under EC2's copy cap of 20, copies
#             of 20 s (not in `all`: ~5 minutes)
#   targetline bench/target_line_bench.py: one event copying into 1,000 accounts x 2 Regions through
#             the target line, no night (not in `all`: ~5 minutes)
#   cli       bench/cli_standin.py: the ami-share binary's status and plan against the stand-in
#             (2,000 images; not in `all`: ~3 minutes)
#   plan      bench/plan_bench.py: the plan (`ami-share plan`, the sweeper's {"mode":"plan"}) of
#             10,000 images and 1,000,000 snapshots, 100 ms per call (not in `all`: ~15 minutes)
#
#   bash scripts/bench-scale.sh            # the first three
#   bash scripts/bench-scale.sh burst      # one of them
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
echo "== building the release functions (cargo shows its progress; a first build takes several minutes)"
cargo build --release --locked -p on-image-available -p on-copy-complete -p nightly-sweeper
status=0
if [ "$which" = all ] || [ "$which" = accounts ]; then
  echo "== (a) many consumer accounts"
  python3 bench/accounts_bench.py --dir target/release || status=1
fi
if [ "$which" = all ] || [ "$which" = burst ]; then
  echo "== (b) a burst of 200 images"
  python3 bench/burst_bench.py --dir target/release || status=1
fi
if [ "$which" = all ] || [ "$which" = night ]; then
  echo "== (c) the steady night of a 5,000-account organization"
  python3 bench/sweeper_bench.py --binary target/release/nightly-sweeper --scenario k --latency 0.03 || status=1
fi
if [ "$which" = targets ]; then
  echo "== (d) copy_into: 5,000 target accounts x 2 Regions, three nights"
  python3 bench/targets_bench.py --binary target/release/nightly-sweeper --accounts 5000 --images 10000 --latency 0.1 || status=1
fi
if [ "$which" = targetline ]; then
  echo "== (f) 2,000 target-owned copies from one event, through the target line"
  python3 bench/target_line_bench.py --dir target/release || status=1
fi
if [ "$which" = patchday ]; then
  echo "== (e) patch day: 200 images x 2 Regions through the copy line, cap 20"
  python3 bench/copy_line_bench.py --dir target/release || status=1
fi
if [ "$which" = cli ]; then
  echo "== (h) ami-share status and plan, the CLI binary, against the stand-in"
  cargo build --locked -p ami-share
  python3 bench/cli_standin.py --binary target/debug/ami-share --sweeper target/release/nightly-sweeper || status=1
fi
if [ "$which" = plan ]; then
  echo "== (g) the plan: 10,000 images, 1,000,000 snapshots, steady and after a policy change"
  python3 bench/plan_bench.py --binary target/release/nightly-sweeper || status=1
fi
exit "$status"
