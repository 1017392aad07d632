#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
# Installs what it needs first (scripts/setup.sh: pinned tools into .venv/ and .tools/).
#
#   formatting and lints     cargo fmt --check, cargo clippy -D warnings
#   Rust tests               domain, policy, events, handlers against the in-memory double,
#                            adapters against aws-smithy-mocks, integration against moto server
#   template and deploy      pytest tests/infra (event patterns, cfn-lint, sam validate, checkov,
#                            IAM, deploy.sh --dry-run)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast
echo "== pytest tests/infra"
.venv/bin/python -m pytest tests/infra -q
