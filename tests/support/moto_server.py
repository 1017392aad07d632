"""moto server for the integration tests, plus the few EC2 actions moto lacks.

Run: .venv/bin/python tests/support/moto_server.py [--port N] [--verbose] [--ignore-stdin]

Serves moto on 127.0.0.1 (port 0 = the OS picks a free one) and prints exactly one line,
`READY http://127.0.0.1:PORT`, to stdout once it accepts requests. It exits when its stdin
reaches end-of-file (the parent process is gone) or on SIGTERM/SIGINT, so no server outlives
a test run.

In front of moto, in the same process, a WSGI middleware answers with valid EC2 Query-protocol
responses the actions moto does not implement (see ../shared/reference/aws-facts.md §7):

- ListImagesInRecycleBin          images registered with POST /_harness/recycle-bin, per Region
- GetImageBlockPublicAccessState  `unblocked` unless set with POST /_harness/block-public-access
- EnableImageDeprecation, DisableImage   set the image's DeprecationTime / State in moto
- DescribeImageReferences         references registered with POST /_harness/image-references
- CreateImageUsageReport, DescribeImageUsageReports, DescribeImageUsageReportEntries
                                  reports are `pending` until POST /_harness/usage-reports/finish
                                  (a night passing); entries list what POST /_harness/image-usage
                                  says consumer accounts use

and, because moto's RAM refuses to share Parameter Store parameters ("You cannot share the
selected resource type") and has no AssociateResourceShare / DisassociateResourceShare, AWS RAM
itself for the calls the product makes (restJson1, per Region): GetResourceShares,
CreateResourceShare (client tokens; only advanced-tier parameters that exist in moto; organization
and OU principals refused, with RAM's own message, until EnableSharingWithAwsOrganization),
GetResourceShareAssociations, AssociateResourceShare, DisassociateResourceShare,
UpdateResourceShare, EnableSharingWithAwsOrganization. With those shares it also answers what moto
cannot: a consumer account's GetParameter by parameter ARN (`resolve:ssm:<ARN>`) of a parameter
shared with it (by account, or by the organization or an OU it belongs to); and GetParameters of
`name:label` / `name:version` with each result's `Selector`, which moto leaves out. PutEvents is recorded
(GET /_harness/events) and then passed on to moto.

Control endpoints (for the tests, not AWS APIs):

- POST /_harness/block-public-access?region=us-east-1&state=block-new-sharing|unblocked
- POST /_harness/recycle-bin  JSON {"region": "...", "images": [{"ImageId": "ami-...",
  "Name": "...", "Description": ""}]}  (adds or replaces by ImageId; optional
  "RecycleBinEnterTime" / "RecycleBinExitTime" as ISO 8601 strings)
- POST /_harness/encrypt-snapshots  JSON {"region": "...", "snapshots": {"snap-...": "<key ARN>"}}
  marks moto snapshots as encrypted with a key (moto's images always get one unencrypted
  snapshot, so encrypted images exist only this way); DescribeImages then reports
  `Encrypted: true` in the image's block device mapping, as EC2 does
- POST /_harness/image-references  JSON {"region": "...", "references": [{"ImageId": "ami-...",
  "ResourceType": "ec2:LaunchTemplate", "Arn": "..."}]}  (replaces the Region's references)
- POST /_harness/image-usage  JSON {"image_id": "ami-...", "account_id": "...", "resource_type":
  "ec2:Instance", "count": 2}  a consumer account uses an image
- POST /_harness/usage-reports/finish  every pending usage report becomes available
- GET  /_harness/events       the PutEvents entries received so far, with their Region
- POST /_harness/declarative-policy  JSON {"account": "...", "policy": {...}}  the account's
  effective EC2 declarative policy (DescribeEffectivePolicy DECLARATIVE_POLICY_EC2; moto has none)
- POST /_harness/deny-assume-role  JSON {"role_arn": "..."}  AssumeRole of that role is refused
  (AccessDenied, as when the role is missing or does not trust the caller)
- POST /_harness/ebs-default-key   JSON {"account": "...", "region": "...", "key_id": "..."}
  what GetEbsDefaultKmsKeyId answers in that account and Region (default `alias/aws/ebs`)
- GET  /_harness/target-copies     the cross-account CopyImage requests made (account, Region,
  image, source, Encrypted, KmsKeyId, ClientToken)
- POST /moto-api/reset        wipes moto's state and the harness's state

and, for `copy_into` (several accounts: moto picks the account by the access key, and an
assumed role's keys belong to the role's account): CopyImage of *another account's* image
(moto looks the source up in the caller's own account only), with EC2's rules (shared by
launch permission, account, OU or organization, and createVolumePermission; client tokens per
account; tags at creation); GetEbsDefaultKmsKeyId; GetAllowedImagesSettings (always `disabled`);
AssumeRole refused for chosen roles.
EnableImageDeprecation and DisableImage act in the caller's account.

Everything else goes to moto untouched. The rest of the harness's state is kept per Region only
(not per account): those tests run as moto's default account 123456789012.
"""

import argparse
import datetime
import io
import json
import logging
import os
import signal
import sys
import threading
import uuid
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

# Must be set before moto is imported: moto reads its settings at import time.
os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"

EC2_XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/"
BLOCK_PUBLIC_ACCESS_STATES = ("unblocked", "block-new-sharing")
DEFAULT_REGION = "us-east-1"


