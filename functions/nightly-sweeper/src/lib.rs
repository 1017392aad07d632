//! nightly-sweeper: repair drift and reclaim orphaned snapshots.
//!
//! Not implemented yet: every invocation fails with a clear error rather than pretending to
//! have checked anything.

use amishare::ports::Aws;
use amishare::share::Deps;
use amishare::Error;
use serde_json::Value;

pub const FUNCTION: &str = "nightly-sweeper";

pub async fn handle<P: Aws>(_deps: &Deps<P>, _payload: Value) -> Result<Value, Error> {
    Err(Error::Config(
        "nightly-sweeper is not implemented yet: no drift was repaired and no snapshot was examined".to_string(),
    ))
}
