#!/usr/bin/env bash
# Installs ami-share, with one policy, everywhere it must run, in one command:
#  1. the stack in every Region that builds images (--regions) and every Region the policy copies
#     to (copies raise their events there): `sam build` once, then `sam deploy` per Region;
#  2. with --management-account (and no --org-role-arn): the organization read role
#     (templates/org-read-role.yaml) as a stack in the management account, its ARN passed on;
#  3. when the policy copies into target accounts (copy_into): the target-account role
#     (templates/target-account-role.yaml) through a CloudFormation StackSet with service-managed
#     permissions and automatic deployment to the policy's OUs (an account that joins later gets
#     it without anyone acting; one that leaves loses it and keeps its copies), its plain
#     accounts through the organization's root filtered to them.
#
#   scripts/deploy.sh --regions "us-east-1" --policy-file policy.json \
#       [--org-role-arn ARN] [--stack-name NAME] [--architecture arm64|x86_64] [--dry-run] \
#       [--publisher-account ID] [--management-account ID] [--management-profile PROFILE] \
#       [--delegated-admin] [--target-role-name NAME] [--organization-id o-…] [--org-root-id r-…] \
#       [--no-plan] \
#       [extra `sam deploy` arguments, e.g. --profile prod --parameter-overrides AlarmEmail=ops@example.com]
#
# --publisher-account: the account the stacks run in (the target role trusts its ami-share roles);
# needed with copy_into or --management-account. --management-profile: the AWS CLI profile of the
# management account (or, with --delegated-admin, of the StackSets delegated administrator) for
# steps 2 and 3. --dry-run prints every command, one per line, exactly as it would run, and runs
# nothing. The tools come from the repo when scripts/setup.sh installed them (.tools/venv-sam for
# sam, .venv for cargo-lambda and zig); otherwise from PATH. SAM=/path/to/sam and AWS=/path/to/aws
# (the AWS CLI, for steps 2 and 3) override.
# Before deploying a policy that differs from the last one deployed from this checkout (the
# policy layer's copy), or when there is none, `ami-share plan` prints per Region what the next
# night would do under it (reads only; docs/operations.md#plan); --no-plan skips it. A plan that
# cannot be computed is reported and does not stop the deployment. AMI_SHARE_CLI=/path/to/ami-share
# overrides the CLI (default: cargo run -p ami-share).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
prog=scripts/deploy.sh

die() {
  echo "$prog: $*" >&2
  exit 2
}

usage() {
  sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
}

regions=""
policy_file=""
org_role_arn=""
stack_name="ami-share"
architecture="arm64"
dry_run=false
with_plan=true
publisher_account=""
management_account=""
management_profile=""
delegated_admin=false
target_role_name="ami-share-target"
organization_id=""
org_root_id=""
extra=()
user_overrides=()

