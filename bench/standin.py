"""A small AWS stand-in for the benchmarks: the EC2 query protocol for the calls the functions
make, KMS and Organizations (JSON), STS GetCallerIdentity and an empty Auto Scaling, on
loopback only. Requests are routed to their Region by the SigV4 credential scope.

What moto does not model and this does (aws-facts §7, §8):
- real pagination (MaxResults / NextToken, at most 1,000 items a page);
- latency: every request waits `latency` seconds before it is answered;
- EC2's per-API token buckets: non-mutating actions 100 tokens refilled 20/s, the same
  actions without MaxResults or filter 50 / 10/s, mutating actions 50 / 5/s; over the limit,
  HTTP 503 `RequestLimitExceeded`, counted per action;
- regions of any size (100,000 snapshots, 10,000 images and more, in memory);
- KMS's request quotas as token buckets (one second of burst): `CreateGrant` 50/s,
  `ListGrants` 100/s, `TagResource` 10/s, ...; over the limit, `ThrottlingException`;
  `ListGrants` pages (`Limit` up to 100, 50 by default; `Marker`); key tags and key policies;
- Organizations pages (`ListAccountsForParent` / `ListChildren`: 20 a page, `NextToken`) and
  suspended accounts;
- other accounts (`copy_into`): STS `AssumeRole` hands out keys that name the role's account; a
  request signed with them acts in that account, with its own EC2 buckets: its own images
  (`DescribeImages` by owner and tag), `CopyImage` of the publisher's image (shared by account
  or OU, and its snapshots by account), `CreateTags`, `EnableImageDeprecation`,
  `GetEbsDefaultKmsKeyId`, KMS `DescribeKey` of its own key.

It keeps a call log (per action: calls, throttled) and the ground truth (which snapshots are
orphans, which are in use) so the driver can check the product's verdicts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

EC2_XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/"
ACCOUNT = "123456789012"
MUTATING_PREFIXES = ("Modify", "Create", "Delete", "Copy", "Enable", "Disable", "Deregister", "Register")
# KMS request quotas (requests a second, per account and Region), from KMS's quotas page.
KMS_RATES = {"CreateGrant": 50, "RevokeGrant": 50, "RetireGrant": 50, "ListGrants": 100, "TagResource": 10,
             "UntagResource": 10, "DescribeKey": 2000, "GetKeyPolicy": 1000, "ListResourceTags": 2000}
ORG_PAGE = 20


class Bucket:
    def __init__(self, capacity: float, rate: float):
        self.capacity, self.rate = capacity, rate
        self.tokens, self.at = capacity, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class Image:
    id: str
    name: str
    snapshots: list[str]
    tags: dict[str, str] = field(default_factory=dict)
    launch: set[str] = field(default_factory=set)
    launch_ous: set[str] = field(default_factory=set)
    state: str = "available"
    region: str = "us-east-1"
    source: tuple[str, str] | None = None  # (Region, image id) of a copy
    owner: str = ACCOUNT
    deprecation: str | None = None


@dataclass
class Snapshot:
    id: str
    description: str
    size: int = 8
    start: str = "2026-01-01T00:00:00.000Z"
    tags: dict[str, str] = field(default_factory=dict)
    permissions: set[str] = field(default_factory=set)
    kms_key_id: str | None = None


class SqsQueue:
    """One SQS queue as the functions use it: FIFO (order within a message group; a group's
    later messages not handed out while one is in flight; deduplication ids for five minutes)
    or standard (per-message delays); visibility timeouts; receipt handles per receive."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.fifo = name.endswith(".fifo")
        self.messages: list[dict] = []  # {"id", "body", "group", "visible_at", "receives", "receipt", "sent"}
        self.dedup: dict[str, float] = {}
        self.sent = 0
        self.next = 0

    def send(self, body: str, group: str | None = None, dedup: str | None = None, delay: float = 0.0) -> str:
        now = time.monotonic()
        if self.fifo and dedup is not None:
            if now - self.dedup.get(dedup, -1e9) < 300:
                return "deduplicated"
            self.dedup[dedup] = now
        self.next += 1
        self.sent += 1
        mid = f"m-{self.next}"
        self.messages.append({"id": mid, "body": body, "group": group, "visible_at": now + delay,
                              "receives": 0, "receipt": None, "sent": now})
        return mid

    def receive(self, n: int, hide: float) -> list[dict]:
        now = time.monotonic()
        locked = {m["group"] for m in self.messages if self.fifo and m["receipt"] and m["visible_at"] > now}
        out = []
        for m in self.messages:
            if len(out) >= n:
                break
            if m["visible_at"] > now or (self.fifo and m["group"] in locked):
                continue
            m["receives"] += 1
            m["receipt"] = f"{m['id']}/{m['receives']}"
            m["visible_at"] = now + hide
            out.append(m)
        return out

    def find(self, receipt: str) -> dict | None:
        return next((m for m in self.messages if m["receipt"] == receipt), None)

    def visible(self) -> int:
        now = time.monotonic()
        return sum(1 for m in self.messages if m["visible_at"] <= now)


