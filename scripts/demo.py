"""The local run: the whole product against moto, through the real Lambda runtime interface.

Run: bash scripts/demo.sh            (installs the tools first, then runs this with .venv's Python)
     .venv/bin/python scripts/demo.py [--keep-workdir] [--skip-sweeper]

What it does:
  1. starts tests/support/moto_server.py on a free loopback port;
  2. seeds it with boto3: an organization (management account 123456789012, OUs workloads -> team,
     several accounts, one closed = SUSPENDED), a customer managed key `alias/ami-share` in
     us-east-1, us-west-2 and eu-west-1, a freshly built golden image in us-east-1 whose snapshot
     is encrypted with the us-east-1 key, and an image no rule matches;
  3. builds and serves the three Lambda binaries with `cargo lambda watch` (the real runtime
     interface), with AWS_ENDPOINT_URL pointing at moto and a demo policy;
  4. invokes them with `cargo lambda invoke`: on-image-available on both images, on-copy-complete
     on each copy, and nightly-sweeper (report, then delete: an orphan marked then reclaimed, a
     snapshot used only by a launch template kept);
  5. prints a before/after table per image and Region, read back from moto, and each summary;
     and, per Region, the rule's latest-image parameter (/golden/demo/latest), its RAM share and
     the "AMI Distributed" events; then resolves the parameter by ARN as a consumer account does
     (`resolve:ssm:<ARN>`), and checks an account outside the rule cannot;
  6. shows the copy owned by a consumer account (copy_into): made in that account by
     on-image-available through the target-account role, encrypted with the consumer's own key,
     tagged with its provenance, and finished by the night: the consumer's own parameter
     (/golden/demo/latest in its account) names it;
  7. exits non-zero if the after-state is not what each step claims.
Everything it starts is stopped at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
CARGO_LAMBDA = VENV_BIN / "cargo-lambda"
ACCOUNT = "123456789012"
HOME_REGION = "us-east-1"
COPY_REGIONS = ["us-west-2", "eu-west-1"]
REGIONS = [HOME_REGION, *COPY_REGIONS]
KEY_ALIAS = "alias/ami-share"
EXTERNAL_ACCOUNT = "111122223333"  # shared with directly, outside the organization
FUNCTIONS = ["on-image-available", "on-copy-complete", "nightly-sweeper"]
PARAMETER = "/golden/demo/latest"
TARGET_ROLE = "ami-share-target"  # the role copy_into assumes in a target account
CONSUMER_KEY_ALIAS = "alias/consumer-ami"  # the consumer's own key, in its account


class StepFailed(Exception):
    pass


FAILURES: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"  [{'ok' if ok else 'FAIL'}] {what}")
    if not ok:
        FAILURES.append(what)


def say(msg: str = "") -> None:
    print(msg, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- moto ------------------------------------------------------------------------------------------


def start_moto() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "support" / "moto_server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().strip() if proc.stdout else ""
    if not line.startswith("READY "):
        proc.kill()
        raise StepFailed(f"moto server did not start (said {line!r})")
    return proc, line.split(" ", 1)[1]


def stop_moto(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            if proc.stdin:
                proc.stdin.close()  # the server exits when its stdin closes
            proc.wait(timeout=5)
        except (subprocess.TimeoutExpired, OSError):
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()


def client(url: str, service: str, region: str):
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 2}),
    )


def as_account(url: str, account: str, service: str, region: str):
    """A client acting as `account`: the target-account role assumed there, as the functions do
    (moto gives an assumed role's keys to the role's account)."""
    creds = client(url, "sts", region).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{TARGET_ROLE}", RoleSessionName="demo")["Credentials"]
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        config=Config(retries={"max_attempts": 2}),
    )


def post_json(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


# --- seeding ---------------------------------------------------------------------------------------


def seed(url: str) -> dict:
    org = client(url, "organizations", HOME_REGION)
    o = org.create_organization(FeatureSet="ALL")["Organization"]
    root = org.list_roots()["Roots"][0]["Id"]

    def ou(parent: str, name: str) -> tuple[str, str]:
        u = org.create_organizational_unit(ParentId=parent, Name=name)["OrganizationalUnit"]
        return u["Id"], u["Arn"]

    def account(name: str, parent: str) -> str:
        st = org.create_account(AccountName=name, Email=f"{name}@example.com")["CreateAccountStatus"]
        aid = st["AccountId"]
        if parent != root:
            org.move_account(AccountId=aid, SourceParentId=root, DestinationParentId=parent)
        return aid

    workloads, workloads_arn = ou(root, "workloads")
    team, team_arn = ou(workloads, "team")
    wl = [account(n, workloads) for n in ("wl-a", "wl-b")]
    tm = [account(n, team) for n in ("team-a", "team-b")]
    closed = account("closed", team)
    org.close_account(AccountId=closed)
    root_acct = account("root-acct", root)
    status = org.describe_account(AccountId=closed)["Account"]["Status"]
    if status != "SUSPENDED":
        raise StepFailed(f"closed account {closed} is {status}, not SUSPENDED")

    # The consumer account under the root owns its copies of the golden image, encrypted with a
    # key of its own.
    consumer_key = as_account(url, root_acct, "kms", HOME_REGION).create_key(
        Description="the consumer's own key")["KeyMetadata"]["Arn"]
    as_account(url, root_acct, "kms", HOME_REGION).create_alias(AliasName=CONSUMER_KEY_ALIAS, TargetKeyId=consumer_key)

    keys = {}
    for region in REGIONS:
        kms = client(url, "kms", region)
        arn = kms.create_key(Description="ami-share demo key")["KeyMetadata"]["Arn"]
        kms.create_alias(AliasName=KEY_ALIAS, TargetKeyId=arn)
        keys[region] = arn
        # The HMAC key the sweeper signs its marks with (the stack's MarkKey), under the alias
        # a local run uses when AMI_SHARE_MARK_KEY_ID is not set.
        mark_key = kms.create_key(Description="ami-share marks", KeySpec="HMAC_256",
                                  KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["Arn"]
        kms.create_alias(AliasName="alias/ami-share-marks", TargetKeyId=mark_key)

    ec2 = client(url, "ec2", HOME_REGION)

    def image(name: str) -> tuple[str, str]:
        inst = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]
        image_id = ec2.create_image(InstanceId=inst["InstanceId"], Name=name)["ImageId"]
        img = ec2.describe_images(ImageIds=[image_id])["Images"][0]
        return image_id, img["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]

    stamp = time.strftime("%Y-%m-%d-%H%M%S")
    golden, golden_snap = image(f"golden-{stamp}")
    post_json(
        f"{url}/_harness/encrypt-snapshots",
        {"region": HOME_REGION, "snapshots": {golden_snap: keys[HOME_REGION]}},
    )
    scratch, _ = image(f"scratch-{stamp}")
    # Two builds of an older image line, a second apart (EC2 orders by creation date).
    legacy_old, _ = image(f"legacy-{stamp}-1")
    time.sleep(1.1)
    legacy_new, _ = image(f"legacy-{stamp}-2")
    return {
        "org_id": o["Id"],
        "root_id": root,
        "workloads_ou_arn": workloads_arn,
        "team_ou_arn": team_arn,
        "workloads_accounts": wl,
        "team_accounts": tm,
        "suspended": closed,
        "root_account": root_acct,
        "keys": keys,
        "consumer_key": consumer_key,
        "golden": golden,
        "golden_name": f"golden-{stamp}",
        "scratch": scratch,
        "scratch_name": f"scratch-{stamp}",
        "legacy_old": legacy_old,
        "legacy_new": legacy_new,
    }


def legacy_rule(mode: str) -> dict:
    """An older image line whose images retire: keep the newest, deprecate, disable and
    deregister the rest as soon as nothing uses them."""
    return {
        "name": "legacy",
        "match": {"name": "legacy-*"},
        "share_with": {"accounts": [EXTERNAL_ACCOUNT]},
        "retire": {"keep": 1, "disable_after_days": 0, "deregister_after_days": 0, "mode": mode},
    }


def demo_policy(world: dict) -> dict:
    return {
        "rules": [
            {
                "name": "golden",
                "match": {"name": "golden-*"},
                "share_with": {
                    "accounts": [EXTERNAL_ACCOUNT, world["root_account"]],
                    "organizational_units": [world["workloads_ou_arn"]],
                },
                "share_snapshots": True,
                "grant_kms": True,
                "copy_to": [
                    {"region": r, "kms_key_id": f"arn:aws:kms:{r}:{ACCOUNT}:{KEY_ALIAS}"}
                    for r in COPY_REGIONS
                ],
                # The consumer under the root also gets a copy of its own, in its account.
                "copy_into": {
                    "accounts": [world["root_account"]],
                    "regions": [{"region": HOME_REGION, "kms_key_id": CONSUMER_KEY_ALIAS}],
                },
                "publish": {"parameter": PARAMETER, "in_target_accounts": True},
            },
            legacy_rule("report"),
        ],
        "sweeper": {"mode": "delete", "min_age_days": 0, "grace_days": 0},
        # EXTERNAL_ACCOUNT is outside the organization: sharing with it is an explicit opt-in.
        "allow_external_accounts": True,
    }


# --- reading the state back ------------------------------------------------------------------------


def image_state(url: str, region: str, image_id: str, key_arn: str) -> dict:
    ec2 = client(url, "ec2", region)
    imgs = ec2.describe_images(ImageIds=[image_id])["Images"]
    if not imgs:
        return {"exists": False}
    img = imgs[0]
    lp = ec2.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")[
        "LaunchPermissions"
    ]
    snap = img["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    sp = ec2.describe_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")[
        "CreateVolumePermissions"
    ]
    grants = client(url, "kms", region).list_grants(KeyId=key_arn)["Grants"]
    return {
        "exists": True,
        "name": img.get("Name", ""),
        "snapshot": snap,
        "encrypted": bool(img["BlockDeviceMappings"][0]["Ebs"].get("Encrypted")),
        "lp_accounts": sorted(p["UserId"] for p in lp if "UserId" in p),
        "lp_ous": sorted(p["OrganizationalUnitArn"] for p in lp if "OrganizationalUnitArn" in p),
        "lp_orgs": sorted(p["OrganizationArn"] for p in lp if "OrganizationArn" in p),
        "snap_accounts": sorted(p["UserId"] for p in sp if "UserId" in p),
        "grantees": sorted(g.get("GranteePrincipal", "") for g in grants),
    }


def short_ou(arn: str) -> str:
    return "ou:" + arn.rsplit("/", 1)[-1]


def table(rows: list[tuple[str, str, str, dict]]) -> str:
    header = ("stage", "image", "region", "image id", "launch permissions", "snap perms", "grants on key")
    lines = []
    for stage, label, region, st in rows:
        if not st.get("exists"):
            lines.append((stage, label, region, "-", "(no such image)", "-", "-"))
            continue
        lp = [*st["lp_accounts"], *map(short_ou, st["lp_ous"])]
        lines.append(
            (
                stage,
                label,
                region,
                st["image_id"],
                ", ".join(lp) if lp else "(none)",
                str(len(st["snap_accounts"])),
                str(len(st["grantees"])),
            )
        )
    widths = [max(len(str(r[i])) for r in [header, *lines]) for i in range(len(header))]
    fmt = " | ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), "-+-".join("-" * w for w in widths)]
    out += [fmt.format(*r) for r in lines]
    return "\n".join(out)


def publication(url: str, region: str) -> dict:
    """The rule's parameter in a Region, its labels, and its RAM share's principals."""
    ssm = client(url, "ssm", region)
    try:
        p = ssm.get_parameter(Name=PARAMETER)["Parameter"]
    except ssm.exceptions.ParameterNotFound:
        return {"exists": False}
    history = ssm.get_parameter_history(Name=PARAMETER)["Parameters"]
    ram = client(url, "ram", region)
    shares = ram.get_resource_shares(resourceOwner="SELF", name="ami-share-golden")["resourceShares"]
    principals = []
    if shares:
        principals = sorted(
            a["associatedEntity"]
            for a in ram.get_resource_share_associations(
                associationType="PRINCIPAL", resourceShareArns=[shares[0]["resourceShareArn"]]
            )["resourceShareAssociations"]
        )
    return {
        "exists": True,
        "value": p["Value"],
        "data_type": p.get("DataType"),
        "version": p["Version"],
        "labels": [label for h in history for label in h.get("Labels", [])],
        "shares": len(shares),
        "principals": principals,
        "arn": f"arn:aws:ssm:{region}:{ACCOUNT}:parameter{PARAMETER}",
    }


def resolve_as(url: str, region: str, account: str, arn: str) -> str:
    """What `resolve:ssm:<ARN>` does in a consumer account: GetParameter by the ARN."""
    ssm = client(url, "ssm", region)
    ssm.meta.events.register(
        "before-sign.ssm.GetParameter",
        lambda request, **_: request.headers.add_header("x-moto-account-id", account),
    )
    try:
        return ssm.get_parameter(Name=arn)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return "ParameterNotFound"


# --- cargo lambda ----------------------------------------------------------------------------------


def other_teams_rules(world: dict, n: int) -> list[dict]:
    """Rules of other teams, each with its accounts and OUs, that match no image of the demo:
    what makes a real organization's policy far larger than Lambda's 4 KB of environment."""
    org = world["org_id"]
    return [
        {
            "name": f"team-{i:02}",
            "match": {"name": f"team-{i:02}-golden-*", "tags": {"Team": f"team-{i:02}"}},
            "share_with": {
                "accounts": [f"3000000000{i:02}"],
                "organizational_units": [
                    f"arn:aws:organizations::{ACCOUNT}:ou/{org}/ou-{kind}-{i:08}" for kind in ("ab12", "cd34", "ef56")
                ],
            },
            "copy_to": [{"region": r, "kms_key_id": f"arn:aws:kms:{r}:{ACCOUNT}:{KEY_ALIAS}"} for r in COPY_REGIONS],
        }
        for i in range(n)
    ]


def policy_env(policy: dict, source: str, workdir: Path) -> dict:
    """The policy as the functions get it: the file (AMI_SHARE_POLICY_FILE, what the stack's policy
    layer provides) or the variable itself (AMI_SHARE_POLICY, small policies)."""
    text = json.dumps(policy, separators=(",", ":"))
    if source == "env":
        return {"AMI_SHARE_POLICY": text}
    path = workdir / "policy.json"
    path.write_text(json.dumps(policy, indent=1))
    return {"AMI_SHARE_POLICY_FILE": str(path)}


def build_functions() -> None:
    """Build the three binaries in the foreground, cargo's progress on the terminal: the first
    build compiles the AWS SDK crates (about 5-7 minutes on 2 cores; seconds afterwards)."""
    say("  cargo build of the three functions and the ami-share CLI (first time: ~5-7 min on 2 cores, cargo's progress below)")
    sys.stdout.flush()
    cmd = ["cargo", "build", "-p", "on-image-available", "-p", "on-copy-complete", "-p", "nightly-sweeper",
           "-p", "ami-share", "--bins"]
    r = subprocess.run(cmd, cwd=REPO)
    if r.returncode != 0:
        raise StepFailed(f"{' '.join(cmd)} failed ({r.returncode}); its errors are above")


def start_watch(url: str, policy_vars: dict, port: int, workdir: Path) -> tuple[subprocess.Popen, Path]:
    env_vars = {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": HOME_REGION,
        "AWS_DEFAULT_REGION": HOME_REGION,
        # cargo lambda's function ARN names no account (in Lambda the ARN does)
        "AMI_SHARE_ACCOUNT_ID": ACCOUNT,
        # what the stack's TargetAccountRoleName sets (copy_into)
        "AMI_SHARE_TARGET_ROLE_NAME": TARGET_ROLE,
        **policy_vars,
        "RUST_LOG": "info",
    }
    env_file = workdir / "functions.env"
    env_file.write_text("".join(f"{k}='{v}'\n" for k, v in env_vars.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(env_vars)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    log_path = workdir / "cargo-lambda-watch.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [
            str(CARGO_LAMBDA), "lambda", "watch",
            "--ignore-changes",
            "--invoke-address", "127.0.0.1",
            "--invoke-port", str(port),
            "--env-file", str(env_file),
            "--timeout", "600",
        ],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as a whole at the end
    )
    log.close()
    return proc, log_path


def stop_watch(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # the functions it spawned live in the same process group; make sure none is left
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_for_watch(proc: subprocess.Popen, port: int, log_path: Path, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise StepFailed(
                f"cargo lambda watch exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}"
            )
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
            return
        except urllib.error.HTTPError:
            return  # it answers (404 is fine: the server is up)
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise StepFailed(f"cargo lambda watch did not answer on port {port} within {timeout:.0f}s")


def invoke(function: str, event: dict, port: int, workdir: Path, name: str) -> tuple[int, str]:
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(event, indent=2))
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    cmd = [
        str(CARGO_LAMBDA), "lambda", "invoke", function,
        "--invoke-address", "127.0.0.1",
        "--invoke-port", str(port),
        "--data-file", str(path),
        "--output-format", "json",
    ]
    t0 = time.time()
    try:
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {time.time() - t0:.0f}s"
    out = (r.stdout or "").strip()
    if r.returncode != 0:
        out = (out + "\n" + (r.stderr or "").strip()).strip()
    return r.returncode, out


def parse(out: str) -> dict:
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        start = out.find("{")
        if start >= 0:
            try:
                return json.loads(out[start:])
            except json.JSONDecodeError:
                pass
    raise StepFailed(f"not a JSON summary: {out[:2000]}")


def ami_event(template: str, region: str, image_id: str) -> dict:
    e = json.loads((REPO / "events" / template).read_text())
    e["region"] = region
    e["resources"] = [f"arn:aws:ec2:{region}::image/{image_id}"]
    e["detail"]["ImageId"] = image_id
    return e


def ami_share(url: str, *args: str) -> tuple[int, str, str]:
    """The operator CLI (target/debug/ami-share) against moto, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": HOME_REGION, "AWS_EC2_METADATA_DISABLED": "true",
        "AMI_SHARE_ACCOUNT_ID": ACCOUNT, "AMI_SHARE_TARGET_ROLE_NAME": TARGET_ROLE, "AMI_SHARE_PROGRESS": "1",
    })
    r = subprocess.run([str(REPO / "target" / "debug" / "ami-share"), *args], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


def status_and_plan(url: str, w: dict, deployed: dict, call, restart, workdir: Path) -> None:
    """Step 8: `ami-share status` of a fully shared image, of one whose copies are not shared yet
    and of a target account whose role is refused; `ami-share plan` of a policy that drops the
    OU, then the night under that policy doing exactly what the plan said."""
    say("== 8. ami-share status: where is the image, and why not there (reads only)")
    deployed_file = workdir / "deployed-policy.json"
    deployed_file.write_text(json.dumps(deployed, indent=1))
    rc, out, err = ami_share(url, "status", w["golden"], "--policy", str(deployed_file))
    say(out.rstrip())
    check(rc == 0 and "served everywhere" in out.splitlines()[0],
          f"status of {w['golden']}: served everywhere, exit 0 (exit {rc}; {err.strip()[-500:]})")
    check("ami-share: reading" in err, "status shows its progress on stderr")
    rc, out, _ = ami_share(url, "status", w["golden"], "--policy", str(deployed_file), "--json")
    st = json.loads(out or "{}")
    regions = sorted({r["region"] for r in st.get("rows", [])})
    check(regions == sorted(REGIONS) and any(r["kind"] == "ou" for r in st.get("rows", []))
          and any(r["kind"] == "target-account" and r["target_copy"] == "ok" for r in st.get("rows", [])),
          f"status --json: rows for the accounts, the OU and the target account's own copy in {', '.join(regions)}")

    # A new image, shared by its event, its copies started but not yet shared by on-copy-complete.
    ec2 = client(url, "ec2", HOME_REGION)
    inst = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]
    late = ec2.create_image(InstanceId=inst["InstanceId"], Name=f"golden-late-{time.strftime('%H%M%S')}")["ImageId"]
    call("on-image-available", ami_event("image-available.json", HOME_REGION, late), "golden-late")
    rc, out, _ = ami_share(url, "status", late, "--policy", str(deployed_file), "--json")
    st = json.loads(out or "{}")
    home_ok = all(not r["reasons"] for r in st.get("rows", []) if r["region"] == HOME_REGION and r["kind"] != "target-account")
    codes = sorted({x["code"] for r in st.get("rows", []) if r["region"] != HOME_REGION for x in r["reasons"]})
    say(f"  {late}: in {HOME_REGION} served: {home_ok}; elsewhere: {codes}")
    check(rc == 1 and home_ok and "not-shared" in codes,
          f"status of {late}: shared in {HOME_REGION}; its copies not shared yet elsewhere (not-shared), exit 1")

    say("== 8. a consumer whose Allowed AMIs admit only Amazon's images (an EC2 declarative policy)")
    strict = w["workloads_accounts"][0]
    post_json(f"{url}/_harness/declarative-policy", {"account": strict, "policy": {"ec2_attributes": {
        "allowed_images_settings": {"state": {"@@assign": "enabled"}, "image_criteria": {
            "criteria_1": {"allowed_image_providers": {"@@assign": ["amazon"]}}}}}}})
    rc, out, _ = ami_share(url, "status", w["golden"], "--policy", str(deployed_file), "--accounts", "--json")
    st = json.loads(out or "{}")
    mine = [x for r in st.get("rows", []) if r["target"] == strict and r["region"] == HOME_REGION for x in r["reasons"]]
    say(f"  {strict}: {[(x['code'], x['detail']) for x in mine]}")
    check(rc == 1 and [x["code"] for x in mine] == ["not-allowed-in-consumer"]
          and "is not among amazon" in mine[0]["detail"],
          f"status --accounts: {w['golden']} is shared with {strict} but not allowed there (not-allowed-in-consumer, the criterion named)")
    report = call("nightly-sweeper", {}, "night-consumers")
    refused = [i for i in report.get("consumers", {}).get("not_allowed", []) if i.get("account") == strict]
    say(f"  the night's report: {refused}")
    check(len(refused) == 1 and refused[0].get("verdict") == "not-allowed" and "amazon" in refused[0].get("why", ""),
          f"the night's report: rule golden's newest image is not allowed in {strict}, and why")

    say("== 8. ami-share plan: a policy that drops the OU workloads (prune_unlisted_shares on), before it is deployed")
    dropped = json.loads(json.dumps(deployed))
    for r in dropped["rules"]:
        if r["name"] == "golden":
            r["share_with"].pop("organizational_units", None)
    dropped["sweeper"]["prune_unlisted_shares"] = True
    dropped_file = workdir / "dropped-policy.json"
    dropped_file.write_text(json.dumps(dropped, indent=1))
    rc, out, err = ami_share(url, "plan", "--policy", str(dropped_file))
    say(out.rstrip())
    check(rc == 0 and "launch-permissions-removed" in out, f"plan: exit 0, launch permissions to remove listed ({err.strip()[-300:]})")
    rc, out, _ = ami_share(url, "plan", "--policy", str(dropped_file), "--json")
    plan = json.loads(out or "{}").get("plan", {})
    removed = plan.get("sections", {}).get("launch-permissions-removed", {})
    planned = sorted(i["resource"] for i in removed.get("items", []))
    check(removed.get("by_principal") == {w["workloads_ou_arn"]: len(planned)} and len(planned) >= 2,
          f"plan: the OU loses its launch permission on {len(planned)} images ({removed.get('by_principal')})")
    planned_deletes = sorted(i["resource"] for i in plan.get("sections", {}).get("orphans-deleted", {}).get("items", []))

    def with_ou() -> set[str]:
        imgs = ec2.describe_images(Owners=["self"])["Images"]
        out = set()
        for i in imgs:
            lp = ec2.describe_image_attribute(ImageId=i["ImageId"], Attribute="launchPermission")["LaunchPermissions"]
            if any(p.get("OrganizationalUnitArn") == w["workloads_ou_arn"] for p in lp):
                out.add(i["ImageId"])
        return out

    before = with_ou()
    check(set(planned) <= before, "plan: nothing was written (the OU still has every launch permission)")
    say("  (the policy deployed: the functions restarted with it; the night runs)")
    port = restart(dropped)
    rc, out_night = invoke("nightly-sweeper", {}, port, workdir, "night-after-plan")
    night = parse(out_night) if rc == 0 else {}
    lost = sorted(before - with_ou())
    say(f"  the night removed the OU from {lost}; deleted {night.get('orphans', {}).get('deleted', [])}")
    check(lost == planned, f"the night removed exactly the launch permissions the plan listed ({len(lost)} images)")
    check(sorted(night.get("orphans", {}).get("deleted", [])) == planned_deletes,
          f"the night deleted exactly the orphans the plan listed ({planned_deletes})")
    # That night's look at the consumers: the OU is no longer shared with, so the strict
    # account is no consumer of the rule any more; the previous night's report said it (below).
    consumers = night.get("consumers", {})
    say(f"  the night's consumers: {json.dumps(consumers.get('per_rule'))}, not allowed {consumers.get('not_allowed_total')}")

    say("== 8. ami-share status: a target account whose role cannot be assumed")
    role = f"arn:aws:iam::{w['root_account']}:role/{TARGET_ROLE}"
    post_json(f"{url}/_harness/deny-assume-role", {"role_arn": role})
    rc, out, _ = ami_share(url, "status", w["golden"], "--policy", str(dropped_file), "--json")
    st = json.loads(out or "{}")
    target = [r for r in st.get("rows", []) if r["kind"] == "target-account"]
    codes = [x["code"] for r in target for x in r["reasons"]]
    say(f"  target rows: {[(r['target'], r['region'], codes) for r in target]}")
    check(rc == 1 and codes == ["role-not-assumable"],
          f"status: the target account {w['root_account']} is role-not-assumable, exit 1")