while [ $# -gt 0 ]; do
  case "$1" in
    --regions) [ $# -ge 2 ] || die "--regions needs a value"; regions=$2; shift 2 ;;
    --regions=*) regions=${1#*=}; shift ;;
    --policy-file) [ $# -ge 2 ] || die "--policy-file needs a value"; policy_file=$2; shift 2 ;;
    --policy-file=*) policy_file=${1#*=}; shift ;;
    --org-role-arn) [ $# -ge 2 ] || die "--org-role-arn needs a value"; org_role_arn=$2; shift 2 ;;
    --org-role-arn=*) org_role_arn=${1#*=}; shift ;;
    --stack-name) [ $# -ge 2 ] || die "--stack-name needs a value"; stack_name=$2; shift 2 ;;
    --stack-name=*) stack_name=${1#*=}; shift ;;
    --architecture) [ $# -ge 2 ] || die "--architecture needs a value"; architecture=$2; shift 2 ;;
    --architecture=*) architecture=${1#*=}; shift ;;
    --dry-run) dry_run=true; shift ;;
    --no-plan) with_plan=false; shift ;;
    --publisher-account) [ $# -ge 2 ] || die "--publisher-account needs a value"; publisher_account=$2; shift 2 ;;
    --publisher-account=*) publisher_account=${1#*=}; shift ;;
    --management-account) [ $# -ge 2 ] || die "--management-account needs a value"; management_account=$2; shift 2 ;;
    --management-account=*) management_account=${1#*=}; shift ;;
    --management-profile) [ $# -ge 2 ] || die "--management-profile needs a value"; management_profile=$2; shift 2 ;;
    --management-profile=*) management_profile=${1#*=}; shift ;;
    --delegated-admin) delegated_admin=true; shift ;;
    --target-role-name) [ $# -ge 2 ] || die "--target-role-name needs a value"; target_role_name=$2; shift 2 ;;
    --target-role-name=*) target_role_name=${1#*=}; shift ;;
    --organization-id) [ $# -ge 2 ] || die "--organization-id needs a value"; organization_id=$2; shift 2 ;;
    --organization-id=*) organization_id=${1#*=}; shift ;;
    --org-root-id) [ $# -ge 2 ] || die "--org-root-id needs a value"; org_root_id=$2; shift 2 ;;
    --org-root-id=*) org_root_id=${1#*=}; shift ;;
    -h|--help) usage ;;
    --parameter-overrides)
      # sam keeps only the last --parameter-overrides: merge the user's into ours.
      shift
      while [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; do user_overrides+=("$1"); shift; done ;;
    --region|--region=*|--template-file|--template-file=*|--template|--template=*|-t)
      die "$1 is set by this script (use --regions; the template is the repo's)" ;;
    *) extra+=("$1"); shift ;;
  esac
done

# ---- validate everything before running anything -------------------------------------------------
[ -n "$regions" ] || die "--regions is required, e.g. --regions \"us-east-1 us-west-2\""
[ -n "$policy_file" ] || die "--policy-file is required (the policy JSON)"
[ -e "$policy_file" ] || die "policy file '$policy_file' not found"
[ -f "$policy_file" ] && [ -r "$policy_file" ] || die "policy file '$policy_file' is not a readable file"

region_list=()
for r in $regions; do
  [[ $r =~ ^[a-z]{2,4}(-[a-z]+){1,3}-[0-9]{1,2}$ ]] ||
    die "'$r' is not an AWS Region code (expected e.g. us-east-1, eu-west-2, ap-southeast-1)"
  case " ${region_list[*]-} " in *" $r "*) ;; *) region_list+=("$r") ;; esac
done
[ ${#region_list[@]} -gt 0 ] || die "--regions is empty"

[[ $stack_name =~ ^[A-Za-z][A-Za-z0-9-]{0,127}$ ]] ||
  die "'$stack_name' is not a valid stack name (letters, digits, hyphens; starts with a letter)"
case "$architecture" in arm64|x86_64) ;; *) die "--architecture must be arm64 or x86_64, not '$architecture'" ;; esac
for a in "$publisher_account" "$management_account"; do
  [ -z "$a" ] || [[ $a =~ ^[0-9]{12}$ ]] || die "'$a' is not a 12-digit account id"
done
[[ $target_role_name =~ ^[A-Za-z0-9+=,.@_-]{1,64}$ ]] || die "'$target_role_name' is not an IAM role name"
[ -z "$organization_id" ] || [[ $organization_id =~ ^o-[a-z0-9]{10,32}$ ]] || die "'$organization_id' is not an organization id (o-…)"
[ -z "$org_root_id" ] || [[ $org_root_id =~ ^r-[a-z0-9]{4,32}$ ]] || die "'$org_root_id' is not an organization root id (r-…)"
if [ -n "$org_role_arn" ]; then
  [[ $org_role_arn =~ ^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$ ]] ||
    die "'$org_role_arn' is not an IAM role ARN (arn:aws:iam::123456789012:role/name)"
fi