class World:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.images: dict[str, Image] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self.snapshot_order: list[str] = []
        self.image_order: list[str] = []
        self.calls: dict[str, int] = {}
        self.calls_by_region: dict[tuple[str, str], int] = {}
        self.throttled: dict[str, int] = {}
        self.buckets: dict[str, Bucket] = {}
        self.latency = 0.0
        self.throttling = False
        self.deleted: list[str] = []
        # Snapshots some image uses (DeleteSnapshot answers InvalidSnapshot.InUse for them).
        self.used: set[str] = set()
        # Service Quotas: action -> (burst, refill per second) where raised.
        self.raised: dict[str, tuple[float, float]] = {}
        # Organizations: OU id -> (accounts, child OU ids); the organization id.
        self.org_id = "o-a1b2c3d4e5"
        self.ous: dict[str, tuple[list[str], list[str]]] = {}
        # Organizations: suspended account ids (listed with Status SUSPENDED).
        self.suspended: set[str] = set()
        # KMS: key ARN -> grants ({"Name", "GranteePrincipal", "GrantId"}); alias ARN -> key ARN.
        self.keys: dict[str, list[dict]] = {}
        self.key_tags: dict[str, dict[str, str]] = {}
        self.key_policies: dict[str, str] = {}
        self.aliases: dict[str, str] = {}
        # CopyImage client tokens: token -> copy id.
        self.copy_tokens: dict[str, str] = {}
        # Every request: (service:Action, Region, start, end) in monotonic seconds.
        self.log: list[tuple[str, str, float, float]] = []
        # Other accounts (copy_into): (account, Region) -> their images; their client tokens.
        self.targets: dict[tuple[str, str], list[Image]] = {}
        self.target_tokens: dict[tuple[str, str, str], str] = {}
        # EC2's copy cap (snapshot copies pending per destination Region; None: no cap), and the
        # most slots ever in use per Region (the benchmark's "never more than the cap").
        self.copy_cap: int | None = None
        self.peak_in_flight: dict[str, int] = {}
        # SQS (the copy line, the target line): (Region, queue name) -> queue.
        self.queues: dict[tuple[str, str], SqsQueue] = {}
        # SQS delays are multiplied by this (a benchmark's scaled time).
        self.sqs_delay_scale = 1.0

    def in_flight(self, region: str) -> int:
        """Snapshot copies pending in `region` (a slot per snapshot of each pending image)."""
        return sum(len(i.snapshots) or 1 for i in self.images.values()
                   if i.region == region and i.state == "pending" and i.owner == ACCOUNT)

    def add_key(self, region: str, alias: str | None = None) -> str:
        arn = f"arn:aws:kms:{region}:{ACCOUNT}:key/{uuid.uuid4()}"
        self.keys[arn] = []
        if alias:
            self.aliases[f"arn:aws:kms:{region}:{ACCOUNT}:{alias}"] = arn
        return arn

    def key(self, region: str, ref: str) -> str | None:
        """A key ARN from an id, key ARN, alias name or alias ARN."""
        if ref in self.keys:
            return ref
        if ref.startswith("alias/"):
            ref = f"arn:aws:kms:{region}:{ACCOUNT}:{ref}"
        if ref in self.aliases:
            return self.aliases[ref]
        arn = f"arn:aws:kms:{region}:{ACCOUNT}:key/{ref}"
        return arn if arn in self.keys else None

    def add_snapshot(self, s: Snapshot) -> None:
        self.snapshots[s.id] = s
        self.snapshot_order.append(s.id)

    def add_image(self, i: Image) -> None:
        self.images[i.id] = i
        self.image_order.append(i.id)
        self.used.update(i.snapshots)

    def admit_kms(self, region: str, op: str) -> bool:
        """Count the KMS call; False when KMS would throttle it (caller holds the lock)."""
        self.calls["kms:" + op] = self.calls.get("kms:" + op, 0) + 1
        if not self.throttling:
            return True
        rate = KMS_RATES.get(op, 1000)
        b = self.buckets.setdefault(f"kms:{region}:{op}", Bucket(rate, rate))
        if b.take():
            return True
        self.throttled["kms:" + op] = self.throttled.get("kms:" + op, 0) + 1
        return False

    def admit(self, action: str, paginated_or_filtered: bool, region: str = "us-east-1",
              account: str = ACCOUNT) -> bool:
        """Count the call; False when EC2 would throttle it (buckets per account, Region and
        action; another account's calls are counted as `<action>@target`)."""
        with self.lock:
            if account != ACCOUNT:
                action += "@target"
            self.calls[action] = self.calls.get(action, 0) + 1
            self.calls_by_region[(region, action)] = self.calls_by_region.get((region, action), 0) + 1
            if not self.throttling:
                return True
            if action.startswith(MUTATING_PREFIXES):
                key, cap, rate = action, 50, 5
            elif paginated_or_filtered:
                key, cap, rate = action, 100, 20
            else:
                key, cap, rate = action + "/unpaginated", 50, 10
            if action in self.raised:
                cap, rate = self.raised[action]
            b = self.buckets.setdefault(f"{account}:{region}:{key}", Bucket(cap, rate))
            if b.take():
                return True
            self.throttled[action] = self.throttled.get(action, 0) + 1
            return False


def members(q: dict[str, list[str]], prefix: str) -> list[str]:
    """`Prefix.1`, `Prefix.2`, ... in order."""
    out = []
    n = 1
    while f"{prefix}.{n}" in q:
        out.append(q[f"{prefix}.{n}"][0])
        n += 1
    return out


