#!/usr/bin/env bash
# Deploys the ami-share stack, with one policy, to every Region that builds images or receives
# copies: `sam build` once, then `sam deploy` per Region (copies raise their events in the
# destination Region, so each of those Regions needs the stack).
#
#   scripts/deploy.sh --regions "us-east-1 us-west-2" --policy-file policy.json \
#       [--org-role-arn ARN] [--stack-name NAME] [--architecture arm64|x86_64] [--dry-run] \
#       [extra `sam deploy` arguments, e.g. --profile prod --parameter-overrides AlarmEmail=ops@example.com]
#
# --dry-run prints the commands, one per line, exactly as they would run, and runs nothing.
# The tools come from the repo when scripts/setup.sh installed them (.tools/venv-sam for sam,
# .venv for cargo-lambda and zig); otherwise from PATH. SAM=/path/to/sam overrides.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
prog=scripts/deploy.sh

die() {
  echo "$prog: $*" >&2
  exit 2
}

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
}

regions=""
policy_file=""
org_role_arn=""
stack_name="ami-share"
architecture="arm64"
dry_run=false
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
if ! check_out=$(cd "$repo" && cargo run --quiet -p amishare --bin ami-share-policy -- check "$policy_file" --parameter-prefix "$parameter_prefix" 2>&1); then
  die "the policy file '$policy_file' would be refused by the functions:
$check_out"
fi
echo "$prog: $check_out" >&2
event_bus_arn=$(cd "$repo" && cargo run --quiet -p amishare --bin ami-share-policy -- event-bus "$policy_file")
layer_file=$repo/policy-layer/ami-share/policy.json

sam=${SAM:-}
if [ -z "$sam" ]; then
  if [ -x "$repo/.tools/venv-sam/bin/sam" ]; then sam=$repo/.tools/venv-sam/bin/sam; else sam=sam; fi
fi
# cargo-lambda and zig (used by `sam build` for the rust-cargolambda build method)
if [ -d "$repo/.venv/bin" ]; then export PATH="$repo/.venv/bin:$PATH"; fi

overrides=("Architecture=$architecture")
[ -n "$org_role_arn" ] && overrides+=("OrgRoleArn=$org_role_arn")
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

if $dry_run; then
  echo "$prog: would copy the policy to $layer_file (the policy layer)" >&2
  show "${build_cmd[@]}"
  for r in "${region_list[@]}"; do deploy_cmd "$r"; show "${deploy[@]}"; done
  exit 0
fi

command -v "$sam" >/dev/null || die "'$sam' not found: run scripts/setup.sh (or set SAM=/path/to/sam)"
cd "$repo"
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
