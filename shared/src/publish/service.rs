//! Publication: a rule's newest fully shared image in a Region, for its consumers.
//!
//! For a rule with `publish.parameter`, once one of its images is fully shared in a Region
//! (the source in its own Region, each copy in its destination Region), [`Publisher::publish`]:
//!
//! 1. reads the parameter and, in the same `GetParameters`, the version carrying the image's
//!    label (`created-<creation date>`): the receipt of a finished publication;
//! 2. leaves a newer value alone: the rule's newest available image wins, by creation date
//!    (a copy counts with its source's), ties by image id; a value that is no longer an
//!    available image is replaced;
//! 3. writes the image id (`aws:ec2:image`, advanced tier); when another writer put a version
//!    between the read and the write, re-reads those versions and puts the newest image back;
//! 4. keeps the rule's AWS RAM resource share in step (the parameter, the rule's accounts, OUs
//!    and organizations);
//! 5. puts one "AMI Distributed" event on the default bus (and the policy's bus);
//! 6. labels the version last: a run cut short after the write is finished by the next
//!    event or night (events are at least once).
//!
//! The sweeper calls the same [`Publisher::publish`] for each rule's newest image in its
//! Region every night: a missing or wrong parameter and missing principals are drift like any
//! other (a few calls per rule and Region, not per image).

use std::collections::{BTreeMap, BTreeSet};

use super::decide::{label_for, parameter_arn, publication_order, EVENT_DETAIL_TYPE, EVENT_SOURCE};
use super::ports::{EventEntry, ParameterVersion, Publishing};
use super::ram::ShareState;
use super::report::{Publication, PublishStatus, ShareChange};
use crate::config::{parse_event_bus_arn, Rule};
use crate::deps::Deps;
use crate::error::{Error, Result};
use crate::ports::{Aws, Image, ImageState};

pub struct Publisher<'d, P> {
    pub(super) deps: &'d Deps<P>,
}

impl<'d, P: Aws + Publishing> Publisher<'d, P> {
    pub fn new(deps: &'d Deps<P>) -> Self {
        Self { deps }
    }

    /// Publish `image`, fully shared in its Region, for each of `rules` (names) that has a
    /// `publish` parameter, one rule after the other.
    pub async fn publish_for(&self, rules: &[String], image: &Image) -> Result<Vec<Publication>> {
        let mut out = Vec::new();
        for rule in rules.iter().filter_map(|r| self.deps.policy.rule(r)) {
            if rule
                .publish
                .as_ref()
                .is_some_and(|p| p.shares_from_publisher(&rule.share_with))
            {
                out.push(self.publish(rule, image).await?);
            }
        }
        Ok(out)
    }

    /// Publish `image`, fully shared in its Region, as the newest image of `rule` there: read
    /// the parameter and the share; finish a publication of this image a run left unlabelled;
    /// leave a newer image alone; otherwise write it (putting a newer one back when another
    /// writer raced), then the share, the event and the label.
    pub async fn publish(&self, rule: &Rule, image: &Image) -> Result<Publication> {
        let Some(publish) = &rule.publish else {
            return Err(Error::Config(format!(
                "rule {:?} has no publish.parameter",
                rule.name
            )));
        };
        let (region, name) = (image.region.as_str(), publish.parameter.as_str());
        let label = label_for(image);
        let labelled_key = format!("{name}:{label}");
        let names = [name.to_string(), labelled_key.clone()];
        // The parameter (and the label's version) and the rule's share are read at once.
        let (got, share) = futures::try_join!(
            async { Ok::<_, Error>(self.deps.aws.get_parameters(region, &names).await?) },
            self.read_share(rule, region)
        )?;
        let current = got.get(name).cloned();
        let mut out = Publication {
            rule: rule.name.clone(),
            region: region.to_string(),
            parameter: name.to_string(),
            parameter_arn: parameter_arn(region, &self.deps.account_id, name),
            image_id: image.id.clone(),
            status: PublishStatus::Published,
            current_image_id: image.id.clone(),
            previous_image_id: current.as_ref().map(|c| c.value.clone()),
            version: None,
            share: ShareChange::default(),
            events_sent: 0,
            detail: None,
        };
        if let Some(c) = current.as_ref().filter(|c| c.value == image.id) {
            let labelled = got.get(&labelled_key).map(|l| l.version) == Some(c.version);
            self.finish(rule, image, c, labelled, &share, &mut out)
                .await?;
            return Ok(out);
        }
        if let Some(c) = &current {
            if self.keep_newer(rule, image, c, &share, &mut out).await? {
                return Ok(out);
            }
        }
        self.write_new(rule, image, current.as_ref(), &share, out)
            .await
    }

