//! `ami-share`, the operator's CLI. Reads only, through the usual AWS credential chain:
//!
//! - `check`, `event-bus`, `install-plan`: the policy file itself (no AWS call);
//! - `status IMAGE_ID | --rule NAME`: where the image is and why not where the policy wants
//!   it ([`amishare::status`]); exit 0 when every target is served, 1 when not, 2 on an error;
//! - `plan --policy FILE`: what the next night would do under that policy in a Region
//!   ([`nightly_sweeper::plan`]: the night's decisions, its writes recorded, none made).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use amishare::deps::Deps;
use amishare::ports::Aws;
use amishare::publish::Publishing;
use amishare::retire::Retirement;
use amishare::status::{newest_of_rule, status, Progress, Status};
use amishare::sweep::inventory::Inventory;
use amishare::target_copies::TargetAccounts;
use amishare::Error;
use clap::{Args, Parser, Subcommand};
use nightly_sweeper::{plan, Planned, Run};

/// Exit code: every target served / nothing went wrong.
pub const OK: u8 = 0;
/// Exit code: a target is not served (status), or the policy is refused (check).
pub const NOT_SERVED: u8 = 1;
/// Exit code: an error (the message says which resource and the fix).
pub const ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "ami-share",
    version,
    about = "Check a policy, ask where an image is, plan a policy change. Reads only."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a policy file: every problem with its JSON path (exit 1 when refused).
    Check {
        policy: String,
        /// The deployment's ParameterPathPrefix: a rule publishing outside it is refused.
        #[arg(long)]
        parameter_prefix: Option<String>,
    },
    /// Print the policy's events.event_bus_arn (nothing when it names none).
    EventBus { policy: String },
    /// Print what installing the policy takes beyond the build Regions (key=value lines).
    InstallPlan { policy: String },
    /// Where an image is, and why not where the policy wants it.
    Status(StatusArgs),
    /// What the next night would do under a policy in a Region, computed without writing.
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
pub struct AwsArgs {
    /// The Region (default: the AWS chain's, e.g. AWS_REGION or the profile's).
    #[arg(long)]
    pub region: Option<String>,
    /// A named profile of the AWS config.
    #[arg(long)]
    pub profile: Option<String>,
    /// The policy file (the one deployed, for status; the changed one, for plan).
    #[arg(long, default_value = "policy.json")]
    pub policy: String,
    /// JSON for machines instead of the table (schema in docs/operations.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The image (a source or one of its copies).
    #[arg(required_unless_present = "rule", conflicts_with = "rule")]
    pub image_id: Option<String>,
    /// Instead of an image: the rule's newest image in the Region.
    #[arg(long)]
    pub rule: Option<String>,
    /// Also one row per member account of each OU and organization.
    #[arg(long)]
    pub accounts: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// A line on stderr per step, with the time since the start (when stderr is a terminal, or
/// always with `verbose`).
pub struct Stderr {
    started: Instant,
    show: bool,
}

impl Stderr {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            show: std::io::stderr().is_terminal()
                || std::env::var_os("AMI_SHARE_PROGRESS").is_some(),
        }
    }
}

impl Default for Stderr {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Stderr {
    fn step(&self, what: &str) {
        if self.show {
            eprintln!(
                "ami-share: {what}… ({:.1} s)",
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

/// What a command prints, and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub stdout: String,
    pub code: u8,
}

impl Answer {
    pub fn error(e: &Error) -> Self {
        eprintln!("ami-share: {e}");
        Self {
            stdout: String::new(),
            code: ERROR,
        }
    }

    pub fn exit(self) -> ExitCode {
        print!("{}", self.stdout);
        ExitCode::from(self.code)
    }
}

/// `status`: the rows for the image (or the rule's newest image) in `region`.
pub async fn run_status<P>(
    deps: &Deps<P>,
    region: &str,
    args: &StatusArgs,
    now: chrono::DateTime<chrono::Utc>,
    progress: &dyn Progress,
) -> Answer
where
    P: Aws + Publishing + TargetAccounts + Inventory,
{
    let image_id = match (&args.image_id, &args.rule) {
        (Some(id), _) => id.clone(),
        (None, Some(rule)) => match newest_of_rule(deps, region, rule, progress).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                let e = Error::refused(
                    rule,
                    format!("no available image of the rule in {region} (nothing to report on)"),
                );
                return Answer::error(&e);
            }
            Err(e) => return Answer::error(&e),
        },
        (None, None) => return Answer::error(&Error::Config("an image id or --rule".into())),
    };
    match status(deps, region, &image_id, args.accounts, now, progress).await {
        Ok(s) => Answer {
            stdout: render(&s, args.aws.json, Status::text),
            code: if s.served { OK } else { NOT_SERVED },
        },
        Err(e) => Answer::error(&e),
    }
}

/// `plan`: the next night in `region` under `deps`' policy, nothing written.
pub async fn run_plan<P>(
    deps: &Deps<P>,
    region: &str,
    json: bool,
    now: chrono::DateTime<chrono::Utc>,
    progress: &dyn Progress,
) -> Answer
where
    P: Aws + Publishing + Retirement + Inventory + TargetAccounts,
{
    progress.step(&format!(
        "planning the next night in {region}: the whole inventory is read, nothing is written"
    ));
    let planned = plan(deps, &Run::new(region, now, None)).await;
    Answer {
        stdout: render(&planned, json, plan_text),
        code: if planned.night.errors_total > 0 {
            ERROR
        } else {
            OK
        },
    }
}

fn render<T: serde::Serialize>(value: &T, json: bool, text: impl Fn(&T) -> String) -> String {
    if json {
        serde_json::to_string_pretty(value)
            .map_or_else(|e| format!("{{\"error\": \"{e}\"}}"), |s| s + "\n")
    } else {
        text(value)
    }
}

/// The plan for people, with what the night could not read (a plan that is not whole says so).
pub fn plan_text(p: &Planned) -> String {
    let mut out = p.plan.text();
    if !p.night.errors.is_empty() {
        out.push_str(&format!(
            "\nthe plan is incomplete: {} errors while reading (the night would meet them too):\n",
            p.night.errors_total
        ));
        for e in &p.night.errors {
            out.push_str(&format!("  {}: {}\n", e.error_type, e.message));
        }
    }
    for n in &p.night.not_reached {
        out.push_str(&format!("  not reached: {n}\n"));
    }
    out
}
