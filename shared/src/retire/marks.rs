//! The retirement stage marks' proof: a stage's time is signed for its image and stage
//! ([`crate::marks`]); an image is read as its marks prove it ([`verified_view`]).

use chrono::{DateTime, Utc};

use super::report::RetireLog;
use super::stage::{STAGE_AT_TAG, STAGE_TAG};
use crate::night::LISTED;
use crate::ports::Image;

/// The kind a stage's time is signed under: the stage is part of what the proof covers.
pub(super) fn stage_mark_kind(stage: &str) -> String {
    format!("{}:{stage}", crate::marks::RETIRE_STAGE)
}

/// Where a check reports nothing (a source read for a copy's hold: its own marks are reported
/// in its own Region's night).
pub(super) struct Quiet;

/// `image` as its stage marks prove it: a valid mark's time in plain RFC 3339 (what
/// [`reached`] reads); a mark whose proof does not hold — unsigned, changed, copied, dated
/// before the image or in the future — removed, so the image's own state decides the stage and
/// the wait starts again from now. Tampering is counted, listed and logged at WARN.
pub(super) fn verified_view(
    key: &crate::marks::MarkKey,
    image: &Image,
    now: DateTime<Utc>,
    report: &mut impl MarkLog,
) -> Image {
    let (stage, at) = (image.tags.get(STAGE_TAG), image.tags.get(STAGE_AT_TAG));
    if stage.is_none() && at.is_none() {
        return image.clone();
    }
    let why = match (stage, at) {
        (Some(stage), Some(at)) => match key.verify(&stage_mark_kind(stage), &image.id, at) {
            Ok(time) => match DateTime::parse_from_rfc3339(time).map(|t| t.with_timezone(&Utc)) {
                Ok(t) if t > now => Some("dated in the future"),
                Ok(t)
                    if image
                        .creation_date
                        .as_deref()
                        .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
                        .is_some_and(|c| t < c.with_timezone(&Utc)) =>
                {
                    Some("dated before the image was made")
                }
                Ok(_) => {
                    let mut view = image.clone();
                    view.tags.insert(STAGE_AT_TAG.to_string(), time.to_string());
                    return view;
                }
                Err(_) => Some("not a time"),
            },
            Err(crate::marks::MarkProblem::Unsigned) => None,
            Err(_) => Some("its proof does not hold for this image and stage"),
        },
        _ => Some("a stage without its time, or a time without its stage"),
    };
    match why {
        None => report.unsigned_mark(),
        Some(why) => report.tampered_mark(
            &image.id,
            &format!(
                "{}={} {}={}: {why}",
                STAGE_TAG,
                stage.map_or("", String::as_str),
                STAGE_AT_TAG,
                at.map_or("", String::as_str)
            ),
        ),
    }
    let mut view = image.clone();
    view.tags.remove(STAGE_TAG);
    view.tags.remove(STAGE_AT_TAG);
    view
}

/// Where the marks' checks are counted.
pub(super) trait MarkLog {
    fn unsigned_mark(&mut self) {}
    fn tampered_mark(&mut self, _image: &str, _why: &str) {}
}

impl MarkLog for Quiet {}

impl<T: RetireLog> MarkLog for T {
    fn unsigned_mark(&mut self) {
        self.retirement().marks_unsigned += 1;
    }
    fn tampered_mark(&mut self, image: &str, why: &str) {
        let r = self.retirement();
        r.marks_tampered += 1;
        if r.tampered.len() < LISTED {
            tracing::warn!(image_id = image, reason_code = "mark-tampered",
                "tampered retirement mark: {why}; ignored, the image's own state decides and the wait starts again from now");
            r.tampered.push(format!("{image}: {why}"));
        }
    }
}
