use lambda_runtime::{service_fn, LambdaEvent};
use nightly_sweeper::Run;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    amishare::bootstrap::init_logging();
    let deps = amishare::bootstrap::load(amishare::bootstrap::Workload::Batch)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "init failed"))?;
    // The Region of the function's own SDK configuration: one stack, one sweep, per Region.
    let region = aws_config::default_provider::region::DefaultRegionChain::builder()
        .build()
        .region()
        .await;
    let region = region
        .map(|r| r.to_string())
        .ok_or_else(|| amishare::Error::Config("no AWS Region configured".into()))?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let run = Run::for_invocation(region.clone(), chrono::Utc::now(), event.context.deadline());
        let deps = &deps;
        async move { nightly_sweeper::handle(deps, event.payload, &run).await }
    }))
    .await
}