# The policy: validated by the functions' own validation (every problem with its JSON path), then
# shipped as the stack's policy layer (/opt/ami-share/policy.json in Lambda), any size. A bad
# policy never reaches the functions.
# The parameters it publishes must lie under the template's ParameterPathPrefix (the functions'
# IAM policy is limited to it); the event bus it names becomes the template's
# DistributionEventBusArn (the functions may put events there and on the default bus only).
parameter_prefix=/golden/
for o in ${user_overrides[@]+"${user_overrides[@]}"}; do
  case "$o" in ParameterPathPrefix=*) parameter_prefix=${o#*=} ;; esac
done
command -v cargo >/dev/null || die "cargo is needed to validate the policy (and to build the functions)"
if ! check_out=$(cd "$repo" && cargo run --quiet -p ami-share -- check "$policy_file" --parameter-prefix "$parameter_prefix" 2>&1); then
  die "the policy file '$policy_file' would be refused by the functions:
$check_out"
fi
echo "$prog: $check_out" >&2
event_bus_arn=$(cd "$repo" && cargo run --quiet -p ami-share -- event-bus "$policy_file")
# What else the policy needs: the Regions it copies to, the target accounts of copy_into.
plan=$(cd "$repo" && cargo run --quiet -p ami-share -- install-plan "$policy_file")
plan_get() { printf '%s\n' "$plan" | sed -n "s/^$1=//p"; }
for r in $(plan_get copy-regions); do
  case " ${region_list[*]} " in *" $r "*) ;; *) region_list+=("$r") ;; esac
done
target_ous=$(plan_get target-ous)
target_accounts=$(plan_get target-accounts)
has_targets=false
[ -n "$target_ous$target_accounts" ] && has_targets=true
[ -n "$organization_id" ] || organization_id=$(plan_get organizations | awk '{print $1}')
[ -n "$org_root_id" ] || org_root_id=$(plan_get roots | awk '{print $1}')
if $has_targets || [ -n "$management_account" ]; then
  [ -n "$publisher_account" ] ||
    die "--publisher-account is required with copy_into or --management-account (the account the stacks run in: the roles in other accounts trust its ami-share roles)"
  [ -n "$organization_id" ] ||
    die "the policy names no organization or OU ARN, so the organization id is unknown: give --organization-id o-…"
fi
if [ -n "$target_accounts" ] && [ -z "$org_root_id" ]; then
  die "copy_into names accounts outside any OU of the policy: give --org-root-id r-… (the StackSet reaches them through the root, filtered to those accounts)"
fi
if [ -n "$management_account" ] && [ -n "$org_role_arn" ]; then
  die "give --org-role-arn (an existing role) or --management-account (install it), not both"
fi
layer_file=$repo/policy-layer/ami-share/policy.json

sam=${SAM:-}
if [ -z "$sam" ]; then
  if [ -x "$repo/.tools/venv-sam/bin/sam" ]; then sam=$repo/.tools/venv-sam/bin/sam; else sam=sam; fi
fi
# cargo-lambda and zig (used by `sam build` for the rust-cargolambda build method)
if [ -d "$repo/.venv/bin" ]; then export PATH="$repo/.venv/bin:$PATH"; fi

org_read_role_name=ami-share-organizations-read
if [ -n "$management_account" ]; then
  partition=aws
  case "${region_list[0]}" in cn-*) partition=aws-cn ;; us-gov-*) partition=aws-us-gov ;; esac
  org_role_arn="arn:$partition:iam::$management_account:role/$org_read_role_name"
fi
overrides=("Architecture=$architecture")
[ -n "$org_role_arn" ] && overrides+=("OrgRoleArn=$org_role_arn")
# The functions assume the target-account role in copy_into's targets, and with the policy's
# allowed_amis.read_through_role in every consumer (its read-only StackSet: docs/deploy.md).
if $has_targets || [ "$(plan_get read-through-role)" = true ]; then
  overrides+=("TargetAccountRoleName=$target_role_name")
fi
[ -n "$event_bus_arn" ] && overrides+=("DistributionEventBusArn=$event_bus_arn")
overrides+=(${user_overrides[@]+"${user_overrides[@]}"})

build_cmd=("$sam" build --template-file "$repo/template.yaml" --build-dir "$repo/.aws-sam/build"
  --parameter-overrides "Architecture=$architecture")

