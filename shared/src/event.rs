//! The events the functions receive: EventBridge `EC2 AMI State Change` envelopes.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde_json::Value;

use crate::error::Error;

pub const AMI_STATE_CHANGE: &str = "EC2 AMI State Change";

/// `detail.State` of an AMI state change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AmiState {
    Available,
    Failed,
    Deregistered,
    Disabled,
}

impl AmiState {
    pub fn as_str(&self) -> &'static str {
        match self {
            AmiState::Available => "available",
            AmiState::Failed => "failed",
            AmiState::Deregistered => "deregistered",
            AmiState::Disabled => "disabled",
        }
    }
}

/// An `EC2 AMI State Change` event, reduced to what the functions use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmiStateChange {
    pub event_id: Option<String>,
    pub account: Option<String>,
    /// The Region the image is in (events may be forwarded from other Regions).
    pub region: String,
    pub image_id: String,
    pub state: AmiState,
    pub error_message: Option<String>,
}

/// What arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    AmiStateChange(AmiStateChange),
    /// Some other EventBridge event: a logged no-op.
    Other {
        source: String,
        detail_type: String,
    },
}

/// Parse an incoming event. Errors name the offending field.
pub fn parse(value: Value) -> Result<Incoming, Error> {
    let envelope = envelope_of(value)?;
    if envelope.source != "aws.ec2" || envelope.detail_type != AMI_STATE_CHANGE {
        return Ok(Incoming::Other {
            source: envelope.source,
            detail_type: envelope.detail_type,
        });
    }
    let detail = envelope
        .detail
        .as_object()
        .ok_or_else(|| Error::bad_event("detail", "must be an object"))?;
    let image_id = image_id_of(detail)?.to_string();
    let state = state_of(detail)?;
    let region = envelope
        .region
        .filter(|r| crate::config::is_region(r))
        .ok_or_else(|| {
            Error::bad_event(
                "region",
                "missing or not a Region code; it says where the image is",
            )
        })?;
    let error_message = text(detail, "ErrorMessage")?
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    Ok(Incoming::AmiStateChange(AmiStateChange {
        event_id: envelope.id,
        account: envelope.account,
        region,
        image_id,
        state,
        error_message,
    }))
}

/// The EventBridge envelope, or the error naming the field that is wrong or missing.
fn envelope_of(value: Value) -> Result<EventBridgeEvent<Value>, Error> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.inner().to_string();
        // serde reports a missing field at its parent; name the field itself.
        let field = match msg
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            Some(f) if path == "." => f.to_string(),
            Some(f) => format!("{path}.{f}"),
            None => path,
        };
        Error::bad_event(
            field,
            format!("{msg} (expected an EventBridge event envelope)"),
        )
    })
}

/// A string field of the detail (`None` when absent or null).
fn text<'a>(
    detail: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, Error> {
    match detail.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(Error::bad_event(
            format!("detail.{name}"),
            format!("must be a string, got {other}"),
        )),
    }
}

/// `detail.ImageId`, checked to be an image id.
fn image_id_of(detail: &serde_json::Map<String, Value>) -> Result<&str, Error> {
    let image_id = text(detail, "ImageId")?.ok_or_else(|| {
        Error::bad_event(
            "detail.ImageId",
            "missing (an AMI State Change event names its image)",
        )
    })?;
    if !image_id.starts_with("ami-")
        || image_id.len() < 8
        || !image_id[4..].bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(Error::bad_event(
            "detail.ImageId",
            format!("{image_id:?} is not an image id (ami-…)"),
        ));
    }
    Ok(image_id)
}

/// `detail.State` (case-sensitive: a lowercase `state` is named in the error).
fn state_of(detail: &serde_json::Map<String, Value>) -> Result<AmiState, Error> {
    match text(detail, "State")? {
        Some("available") => Ok(AmiState::Available),
        Some("failed") => Ok(AmiState::Failed),
        Some("deregistered") => Ok(AmiState::Deregistered),
        Some("disabled") => Ok(AmiState::Disabled),
        Some(other) => Err(Error::bad_event(
            "detail.State",
            format!("{other:?} is not one of available, failed, deregistered, disabled"),
        )),
        None => {
            let hint = if detail.contains_key("state") {
                " (field names are case-sensitive: found \"state\")"
            } else {
                ""
            };
            Err(Error::bad_event("detail.State", format!("missing{hint}")))
        }
    }
}