def tags_xml(tags: dict[str, str]) -> str:
    if not tags:
        return "<tagSet/>"
    items = "".join(f"<item><key>{escape(k)}</key><value>{escape(v)}</value></item>" for k, v in tags.items())
    return f"<tagSet>{items}</tagSet>"


MARK_KEY = "alias/ami-share-marks"


def mark_secret(key_id: str, message: bytes) -> bytes:
    """What the stand-in's GenerateMac answers (an HMAC of the message under the key id)."""
    return hmac.new(key_id.encode(), message, hashlib.sha256).digest()


def signed_mark(kind: str, resource: str, value: str, secret: bytes | None = None) -> str:
    """A mark as the sweeper signs it (shared/src/marks.rs): `<value>/<32 hex digits>`, the
    HMAC-SHA256 of kind, resource and value (each followed by a zero byte) under the SHA-256 of
    the secret GenerateMac gives for the derivation message (the stand-in's, unless given)."""
    if secret is None:
        secret = mark_secret(MARK_KEY, b"ami-share marks v1")
    key = hashlib.sha256(secret).digest()
    mac = hmac.new(key, b"".join(p.encode() + b"\0" for p in (kind, resource, value)), hashlib.sha256)
    return f"{value}/{mac.hexdigest()[:32]}"


def image_xml(i: Image, encrypted: set[str] = frozenset()) -> str:
    bdm = "".join(
        f"<item><deviceName>/dev/sd{chr(97 + n)}</deviceName><ebs><snapshotId>{s}</snapshotId>"
        f"<volumeSize>8</volumeSize><deleteOnTermination>true</deleteOnTermination>"
        f"<volumeType>gp3</volumeType><encrypted>{'true' if s in encrypted else 'false'}</encrypted></ebs></item>"
        for n, s in enumerate(i.snapshots)
    )
    source = (
        f"<sourceImageId>{i.source[1]}</sourceImageId><sourceImageRegion>{i.source[0]}</sourceImageRegion>"
        if i.source else ""
    )
    deprecation = f"<deprecationTime>{i.deprecation}</deprecationTime>" if i.deprecation else ""
    return (
        f"<item><imageId>{i.id}</imageId><imageLocation>{i.owner}/{escape(i.name)}</imageLocation>"
        f"<imageState>{i.state}</imageState><imageOwnerId>{i.owner}</imageOwnerId>{deprecation}"
        f"<creationDate>2026-10-01T00:00:00.000Z</creationDate><isPublic>false</isPublic>"
        f"<architecture>x86_64</architecture><imageType>machine</imageType><name>{escape(i.name)}</name>"
        f"<rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/sda</rootDeviceName>"
        f"<blockDeviceMapping>{bdm}</blockDeviceMapping>{source}{tags_xml(i.tags)}</item>"
    )


def snapshot_xml(s: Snapshot) -> str:
    return (
        f"<item><snapshotId>{s.id}</snapshotId><volumeId>vol-0000000000000000</volumeId>"
        f"<status>completed</status><startTime>{s.start}</startTime><progress>100%</progress>"
        f"<ownerId>{ACCOUNT}</ownerId><volumeSize>{s.size}</volumeSize>"
        f"<description>{escape(s.description)}</description>"
        + (f"<encrypted>true</encrypted><kmsKeyId>{s.kms_key_id}</kmsKeyId>" if s.kms_key_id else "<encrypted>false</encrypted>")
        + f"{tags_xml(s.tags)}</item>"
    )


def page(order: list[str], q: dict[str, list[str]], default: int) -> tuple[list[str], str | None]:
    size = min(int(q.get("MaxResults", [str(default)])[0]), 1000)
    start = int(q.get("NextToken", ["0"])[0] or 0)
    ids = order[start : start + size]
    nxt = start + size
    return ids, (str(nxt) if nxt < len(order) else None)


