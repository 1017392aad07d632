//! `ami-share-policy check <file>`: the functions' own validation of a policy file, before it is
//! deployed (`scripts/deploy.sh` runs it). Prints every problem with its JSON path and exits 1
//! when the policy would be refused at start.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cmd, path] = args.as_slice() else {
        eprintln!("usage: ami-share-policy check <policy.json>");
        return ExitCode::from(2);
    };
    if cmd != "check" {
        eprintln!("usage: ami-share-policy check <policy.json>");
        return ExitCode::from(2);
    }
    match amishare::bootstrap::policy_from(None, Some(path.clone())) {
        Ok(policy) => {
            println!(
                "{path}: a valid policy ({} rules, {} bytes)",
                policy.rules.len(),
                std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
