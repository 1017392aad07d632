//! The functions' own validation of a policy file, before it is deployed (`scripts/deploy.sh`
//! runs it):
//!
//! - `ami-share-policy check <file> [--parameter-prefix <prefix>]` prints every problem with its
//!   JSON path and exits 1 when the policy would be refused at start, or when a rule publishes
//!   a parameter outside the deployment's `ParameterPathPrefix` (its IAM policy's limit);
//! - `ami-share-policy event-bus <file>` prints the policy's `events.event_bus_arn` (nothing
//!   when it names none), for the template's `DistributionEventBusArn`;
//! - `ami-share-policy install-plan <file>` prints what installing the policy takes beyond the
//!   build Regions (`key=value…` lines: `copy-regions`, `target-ous`, `target-accounts`,
//!   `organizations`, `roots`), for the Regions and the target-account StackSet.

use std::process::ExitCode;

const USAGE: &str =
    "usage: ami-share-policy check <policy.json> [--parameter-prefix <prefix>]\n       ami-share-policy event-bus <policy.json>\n       ami-share-policy install-plan <policy.json>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, path, prefix) = match args.as_slice() {
        [cmd, path] => (cmd.as_str(), path, None),
        [cmd, path, flag, prefix] if flag == "--parameter-prefix" => {
            (cmd.as_str(), path, Some(prefix.as_str()))
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if cmd != "check" && !(matches!(cmd, "event-bus" | "install-plan") && prefix.is_none()) {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let policy = match amishare::bootstrap::policy_from(None, Some(path.clone())) {
        Ok(policy) => policy,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if cmd == "install-plan" {
        print!("{}", amishare::config::InstallPlan::of(&policy).lines());
        return ExitCode::SUCCESS;
    }
    if cmd == "event-bus" {
        if let Some(arn) = &policy.events.event_bus_arn {
            println!("{arn}");
        }
        return ExitCode::SUCCESS;
    }
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