def ec2_response(action: str, body: str) -> str:
    return f'<{action}Response xmlns="{EC2_XMLNS}"><requestId>{uuid.uuid4()}</requestId>{body}</{action}Response>'


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK (40 ms on Linux), a stall no AWS endpoint has.
    disable_nagle_algorithm = True
    world: World

    def log_message(self, *args) -> None:  # quiet
        pass

    def reply(self, status: int, text: str, content_type: str = "text/xml") -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status: int, code: str, message: str) -> None:
        self.reply(
            status,
            f"<Response><Errors><Error><Code>{code}</Code><Message>{escape(message)}</Message></Error></Errors>"
            f"<RequestID>{uuid.uuid4()}</RequestID></Response>",
        )

    def organizations(self, target: str, body: dict) -> None:
        w = self.world
        op = target.split(".")[-1]
        with w.lock:
            w.calls["organizations:" + op] = w.calls.get("organizations:" + op, 0) + 1
            if op == "DescribeOrganization":
                out = {"Organization": {"Id": w.org_id, "Arn": f"arn:aws:organizations::{ACCOUNT}:organization/{w.org_id}"}}
            elif op in ("ListAccountsForParent", "ListChildren"):
                accounts, children = w.ous.get(body.get("ParentId", ""), ([], []))
                items = accounts if op == "ListAccountsForParent" else children
                start = int(body.get("NextToken") or 0)
                size = min(int(body.get("MaxResults") or ORG_PAGE), ORG_PAGE)
                page = items[start:start + size]
                if op == "ListAccountsForParent":
                    out = {"Accounts": [{"Id": a, "Status": "SUSPENDED" if a in w.suspended else "ACTIVE",
                                         "Arn": f"arn:aws:organizations::{ACCOUNT}:account/{w.org_id}/{a}",
                                         "Name": a, "Email": f"{a}@example.com"} for a in page]}
                else:
                    out = {"Children": [{"Id": c, "Type": "ORGANIZATIONAL_UNIT"} for c in page]}
                if start + size < len(items):
                    out["NextToken"] = str(start + size)
            elif op == "DescribeEffectivePolicy":
                # Issue 30: each account's EC2 declarative policy (Allowed AMIs), when set.
                a = body.get("TargetId", "")
                doc = getattr(w, "declarative_policies", {}).get(a)
                if doc is None:
                    data = json.dumps({"__type": "EffectivePolicyNotFoundException", "message": f"no policy for {a}"})
                    return self.reply(400, data, "application/x-amz-json-1.1")
                out = {"EffectivePolicy": {"PolicyContent": doc, "TargetId": a,
                                           "PolicyType": "DECLARATIVE_POLICY_EC2"}}
            elif op == "DescribeAccount":
                # Every account the benchmarks name is a member of the organization (the
                # product checks plain accounts are, issue 25), unless listed outside it.
                a = body.get("AccountId", "")
                if a in getattr(w, "outside_org", set()):
                    data = json.dumps({"__type": "AccountNotFoundException", "message": f"no account {a}"})
                    return self.reply(400, data, "application/x-amz-json-1.1")
                out = {"Account": {"Id": a, "Status": "SUSPENDED" if a in w.suspended else "ACTIVE",
                                   "State": "SUSPENDED" if a in w.suspended else "ACTIVE",
                                   "Arn": f"arn:aws:organizations::{ACCOUNT}:account/{w.org_id}/{a}",
                                   "Name": a, "Email": f"{a}@example.com"}}
            else:
                data = json.dumps({"__type": "InvalidInputException", "message": f"the stand-in does not answer {op}"})
                return self.reply(400, data, "application/x-amz-json-1.1")
        self.reply(200, json.dumps(out), "application/x-amz-json-1.1")

    def region(self) -> str:
        """The Region of the request: its SigV4 credential scope (<date>/<region>/<service>)."""
        auth = self.headers.get("Authorization", "")
        try:
            return auth.split("Credential=")[1].split(",")[0].split("/")[2]
        except IndexError:
            return "us-east-1"

    def account(self) -> str:
        """The account a request acts in: the one its access key names (`AssumeRole` hands out
        `ASIA<account>`), else the publisher's."""
        auth = self.headers.get("Authorization", "")
        try:
            key = auth.split("Credential=")[1].split("/")[0]
        except IndexError:
            return ACCOUNT
        return key[4:] if key.startswith("ASIA") and len(key) == 16 else ACCOUNT

    def do_POST(self) -> None:  # noqa: N802
        start = time.monotonic()
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        target = self.headers.get("X-Amz-Target", "")
        try:
            self.dispatch(target, raw)
        finally:
            name = target.split(".")[-1] if target else parse_qs(raw.decode()).get("Action", [""])[0]
            service = ("organizations" if target.startswith("AWSOrganizations") else "kms" if target.startswith("TrentService")
                       else "sqs" if target.startswith("AmazonSQS") else "ec2")
            with self.world.lock:
                self.world.log.append((f"{service}:{name}", self.region(), start, time.monotonic()))

    def dispatch(self, target: str, raw: bytes) -> None:
        if target.startswith("AmazonSQS"):
            if self.world.latency:
                time.sleep(self.world.latency)
            return self.sqs(target.split(".")[-1], json.loads(raw or b"{}"))
        if target.startswith("AWSOrganizations"):
            if self.world.latency:
                time.sleep(self.world.latency)
            return self.organizations(target, json.loads(raw or b"{}"))
        if target.startswith("TrentService"):
            if self.world.latency:
                time.sleep(self.world.latency)
            return self.kms(target.split(".")[-1], json.loads(raw or b"{}"))
        q = parse_qs(raw.decode(), keep_blank_values=True)
        action = q.get("Action", [""])[0]
        w = self.world
        if w.latency:
            time.sleep(w.latency)
        if action == "GetCallerIdentity":
            return self.reply(
                200,
                '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>'
                f"<Arn>arn:aws:iam::{ACCOUNT}:user/bench</Arn><UserId>AIDABENCH</UserId><Account>{ACCOUNT}</Account>"
                "</GetCallerIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>",
            )
        if action == "AssumeRole":
            role = q.get("RoleArn", [""])[0]
            account = role.split(":")[4] if role.count(":") >= 5 else ""
            with w.lock:
                w.calls["sts:AssumeRole"] = w.calls.get("sts:AssumeRole", 0) + 1
            return self.reply(
                200,
                '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
                f"<Credentials><AccessKeyId>ASIA{account}</AccessKeyId><SecretAccessKey>bench</SecretAccessKey>"
                "<SessionToken>bench</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>"
                f"<AssumedRoleUser><Arn>arn:aws:sts::{account}:assumed-role/r/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId>"
                "</AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>"
                "</AssumeRoleResponse>",
            )
        if action == "DescribeLaunchConfigurations":
            return self.reply(
                200,
                '<DescribeLaunchConfigurationsResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
                "<DescribeLaunchConfigurationsResult><LaunchConfigurations/></DescribeLaunchConfigurationsResult>"
                "<ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></DescribeLaunchConfigurationsResponse>",
            )
        paginated = "MaxResults" in q or any(k.startswith(("Filter.", "ImageId.", "SnapshotId.")) for k in q) or "ImageId" in q or "SnapshotId" in q
        caller = self.account()
        if not w.admit(action, paginated, self.region(), caller):
            return self.error(503, "RequestLimitExceeded", "Request limit exceeded.")
        prefix = "ec2_" if caller == ACCOUNT else "target_"
        self.caller = caller
        handler = getattr(self, prefix + action, None)
        if handler is None:
            return self.error(400, "InvalidAction", f"the stand-in does not answer {action}")
        self.q_region = self.region()
        with w.lock:
            status, body = handler(q)
        if status != 200:
            return self.error(status, body[0], body[1])
        self.reply(200, ec2_response(action, body))

    def sqs(self, op: str, body: dict) -> None:
        w = self.world
        region = self.region()
        ctype = "application/x-amz-json-1.0"
        with w.lock:
            w.calls["sqs:" + op] = w.calls.get("sqs:" + op, 0) + 1
            if op == "GetQueueUrl":
                name = body["QueueName"]
                w.queues.setdefault((region, name), SqsQueue(name))  # the stack's queues exist
                return self.reply(200, json.dumps({"QueueUrl": f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/{name}"}), ctype)
            url = body.get("QueueUrl", "")
            q = w.queues.get((url.split(".")[1] if url.count(".") > 1 else region, url.rsplit("/", 1)[-1]))
            if q is None:
                return self.reply(400, json.dumps({"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": url}), ctype)
            if op == "SendMessage":
                mid = q.send(body["MessageBody"], body.get("MessageGroupId"), body.get("MessageDeduplicationId"),
                             float(body.get("DelaySeconds", 0)) * w.sqs_delay_scale)
                return self.reply(200, json.dumps({"MessageId": mid, "MD5OfMessageBody": hashlib.md5(body["MessageBody"].encode()).hexdigest()}), ctype)
            if op == "SendMessageBatch":
                ok = []
                for e in body.get("Entries", []):
                    mid = q.send(e["MessageBody"], e.get("MessageGroupId"), e.get("MessageDeduplicationId"),
                                 float(e.get("DelaySeconds", 0)) * w.sqs_delay_scale)
                    ok.append({"Id": e["Id"], "MessageId": mid, "MD5OfMessageBody": hashlib.md5(e["MessageBody"].encode()).hexdigest()})
                return self.reply(200, json.dumps({"Successful": ok, "Failed": []}), ctype)
            if op == "ReceiveMessage":
                got = q.receive(int(body.get("MaxNumberOfMessages", 1)), float(body.get("VisibilityTimeout", 30)))
                msgs = [{"MessageId": m["id"], "ReceiptHandle": m["receipt"], "Body": m["body"],
                         "MD5OfBody": hashlib.md5(m["body"].encode()).hexdigest(),
                         "Attributes": {"MessageGroupId": m["group"] or ""}} for m in got]
                return self.reply(200, json.dumps({"Messages": msgs} if msgs else {}), ctype)
            if op in ("DeleteMessage", "ChangeMessageVisibility"):
                m = q.find(body["ReceiptHandle"])
                if m is None:
                    return self.reply(400, json.dumps({"__type": "com.amazonaws.sqs#ReceiptHandleIsInvalid", "message": "stale"}), ctype)
                if op == "DeleteMessage":
                    q.messages.remove(m)
                else:
                    m["visible_at"] = time.monotonic() + float(body.get("VisibilityTimeout", 0))
                return self.reply(200, "{}", ctype)
            if op == "GetQueueAttributes":
                n = q.visible()
                return self.reply(200, json.dumps({"Attributes": {
                    "ApproximateNumberOfMessages": str(n),
                    "ApproximateNumberOfMessagesNotVisible": str(len(q.messages) - n)}}), ctype)
        return self.reply(400, json.dumps({"__type": "InvalidAction", "message": op}), ctype)

    def kms(self, op: str, body: dict) -> None:
        w = self.world
        region = self.region()
        with w.lock:
            if not w.admit_kms(region, op):
                data = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})
                return self.reply(400, data, "application/x-amz-json-1.1")
            caller = self.account()
            if caller != ACCOUNT and op == "DescribeKey":
                # Every target account has its own key, alias/consumer-ami, its default EBS key.
                arn = f"arn:aws:kms:{region}:{caller}:key/consumer"
                out = {"KeyMetadata": {"KeyId": "consumer", "Arn": arn, "AWSAccountId": caller,
                                       "KeyManager": "CUSTOMER", "KeyState": "Enabled", "Enabled": True}}
                return self.reply(200, json.dumps(out), "application/x-amz-json-1.1")
            if op == "GenerateMac":
                # The marks' HMAC key (alias/ami-share-marks, the sweeper's default): a MAC that
                # depends on the key id and the message only, like a real HMAC key.
                mac = mark_secret(body.get("KeyId", ""), base64.b64decode(body.get("Message", "")))
                out = {"Mac": base64.b64encode(mac).decode(), "KeyId": body.get("KeyId", ""),
                       "MacAlgorithm": body.get("MacAlgorithm", "HMAC_SHA_256")}
                return self.reply(200, json.dumps(out), "application/x-amz-json-1.1")
            arn = w.key(region, body.get("KeyId", ""))
            if arn is None:
                data = json.dumps({"__type": "NotFoundException", "message": f"no key {body.get('KeyId')}"})
                return self.reply(400, data, "application/x-amz-json-1.1")
            if op == "DescribeKey":
                out = {"KeyMetadata": {"KeyId": arn.split("/")[-1], "Arn": arn, "AWSAccountId": ACCOUNT,
                                       "KeyManager": "CUSTOMER", "KeyState": "Enabled", "Enabled": True,
                                       "KeyUsage": "ENCRYPT_DECRYPT", "KeySpec": "SYMMETRIC_DEFAULT"}}
            elif op == "ListGrants":
                limit = min(int(body.get("Limit") or 50), 100)
                start = int(body.get("Marker") or 0)
                grants = w.keys[arn]
                page = grants[start:start + limit]
                out = {"Grants": [dict(g, KeyId=arn) for g in page], "Truncated": start + limit < len(grants)}
                if out["Truncated"]:
                    out["NextMarker"] = str(start + limit)
            elif op == "CreateGrant":
                same = [g for g in w.keys[arn] if g.get("Name") == body.get("Name") and g["GranteePrincipal"] == body["GranteePrincipal"]]
                grant = same[0] if same else {"GrantId": uuid.uuid4().hex, "Name": body.get("Name"),
                                              "GranteePrincipal": body["GranteePrincipal"], "Operations": body.get("Operations", [])}
                if not same:
                    w.keys[arn].append(grant)
                out = {"GrantId": grant["GrantId"], "GrantToken": "t"}
            elif op == "RevokeGrant":
                w.keys[arn] = [g for g in w.keys[arn] if g["GrantId"] != body.get("GrantId")]
                out = {}
            elif op == "GetKeyPolicy":
                default = json.dumps({"Version": "2012-10-17", "Statement": [
                    {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
                     "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"}]})
                out = {"Policy": w.key_policies.get(arn, default), "PolicyName": "default"}
            elif op == "ListResourceTags":
                out = {"Tags": [{"TagKey": k, "TagValue": v} for k, v in w.key_tags.get(arn, {}).items()], "Truncated": False}
            elif op == "TagResource":
                w.key_tags.setdefault(arn, {}).update({t["TagKey"]: t["TagValue"] for t in body.get("Tags", [])})
                out = {}
            elif op == "UntagResource":
                for k in body.get("TagKeys", []):
                    w.key_tags.get(arn, {}).pop(k, None)
                out = {}
            else:
                data = json.dumps({"__type": "UnsupportedOperationException", "message": f"the stand-in does not answer {op}"})
                return self.reply(400, data, "application/x-amz-json-1.1")
        self.reply(200, json.dumps(out), "application/x-amz-json-1.1")

    # --- EC2 ------------------------------------------------------------------------------------
    def encrypted_of(self, i: Image) -> set[str]:
        return {s for s in i.snapshots if s in self.world.snapshots and self.world.snapshots[s].kms_key_id}

    def ec2_DescribeImages(self, q):
        w = self.world
        ids = members(q, "ImageId")
        if ids:
            found = [w.images[i] for i in ids if i in w.images and w.images[i].region == self.q_region]
            return 200, "<imagesSet>" + "".join(image_xml(i, self.encrypted_of(i)) for i in found) + "</imagesSet>"
        filters = {}
        n = 1
        while f"Filter.{n}.Name" in q:
            filters[q[f"Filter.{n}.Name"][0]] = members(q, f"Filter.{n}.Value")
            n += 1
        order = w.image_order
        if "image-id" in filters:
            order = [i for i in filters["image-id"] if i in w.images and w.images[i].region == self.q_region]
        if "name" in filters:
            pat = filters["name"][0].rstrip("*")
            order = [i for i in order if w.images[i].name.startswith(pat)]
        if "state" in filters:
            order = [i for i in order if w.images[i].state in filters["state"] and w.images[i].region == self.q_region
                     and w.images[i].owner == ACCOUNT]
        ids, nxt = page(order, q, 1000)
        body = "<imagesSet>" + "".join(image_xml(w.images[i], self.encrypted_of(w.images[i])) for i in ids) + "</imagesSet>"
        return 200, body + (f"<nextToken>{nxt}</nextToken>" if nxt else "")

    def ec2_DescribeSnapshots(self, q):
        w = self.world
        wanted = members(q, "SnapshotId")
        if wanted:
            body = "<snapshotSet>" + "".join(snapshot_xml(w.snapshots[i]) for i in wanted if i in w.snapshots) + "</snapshotSet>"
            return 200, body
        ids, nxt = page(w.snapshot_order, q, 1000)
        body = "<snapshotSet>" + "".join(snapshot_xml(w.snapshots[i]) for i in ids if i in w.snapshots) + "</snapshotSet>"
        return 200, body + (f"<nextToken>{nxt}</nextToken>" if nxt else "")

    def ec2_ListImagesInRecycleBin(self, q):
        return 200, "<imageSet/>"

    def ec2_DescribeLaunchTemplates(self, q):
        return 200, "<launchTemplates/>"

    def ec2_DescribeLaunchTemplateVersions(self, q):
        return 200, "<launchTemplateVersionSet/>"

    def ec2_DescribeImageAttribute(self, q):
        i = self.world.images.get(q["ImageId"][0])
        if i is None:
            return 400, ("InvalidAMIID.NotFound", "no such image")
        items = "".join(f"<item><userId>{a}</userId></item>" for a in sorted(i.launch))
        items += "".join(f"<item><organizationalUnitArn>{o}</organizationalUnitArn></item>" for o in sorted(i.launch_ous))
        return 200, f"<imageId>{i.id}</imageId><launchPermission>{items}</launchPermission>"

    def ec2_DescribeSnapshotAttribute(self, q):
        s = self.world.snapshots.get(q["SnapshotId"][0])
        if s is None:
            return 400, ("InvalidSnapshot.NotFound", "no such snapshot")
        items = "".join(f"<item><userId>{a}</userId></item>" for a in sorted(s.permissions))
        return 200, f"<snapshotId>{s.id}</snapshotId><createVolumePermission>{items}</createVolumePermission>"

    def ec2_ModifyImageAttribute(self, q):
        i = self.world.images.get(q["ImageId"][0])
        if i is None:
            return 400, ("InvalidAMIID.NotFound", "no such image")
        for op in ("Add", "Remove"):
            n = 1
            while any(k.startswith(f"LaunchPermission.{op}.{n}.") for k in q):
                user = q.get(f"LaunchPermission.{op}.{n}.UserId", [None])[0]
                ou = q.get(f"LaunchPermission.{op}.{n}.OrganizationalUnitArn", [None])[0]
                for value, into in ((user, i.launch), (ou, i.launch_ous)):
                    if value:
                        into.add(value) if op == "Add" else into.discard(value)
                n += 1
        return 200, "<return>true</return>"

    def ec2_CopyImage(self, q):
        w = self.world
        token = q.get("ClientToken", [""])[0]
        if token and token in w.copy_tokens:
            return 200, f"<imageId>{w.copy_tokens[token]}</imageId>"
        src = w.images.get(q["SourceImageId"][0])
        if src is None or src.region != q["SourceRegion"][0]:
            return 400, ("InvalidAMIID.NotFound", "no such source image")
        key = q.get("KmsKeyId", [None])[0]
        key_arn = w.key(self.q_region, key) if key else None
        if key and key_arn is None:
            return 400, ("InvalidParameter", f"no key {key} in {self.q_region}")
        if w.copy_cap is not None:
            used = w.in_flight(self.q_region)
            if used > 0 and used + len(src.snapshots) > w.copy_cap:
                w.calls["CopyImage:ResourceLimitExceeded"] = w.calls.get("CopyImage:ResourceLimitExceeded", 0) + 1
                return 400, ("ResourceLimitExceeded", f"too many snapshot copies in flight to {self.q_region}")
        n = len(w.images)
        snaps = []
        for k, sid in enumerate(src.snapshots):
            new = f"snap-{0x300000000 + n * 16 + k:017x}"
            w.add_snapshot(Snapshot(new, f"Copied for DestinationAmi ami-{0x300000000 + n:017x} from SourceAmi {src.id} for SourceSnapshot {sid}",
                                    kms_key_id=key_arn))
            snaps.append(new)
        tags = dict(src.tags) if q.get("CopyImageTags", ["false"])[0] == "true" else {}
        t = 1
        while f"TagSpecification.1.Tag.{t}.Key" in q:
            tags[q[f"TagSpecification.1.Tag.{t}.Key"][0]] = q.get(f"TagSpecification.1.Tag.{t}.Value", [""])[0]
            t += 1
        copy = Image(f"ami-{0x300000000 + n:017x}", q["Name"][0], snaps, tags=tags, state="pending",
                     region=self.q_region, source=(src.region, src.id))
        w.add_image(copy)
        if token:
            w.copy_tokens[token] = copy.id
        used = w.in_flight(self.q_region)
        w.peak_in_flight[self.q_region] = max(w.peak_in_flight.get(self.q_region, 0), used)
        return 200, f"<imageId>{copy.id}</imageId>"

    def ec2_ModifySnapshotAttribute(self, q):
        s = self.world.snapshots.get(q["SnapshotId"][0])
        if s is None:
            return 400, ("InvalidSnapshot.NotFound", "no such snapshot")
        users = members(q, "UserId")
        if q.get("OperationType", ["add"])[0] == "add":
            s.permissions.update(users)
        else:
            s.permissions.difference_update(users)
        return 200, "<return>true</return>"

    def _tag_targets(self, q):
        ids = members(q, "ResourceId")
        if not 1 <= len(ids) <= 1000:
            return None, (400, ("InvalidParameterValue", f"{len(ids)} resource ids; 1 to 1000 allowed"))
        return ids, None

    def ec2_CreateTags(self, q):
        ids, err = self._tag_targets(q)
        if err:
            return err
        tags = {}
        n = 1
        while f"Tag.{n}.Key" in q:
            tags[q[f"Tag.{n}.Key"][0]] = q.get(f"Tag.{n}.Value", [""])[0]
            n += 1
        for rid in ids:
            target = self.world.images.get(rid) or self.world.snapshots.get(rid)
            if target is not None:
                target.tags.update(tags)
        return 200, "<return>true</return>"

    def ec2_DeleteTags(self, q):
        ids, err = self._tag_targets(q)
        if err:
            return err
        keys = []
        n = 1
        while f"Tag.{n}.Key" in q:
            keys.append(q[f"Tag.{n}.Key"][0])
            n += 1
        for rid in ids:
            target = self.world.images.get(rid) or self.world.snapshots.get(rid)
            if target is not None:
                for k in keys:
                    target.tags.pop(k, None)
        return 200, "<return>true</return>"

    def ec2_DeleteSnapshot(self, q):
        w = self.world
        sid = q["SnapshotId"][0]
        if sid not in w.snapshots:
            return 400, ("InvalidSnapshot.NotFound", "no such snapshot")
        if sid in w.used:
            return 400, ("InvalidSnapshot.InUse", f"{sid} is in use by an image")
        del w.snapshots[sid]
        w.deleted.append(sid)
        return 200, "<return>true</return>"


    # --- EC2 in another account (copy_into's targets) ---------------------------------------------

    def target_DescribeImages(self, q):
        w = self.world
        mine = w.targets.get((self.caller, self.q_region), [])
        filters = {}
        n = 1
        while f"Filter.{n}.Name" in q:
            filters[q[f"Filter.{n}.Name"][0]] = members(q, f"Filter.{n}.Value")
            n += 1
        for name, values in filters.items():
            if name.startswith("tag:"):
                mine = [i for i in mine if i.tags.get(name[4:]) in values]
        order = [i.id for i in mine]
        by_id = {i.id: i for i in mine}
        ids, nxt = page(order, q, 1000)
        body = "<imagesSet>" + "".join(image_xml(by_id[i]) for i in ids) + "</imagesSet>"
        return 200, body + (f"<nextToken>{nxt}</nextToken>" if nxt else "")

    def target_GetEbsDefaultKmsKeyId(self, q):
        return 200, "<kmsKeyId>alias/consumer-ami</kmsKeyId>"

    def target_CopyImage(self, q):
        w = self.world
        at = (self.caller, self.q_region)
        token = q.get("ClientToken", [""])[0]
        if token and (self.caller, self.q_region, token) in w.target_tokens:
            return 200, f"<imageId>{w.target_tokens[(self.caller, self.q_region, token)]}</imageId>"
        src = w.images.get(q["SourceImageId"][0])
        if src is None or src.region != q["SourceRegion"][0] or not (self.caller in src.launch or src.launch_ous):
            return 400, ("InvalidAMIID.NotFound", "no such source image (or not shared with this account)")
        if any(self.caller not in w.snapshots[s].permissions for s in src.snapshots if s in w.snapshots):
            return 400, ("InvalidSnapshot.NotFound", "the source's snapshot is not shared with this account")
        tags = {}
        t = 1
        while f"TagSpecification.1.Tag.{t}.Key" in q:
            tags[q[f"TagSpecification.1.Tag.{t}.Key"][0]] = q.get(f"TagSpecification.1.Tag.{t}.Value", [""])[0]
            t += 1
        n = sum(len(v) for v in w.targets.values())
        copy = Image(f"ami-{0x700000000 + n:017x}", q["Name"][0], [], tags=tags, state="pending",
                     region=self.q_region, source=(src.region, src.id), owner=self.caller)
        w.targets.setdefault(at, []).append(copy)
        if token:
            w.target_tokens[(self.caller, self.q_region, token)] = copy.id
        return 200, f"<imageId>{copy.id}</imageId>"

    def _target_image(self, image_id):
        return next((i for i in self.world.targets.get((self.caller, self.q_region), []) if i.id == image_id), None)

    def target_CreateTags(self, q):
        tags = {}
        n = 1
        while f"Tag.{n}.Key" in q:
            tags[q[f"Tag.{n}.Key"][0]] = q.get(f"Tag.{n}.Value", [""])[0]
            n += 1
        for rid in members(q, "ResourceId"):
            i = self._target_image(rid)
            if i is not None:
                i.tags.update(tags)
        return 200, "<return>true</return>"

    def target_EnableImageDeprecation(self, q):
        i = self._target_image(q["ImageId"][0])
        if i is None:
            return 400, ("InvalidAMIID.NotFound", "no such image")
        i.deprecation = q["DeprecateAt"][0]
        return 200, "<return>true</return>"


class QuietServer(ThreadingHTTPServer):
    """Loopback only; a client that hangs up (the binary stopped) is not an error."""

    daemon_threads = True
    # Room for every connection of a burst (50 grants at once); the default backlog is 5.
    request_queue_size = 256

    def handle_error(self, request, client_address) -> None:
        pass


def serve(world: World) -> tuple[ThreadingHTTPServer, int]:
    handler = type("BoundHandler", (Handler,), {"world": world})
    server = QuietServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]
