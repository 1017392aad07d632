#!/usr/bin/env bash
# The local run: the whole product against moto through the real Lambda runtime interface
# (cargo lambda watch + cargo lambda invoke). See scripts/demo.py for what it shows and checks.
#
#   bash scripts/demo.sh [--skip-sweeper] [--keep-workdir]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
