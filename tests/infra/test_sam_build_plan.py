"""What `sam build` would do with template.yaml, asked of aws-sam-cli itself without building
(a real `sam build` compiles the whole AWS SDK in release mode: minutes of both cores).

For each function and each Architecture, SAM's own template provider and lambda-builders' own
cargo-lambda action compute the command `sam build` would run in the workspace root.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest

from conftest import REPO, SAM_PYTHON, TEMPLATE, require

PLAN = textwrap.dedent("""\
    import json, sys
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider
    from samcli.lib.providers.sam_function_provider import SamFunctionProvider
    from samcli.lib.build.workflow_config import get_workflow_config
    from samcli.lib.build.app_builder import ApplicationBuilder
    from aws_lambda_builders.workflows.rust_cargo.actions import RustCargoLambdaBuildAction
    from aws_lambda_builders.workflow import BuildMode

    class Cargo:
        binary_path = "cargo"

    template, overrides = sys.argv[1], json.loads(sys.argv[2])
    stacks, _ = SamLocalStackProvider.get_stacks(template, parameter_overrides=overrides)
    plan = {}
    for f in SamFunctionProvider(stacks).get_all():
        cfg = get_workflow_config(f.runtime, f.codeuri, ".", specified_workflow=f.metadata.get("BuildMethod"))
        options = ApplicationBuilder._get_build_options(
            f.name, cfg.language, ".", f.handler, cfg.dependency_manager, f.metadata) or {}
        action = RustCargoLambdaBuildAction(
            f.codeuri, {"cargo": Cargo()}, BuildMode.RELEASE, None, runtime=f.runtime,
            architecture=f.architecture, handler=options.get("artifact_executable_name"))
        plan[f.name] = {"workflow": [cfg.language, cfg.dependency_manager], "codeuri": f.codeuri,
                        "architecture": f.architecture, "command": action.build_command()}
    print(json.dumps(plan))
    """)

LOGICAL_IDS = {
    "OnImageAvailableFunction": "on-image-available",
    "OnCopyCompleteFunction": "on-copy-complete",
    "NightlySweeperFunction": "nightly-sweeper",
}


def plan(tmp_path, overrides: dict) -> dict:
    r = subprocess.run(
        [str(require(SAM_PYTHON)), "-c", PLAN, str(TEMPLATE), json.dumps(overrides)],
        cwd=REPO, env=dict(os.environ, SAM_CLI_TELEMETRY="0", HOME=str(tmp_path)),
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("arch, flags", [(None, ["--arm64"]), ("arm64", ["--arm64"]), ("x86_64", [])])
def test_sam_build_runs_cargo_lambda_per_binary_in_the_workspace_root(tmp_path, arch, flags):
    result = plan(tmp_path, {"Architecture": arch} if arch else {})
    assert sorted(result) == sorted(LOGICAL_IDS)
    for logical_id, binary in LOGICAL_IDS.items():
        p = result[logical_id]
        assert p["workflow"] == ["rust", "cargo"]
        assert p["codeuri"] == str(REPO)  # one workspace, one shared target/
        assert p["architecture"] == (arch or "arm64")
        assert p["command"] == ["cargo", "lambda", "build", "--release", *flags, "--bin", binary]