deploy_cmd() { # region
  deploy=("$sam" deploy --template-file "$repo/.aws-sam/build/template.yaml"
    --stack-name "$stack_name" --region "$1"
    --capabilities CAPABILITY_IAM --resolve-s3
    --no-confirm-changeset --no-fail-on-empty-changeset
    ${extra[@]+"${extra[@]}"}
    --parameter-overrides "${overrides[@]}")
}

# The AWS CLI, for the management account's pieces.
aws=${AWS:-aws}
home=${region_list[0]}
mgmt=(--region "$home")
[ -n "$management_profile" ] && mgmt+=(--profile "$management_profile")
stackset_as=()
$delegated_admin && stackset_as=(--call-as DELEGATED_ADMIN)

org_role_cmd=("$aws" cloudformation deploy --stack-name "$stack_name-org-read"
  --template-file "$repo/templates/org-read-role.yaml" --capabilities CAPABILITY_NAMED_IAM
  --no-fail-on-empty-changeset
  --parameter-overrides "OrganizationId=$organization_id" "TrustedAccountIds=$publisher_account"
  "RoleName=$org_read_role_name" "${mgmt[@]}")

# Two StackSets of the target-account role: one for copy_into's OUs with automatic deployment
# (accounts that join those OUs later get the role), one for its plain accounts without it (the
# root, filtered to those accounts: with automatic deployment on, accounts joining the
# organization later might get the role too, as AWS does not say the filter persists).
stack_set_ous=$stack_name-target-accounts
stack_set_listed=$stack_name-target-accounts-listed
stack_set_cmd() { # create-stack-set | update-stack-set, stack set name, automatic deployment
  stack_set_args=("$aws" cloudformation "$1" --stack-set-name "$2"
    --template-body "file://$repo/templates/target-account-role.yaml"
    --permission-model SERVICE_MANAGED
    --auto-deployment "$3"
    --capabilities CAPABILITY_NAMED_IAM
    --parameters "ParameterKey=RoleName,ParameterValue=$target_role_name"
    "ParameterKey=PublisherAccountId,ParameterValue=$publisher_account"
    "ParameterKey=OrganizationId,ParameterValue=$organization_id"
    "ParameterKey=ParameterPathPrefix,ParameterValue=$parameter_prefix"
    ${stackset_as[@]+"${stackset_as[@]}"} "${mgmt[@]}")
}
# IAM is global: the role is one stack per account, in the home Region.
instances=()
instances_cmd() { # stack set name, deployment targets
  instances=("$aws" cloudformation create-stack-instances --stack-set-name "$1"
    --deployment-targets "$2" --regions "$home"
    --operation-preferences FailureTolerancePercentage=10,MaxConcurrentPercentage=25
    ${stackset_as[@]+"${stackset_as[@]}"} "${mgmt[@]}")
}
join_comma() { local IFS=,; echo "$*"; }
# Each StackSet: its name, automatic deployment, deployment targets.
stack_sets=()
# shellcheck disable=SC2086 # word splitting of the space-separated lists is intended
{
  [ -n "$target_ous" ] &&
    stack_sets+=("$stack_set_ous|Enabled=true,RetainStacksOnAccountRemoval=false|OrganizationalUnitIds=$(join_comma $target_ous)")
  [ -n "$target_accounts" ] &&
    stack_sets+=("$stack_set_listed|Enabled=false|OrganizationalUnitIds=$org_root_id,Accounts=$(join_comma $target_accounts),AccountFilterType=INTERSECTION")
}

