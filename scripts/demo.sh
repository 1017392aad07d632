#!/usr/bin/env bash
# The local run: the whole product against moto through the real Lambda runtime interface
# (cargo lambda watch + cargo lambda invoke). See scripts/demo.py for what it shows and checks.
#
#   bash scripts/demo.sh [--skip-sweeper] [--keep-workdir] [--policy-source file|env]
set -euo pipefail
cd "$(dirname "$0")/.."
cat >&2 <<'MSG'
demo: on a fresh machine this first installs, pinned, into the repo: the Python tools (moto, boto3,
      cargo-lambda; .venv, about 1-2 minutes) and the infra tools (aws-sam-cli, checkov; .tools),
      then builds the three functions (debug, about 5-7 minutes on 2 cores, cargo's progress shown).
      Later runs skip both and take about a minute.
MSG
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
