//! [`TargetCopier`]: starts copies in the target accounts (the event path) and confirms and
//! finishes them (the night). Each (rule, account, Region) is one [`TargetCopyReport`]: an
//! AWS error in one target account is that target's `failed` outcome, never the others'.

use chrono::Utc;
use futures::stream::{self, StreamExt};

use super::ports::TargetAccounts;
use super::report::{TargetCopyReport, TargetStatus};
use super::request::target_copy_request;
use super::store::{as_aws_error, TargetStore};
use crate::copy::{deprecation_for_copy, COPY_LIMIT_CODE};
use crate::deps::Deps;
use crate::error::{AwsError, Result};
use crate::names::{
    source_image_tag, COPIED_BY_RULE_TAG, COPIED_FROM_IMAGE_TAG, SUPERSEDED_BY_TAG,
};
use crate::plan::IntoPlan;
use crate::ports::{Aws, Image, ImageState, KeyManager};
use crate::publish::decide::{label_of, target_copy_order};
use crate::publish::params::{label_version, put_with_room};

/// One target: a rule's copy into one account and Region.
pub(super) struct Target<'a> {
    pub into: &'a IntoPlan,
    pub account: String,
    pub region: &'a str,
    pub key: Option<&'a str>,
}

/// Deprecation times are computed from the clock at each call, never a "now" taken earlier:
/// EC2 refuses a deprecation time in the past.
/// Most spent tokens [`TargetCopier`] steps over when it starts a copy again.
const MAX_SPENT_TOKENS: usize = 3;

pub struct TargetCopier<'d, P> {
    deps: &'d Deps<P>,
}

impl<'d, P: Aws + TargetAccounts> TargetCopier<'d, P> {
    pub fn new(deps: &'d Deps<P>) -> Self {
        Self { deps }
    }

