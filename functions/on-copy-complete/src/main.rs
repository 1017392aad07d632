use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    amishare::bootstrap::init_logging();
    let deps = amishare::bootstrap::load(amishare::bootstrap::Workload::Event)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "init failed"))?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        on_copy_complete::handle(&deps, event.payload)
    }))
    .await
}