class HarnessState:
    """What the harness adds to moto: recycle-bin contents and block-public-access, per Region."""

    def __init__(self):
        self.lock = threading.Lock()
        self.recycle_bin = {}  # region -> {image_id: item dict}, in insertion order
        self.block_public_access = {}  # region -> state
        self.ram_org_sharing = False  # RAM sharing with AWS Organizations (off until enabled)
        self.shares = []  # RAM resource shares (dicts), every Region
        self.events = []  # PutEvents entries received, with their Region
        self.references = {}  # region -> [reference dict]
        self.usage_reports = []  # dicts, every Region
        self.image_usage = []  # (image_id, account_id, resource_type, count)
        self.denied_roles = set()  # role ARNs whose AssumeRole is refused
        self.ebs_default_keys = {}  # (account, region) -> key id
        self.copy_tokens = {}  # (account, region, client token) -> image id (cross-account copies)
        self.target_copies = []  # cross-account CopyImage requests made, as dicts
        self.declarative_policies = {}  # account -> effective EC2 declarative policy (JSON text)

    def reset(self):
        with self.lock:
            self.recycle_bin.clear()
            self.block_public_access.clear()
            self.ram_org_sharing = False
            self.shares.clear()
            self.events.clear()
            self.references.clear()
            self.usage_reports.clear()
            self.image_usage.clear()
            self.denied_roles.clear()
            self.ebs_default_keys.clear()
            self.copy_tokens.clear()
            self.target_copies.clear()
            self.declarative_policies.clear()


def _now_iso():
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _iso_plus_days(days):
    then = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)
    return then.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _region_from_authorization(header):
    """`AWS4-HMAC-SHA256 Credential=AKID/20261122/us-east-1/ec2/aws4_request, ...` -> (region, service)."""
    try:
        credential = header.split("Credential=", 1)[1].split(",", 1)[0].strip()
        _, _, region, service, _ = credential.split("/")
        return region, service
    except (IndexError, ValueError):
        return None, None


def _caller_account(environ):
    """The account moto acts as for this request: the one of its access key (an assumed role's
    keys belong to the role's account), else moto's default."""
    from moto.iam.models import get_account_id_from

    header = environ.get("HTTP_AUTHORIZATION", "")
    try:
        access_key = header.split("Credential=", 1)[1].split("/", 1)[0].strip()
    except IndexError:
        return ACCOUNT_ID
    return get_account_id_from(access_key)


def _xml_response(start_response, status, body):
    data = ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode("utf-8")
    request_id = str(uuid.uuid4())
    start_response(
        status,
        [
            ("Content-Type", "text/xml;charset=UTF-8"),
            ("Content-Length", str(len(data))),
            ("x-amzn-RequestId", request_id),
        ],
    )
    return [data]


def _account_in_ou(account, ou_id):
    """Whether moto's organization (of the default account) has `account` in OU `ou_id` or below
    it; with `ou_id` None, anywhere in the organization."""
    from moto.organizations.models import organizations_backends

    org = organizations_backends[ACCOUNT_ID]["aws"]
    parents = {ou.id: ou.parent_id for ou in getattr(org, "ou", [])}
    member = next((a for a in getattr(org, "accounts", []) if a.id == account), None)
    if member is None:
        return False
    if ou_id is None:
        return True
    at = member.parent_id
    while at is not None:
        if at == ou_id:
            return True
        at = parents.get(at)
    return False


def _ec2_error(start_response, status, code, message):
    body = (
        f"<Response><Errors><Error><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    )
    return _xml_response(start_response, status, body)


def _json_response(start_response, status, value):
    data = json.dumps(value).encode("utf-8")
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def _rest_error(start_response, code, message, status="400 Bad Request"):
    data = json.dumps({"__type": code, "message": message}).encode("utf-8")
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("x-amzn-ErrorType", code),
        ],
    )
    return [data]


RAM_ORG_SHARING_OFF = (
    "The resource you are attempting to share can only be shared within your AWS Organization. "
    "This error may also occur if you have not enabled sharing with your AWS organization, or that "
    "onboarding process is still in progress."
)


def _epoch(value):
    """Seconds since the epoch, as AWS JSON protocols send timestamps."""
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    return value


def _caller_account(environ):
    """The account moto would act as: the x-moto-account-id header, else the access key's."""
    if environ.get("HTTP_X_MOTO_ACCOUNT_ID"):
        return environ["HTTP_X_MOTO_ACCOUNT_ID"]
    try:
        credential = environ.get("HTTP_AUTHORIZATION", "").split("Credential=", 1)[1]
        access_key = credential.split("/", 1)[0]
    except IndexError:
        return ACCOUNT_ID
    from moto.iam.models import get_account_id_from

    return get_account_id_from(access_key)


def _ssm_parameter(arn):
    """moto's current version of the parameter an ARN names, or None."""
    try:
        head, name = arn.split(":parameter", 1)
        _, _, _, region, account = head.split(":")[:5]
    except ValueError:
        return None
    from moto.ssm.models import ssm_backends

    versions = ssm_backends[account][region]._parameters.get(name) or []
    return versions[-1] if versions else None


def _member_of(principal, account):
    """Whether `account` is `principal`, or in the organization / OU (nested) it names."""
    if principal == account:
        return True
    if not principal.startswith("arn:aws:organizations::"):
        return False
    from moto.organizations.models import organizations_backends

    manager = principal.split(":")[4]
    backend = organizations_backends[manager]["aws"]
    org = backend.org
    if org is None:
        return False
    member = next((a for a in backend.accounts if a.id == account), None)
    if member is None:
        return False
    if ":organization/" in principal:
        return principal.endswith("/" + org.id)
    ou_id = principal.rsplit("/", 1)[1]
    parent = member.parent_id
    while parent and parent.startswith("ou-"):
        if parent == ou_id:
            return True
        ou = next((o for o in backend.ou if o.id == parent), None)
        parent = ou.parent_id if ou else None
    return False


