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
    let envelope: EventBridgeEvent<Value> =
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
        })?;
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
    let text = |name: &str| -> Result<Option<&str>, Error> {
        match detail.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(Error::bad_event(
                format!("detail.{name}"),
                format!("must be a string, got {other}"),
            )),
        }
    };
    let image_id = text("ImageId")?.ok_or_else(|| {
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
    let state = match text("State")? {
        Some("available") => AmiState::Available,
        Some("failed") => AmiState::Failed,
        Some("deregistered") => AmiState::Deregistered,
        Some("disabled") => AmiState::Disabled,
        Some(other) => {
            return Err(Error::bad_event(
                "detail.State",
                format!("{other:?} is not one of available, failed, deregistered, disabled"),
            ))
        }
        None => {
            let hint = if detail.contains_key("state") {
                " (field names are case-sensitive: found \"state\")"
            } else {
                ""
            };
            return Err(Error::bad_event("detail.State", format!("missing{hint}")));
        }
    };
    let region = envelope
        .region
        .filter(|r| crate::config::is_region(r))
        .ok_or_else(|| {
            Error::bad_event(
                "region",
                "missing or not a Region code; it says where the image is",
            )
        })?;
    Ok(Incoming::AmiStateChange(AmiStateChange {
        event_id: envelope.id,
        account: envelope.account,
        region,
        image_id: image_id.to_string(),
        state,
        error_message: text("ErrorMessage")?
            .filter(|m| !m.is_empty())
            .map(str::to_string),
    }))
}
