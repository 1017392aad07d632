use lambda_runtime::{service_fn, LambdaEvent};
use nightly_sweeper::Run;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    amishare::bootstrap::init_logging();
    let ready = match amishare::bootstrap::load(amishare::bootstrap::Workload::Batch).await {
        Ok(ready) => ready,
        Err(e) => {
            amishare::bootstrap::report_init_error(&e).await;
            return Err(e.into());
        }
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let ready = &ready;
        async move {
            let deps = ready.deps(&event.context.invoked_function_arn)?;
            // The Region of the function's own configuration: one stack, one sweep, per Region.
            let region = deps.aws.home_region().ok_or_else(|| {
                amishare::Error::Config("no AWS Region configured (AWS_REGION)".into())
            })?;
            let run = Run::for_invocation(region, chrono::Utc::now(), event.context.deadline());
            nightly_sweeper::invoke(deps, event.payload, &run).await
        }
    }))
    .await
}