def _read_body(environ):
    """Reads the request body and puts it back, so the wrapped app can still read it."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


# The copy line's queue name the functions use where AMI_SHARE_COPY_LINE is not set.
COPY_LINE = "ami-share-copy-line.fifo"
TARGET_LINE = "ami-share-target-line"


class HarnessMiddleware:
    def __init__(self, app, state):
        self.app = app
        self.state = state

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path.startswith("/_harness/"):
            return self.control(environ, start_response, method, path)
        if path.rstrip("/") == "/moto-api/reset" and method == "POST":
            self.state.reset()
            return self.app(environ, start_response)

        region, service = _region_from_authorization(environ.get("HTTP_AUTHORIZATION", ""))
        if service == "ram":
            return self.ram(environ, start_response, region or DEFAULT_REGION, path)
        if service in ("ssm", "events"):
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            body = _read_body(environ)
            if target == "AmazonSSM.GetParameter":
                answer = self.shared_parameter(environ, start_response, body)
                if answer is not None:
                    return answer
            if target == "AmazonSSM.GetParameters":
                answer = self.parameters_with_selectors(environ, start_response, region, body)
                if answer is not None:
                    return answer
            if target == "AWSEvents.PutEvents":
                try:
                    entries = json.loads(body or b"{}").get("Entries", [])
                except ValueError:
                    entries = []
                with self.state.lock:
                    self.state.events.extend({"region": region, **e} for e in entries)
            return self.app(environ, start_response)
        if service == "organizations" and environ.get("HTTP_X_AMZ_TARGET", "").endswith(".DescribeEffectivePolicy"):
            # moto has no declarative policies: the harness answers from what the test set.
            body = json.loads(_read_body(environ) or b"{}")
            account = body.get("TargetId", "")
            with self.state.lock:
                doc = self.state.declarative_policies.get(account)
            if doc is None:
                data = json.dumps({"__type": "EffectivePolicyNotFoundException",
                                   "message": f"no effective policy for {account}"}).encode()
                start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.1"),
                                                   ("Content-Length", str(len(data)))])
                return [data]
            return _json_response(start_response, "200 OK", {"EffectivePolicy": {
                "PolicyContent": doc, "TargetId": account, "PolicyType": "DECLARATIVE_POLICY_EC2"}})
        if service == "sqs":
            # The stack's copy line exists in every Region it is deployed to: create it on
            # first use, as the template would have.
            if environ.get("HTTP_X_AMZ_TARGET", "") == "AmazonSQS.GetQueueUrl":
                body = _read_body(environ)
                try:
                    name = json.loads(body or b"{}").get("QueueName", "")
                except ValueError:
                    name = ""
                if name in (COPY_LINE, TARGET_LINE):
                    from moto.sqs.models import sqs_backends

                    backend = sqs_backends[_caller_account(environ)][region or DEFAULT_REGION]
                    if name not in backend.queues:
                        fifo = {"FifoQueue": "true"} if name == COPY_LINE else {}
                        backend.create_queue(name, VisibilityTimeout="120", **fifo)
            return self.app(environ, start_response)
        if service == "sts":
            body = _read_body(environ)
            params = parse_qs(body.decode("utf-8"), keep_blank_values=True)
            if (params.get("Action") or [""])[0] == "AssumeRole":
                role = (params.get("RoleArn") or [""])[0]
                with self.state.lock:
                    denied = role in self.state.denied_roles
                if denied:
                    caller = _caller_account(environ)
                    message = (f"User: arn:aws:sts::{caller}:assumed-role/ami-share-fn/session is not "
                               f"authorized to perform: sts:AssumeRole on resource: {role}")
                    return _xml_response(
                        start_response, "403 Forbidden",
                        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>"
                        f"<Type>Sender</Type><Code>AccessDenied</Code><Message>{escape(message)}</Message>"
                        f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")
            return self.app(environ, start_response)
        if service == "ec2":
            body = _read_body(environ)
            params = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            content_type = environ.get("CONTENT_TYPE", "")
            if content_type.startswith("application/x-www-form-urlencoded"):
                for key, values in parse_qs(
                    body.decode("utf-8"), keep_blank_values=True
                ).items():
                    params.setdefault(key, []).extend(values)
            action = (params.get("Action") or [""])[0]
            params["_Caller"] = [_caller_account(environ)]
            if action == "CopyImage":
                answer = self.copy_image_across_accounts(start_response, region or DEFAULT_REGION, params)
                if answer is not None:
                    return answer
            handler = {
                "GetEbsDefaultKmsKeyId": self.get_ebs_default_kms_key_id,
                "GetAllowedImagesSettings": self.get_allowed_images_settings,
                "ListImagesInRecycleBin": self.list_images_in_recycle_bin,
                "GetImageBlockPublicAccessState": self.get_image_block_public_access_state,
                "EnableImageDeprecation": self.enable_image_deprecation,
                "DisableImage": self.disable_image,
                "DescribeImageReferences": self.describe_image_references,
                "CreateImageUsageReport": self.create_image_usage_report,
                "DescribeImageUsageReports": self.describe_image_usage_reports,
                "DescribeImageUsageReportEntries": self.describe_image_usage_report_entries,
            }.get(action)
            if handler is not None:
                if (params.get("DryRun") or ["false"])[0].lower() == "true":
                    return _ec2_error(
                        start_response,
                        "412 Precondition Failed",
                        "DryRunOperation",
                        "Request would have succeeded, but DryRun flag is set.",
                    )
                return handler(start_response, region or DEFAULT_REGION, params)
        return self.app(environ, start_response)

    # --- EC2 actions moto lacks ---------------------------------------------------------------

    def list_images_in_recycle_bin(self, start_response, region, params):
        with self.state.lock:
            items = list(self.state.recycle_bin.get(region, {}).values())
        wanted = [v for k, vs in params.items() if k.startswith("ImageId.") for v in vs]
        if wanted:
            items = [item for item in items if item["ImageId"] in wanted]
        # Paginate like AWS when MaxResults is given (moto paginates nothing; this does).
        try:
            start = int((params.get("NextToken") or ["0"])[0] or 0)
        except ValueError:
            return _ec2_error(
                start_response, "400 Bad Request", "InvalidParameterValue", "Invalid NextToken"
            )
        max_results = params.get("MaxResults")
        end = start + int(max_results[0]) if max_results else len(items)
        page, next_token = items[start:end], (str(end) if end < len(items) else None)

        entries = "".join(
            "<item>"
            f"<imageId>{escape(item['ImageId'])}</imageId>"
            f"<name>{escape(item['Name'])}</name>"
            f"<description>{escape(item['Description'])}</description>"
            f"<recycleBinEnterTime>{escape(item['RecycleBinEnterTime'])}</recycleBinEnterTime>"
            f"<recycleBinExitTime>{escape(item['RecycleBinExitTime'])}</recycleBinExitTime>"
            "</item>"
            for item in page
        )
        image_set = f"<imageSet>{entries}</imageSet>" if entries else "<imageSet/>"
        token = f"<nextToken>{escape(next_token)}</nextToken>" if next_token else ""
        body = (
            f'<ListImagesInRecycleBinResponse xmlns="{EC2_XMLNS}">'
            f"<requestId>{uuid.uuid4()}</requestId>{image_set}{token}"
            "</ListImagesInRecycleBinResponse>"
        )
        return _xml_response(start_response, "200 OK", body)

    def get_image_block_public_access_state(self, start_response, region, params):
        with self.state.lock:
            state = self.state.block_public_access.get(region, "unblocked")
        body = (
            f'<GetImageBlockPublicAccessStateResponse xmlns="{EC2_XMLNS}">'
            f"<requestId>{uuid.uuid4()}</requestId>"
            f"<imageBlockPublicAccessState>{state}</imageBlockPublicAccessState>"
            "<managedBy>account</managedBy>"
            "</GetImageBlockPublicAccessStateResponse>"
        )
        return _xml_response(start_response, "200 OK", body)

    # --- AWS RAM, and what consumers see of its shares ----------------------------------------

    def ram(self, environ, start_response, region, path):
        try:
            req = json.loads(_read_body(environ) or b"{}")
        except ValueError:
            return _rest_error(start_response, "MalformedRequest", "body is not JSON")
        action = path.strip("/").lower()
        st = self.state
        with st.lock:
            if action == "enablesharingwithawsorganization":
                st.ram_org_sharing = True
                return _json_response(start_response, "200 OK", {"returnValue": True})
            shares = [s for s in st.shares if s["region"] == region]
            by_arn = {s["resourceShareArn"]: s for s in shares}

            def check_principals(principals):
                if not st.ram_org_sharing and any(
                    p.startswith("arn:aws:organizations::") for p in principals
                ):
                    return _rest_error(start_response, "OperationNotPermittedException", RAM_ORG_SHARING_OFF)
                return None

            def check_resources(arns):
                for arn in arns:
                    param = _ssm_parameter(arn)
                    if param is None:
                        return _rest_error(
                            start_response, "UnknownResourceException", f"The resource {arn} could not be found."
                        )
                    if getattr(param, "tier", "Standard") != "Advanced":
                        return _rest_error(
                            start_response,
                            "InvalidParameterException",
                            f"{arn}: only advanced-tier parameters can be shared",
                        )
                return None

            def share_view(s):
                keys = ("resourceShareArn", "name", "owningAccountId", "allowExternalPrincipals",
                        "status", "tags")
                return {k: s[k] for k in keys}

            if action == "getresourceshares":
                if req.get("resourceOwner") != "SELF":
                    return _rest_error(start_response, "InvalidParameterException", "resourceOwner must be SELF here")
                found = [
                    s for s in shares
                    if req.get("name") in (None, s["name"])
                    and req.get("resourceShareStatus") in (None, s["status"])
                ]
                return self.paged(start_response, req, "resourceShares", [share_view(s) for s in found])
            if action == "createresourceshare":
                token = req.get("clientToken")
                same = next((s for s in shares if token and s["clientToken"] == token), None)
                if same is not None:
                    return _json_response(start_response, "200 OK", {"resourceShare": share_view(same), "clientToken": token})
                err = check_principals(req.get("principals", [])) or check_resources(req.get("resourceArns", []))
                if err is not None:
                    return err
                share = {
                    "region": region,
                    "resourceShareArn": f"arn:aws:ram:{region}:{ACCOUNT_ID}:resource-share/{uuid.uuid4()}",
                    "name": req["name"],
                    "owningAccountId": ACCOUNT_ID,
                    "allowExternalPrincipals": req.get("allowExternalPrincipals", True),
                    "status": "ACTIVE",
                    "tags": req.get("tags", []),
                    "clientToken": token,
                    "principals": list(dict.fromkeys(req.get("principals", []))),
                    "resources": list(dict.fromkeys(req.get("resourceArns", []))),
                }
                st.shares.append(share)
                return _json_response(start_response, "200 OK", {"resourceShare": share_view(share), "clientToken": token})
            if action == "getresourceshareassociations":
                kind = req.get("associationType")
                if kind not in ("PRINCIPAL", "RESOURCE"):
                    return _rest_error(start_response, "InvalidParameterException", f"{kind} is not a valid association type")
                wanted = req.get("resourceShareArns") or list(by_arn)
                rows = [
                    {"resourceShareArn": s["resourceShareArn"], "resourceShareName": s["name"],
                     "associatedEntity": e, "associationType": kind, "status": "ASSOCIATED",
                     "external": False}
                    for a in wanted if (s := by_arn.get(a))
                    for e in s["principals" if kind == "PRINCIPAL" else "resources"]
                ]
                return self.paged(start_response, req, "resourceShareAssociations", rows)
            share = by_arn.get(req.get("resourceShareArn", ""))
            if share is None or share["status"] != "ACTIVE":
                return _rest_error(start_response, "UnknownResourceException", f"{req.get('resourceShareArn')} could not be found.")
            if action == "associateresourceshare":
                err = check_principals(req.get("principals", [])) or check_resources(req.get("resourceArns", []))
                if err is not None:
                    return err
                for key, items in (("principals", req.get("principals", [])), ("resources", req.get("resourceArns", []))):
                    share[key].extend(i for i in items if i not in share[key])
                return _json_response(start_response, "200 OK", {"resourceShareAssociations": []})
            if action == "disassociateresourceshare":
                for key, items in (("principals", req.get("principals", [])), ("resources", req.get("resourceArns", []))):
                    share[key] = [i for i in share[key] if i not in items]
                return _json_response(start_response, "200 OK", {"resourceShareAssociations": []})
            if action == "updateresourceshare":
                if "allowExternalPrincipals" in req:
                    share["allowExternalPrincipals"] = bool(req["allowExternalPrincipals"])
                return _json_response(start_response, "200 OK", {"resourceShare": share_view(share)})
        return _rest_error(start_response, "NotImplemented", f"the harness does not model RAM {path}", "501 Not Implemented")

    @staticmethod
    def paged(start_response, req, key, items):
        start = int(req.get("nextToken") or 0)
        size = int(req.get("maxResults") or 500)
        page = items[start : start + size]
        out = {key: page}
        if start + size < len(items):
            out["nextToken"] = str(start + size)
        return _json_response(start_response, "200 OK", out)

    def parameters_with_selectors(self, environ, start_response, region, body):
        """GetParameters of `name:label` / `name:version`: moto finds them but leaves out each
        result's `Selector`, which tells AWS's answers apart; answered here with it. None: no
        selector asked for, moto answers."""
        try:
            names = json.loads(body or b"{}").get("Names", [])
        except ValueError:
            return None
        split = [(n, *n.rsplit(":", 1)) if ":" in n and not n.startswith("arn:") else (n, n, None) for n in names]
        if all(sel is None for _, _, sel in split):
            return None
        from moto.ssm.models import ssm_backends

        backend = ssm_backends[_caller_account(environ)][region or DEFAULT_REGION]
        found, invalid = [], []
        for requested, name, selector in split:
            try:
                param = backend.get_parameter(requested)
            except Exception:  # noqa: BLE001 - moto raises for a missing version
                param = None
            if param is None:
                invalid.append(requested)
                continue
            found.append({
                "Name": name, "Type": param.parameter_type, "Value": param.value,
                "Version": param.version, "DataType": param.data_type,
                "LastModifiedDate": _epoch(param.last_modified_date),
                "ARN": f"arn:aws:ssm:{region}:{ACCOUNT_ID}:parameter{name}",
                **({"Selector": f":{selector}"} if selector is not None else {}),
            })
        return _json_response(start_response, "200 OK", {"Parameters": found, "InvalidParameters": invalid})

    def shared_parameter(self, environ, start_response, body):
        """A consumer's GetParameter by ARN of another account's parameter: answered from the
        owner's moto state when a RAM share gives it to the caller; None: moto answers."""
        try:
            name = json.loads(body or b"{}").get("Name", "")
        except ValueError:
            return None
        if not name.startswith("arn:"):
            return None
        caller = _caller_account(environ)
        parts = name.split(":")
        if len(parts) < 6 or parts[4] == caller:
            return None
        with self.state.lock:
            shares = [s for s in self.state.shares if s["status"] == "ACTIVE" and name in s["resources"]]
        allowed = any(_member_of(p, caller) for s in shares for p in s["principals"])
        param = _ssm_parameter(name) if allowed else None
        if param is None:
            return _rest_error(start_response, "ParameterNotFound", f"Parameter {name} not found.")
        return _json_response(start_response, "200 OK", {"Parameter": {
            "Name": param.name, "Type": param.parameter_type, "Value": param.value,
            "Version": param.version, "ARN": name, "DataType": param.data_type,
            "LastModifiedDate": _epoch(param.last_modified_date),
        }})

    # --- copies into other accounts (copy_into) ------------------------------------------------

    def get_ebs_default_kms_key_id(self, start_response, region, params):
        account = params["_Caller"][0]
        with self.state.lock:
            key = self.state.ebs_default_keys.get((account, region), "alias/aws/ebs")
        body = (f'<GetEbsDefaultKmsKeyIdResponse xmlns="{EC2_XMLNS}"><requestId>{uuid.uuid4()}</requestId>'
                f"<kmsKeyId>{escape(key)}</kmsKeyId></GetEbsDefaultKmsKeyIdResponse>")
        return _xml_response(start_response, "200 OK", body)

    def get_allowed_images_settings(self, start_response, region, params):
        """moto has no Allowed AMIs: every account's setting is `disabled`."""
        body = (f'<GetAllowedImagesSettingsResponse xmlns="{EC2_XMLNS}"><requestId>{uuid.uuid4()}</requestId>'
                "<state>disabled</state><imageCriterionSet/><managedBy>account</managedBy>"
                "</GetAllowedImagesSettingsResponse>")
        return _xml_response(start_response, "200 OK", body)

    def copy_image_across_accounts(self, start_response, region, params):
        """CopyImage of another account's image, which moto cannot do (it looks the source up in the
        caller's own account). EC2's rules: the source must be shared with the caller (launch
        permission by account, OU or organization; createVolumePermission on its snapshot); the
        client token is idempotent per account; tags at creation are applied. Returns None for
        a source in the caller's own account (moto copies it)."""
        from moto.ec2.models import ec2_backends
        from moto.ec2.models.amis import Ami
        from moto.ec2.utils import random_ami_id

        caller = params["_Caller"][0]
        src_region = (params.get("SourceRegion") or [region])[0]
        src_id = (params.get("SourceImageId") or [""])[0]
        if src_id in ec2_backends[caller][src_region].amis:
            return None
        source = None
        for account_id in list(ec2_backends.keys()):
            ami = ec2_backends[account_id][src_region].amis.get(src_id)
            if ami is not None:
                source = ami
                break
        if source is None or not self._may_launch(source, caller):
            return _ec2_error(start_response, "400 Bad Request", "InvalidAMIID.NotFound",
                              f"The image id '[{src_id}]' does not exist")
        snapshot = getattr(source, "ebs_snapshot", None)
        if snapshot is not None and caller not in snapshot.create_volume_permission_userids \
                and "all" not in snapshot.create_volume_permission_groups:
            return _ec2_error(start_response, "400 Bad Request", "InvalidSnapshot.NotFound",
                              f"The snapshot '{snapshot.id}' does not exist.")
        token = (params.get("ClientToken") or [""])[0]
        with self.state.lock:
            existing = self.state.copy_tokens.get((caller, region, token)) if token else None
        if existing is None:
            backend = ec2_backends[caller][region]
            ami = Ami(backend, random_ami_id(), source_ami=source,
                      name=(params.get("Name") or [None])[0],
                      description=(params.get("Description") or [None])[0])
            backend.amis[ami.id] = ami
            tags = {}
            for k, vs in params.items():
                if k.startswith("TagSpecification.") and k.endswith(".ResourceType") and vs[0] == "image":
                    prefix = k[: -len("ResourceType")]
                    for tk, tvs in params.items():
                        if tk.startswith(prefix + "Tag.") and tk.endswith(".Key"):
                            tags[tvs[0]] = (params.get(tk[: -len("Key")] + "Value") or [""])[0]
            if tags:
                backend.create_tags([ami.id], tags)
            existing = ami.id
            with self.state.lock:
                if token:
                    self.state.copy_tokens[(caller, region, token)] = ami.id
                self.state.target_copies.append({
                    "account": caller, "region": region, "image_id": ami.id,
                    "source_region": src_region, "source_image_id": src_id,
                    "encrypted": (params.get("Encrypted") or ["false"])[0] == "true",
                    "kms_key_id": (params.get("KmsKeyId") or [None])[0],
                    "client_token": token,
                })
        body = (f'<CopyImageResponse xmlns="{EC2_XMLNS}"><requestId>{uuid.uuid4()}</requestId>'
                f"<imageId>{existing}</imageId></CopyImageResponse>")
        return _xml_response(start_response, "200 OK", body)

    @staticmethod
    def _may_launch(ami, account):
        for perm in ami.launch_permissions:
            if perm.get("Group") == "all" or perm.get("UserId") == account:
                return True
            ou_arn = perm.get("OrganizationalUnitArn")
            if ou_arn and _account_in_ou(account, ou_arn.rsplit("/", 1)[-1]):
                return True
            if perm.get("OrganizationArn") and _account_in_ou(account, None):
                return True
        return False

    # --- retiring images -----------------------------------------------------------------------

    @staticmethod
    def _ami(region, params):
        from moto.ec2.models import ec2_backends

        image_id = (params.get("ImageId") or [""])[0]
        account = (params.get("_Caller") or [ACCOUNT_ID])[0]
        return image_id, ec2_backends[account][region].amis.get(image_id)

    def _simple(self, start_response, action, region, params, change):
        image_id, ami = self._ami(region, params)
        if ami is None:
            return _ec2_error(start_response, "400 Bad Request", "InvalidAMIID.NotFound",
                              f"The image id '[{image_id}]' does not exist")
        change(ami)
        body = (f'<{action}Response xmlns="{EC2_XMLNS}"><requestId>{uuid.uuid4()}</requestId>'
                f"<return>true</return></{action}Response>")
        return _xml_response(start_response, "200 OK", body)

    def enable_image_deprecation(self, start_response, region, params):
        at = (params.get("DeprecateAt") or [""])[0]
        return self._simple(start_response, "EnableImageDeprecation", region, params,
                            lambda ami: setattr(ami, "deprecation_time", at))

    def disable_image(self, start_response, region, params):
        def change(ami):
            ami.state = "disabled"
            for attr in ("launch_permissions", "launch_permission_users", "launch_permission_groups"):
                if isinstance(getattr(ami, attr, None), (list, set)):
                    getattr(ami, attr).clear()
        return self._simple(start_response, "DisableImage", region, params, change)

    def describe_image_references(self, start_response, region, params):
        wanted = [v for k, vs in params.items() if k.startswith("ImageId.") for v in vs]
        with self.state.lock:
            refs = [r for r in self.state.references.get(region, []) if r["ImageId"] in wanted]
        items = "".join(
            f"<item><imageId>{escape(r['ImageId'])}</imageId><resourceType>{escape(r['ResourceType'])}"
            f"</resourceType><arn>{escape(r['Arn'])}</arn></item>" for r in refs
        )
        body = (f'<DescribeImageReferencesResponse xmlns="{EC2_XMLNS}"><requestId>{uuid.uuid4()}</requestId>'
                f"<imageReferenceSet>{items}</imageReferenceSet></DescribeImageReferencesResponse>")
        return _xml_response(start_response, "200 OK", body)

    def create_image_usage_report(self, start_response, region, params):
        image_id, ami = self._ami(region, params)
        if ami is None:
            return _ec2_error(start_response, "400 Bad Request", "InvalidAMIID.NotFound",
                              f"The image id '[{image_id}]' does not exist")
        accounts = [v for k, vs in sorted(params.items()) if k.startswith("AccountId.") for v in vs]
        if len(accounts) > 200:
            return _ec2_error(start_response, "400 Bad Request", "InvalidParameterValue", "at most 200 accounts")
        tags = {}
        for k, vs in params.items():
            if k.startswith("TagSpecification.1.Tag.") and k.endswith(".Key"):
                tags[vs[0]] = (params.get(k[: -len("Key")] + "Value") or [""])[0]
        token = (params.get("ClientToken") or [""])[0]
        with self.state.lock:
            same = next((r for r in self.state.usage_reports if token and r["token"] == token), None)
            if same is None:
                same = {"id": f"amiur-{uuid.uuid4().hex[:17]}", "region": region, "image": image_id,
                        "accounts": accounts, "tags": tags, "token": token, "state": "pending",
                        "created": _now_iso()}
                self.state.usage_reports.append(same)
        body = (f'<CreateImageUsageReportResponse xmlns="{EC2_XMLNS}"><requestId>{uuid.uuid4()}</requestId>'
                f"<reportId>{same['id']}</reportId></CreateImageUsageReportResponse>")
        return _xml_response(start_response, "200 OK", body)

    def describe_image_usage_reports(self, start_response, region, params):
        images = [v for k, vs in params.items() if k.startswith("ImageId.") for v in vs]
        with self.state.lock:
            reports = [r for r in self.state.usage_reports
                       if r["region"] == region and (not images or r["image"] in images)]
        def one(r):
            accounts = "".join(f"<item>{escape(a)}</item>" for a in r["accounts"])
            tags = "".join(f"<item><key>{escape(k)}</key><value>{escape(v)}</value></item>"
                           for k, v in r["tags"].items())
            return (f"<item><imageId>{r['image']}</imageId><reportId>{r['id']}</reportId>"
                    f"<state>{r['state']}</state><creationTime>{r['created']}</creationTime>"
                    f"<accountIdSet>{accounts}</accountIdSet><tagSet>{tags}</tagSet></item>")
        body = (f'<DescribeImageUsageReportsResponse xmlns="{EC2_XMLNS}"><requestId>{uuid.uuid4()}</requestId>'
                f"<imageUsageReportSet>{''.join(one(r) for r in reports)}</imageUsageReportSet>"
                "</DescribeImageUsageReportsResponse>")
        return _xml_response(start_response, "200 OK", body)

    def describe_image_usage_report_entries(self, start_response, region, params):
        ids = [v for k, vs in params.items() if k.startswith("ReportId.") for v in vs]
        rows = []
        with self.state.lock:
            for r in self.state.usage_reports:
                if r["id"] not in ids or r["state"] != "available":
                    continue
                for image, account, kind, count in self.state.image_usage:
                    if image == r["image"] and (not r["accounts"] or account in r["accounts"]):
                        rows.append(f"<item><resourceType>{escape(kind)}</resourceType><reportId>{r['id']}</reportId>"
                                    f"<usageCount>{int(count)}</usageCount><accountId>{escape(account)}</accountId>"
                                    f"<imageId>{image}</imageId><reportCreationTime>{r['created']}</reportCreationTime></item>")
        body = (f'<DescribeImageUsageReportEntriesResponse xmlns="{EC2_XMLNS}"><requestId>{uuid.uuid4()}</requestId>'
                f"<imageUsageReportEntrySet>{''.join(rows)}</imageUsageReportEntrySet>"
                "</DescribeImageUsageReportEntriesResponse>")
        return _xml_response(start_response, "200 OK", body)

    # --- control endpoints --------------------------------------------------------------------

    def control(self, environ, start_response, method, path):
        if path == "/_harness/events" and method == "GET":
            with self.state.lock:
                return _json_response(start_response, "200 OK", {"events": list(self.state.events)})
        if path == "/_harness/target-copies" and method == "GET":
            with self.state.lock:
                return _json_response(start_response, "200 OK", {"copies": list(self.state.target_copies)})
        if method != "POST":
            return _json_response(start_response, "405 Method Not Allowed", {"error": "use POST"})
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if path == "/_harness/declarative-policy":
            doc = json.loads(_read_body(environ) or b"{}")
            with self.state.lock:
                self.state.declarative_policies[str(doc["account"])] = json.dumps(doc["policy"])
            return _json_response(start_response, "200 OK", {"account": doc["account"]})
        if path == "/_harness/deny-assume-role":
            doc = json.loads(_read_body(environ) or b"{}")
            with self.state.lock:
                self.state.denied_roles.add(str(doc["role_arn"]))
            return _json_response(start_response, "200 OK", {"denied": doc["role_arn"]})
        if path == "/_harness/ebs-default-key":
            doc = json.loads(_read_body(environ) or b"{}")
            with self.state.lock:
                self.state.ebs_default_keys[(str(doc["account"]), str(doc["region"]))] = str(doc["key_id"])
            return _json_response(start_response, "200 OK", doc)
        if path == "/_harness/block-public-access":
            region = (query.get("region") or [""])[0]
            state = (query.get("state") or [""])[0]
            if not region or state not in BLOCK_PUBLIC_ACCESS_STATES:
                return _json_response(
                    start_response,
                    "400 Bad Request",
                    {"error": f"need region=... and state in {BLOCK_PUBLIC_ACCESS_STATES}"},
                )
            with self.state.lock:
                self.state.block_public_access[region] = state
            return _json_response(start_response, "200 OK", {"region": region, "state": state})
        if path == "/_harness/recycle-bin":
            try:
                doc = json.loads(_read_body(environ) or b"{}")
                region = doc["region"]
                items = []
                for image in doc["images"]:
                    items.append(
                        {
                            "ImageId": str(image["ImageId"]),
                            "Name": str(image.get("Name", "")),
                            "Description": str(image.get("Description", "")),
                            "RecycleBinEnterTime": str(
                                image.get("RecycleBinEnterTime") or _now_iso()
                            ),
                            "RecycleBinExitTime": str(
                                image.get("RecycleBinExitTime") or _iso_plus_days(7)
                            ),
                        }
                    )
            except (ValueError, KeyError, TypeError) as err:
                return _json_response(
                    start_response,
                    "400 Bad Request",
                    {"error": f'want {{"region": "...", "images": [{{"ImageId": "..."}}]}}: {err!r}'},
                )
            with self.state.lock:
                bin_ = self.state.recycle_bin.setdefault(region, {})
                for item in items:
                    bin_[item["ImageId"]] = item
                count = len(bin_)
            return _json_response(start_response, "200 OK", {"region": region, "count": count})
        if path == "/_harness/org-member":
            # An account of the given id in the caller's organization (moto's CreateAccount
            # draws random ids): the consumer accounts the tests name are members.
            try:
                doc = json.loads(_read_body(environ) or b"{}")
                from moto.organizations.models import FakeAccount, organizations_backends

                backend = organizations_backends[ACCOUNT_ID]["aws"]
                org = backend.org
                account = FakeAccount(org, AccountName=f"member-{doc['account']}",
                                      Email=f"{doc['account']}@example.com")
                account.id = str(doc["account"])
                account.parent_id = doc.get("parent") or org.root_id
                backend.accounts.append(account)
                organizations_backends.master_accounts[account.id] = (ACCOUNT_ID, "aws")
            except Exception as err:  # noqa: BLE001 - report any failure to the test
                return _json_response(start_response, "400 Bad Request", {"error": repr(err)})
            return _json_response(start_response, "200 OK", {"account": account.id})
        if path == "/_harness/image-references":
            try:
                doc = json.loads(_read_body(environ) or b"{}")
                refs = [{"ImageId": r["ImageId"], "ResourceType": r["ResourceType"], "Arn": r["Arn"]}
                        for r in doc["references"]]
            except (ValueError, KeyError, TypeError) as err:
                return _json_response(start_response, "400 Bad Request", {"error": repr(err)})
            with self.state.lock:
                self.state.references[doc["region"]] = refs
            return _json_response(start_response, "200 OK", {"count": len(refs)})
        if path == "/_harness/image-usage":
            try:
                doc = json.loads(_read_body(environ) or b"{}")
                row = (doc["image_id"], doc["account_id"], doc["resource_type"], int(doc["count"]))
            except (ValueError, KeyError, TypeError) as err:
                return _json_response(start_response, "400 Bad Request", {"error": repr(err)})
            with self.state.lock:
                self.state.image_usage.append(row)
            return _json_response(start_response, "200 OK", {"ok": True})
        if path == "/_harness/usage-reports/finish":
            with self.state.lock:
                for r in self.state.usage_reports:
                    if r["state"] == "pending":
                        r["state"] = "available"
                n = len(self.state.usage_reports)
            return _json_response(start_response, "200 OK", {"reports": n})
        if path == "/_harness/encrypt-snapshots":
            try:
                doc = json.loads(_read_body(environ) or b"{}")
                region, snapshots = doc["region"], dict(doc["snapshots"])
                from moto.ec2.models import ec2_backends

                backend = ec2_backends[ACCOUNT_ID][region]
                for snapshot_id, key_arn in snapshots.items():
                    snapshot = backend.get_snapshot(snapshot_id)
                    snapshot.encrypted = True
                    snapshot.kms_key_id = key_arn
            except Exception as err:  # noqa: BLE001 - report any failure to the test
                return _json_response(start_response, "400 Bad Request", {"error": repr(err)})
            return _json_response(start_response, "200 OK", {"region": region, "encrypted": sorted(snapshots)})
        return _json_response(start_response, "404 Not Found", {"error": f"no such endpoint {path}"})