    pub(super) fn deps(&self) -> &'d Deps<P> {
        self.deps
    }

    /// Every target of `into`: its accounts and the active accounts of its OUs (the publisher
    /// itself excluded: it owns the source), times its Regions.
    async fn targets<'a>(&self, into: &'a [IntoPlan]) -> Result<Vec<Target<'a>>> {
        let mut out = Vec::new();
        for ip in into {
            // Plain target accounts inside the organization only, unless the policy allows
            // others (the source was refused before any share otherwise; checked again here
            // for the night's pass).
            self.deps
                .check_inside_organization(
                    &format!("copy_into of rule {}", ip.rule),
                    &ip.targets.accounts,
                )
                .await?;
            let members = self
                .deps
                .members_of(ip.targets.organizational_units.iter())
                .await?;
            let accounts: std::collections::BTreeSet<&String> = ip
                .targets
                .accounts
                .iter()
                .chain(members.values().flatten())
                .filter(|a| **a != self.deps.account_id)
                .collect();
            for account in accounts {
                for (region, key) in &ip.regions {
                    out.push(Target {
                        into: ip,
                        account: account.clone(),
                        region,
                        key: key.as_deref(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The event path: start the copy of `source` (fully shared, in its own Region) into every
    /// target of `into`, at most [`Settings::target_copies_per_event`]; every target then
    /// joins the target line ([`super::follow`]), which starts the rest within minutes and
    /// follows each copy until it is finished. A redelivered event runs the same requests,
    /// which EC2 answers with the copies already started (client tokens). Only an organization
    /// listing error, or the target line refusing the follows, fails the whole (the event is
    /// then retried).
    ///
    /// [`Settings::target_copies_per_event`]: crate::deps::Settings::target_copies_per_event
    pub async fn start(&self, source: &Image, into: &[IntoPlan]) -> Result<Vec<TargetCopyReport>> {
        let targets = self.targets(into).await?;
        let cap = self.deps.settings.target_copies_per_event;
        let (now, later) = targets.split_at(targets.len().min(cap));
        let mut out: Vec<TargetCopyReport> = stream::iter(now.iter())
            .map(|t| self.start_one(source, t, 0))
            .buffered(self.deps.settings.target_concurrency)
            .collect()
            .await;
        out.extend(later.iter().map(|t| {
            let mut r = TargetCopyReport::new(&t.into.rule, &t.account, t.region, TargetStatus::Waiting);
            r.detail = Some(format!(
                "an event starts at most {cap} copies into target accounts ({} asked); this one waits in the target line, which starts it within minutes",
                targets.len()
            ));
            r
        }));
        if !later.is_empty() {
            tracing::info!(source_image = %source.id, started = now.len(), waiting = later.len(), "more target copies than one event starts; the rest wait in the target line");
        }
        self.follow_all(source, now, &out, later).await?;
        Ok(out)
    }

    /// The night: confirm and finish the copies of `newest` (the rule's newest source image
    /// in this Region) in every target of `into`, starting those every event missed.
    pub async fn finish(&self, newest: &Image, into: &IntoPlan) -> Result<Vec<TargetCopyReport>> {
        Ok(self.finish_from(newest, into, "", || true).await?.0)
    }

    /// The same, from the first target whose account is not before `from` (where an earlier
    /// invocation of the pass stopped; `""`: from the first), a batch of
    /// [`Settings::target_concurrency`] at a time: the first always, the next ones while
    /// `may_go_on` says so. Returns the reports and, when it stopped early, the account to go
    /// on from.
    ///
    /// [`Settings::target_concurrency`]: crate::deps::Settings::target_concurrency
    pub async fn finish_from(
        &self,
        newest: &Image,
        into: &IntoPlan,
        from: &str,
        may_go_on: impl Fn() -> bool,
    ) -> Result<(Vec<TargetCopyReport>, Option<String>)> {
        let targets = self.targets(std::slice::from_ref(into)).await?;
        let start = targets
            .iter()
            .position(|t| t.account.as_str() >= from)
            .unwrap_or(0);
        // The targets before `from` were gone over by the invocations before.
        let order: Vec<&Target> = targets[start..].iter().collect();
        let mut reports = Vec::with_capacity(order.len());
        // The first batch always runs (the caller checked the deadline before the pass): every
        // invocation makes progress.
        for (i, batch) in order
            .chunks(self.deps.settings.target_concurrency.max(1))
            .enumerate()
        {
            if i > 0 && !may_go_on() {
                return Ok((reports, Some(batch[0].account.clone())));
            }
            let done: Vec<TargetCopyReport> = stream::iter(batch.iter())
                .map(|t| self.finish_one(newest, t))
                .buffered(self.deps.settings.target_concurrency)
                .collect()
                .await;
            reports.extend(done);
        }
        Ok((reports, None))
    }

    async fn start_one(&self, source: &Image, t: &Target<'_>, attempt: usize) -> TargetCopyReport {
        let aws = &self.deps.aws;
        let mut out =
            TargetCopyReport::new(&t.into.rule, &t.account, t.region, TargetStatus::Started);
        let key = match aws.target_key(&t.account, t.region, t.key).await {
            Ok(k) => k,
            Err(e) => return failed(out, t, &e),
        };
        if key.manager == KeyManager::Aws {
            out.status = TargetStatus::Refused;
            out.detail = Some(format!(
                "account {a}'s default EBS key in {r} is the AWS managed key aws/ebs ({k}), which no other account can use, so its copy could never be shared on; \
                 name a customer managed key of the account in copy_into.regions[].kms_key_id for {r}, or make one the account's default EBS key",
                a = t.account, r = t.region, k = key.arn
            ));
            return out;
        }
        if !key.enabled {
            out.status = TargetStatus::Failed;
            out.detail = Some(format!(
                "key {} of account {} in {} is disabled; enable it, or name another in copy_into.regions[].kms_key_id",
                key.arn, t.account, t.region
            ));
            return out;
        }
        let mut req = target_copy_request(
            source,
            &self.deps.account_id,
            &t.into.rule,
            t.region,
            &key.arn,
            attempt,
        );
        req.completion_minutes = t.into.completion_minutes.get(t.region).copied();
        match aws.copy_into_target(&t.account, &req).await {
            Ok(id) => {
                tracing::info!(source_image = %source.id, account = %t.account, region = t.region, copy = %id, rule = %t.into.rule, "copy into target account started");
                out.image_id = Some(id);
                out
            }
            Err(e) if e.code == COPY_LIMIT_CODE => {
                out.status = TargetStatus::Waiting;
                out.error_code = Some(e.code.clone());
                out.detail = Some(format!(
                    "{COPY_LIMIT_CODE}: account {} has too many copies in flight to {}; it waits in the target line, which starts it when a slot frees",
                    t.account, t.region
                ));
                out
            }
            Err(e) => failed(out, t, &e),
        }
    }

    /// Start the copy after earlier attempts whose copies are gone (`dead`: failed or
    /// deregistered, as still listed). Each attempt has its own token and name; EC2 answers a
    /// spent token with its old copy, even one deregistered so long ago that it is no longer
    /// listed: an answer naming a dead or unlisted copy means the token was spent, and the
    /// next attempt is made (a few at most).
    async fn start_again(&self, newest: &Image, t: &Target<'_>, dead: &[&str]) -> TargetCopyReport {
        let mut attempt = dead.len();
        loop {
            let out = self.start_one(newest, t, attempt).await;
            let Some(id) = out.image_id.as_deref() else {
                return out;
            };
            if attempt >= dead.len() + MAX_SPENT_TOKENS {
                return out;
            }
            let spent = dead.contains(&id)
                || match self
                    .deps
                    .aws
                    .target_copies(&t.account, t.region, &self.deps.account_id)
                    .await
                {
                    Ok(listed) => listed
                        .iter()
                        .find(|i| i.id == id)
                        .is_none_or(|i| i.state == ImageState::Deregistered),
                    Err(e) => return failed(out, t, &e),
                };
            if !spent {
                return out;
            }
            tracing::info!(account = %t.account, region = t.region, old_copy = id, attempt, "the copy's token was spent by a copy that is gone; starting it again with the next one");
            attempt += 1;
        }
    }

    pub(super) async fn finish_one(&self, newest: &Image, t: &Target<'_>) -> TargetCopyReport {
        let aws = &self.deps.aws;
        let out = TargetCopyReport::new(&t.into.rule, &t.account, t.region, TargetStatus::Finished);
        let listed = match aws
            .target_copies(&t.account, t.region, &self.deps.account_id)
            .await
        {
            Ok(l) => l,
            Err(e) => return failed(out, t, &e),
        };
        let of_rule: Vec<&Image> = listed
            .iter()
            .filter(|i| i.tags.get(COPIED_BY_RULE_TAG) == Some(&t.into.rule))
            .collect();
        let from_newest = source_image_tag(&newest.region, &newest.id);
        let of_newest: Vec<&Image> = of_rule
            .iter()
            .copied()
            .filter(|i| i.tags.get(COPIED_FROM_IMAGE_TAG) == Some(&from_newest))
            .collect();
        let Some(copy) = of_newest
            .iter()
            .find(|i| !matches!(i.state, ImageState::Failed | ImageState::Deregistered))
        else {
            // Every event was lost, the copy failed, or its owner deregistered it: start it
            // now, with a token no earlier attempt spent.
            let dead: Vec<&str> = of_newest.iter().map(|i| i.id.as_str()).collect();
            return self.start_again(newest, t, &dead).await;
        };
        let mut out = out;
        out.image_id = Some(copy.id.clone());
        if copy.state != ImageState::Available {
            out.status = TargetStatus::Pending;
            out.detail = Some(format!("copy is {}", copy.state.as_str()));
            return out;
        }
        match self
            .finish_available(newest, copy, &of_rule, t, &mut out)
            .await
        {
            Ok(()) => out,
            Err(e) => failed(out, t, &e),
        }
    }

    /// An available copy of the rule's newest image: its source's deprecation time, the
    /// target's parameter, and the older copies superseded by it.
    async fn finish_available(
        &self,
        newest: &Image,
        copy: &Image,
        of_rule: &[&Image],
        t: &Target<'_>,
        out: &mut TargetCopyReport,
    ) -> std::result::Result<(), AwsError> {
        let aws = &self.deps.aws;
        let (account, region) = (t.account.as_str(), t.region);
        out.watermark_missing = watermark_missing(&self.deps.account_id, newest, copy, t);
        if let (Some(at), None) = (&newest.deprecation_time, &copy.deprecation_time) {
            // The clock is read at the call: a night's pass runs minutes after its start, and
            // EC2 refuses a deprecation time in the past.
            let (when, _) = deprecation_for_copy(at, Utc::now());
            aws.deprecate_target_image(account, region, &copy.id, &when)
                .await?;
        }
        if let Some(name) = &t.into.parameter {
            out.parameter = Some(
                self.publish_in_target(account, region, name, copy, of_rule)
                    .await?,
            );
        }
        let order = target_copy_order(copy);
        for old in of_rule.iter().filter(|i| {
            i.id != copy.id
                && !matches!(i.state, ImageState::Failed | ImageState::Deregistered)
                && target_copy_order(i) < order
        }) {
            if old.tags.get(SUPERSEDED_BY_TAG) != Some(&copy.id) {
                let tags = [(SUPERSEDED_BY_TAG.to_string(), copy.id.clone())].into();
                aws.tag_target_image(account, region, &old.id, &tags)
                    .await?;
                out.superseded.push(old.id.clone());
            }
            if t.into.deprecate_superseded && old.deprecation_time.is_none() {
                let at_call = Utc::now();
                let (now, _) = deprecation_for_copy(&at_call.to_rfc3339(), at_call);
                aws.deprecate_target_image(account, region, &old.id, &now)
                    .await?;
            }
        }
        Ok(())
    }

    /// The target's own parameter names its newest copy: never an older one (a value that is
    /// a newer copy of the rule stays), and the version is labelled like the publisher's own
    /// (`created-<date>`: the receipt of a finished publication).
    async fn publish_in_target(
        &self,
        account: &str,
        region: &str,
        name: &str,
        copy: &Image,
        of_rule: &[&Image],
    ) -> std::result::Result<String, AwsError> {
        let aws = &self.deps.aws;
        let label = label_of(&target_copy_order(copy));
        let labelled = format!("{name}:{label}");
        let got = aws
            .target_parameters(account, region, &[name.to_string(), labelled.clone()])
            .await?;
        if let Some(current) = got.get(name) {
            if current.value == copy.id {
                if got.get(&labelled).map(|l| l.version) == Some(current.version) {
                    return Ok("current".into());
                }
                aws.label_target_parameter(account, region, name, current.version, &label)
                    .await?;
                return Ok(format!("finished v{}", current.version));
            }
            let order = target_copy_order(copy);
            if let Some(newer) = of_rule
                .iter()
                .find(|i| i.id == current.value && target_copy_order(i) > order)
            {
                return Ok(format!("newer-kept {}", newer.id));
            }
        }
        let description = format!(
            "Newest copy of ami-share rule {}'s image, owned by this account",
            copy.tags
                .get(COPIED_BY_RULE_TAG)
                .map(String::as_str)
                .unwrap_or("?")
        );
        // The publisher's own path for a parameter (100 versions, labels not yet readable).
        let store = TargetStore {
            aws,
            account,
            region,
        };
        let version = put_with_room(&store, name, &copy.id, &description)
            .await
            .map_err(as_aws_error)?;
        match label_version(&store, name, version, &label).await {
            Ok(()) => {}
            // Not readable yet (Parameter Store validates the image first): the value is
            // written; the next run finds it and labels it ("finished").
            Err(e) if e.is_transient() => {
                tracing::info!(account, region, parameter = name, version, error = %e, "target parameter written; its label waits for the next run");
                return Ok(format!(
                    "published v{version} (its label waits for the next run: the version is not readable yet)"
                ));
            }
            Err(e) => return Err(as_aws_error(e)),
        }
        tracing::info!(account, region, parameter = name, image_id = %copy.id, version, "target parameter published");
        Ok(format!("published v{version}"))
    }
}

/// The rule's watermark, when the source carries it and the target's copy does not (EC2
/// carries an image's watermarks to its copies: a copy made before the watermark was attached
/// lacks it). Said, with a WARN line; never attached in the target.
fn watermark_missing(
    publisher: &str,
    newest: &Image,
    copy: &Image,
    t: &Target<'_>,
) -> Option<String> {
    let key = format!("{publisher}:{}", t.into.watermark.as_ref()?);
    if !newest.watermarks.contains(&key) || copy.watermarks.contains(&key) {
        return None;
    }
    tracing::warn!(
        rule = %t.into.rule, account = %t.account, region = t.region, image_id = %copy.id,
        watermark = %key,
        "the target's copy lacks the watermark its source carries (made before it was attached): consumers admitting images by watermark cannot see it"
    );
    Some(key)
}

/// A target's AWS error as its `failed` outcome: the account, the code, and the fix.
fn failed(mut out: TargetCopyReport, t: &Target<'_>, e: &AwsError) -> TargetCopyReport {
    out.status = TargetStatus::Failed;
    out.error_code = Some(e.code.clone());
    let fix = match (e.service, e.operation) {
        ("sts", _) => format!(
            "; the product cannot act in account {} without its target-account role: install it there (scripts/deploy.sh's target-account StackSet deploys templates/target-account-role.yaml to the policy's OUs) and check that it trusts this deployment's function roles",
            t.account
        ),
        (_, "DescribeKey" | "GetEbsDefaultKmsKeyId") => format!(
            "; account {} needs the key {} in {} (create it, or name another in copy_into.regions[].kms_key_id)",
            t.account,
            t.key.unwrap_or("(its default EBS key)"),
            t.region
        ),
        _ => String::new(),
    };
    tracing::warn!(account = %t.account, region = t.region, rule = %t.into.rule, error = %e, "target copy failed");
    out.detail = Some(format!(
        "account {} in {}: {} {} failed: {}: {}{fix}",
        t.account, t.region, e.service, e.operation, e.code, e.message
    ));
    out
}
