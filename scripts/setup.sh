#!/usr/bin/env bash
# Installs what the tests and the local run need, pinned, into the repo (.venv/).
# Needs only a Rust toolchain and Python 3. Safe to run again: it does nothing when up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
stamp="$venv/.installed-$(sha256sum requirements-dev.txt | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python tools into $venv (requirements-dev.txt)" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip==24.3.1
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi

# --- infra tools: aws-sam-cli and checkov (tests/infra, scripts/deploy.sh) --------------------------
# Each pin of requirements-infra.txt gets its own venv under .tools/: they conflict with
# requirements-dev.txt and with each other (see that file). Stamped like the block above.
for infra_tool in aws-sam-cli:venv-sam checkov:venv-checkov; do
  infra_pin=$(grep -E "^${infra_tool%%:*}==" requirements-infra.txt)
  infra_venv=.tools/${infra_tool#*:}
  infra_stamp="$infra_venv/.installed-$(printf '%s' "$infra_pin" | sha256sum | cut -c1-16)"
  if [ ! -f "$infra_stamp" ]; then
    echo "setup: installing $infra_pin into $infra_venv (requirements-infra.txt)" >&2
    python3 -m venv "$infra_venv"
    "$infra_venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip==24.3.1
    "$infra_venv/bin/python" -m pip install --quiet --disable-pip-version-check "$infra_pin"
    rm -f "$infra_venv"/.installed-*
    touch "$infra_stamp"
  fi
done
# --- end of infra tools ------------------------------------------------------------------------------