    /// The parameter names `image` already: current (labelled), or written by a run that
    /// stopped before its event and label — finish it.
    async fn finish(
        &self,
        rule: &Rule,
        image: &Image,
        c: &ParameterVersion,
        labelled: bool,
        share: &Option<ShareState>,
        out: &mut Publication,
    ) -> Result<()> {
        let (region, name) = (image.region.as_str(), out.parameter.clone());
        out.version = Some(c.version);
        out.share = self
            .write_share(rule, region, &out.parameter_arn, share)
            .await?;
        if labelled {
            out.status = PublishStatus::Current;
            out.previous_image_id = None;
            return Ok(());
        }
        out.status = PublishStatus::Finished;
        out.previous_image_id = self.value_of_version(region, &name, c.version - 1).await?;
        out.events_sent = self.announce(image, out).await?;
        self.label(region, &name, c.version, &label_for(image))
            .await
    }

    /// Whether the parameter names a newer image of the rule, which then stays (its share
    /// kept in step).
    async fn keep_newer(
        &self,
        rule: &Rule,
        image: &Image,
        c: &ParameterVersion,
        share: &Option<ShareState>,
        out: &mut Publication,
    ) -> Result<bool> {
        let region = image.region.as_str();
        let Some(newer) = self.newer_than(region, image, [c.value.as_str()]).await? else {
            return Ok(false);
        };
        out.status = PublishStatus::NewerKept;
        out.current_image_id = newer.id.clone();
        out.previous_image_id = None;
        out.version = Some(c.version);
        out.detail = Some(format!(
            "{} names {}, a newer image of rule {}; it stays",
            out.parameter, newer.id, rule.name
        ));
        out.share = self
            .write_share(rule, region, &out.parameter_arn, share)
            .await?;
        Ok(true)
    }

    /// Write `image` as the new value; when another writer put versions between the read and
    /// the write, the newest image among them and ours is what stays. Then the share, the
    /// event, and the label last.
    async fn write_new(
        &self,
        rule: &Rule,
        image: &Image,
        current: Option<&ParameterVersion>,
        share: &Option<ShareState>,
        mut out: Publication,
    ) -> Result<Publication> {
        let (region, name) = (image.region.as_str(), out.parameter.clone());
        let name = name.as_str();
        let description = format!(
            "Newest image of ami-share rule {} in {region} (published by ami-share)",
            rule.name
        );
        let version = self
            .put_with_room(region, name, &image.id, &description)
            .await?;
        out.version = Some(version);
        let expected = current.map_or(1, |c| c.version + 1);
        if version > expected {
            let theirs = self.values_between(region, name, expected, version).await?;
            let ids: Vec<&str> = theirs.iter().map(String::as_str).collect();
            if let Some(newer) = self.newer_than(region, image, ids).await? {
                let v = self
                    .put_with_room(region, name, &newer.id, &description)
                    .await?;
                self.label(region, name, v, &label_for(&newer)).await?;
                out.share = self
                    .write_share(rule, region, &out.parameter_arn, share)
                    .await?;
                out.status = PublishStatus::NewerKept;
                out.current_image_id = newer.id.clone();
                out.version = Some(v);
                out.detail = Some(format!(
                    "another run published {} (newer) while this one wrote {}; {} was put back",
                    newer.id, image.id, newer.id
                ));
                return Ok(out);
            }
        }
        out.share = self
            .write_share(rule, region, &out.parameter_arn, share)
            .await?;
        out.events_sent = self.announce(image, &out).await?;
        self.label(region, name, version, &label_for(image)).await?;
        tracing::info!(rule = %rule.name, region, parameter = name, image_id = %image.id, previous = ?out.previous_image_id, version, "published");
        Ok(out)
    }

    /// The newest available image among `ids` when it is newer than `image` or as new (a copy
    /// of the same source).
    async fn newer_than<'a>(
        &self,
        region: &str,
        image: &Image,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<Image>> {
        let mine = publication_order(image);
        let mut best: Option<(Image, (String, String))> = None;
        let unique: BTreeSet<&str> = ids.into_iter().filter(|i| *i != image.id).collect();
        for id in unique {
            let Some(other) = crate::lineage::describe_verified(self.deps, region, id).await?
            else {
                continue; // deregistered: not a newer image
            };
            if other.state != ImageState::Available {
                continue;
            }
            // Equal: another copy of the same source; the one published stays (no churn).
            let order = publication_order(&other);
            if order >= mine && best.as_ref().is_none_or(|(_, b)| order > *b) {
                best = Some((other, order));
            }
        }
        Ok(best.map(|(i, _)| i))
    }

