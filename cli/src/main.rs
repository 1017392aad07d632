use std::process::ExitCode;

use ami_share::{run_plan, run_status, Answer, Cli, Command, Stderr};
use amishare::bootstrap::{operator, policy_from, OperatorTarget};
use amishare::config::InstallPlan;
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let progress = Stderr::new();
    let now = chrono::Utc::now();
    match cli.command {
        Command::Check {
            policy,
            parameter_prefix,
        } => check(&policy, parameter_prefix.as_deref()),
        Command::EventBus { policy } => match policy_from(None, Some(policy)) {
            Ok(p) => {
                if let Some(arn) = &p.events.event_bus_arn {
                    println!("{arn}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => refused(&e),
        },
        Command::InstallPlan { policy } => match policy_from(None, Some(policy)) {
            Ok(p) => {
                print!("{}", InstallPlan::of(&p).lines());
                ExitCode::SUCCESS
            }
            Err(e) => refused(&e),
        },
        Command::Status(args) => {
            let (deps, region) = match connect(&args.aws).await {
                Ok(d) => d,
                Err(a) => return a.exit(),
            };
            run_status(&deps, &region, &args, now, &progress)
                .await
                .exit()
        }
        Command::Plan(args) => {
            let (deps, region) = match connect(&args.aws).await {
                Ok(d) => d,
                Err(a) => return a.exit(),
            };
            run_plan(&deps, &region, args.aws.json, now, &progress)
                .await
                .exit()
        }
    }
}

async fn connect(
    a: &ami_share::AwsArgs,
) -> Result<(amishare::deps::Deps<amishare::aws::AwsPorts>, String), Answer> {
    let policy = policy_from(None, Some(a.policy.clone())).map_err(|e| Answer::error(&e))?;
    let target = OperatorTarget {
        region: a.region.clone(),
        profile: a.profile.clone(),
    };
    operator(&target, policy)
        .await
        .map_err(|e| Answer::error(&e))
}

fn refused(e: &amishare::Error) -> ExitCode {
    eprintln!("{e}");
    ExitCode::FAILURE
}

fn check(path: &str, prefix: Option<&str>) -> ExitCode {
    let policy = match policy_from(None, Some(path.to_string())) {
        Ok(policy) => policy,
        Err(e) => return refused(&e),
    };
    let outside = prefix
        .map(|p| policy.parameters_outside(p))
        .unwrap_or_default();
    if !outside.is_empty() {
        eprintln!(
            "{path} publishes parameters the deployment may not write:\n  {}",
            outside.join("\n  ")
        );
        return ExitCode::FAILURE;
    }
    println!(
        "{path}: a valid policy ({} rules, {} bytes)",
        policy.rules.len(),
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    );
    ExitCode::SUCCESS
}