# --- the run ---------------------------------------------------------------------------------------


def run(args: argparse.Namespace, workdir: Path) -> None:
    started = time.time()
    say("== 1. moto server")
    moto, url = start_moto()
    watch = None
    try:
        say(f"  moto at {url}")

        say("== 2. seeding the organization, keys and images (boto3)")
        w = seed(url)
        active = sorted(w["workloads_accounts"] + w["team_accounts"])
        say(f"  organization {w['org_id']}; OU workloads {w['workloads_ou_arn']}")
        say(f"    workloads accounts {', '.join(w['workloads_accounts'])}")
        say(f"    team (nested) accounts {', '.join(w['team_accounts'])}; suspended {w['suspended']}")
        say(f"    account under the root {w['root_account']}")
        for r, k in w["keys"].items():
            say(f"  key {KEY_ALIAS} in {r}: {k}")
        say(f"  golden image {w['golden']} ({w['golden_name']}), snapshot encrypted with the us-east-1 key")
        say(f"  non-matching image {w['scratch']} ({w['scratch_name']})")
        client(url, "ram", HOME_REGION).enable_sharing_with_aws_organization()
        say("  AWS RAM: sharing with AWS Organizations turned on (once per organization; see docs/deploy.md)")
        policy = demo_policy(w)
        say("  demo policy: " + json.dumps(policy))
        if args.policy_source == "file":
            policy["rules"] += other_teams_rules(w, 49)
        policy_vars = policy_env(policy, args.policy_source, workdir)
        size = len(json.dumps(policy, separators=(",", ":")))
        where = policy_vars.get("AMI_SHARE_POLICY_FILE", "AMI_SHARE_POLICY")
        say(f"  the functions read it from {where}: {len(policy['rules'])} rules, {size / 1000:.1f} KB")
        if args.policy_source == "file":
            check(size > 20_000, f"the policy ({size / 1000:.1f} KB) is over 20 KB, five times what Lambda's environment holds")

        def state(region: str, image_id: str) -> dict:
            st = image_state(url, region, image_id, w["keys"][region])
            st["image_id"] = image_id
            return st

        before = [
            ("before", "golden", HOME_REGION, state(HOME_REGION, w["golden"])),
            ("before", "scratch", HOME_REGION, state(HOME_REGION, w["scratch"])),
        ]
        check(before[0][3]["encrypted"], "golden image reports an encrypted snapshot")

        say("== 3. building and serving the three functions (cargo lambda watch)")
        build_functions()
        port = free_port()
        watch, log_path = start_watch(url, policy_vars, port, workdir)
        wait_for_watch(watch, port, log_path, timeout=120)
        say(f"  serving on 127.0.0.1:{port} (log: {log_path})")

        summaries: list[tuple[str, dict]] = []

        def call(function: str, event: dict, name: str) -> dict:
            t0 = time.time()
            rc, out = invoke(function, event, port, workdir, name)
            if rc != 0:
                raise StepFailed(
                    f"cargo lambda invoke {function} failed ({rc}): {out[-2000:]}\n"
                    f"--- watch log ---\n{log_path.read_text()[-3000:]}"
                )
            s = parse(out)
            say(f"  {function} ({name}) answered in {time.time() - t0:.1f}s: outcome={s.get('outcome', '?')}")
            summaries.append((f"{function} ({name})", s))
            return s

        say("== 4. on-image-available: golden image")
        s = call("on-image-available", ami_event("image-available.json", HOME_REGION, w["golden"]), "golden")
        check(s.get("outcome") == "shared", "golden image: outcome shared")
        copies = {c["region"]: c for c in s.get("copies", [])}
        check(
            sorted(r for r, c in copies.items() if c.get("status") == "started" and c.get("image_id"))
            == sorted(COPY_REGIONS),
            f"copies started in {', '.join(COPY_REGIONS)}",
        )
        owner_acct = w["root_account"]
        into = s.get("target_copies", [])
        check(len(into) == 1 and into[0].get("status") == "started" and into[0].get("account") == owner_acct,
              f"copy_into: a copy started in consumer account {owner_acct}, {HOME_REGION} ({into})")
        target_copy = (into[0].get("image_id") if into else None) or ""

        for key in ("legacy_old", "legacy_new"):
            s = call("on-image-available", ami_event("image-available.json", HOME_REGION, w[key]), key)
            check(s.get("outcome") == "shared", f"{key} image {w[key]}: outcome shared (rule legacy)")

        say("== 4. on-image-available: image no rule matches")
        s = call("on-image-available", ami_event("image-available.json", HOME_REGION, w["scratch"]), "scratch")
        check(s.get("outcome") == "skipped", "non-matching image: outcome skipped")

        for region in COPY_REGIONS:
            copy_id = (copies.get(region) or {}).get("image_id")
            if not copy_id:
                continue
            # EC2 encrypts a copy made with KmsKeyId with that key; moto's copies come out
            # unencrypted, so the demo marks the copy's snapshot the way EC2 would (key ARN).
            copy_snap = image_state(url, region, copy_id, w["keys"][region]).get("snapshot")
            if copy_snap:
                post_json(
                    f"{url}/_harness/encrypt-snapshots",
                    {"region": region, "snapshots": {copy_snap: w["keys"][region]}},
                )
                say(f"  (moto gap) copy {copy_id}'s snapshot {copy_snap} marked encrypted with the {region} key, as EC2 does")
            say(f"== 4. on-copy-complete: copy in {region}")
            s = call("on-copy-complete", ami_event("copy-available.json", region, copy_id), f"copy-{region}")
            check(s.get("outcome") == "shared", f"copy {copy_id} in {region}: outcome shared")

        say("== 5. state after sharing and copies (read back from moto)")
        after = [
            ("after", "golden", HOME_REGION, state(HOME_REGION, w["golden"])),
            ("after", "scratch", HOME_REGION, state(HOME_REGION, w["scratch"])),
        ]
        for region in COPY_REGIONS:
            copy_id = (copies.get(region) or {}).get("image_id")
            if copy_id:
                after.append(("after", "golden copy", region, state(region, copy_id)))
            else:
                after.append(("after", "golden copy", region, {"exists": False}))

        expected_lp_accounts = sorted([EXTERNAL_ACCOUNT, w["root_account"]])
        expected_snap = sorted(set(expected_lp_accounts + active))
        for stage, label, region, st in after:
            what = f"{label} in {region}"
            if label == "scratch":
                check(
                    st.get("exists") and not st["lp_accounts"] and not st["lp_ous"] and not st["snap_accounts"],
                    f"{what}: untouched (no launch or snapshot permissions)",
                )
                continue
            if not st.get("exists"):
                check(False, f"{what}: exists")
                continue
            check(st["lp_accounts"] == expected_lp_accounts, f"{what}: launch permission for accounts {', '.join(expected_lp_accounts)}")
            check(st["lp_ous"] == [w["workloads_ou_arn"]], f"{what}: launch permission for OU workloads")
            check(st["snap_accounts"] == expected_snap, f"{what}: snapshot shared with {len(expected_snap)} accounts (OU expanded to its {len(active)} active accounts)")
            check(w["suspended"] not in st["snap_accounts"] and w["suspended"] not in st["lp_accounts"], f"{what}: suspended account {w['suspended']} absent")
            missing = [a for a in expected_snap if not any(a in g for g in st["grantees"])]
            check(not missing, f"{what}: grants on the {region} key for every account" + (f" (missing {missing})" if missing else ""))
            check(not any(w["suspended"] in g for g in st["grantees"]), f"{what}: no grant for the suspended account")

        say("== 5. the latest-image parameter per Region, its RAM share, and what a consumer resolves")
        published = {HOME_REGION: w["golden"]}
        published.update({r: (copies.get(r) or {}).get("image_id") for r in COPY_REGIONS})
        principals = sorted([EXTERNAL_ACCOUNT, w["root_account"], w["workloads_ou_arn"]])
        consumer = w["team_accounts"][0]  # in team, nested under workloads
        rows = []
        for region in REGIONS:
            p = publication(url, region)
            if not p["exists"]:
                check(False, f"{PARAMETER} exists in {region}")
                rows.append((region, "-", "-", "-", "-", "-"))
                continue
            resolved = resolve_as(url, region, consumer, p["arn"])
            outsider = resolve_as(url, region, "999988887777", p["arn"])
            rows.append((region, p["value"], p["data_type"], ",".join(p["labels"]),
                         ", ".join(x if x.isdigit() else short_ou(x) for x in p["principals"]), resolved))
            check(p["value"] == published[region], f"{PARAMETER} in {region} names {published[region]}")
            check(p["data_type"] == "aws:ec2:image" and len(p["labels"]) == 1 and p["labels"][0].startswith("created-"),
                  f"{PARAMETER} in {region}: data type aws:ec2:image, labelled with the creation date")
            check(p["shares"] == 1 and p["principals"] == principals,
                  f"{PARAMETER} in {region}: one RAM share with the rule's accounts and OU")
            check(resolved == published[region],
                  f"consumer {consumer} (team OU, under workloads) resolves resolve:ssm:{p['arn']} to {resolved}")
            check(outsider == "ParameterNotFound", f"account 999988887777, outside the rule, cannot read it in {region}")
        header = ("region", PARAMETER, "data type", "label", "shared with (RAM)", f"consumer {consumer} resolves")
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        fmt = " | ".join(f"{{:<{wd}}}" for wd in widths)
        pub_table = "\n".join([fmt.format(*header), "-+-".join("-" * wd for wd in widths), *(fmt.format(*r) for r in rows)])
        say(pub_table)
        with urllib.request.urlopen(f"{url}/_harness/events", timeout=10) as resp:
            events = json.load(resp)["events"]
        distributed = [e for e in events if e.get("DetailType") == "AMI Distributed"]
        for e in distributed:
            d = json.loads(e["Detail"])
            say(f"  event on {e['EventBusName']} bus in {e['region']}: {d['image-id']} is the newest of rule {d['rule']} (previous: {d['previous-image-id']})")
        check(sorted(e["region"] for e in distributed) == sorted(REGIONS), "one \"AMI Distributed\" event per Region")

        if args.skip_sweeper:
            say("== 4. nightly-sweeper: skipped (--skip-sweeper)")
        else:
            say("== 4. nightly-sweeper")
            ec2 = client(url, "ec2", HOME_REGION)

            def built(name: str) -> tuple[str, str]:
                inst = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]
                image_id = ec2.create_image(InstanceId=inst["InstanceId"], Name=name)["ImageId"]
                img = ec2.describe_images(ImageIds=[image_id])["Images"][0]
                return image_id, img["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]

            def snapshot_exists(snapshot_id: str) -> bool:
                try:
                    return bool(ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"])
                except Exception:  # noqa: BLE001 - InvalidSnapshot.NotFound
                    return False

            def snapshot_tags(snapshot_id: str) -> dict:
                snaps = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
                return {t["Key"]: t["Value"] for t in (snaps[0].get("Tags") or [])} if snaps else {}

            stamp = time.strftime("%H%M%S")
            old, old_snap = built(f"retired-{stamp}")
            lt_img, lt_snap = built(f"lt-base-{stamp}")
            ec2.create_launch_template(
                LaunchTemplateName=f"uses-lt-base-{stamp}",
                LaunchTemplateData={"BlockDeviceMappings": [{"DeviceName": "/dev/sdf", "Ebs": {"SnapshotId": lt_snap}}]},
            )
            ec2.deregister_image(ImageId=old)
            ec2.deregister_image(ImageId=lt_img)
            say(f"  deregistered old image {old}: its snapshot {old_snap} is now an orphan")
            say(f"  deregistered {lt_img}, whose snapshot {lt_snap} a launch template still uses")
            live_snaps = [st["snapshot"] for _, _, r, st in after if st.get("snapshot") and r == HOME_REGION]

            rc, out = invoke("nightly-sweeper", json.loads((REPO / "events" / "sweeper-report-only.json").read_text()), port, workdir, "sweeper-report")
            if rc != 0:
                check(False, f"nightly-sweeper report run: {out[-1500:]}")
            else:
                s = parse(out)
                summaries.append(("nightly-sweeper (report)", s))
                check(s.get("mode") == "report", "sweeper (report): ran in report mode")
                check(not s.get("not_reached"), f"sweeper (report): the whole sweep ran (not reached: {s.get('not_reached')})")
                found = [o["snapshot_id"] for o in s.get("orphans", {}).get("orphans", [])]
                check(found == [old_snap], f"sweeper (report): the orphan {old_snap} found, nothing else (found {found})")
                check("ami-share:orphaned-since" in snapshot_tags(old_snap), "sweeper (report): the orphan is marked ami-share:orphaned-since")
                check(snapshot_exists(old_snap), "sweeper (report): nothing deleted")
                ret = s.get("retirement", {})
                legacy = [i for i in ret.get("items", []) if i.get("image_id") == w["legacy_old"]]
                check(bool(legacy) and legacy[0].get("status") == "would" and legacy[0].get("stage") == "deprecated",
                      f"retirement (report mode): would deprecate {w['legacy_old']}, the older legacy image ({legacy[:1]})")
                check(not any(i.get("image_id") == w["legacy_new"] for i in ret.get("items", [])),
                      "retirement: the newest legacy image is never selected")
                check("DeprecationTime" not in ec2.describe_images(ImageIds=[w["legacy_old"]])["Images"][0],
                      "retirement (report mode): nothing deprecated")
                rc, out = invoke("nightly-sweeper", json.loads((REPO / "events" / "sweeper-delete.json").read_text()), port, workdir, "sweeper-delete")
                if rc != 0:
                    check(False, f"nightly-sweeper delete run: {out[-1500:]}")
                else:
                    s = parse(out)
                    summaries.append(("nightly-sweeper (delete)", s))
                    check(s.get("mode") == "delete", "sweeper (delete): ran in delete mode (grace 0)")
                    check(s.get("orphans", {}).get("deleted") == [old_snap], f"sweeper (delete): {old_snap} reclaimed")
                    check(not snapshot_exists(old_snap), "sweeper (delete): the orphan is gone from EC2")
                    check(snapshot_exists(lt_snap), f"sweeper (delete): {lt_snap}, used only by a launch template, kept")
                    kept = [x for x in live_snaps if snapshot_exists(x)]
                    check(kept == live_snaps, "sweeper (delete): every live image's snapshot kept")

        if not args.skip_sweeper:
            say(f"== 6. the copy owned by consumer account {owner_acct} (copy_into), after a night")
            ec2_there = as_account(url, owner_acct, "ec2", HOME_REGION)
            owned = ec2_there.describe_images(Owners=["self"])["Images"]
            mine = [i for i in owned if i["ImageId"] == target_copy]
            tags = {t["Key"]: t["Value"] for t in (mine[0].get("Tags") or [])} if mine else {}
            with urllib.request.urlopen(f"{url}/_harness/target-copies", timeout=10) as resp:
                made = [c for c in json.load(resp)["copies"] if c["image_id"] == target_copy]
            value = as_account(url, owner_acct, "ssm", HOME_REGION).get_parameter(Name=PARAMETER)["Parameter"]["Value"]
            say(f"  {owner_acct} owns {target_copy} ({mine[0]['Name'] if mine else '?'})")
            say(f"  encrypted with its own key {made[0]['kms_key_id'] if made else '?'}; tags {tags}")
            say(f"  its own {PARAMETER} names {value}")
            check(bool(mine) and mine[0]["OwnerId"] == owner_acct, f"the copy {target_copy} is owned by {owner_acct}")
            check(bool(made) and made[0]["encrypted"] and made[0]["kms_key_id"] == w["consumer_key"],
                  "the copy is encrypted with the consumer's own key")
            check(tags.get("ami-share:copied-from-image") == f"{HOME_REGION}/{w['golden']}"
                  and tags.get("ami-share:copied-from-account") == ACCOUNT,
                  "the copy carries its provenance (source image and account) from its creation")
            check(value == target_copy, f"the consumer's own {PARAMETER} names its copy, not the publisher's image")

        if not args.skip_sweeper:
            say("== 7. retirement of rule legacy in act mode (the policy redeployed: the functions restarted)")
            act_policy = json.loads(json.dumps(policy))
            act_policy["rules"] = [legacy_rule("act") if r["name"] == "legacy" else r for r in act_policy["rules"]]
            stop_watch(watch)
            port = free_port()
            watch, log_path = start_watch(url, policy_env(act_policy, args.policy_source, workdir), port, workdir)
            wait_for_watch(watch, port, log_path, timeout=120)
            ec2 = client(url, "ec2", HOME_REGION)
            old = w["legacy_old"]

            def night(name: str) -> dict:
                rc, out = invoke("nightly-sweeper", json.loads((REPO / "events" / "sweeper-report-only.json").read_text()), port, workdir, name)
                if rc != 0:
                    raise StepFailed(f"nightly-sweeper ({name}): {out[-1500:]}")
                s = parse(out)
                summaries.append((f"nightly-sweeper ({name})", s))
                item = next((i for i in s.get("retirement", {}).get("items", []) if i.get("image_id") == old), {})
                say(f"  {name}: {old} {item.get('status')} {item.get('stage')}: {item.get('detail', '')} {item.get('protected_by', '')}")
                return item

            def described() -> dict:
                imgs = ec2.describe_images(ImageIds=[old], IncludeDisabled=True)["Images"]
                return imgs[0] if imgs else {}

            item = night("retire-1")
            img = described()
            check(item.get("status") == "done" and item.get("stage") == "deprecated" and "DeprecationTime" in img,
                  f"retirement night 1: {old} deprecated (DeprecationTime {img.get('DeprecationTime')})")
            item = night("retire-2")
            check(item.get("status") == "protected" and "requested tonight" in " ".join(item.get("protected_by", [])),
                  "retirement night 2: disabling is due; a consumer usage report is requested, nothing changes before it is read")
            post_json(f"{url}/_harness/usage-reports/finish", {})
            say("  (a night passes: the usage report is ready; it says no consumer account uses the image)")
            item = night("retire-3")
            check(item.get("status") == "done" and item.get("stage") == "disabled" and described().get("State") == "disabled",
                  f"retirement night 3: {old} disabled")
            item = night("retire-4")
            gone = not ec2.describe_images(Filters=[{"Name": "image-id", "Values": [old]}])["Images"]
            check(item.get("status") == "done" and item.get("stage") == "deregistered" and gone,
                  f"retirement night 4: {old} deregistered (its snapshots are left to the orphan sweep)")
            check(bool(ec2.describe_images(ImageIds=[w["legacy_new"]])["Images"]), "the newest legacy image stays")

            def restart(new_policy: dict) -> int:
                nonlocal watch, port, log_path
                stop_watch(watch)
                port = free_port()
                watch, log_path = start_watch(url, policy_env(new_policy, args.policy_source, workdir), port, workdir)
                wait_for_watch(watch, port, log_path, timeout=120)
                return port

            status_and_plan(url, w, act_policy, call, restart, workdir)

        say("")
        say("== before/after, per image and Region (launch permissions; snapshot permission count; grants on the Region's key)")
        say(table(before + after))
        say("")
        say(f"== the newest image of rule golden, per Region: {PARAMETER}, its RAM share, and what a consumer resolves")
        say(pub_table)
        say("")
        say("== the functions' summaries")
        for name, s in summaries:
            say(f"-- {name}")
            say(json.dumps(s, indent=2))
        say("")
        say(f"== took {time.time() - started:.0f}s")
    finally:
        if watch is not None:
            stop_watch(watch)
        stop_moto(moto)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-sweeper", action="store_true", help="do not run nightly-sweeper")
    parser.add_argument(
        "--policy-source",
        choices=["file", "env"],
        default="file",
        help="file: the demo rule plus 49 other teams' rules (over 20 KB) in AMI_SHARE_POLICY_FILE, as the "
        "stack's policy layer provides it; env: the demo rule alone in AMI_SHARE_POLICY",
    )
    parser.add_argument("--keep-workdir", action="store_true", help="keep events and logs (printed path)")
    args = parser.parse_args()

    # SIGTERM behaves like Ctrl-C: unwind through the `finally` blocks that stop the servers.
    def on_term(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)

    if not os.access(CARGO_LAMBDA, os.X_OK):
        print(f"{CARGO_LAMBDA} is missing: run bash scripts/setup.sh", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="ami-share-demo-"))
    try:
        run(args, workdir)
    except KeyboardInterrupt:
        print("demo: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except StepFailed as err:
        print(f"DEMO FAILED: {err}", file=sys.stderr)
        return 1
    finally:
        if args.keep_workdir:
            print(f"(events and logs kept in {workdir})")
        else:
            for p in sorted(workdir.rglob("*"), reverse=True):
                p.unlink() if p.is_file() else p.rmdir()
            workdir.rmdir()
    if FAILURES:
        print(f"DEMO FAILED: {len(FAILURES)} check(s) failed:", file=sys.stderr)
        for f in FAILURES:
            print(f"  - {f}", file=sys.stderr)
        return 1
    print("DEMO OK: every step did what it claims")
    return 0


if __name__ == "__main__":
    sys.exit(main())
