use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    amishare::bootstrap::init_logging();
    let ready = match amishare::bootstrap::load(amishare::bootstrap::Workload::Event).await {
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
            on_image_available::handle_invocation(deps, event.payload).await
        }
    }))
    .await
}