def _warm_up():
    try:
        import moto.ec2.responses  # noqa: F401
        import moto.kms.responses  # noqa: F401
        import moto.organizations.responses  # noqa: F401
    except Exception as err:  # only an optimisation: a real problem shows on first use
        print(f"moto_server.py: warm-up failed: {err!r}", file=sys.stderr)


ACCOUNT_ID = "123456789012"


def _report_snapshot_encryption():
    """EC2 reports each EBS mapping's `Encrypted` flag in DescribeImages; moto leaves it out."""
    from moto.ec2.models.amis import Ami

    plain = Ami.block_device_mappings

    def block_device_mappings(self):
        mappings = plain.fget(self)
        for m in mappings:
            m["Ebs"]["Encrypted"] = bool(getattr(self.ebs_snapshot, "encrypted", False))
        return mappings

    Ami.block_device_mappings = property(block_device_mappings)


def _record_lineage():
    """EC2 records where a copy came from (DescribeImages `SourceImageId` / `SourceImageRegion`,
    which the product trusts instead of tags and names); moto leaves them empty. Every image
    moto makes from a source image (CopyImage, in one account or across accounts) gets both."""
    from moto.ec2.models.amis import Ami

    plain = Ami.__init__

    def init(self, ec2_backend, ami_id, *args, **kwargs):
        plain(self, ec2_backend, ami_id, *args, **kwargs)
        source = kwargs.get("source_ami")
        if source is None and len(args) >= 2:
            source = args[1]
        if source is not None:
            self.source_image_id = source.id
            self.source_image_region = source.ec2_backend.region_name

    Ami.__init__ = init


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--ignore-stdin",
        action="store_true",
        help="do not exit at end of stdin (for running it by hand in the background)",
    )
    args = parser.parse_args()

    def stop(_signum, _frame):
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)

    from werkzeug.serving import make_server

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    _report_snapshot_encryption()
    _record_lineage()
    moto_app = DomainDispatcherApplication(create_backend_app)
    app = HarnessMiddleware(moto_app, HarnessState())
    # make_server binds and listens: from here on connections queue until serve_forever runs.
    server = make_server(
        "127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler
    )
    port = server.server_port
    os.environ.setdefault("MOTO_PORT", str(port))
    threading.Thread(target=server.serve_forever, name="moto", daemon=True).start()
    # Importing moto's EC2 takes most of a second; do it while the test sets itself up rather
    # than inside its first EC2 call (concurrent imports of one module are safe in Python).
    threading.Thread(target=_warm_up, name="warm-up", daemon=True).start()

    sys.stdout.write(f"READY http://127.0.0.1:{port}\n")
    sys.stdout.flush()
    # Anything moto prints later must not land in (and fill) the pipe the parent stopped reading.
    sys.stdout = sys.stderr

    if args.ignore_stdin:
        threading.Event().wait()
    # Block until the parent closes our stdin or dies; then leave at once (no orphans).
    while sys.stdin.buffer.read(65536):
        pass
    os._exit(0)


if __name__ == "__main__":
    main()