# one shell word, quoted only when it needs to be
quote() {
  if [[ $1 =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then printf '%s' "$1"
  else printf "'%s'" "${1//\'/\'\\\'\'}"; fi
}
show() {
  local first=true a
  for a in "$@"; do
    $first || printf ' '
    first=false
    quote "$a"
  done
  printf '\n'
}

# The plan of the next night per Region, for a changed policy (see the header).
profile_args=()
for ((i = 0; i < ${#extra[@]}; i++)); do
  case "${extra[$i]}" in
    --profile) profile_args=(--profile "${extra[$((i + 1))]:-}") ;;
    --profile=*) profile_args=(--profile "${extra[$i]#*=}") ;;
  esac
done
policy_changed=true
if [ -f "$layer_file" ] && cmp -s "$policy_file" "$layer_file"; then policy_changed=false; fi
plan_cmd() { # region
  plan_args=(plan --policy "$policy_file" --region "$1" ${profile_args[@]+"${profile_args[@]}"})
}
run_cli() {
  if [ -n "${AMI_SHARE_CLI:-}" ]; then "$AMI_SHARE_CLI" "$@"; else (cd "$repo" && cargo run --quiet -p ami-share -- "$@"); fi
}
print_plans() {
  $with_plan || return 0
  if ! $policy_changed; then
    echo "$prog: the policy is the one last deployed from here: no plan (the nightly report says what the night did)" >&2
    return 0
  fi
  for r in "${region_list[@]}"; do
    plan_cmd "$r"
    if $dry_run; then
      echo "$prog: would show the plan: ami-share ${plan_args[*]}" >&2
      continue
    fi
    echo "$prog: what the next night would do in $r under $policy_file (nothing is written):" >&2
    if ! run_cli "${plan_args[@]}" >&2; then
      echo "$prog: the plan for $r could not be computed completely (see above); deploying anyway (--no-plan skips it)" >&2
    fi
  done
}

print_plans
if $dry_run; then
  echo "$prog: would copy the policy to $layer_file (the policy layer)" >&2
  [ -n "$management_account" ] && show "${org_role_cmd[@]}"
  show "${build_cmd[@]}"
  for r in "${region_list[@]}"; do deploy_cmd "$r"; show "${deploy[@]}"; done
  if $has_targets; then
    for set_spec in "${stack_sets[@]}"; do
      IFS='|' read -r set_name set_auto set_targets <<<"$set_spec"
      echo "$prog: would create the StackSet $set_name (update-stack-set with the same arguments when it exists)" >&2
      stack_set_cmd create-stack-set "$set_name" "$set_auto"; show "${stack_set_args[@]}"
      instances_cmd "$set_name" "$set_targets"; show "${instances[@]}"
    done
  fi
  exit 0
fi
if [ -n "$management_account" ] || $has_targets; then
  command -v "$aws" >/dev/null || die "'$aws' not found: the AWS CLI installs the management account's pieces (or set AWS=/path/to/aws)"
fi

command -v "$sam" >/dev/null || die "'$sam' not found: run scripts/setup.sh (or set SAM=/path/to/sam)"
cd "$repo"
if [ -n "$management_account" ]; then
  echo "$prog: organization read role in the management account $management_account" >&2
  "${org_role_cmd[@]}"
fi
mkdir -p "$(dirname "$layer_file")"
cp "$policy_file" "$layer_file"
echo "$prog: policy layer: $layer_file" >&2
echo "$prog: building once for ${region_list[*]} ($architecture)" >&2
"${build_cmd[@]}"
for r in "${region_list[@]}"; do
  echo "$prog: deploying stack $stack_name to $r" >&2
  deploy_cmd "$r"
  "${deploy[@]}"
done
echo "$prog: deployed $stack_name to ${region_list[*]}" >&2
if $has_targets; then
  for set_spec in "${stack_sets[@]}"; do
    IFS='|' read -r set_name set_auto set_targets <<<"$set_spec"
    if "$aws" cloudformation describe-stack-set --stack-set-name "$set_name" \
        ${stackset_as[@]+"${stackset_as[@]}"} "${mgmt[@]}" >/dev/null 2>&1; then
      echo "$prog: updating the StackSet $set_name" >&2
      stack_set_cmd update-stack-set "$set_name" "$set_auto"
    else
      echo "$prog: creating the StackSet $set_name" >&2
      stack_set_cmd create-stack-set "$set_name" "$set_auto"
    fi
    "${stack_set_args[@]}"
    echo "$prog: target-account role to $set_targets" >&2
    instances_cmd "$set_name" "$set_targets"
    "${instances[@]}"
  done
  echo "$prog: the target-account role reaches every account of ${target_ous:-no OU} (and every account that joins those OUs later)${target_accounts:+, and exactly the accounts $target_accounts}" >&2
fi