    /// `PutParameter` in `region`, making room when the oldest of 100 versions is labelled
    /// ([`super::params::put_with_room`]).
    async fn put_with_room(
        &self,
        region: &str,
        name: &str,
        image_id: &str,
        description: &str,
    ) -> Result<i64> {
        let store = PublisherStore {
            aws: &self.deps.aws,
            region,
        };
        super::params::put_with_room(&store, name, image_id, description).await
    }

    /// Label the version in `region` ([`super::params::label_version`]).
    async fn label(&self, region: &str, name: &str, version: i64, label: &str) -> Result<()> {
        let store = PublisherStore {
            aws: &self.deps.aws,
            region,
        };
        super::params::label_version(&store, name, version, label).await
    }

    async fn value_of_version(
        &self,
        region: &str,
        name: &str,
        version: i64,
    ) -> Result<Option<String>> {
        if version < 1 {
            return Ok(None);
        }
        Ok(self
            .values_between(region, name, version, version + 1)
            .await?
            .into_iter()
            .next())
    }

    /// The values of versions `from..to` (at most the last 10).
    async fn values_between(
        &self,
        region: &str,
        name: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<String>> {
        let keys: Vec<String> = (from.max(to - 10)..to)
            .map(|v| format!("{name}:{v}"))
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let got = self.deps.aws.get_parameters(region, &keys).await?;
        Ok(keys
            .iter()
            .filter_map(|k| got.get(k).map(|p: &ParameterVersion| p.value.clone()))
            .collect())
    }

    /// Put the "AMI Distributed" event on the default bus of the image's Region and on the
    /// policy's bus (in its own Region); returns the number of events put.
    async fn announce(&self, image: &Image, p: &Publication) -> Result<usize> {
        let detail = serde_json::json!({
            "rule": p.rule,
            "region": p.region,
            "image-id": image.id,
            "image-name": image.name,
            "image-created": publication_order(image).0,
            "parameter-name": p.parameter,
            "parameter-arn": p.parameter_arn,
            "parameter-version": p.version,
            "previous-image-id": p.previous_image_id,
        })
        .to_string();
        let entry = |bus: &str| EventEntry {
            bus: bus.to_string(),
            source: EVENT_SOURCE.to_string(),
            detail_type: EVENT_DETAIL_TYPE.to_string(),
            detail: detail.clone(),
            resources: vec![format!("arn:aws:ec2:{}::image/{}", image.region, image.id)],
        };
        let mut by_region: BTreeMap<String, Vec<EventEntry>> = BTreeMap::new();
        by_region
            .entry(image.region.clone())
            .or_default()
            .push(entry("default"));
        if let Some(arn) = &self.deps.policy.events.event_bus_arn {
            let bus_region = parse_event_bus_arn(arn)
                .map(|(r, _, _)| r.to_string())
                .unwrap_or_else(|| image.region.clone());
            by_region.entry(bus_region).or_default().push(entry(arn));
        }
        let mut sent = 0;
        for (region, entries) in &by_region {
            self.deps.aws.put_events(region, entries).await?;
            sent += entries.len();
        }
        Ok(sent)
    }
}

/// The publisher's Parameter Store in one Region.
struct PublisherStore<'a, P> {
    aws: &'a P,
    region: &'a str,
}

#[async_trait::async_trait]
impl<P: Publishing> super::params::ParameterStore for PublisherStore<'_, P> {
    fn whereabouts(&self) -> String {
        self.region.to_string()
    }
    async fn put(
        &self,
        name: &str,
        image_id: &str,
        description: &str,
    ) -> crate::ports::AwsResult<i64> {
        self.aws
            .put_image_parameter(self.region, name, image_id, description)
            .await
    }
    async fn label(&self, name: &str, version: i64, label: &str) -> crate::ports::AwsResult<()> {
        self.aws
            .label_parameter_version(self.region, name, version, label)
            .await
    }
    async fn history(&self, name: &str) -> crate::ports::AwsResult<Vec<(i64, Vec<String>)>> {
        self.aws.parameter_labels(self.region, name).await
    }
    async fn unlabel(
        &self,
        name: &str,
        version: i64,
        labels: &[String],
    ) -> crate::ports::AwsResult<()> {
        self.aws
            .unlabel_parameter_version(self.region, name, version, labels)
            .await
    }
}
