"""Shared fixtures of the template / deployment tests.

Run: .venv/bin/python -m pytest tests/infra -q   (after scripts/setup.sh)
aws-sam-cli and checkov live in their own venvs under .tools/ (see requirements-infra.txt).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import cfn

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
ORG_ROLE_TEMPLATE = REPO / "templates" / "org-read-role.yaml"
TARGET_ROLE_TEMPLATE = REPO / "templates" / "target-account-role.yaml"
EVENTS = REPO / "events"
SAM = REPO / ".tools" / "venv-sam" / "bin" / "sam"
SAM_PYTHON = REPO / ".tools" / "venv-sam" / "bin" / "python"
CHECKOV = REPO / ".tools" / "venv-checkov" / "bin" / "checkov"
CFN_LINT = REPO / ".venv" / "bin" / "cfn-lint"


def require(tool: Path) -> Path:
    if not os.access(tool, os.X_OK):
        pytest.fail(f"{tool.relative_to(REPO)} is missing: run scripts/setup.sh", pytrace=False)
    return tool


def offline_env(tmp: Path) -> dict[str, str]:
    """An environment in which any HTTP(S) request fails at once (proxy on a closed port) and no
    AWS credentials or config exist: what these tools must cope with here and in CI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    dead = "http://127.0.0.1:9"
    env.update(
        HTTP_PROXY=dead, HTTPS_PROXY=dead, http_proxy=dead, https_proxy=dead, NO_PROXY="", no_proxy="",
        AWS_CONFIG_FILE=str(tmp / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        SAM_CLI_TELEMETRY="0",
        HOME=str(tmp),
    )
    return env


@pytest.fixture(scope="session")
def template() -> dict:
    return cfn.load(TEMPLATE)


@pytest.fixture(scope="session")
def org_role_template() -> dict:
    return cfn.load(ORG_ROLE_TEMPLATE)


@pytest.fixture(scope="session")
def target_role_template() -> dict:
    return cfn.load(TARGET_ROLE_TEMPLATE)
