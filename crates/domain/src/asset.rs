use crate::{
    asset_value::{normalize_value, AssetType, Criticality},
    error::{DomainError, ItemError},
    group::Group,
    plans::Plan,
    Aggregate, Limits,
};
use easm_events::{AssetAdded, AssetRemoved, AssetUpdated, Event};
use easm_events::{AssetId, GroupId};
use std::collections::{HashMap, HashSet};

/// An asset (stream `asset-<id>`).
#[derive(Debug, Default, Clone)]
pub struct Asset {
    pub id: AssetId,
    pub group_id: GroupId,
    pub value: String,
    pub asset_type: String,
    pub tags: Vec<String>,
    pub criticality: String,
    pub created: bool,
    pub removed: bool,
}

/// An asset as a client asked for it, before validation.
#[derive(Debug, Clone, Default)]
pub struct NewAsset {
    pub value: String,
    pub asset_type: String,
    pub tags: Option<Vec<String>>,
    pub criticality: Option<String>,
}

/// What an add must know about the organization's inventory, read by the caller.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub plan: Plan,
    pub live_assets: u64,
    /// Existing asset id by normalized value, for the values being added.
    pub existing: HashMap<String, AssetId>,
}

impl Inventory {
    /// No value taken and no asset yet: a first guess that the append's reservations verify.
    pub fn assumed_fresh(plan: Plan) -> Self {
        Inventory {
            plan,
            live_assets: 0,
            existing: HashMap::new(),
        }
    }
}

/// Requested changes; `None` leaves an attribute as it is.
#[derive(Debug, Clone, Default)]
pub struct AssetPatch {
    pub group_id: Option<GroupId>,
    pub tags: Option<Vec<String>>,
    pub criticality: Option<String>,
}

pub struct TagList;

impl TagList {
    pub const MAX_TAGS: usize = 50;
    pub const MAX_TAG_LEN: usize = 64;

    /// Trimmed, non-empty, bounded, without repeats (first spelling kept).
    pub fn parse(tags: &[String]) -> Result<Vec<String>, String> {
        if tags.len() > Self::MAX_TAGS {
            return Err(format!("at most {} tags", Self::MAX_TAGS));
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for t in tags {
            let t = t.trim();
            if t.is_empty()
                || t.chars().count() > Self::MAX_TAG_LEN
                || t.chars().any(char::is_control)
            {
                return Err(format!(
                    "each tag must be 1 to {} printable characters",
                    Self::MAX_TAG_LEN
                ));
            }
            if seen.insert(t.to_string()) {
                out.push(t.to_string());
            }
        }
        Ok(out)
    }
}

fn parse_criticality(c: Option<&str>) -> Result<String, String> {
    match c {
        None => Ok(Criticality::Medium.as_str().into()),
        Some(c) => Criticality::parse(c)
            .map(|c| c.as_str().to_string())
            .ok_or_else(|| format!("'{c}' is not one of low, medium, high, critical")),
    }
}

impl NewAsset {
    /// The canonical value, or the field and reason it is invalid.
    pub fn normalized(&self) -> Result<(AssetType, String), (&'static str, String)> {
        let t = AssetType::parse(&self.asset_type).ok_or_else(|| {
            (
                "type",
                format!(
                    "'{}' is not one of domain, subdomain, ip, cidr, url, cloud_resource",
                    self.asset_type
                ),
            )
        })?;
        let v = normalize_value(t, &self.value).map_err(|e| ("value", e))?;
        Ok((t, v))
    }
}

/// Decide the addition of `items` to a group, all or nothing. `ids` holds one fresh id per item.
pub fn add_assets(
    group: &Group,
    items: &[NewAsset],
    inventory: &Inventory,
    ids: &[AssetId],
) -> Result<Vec<Event>, DomainError> {
    if !group.live() {
        return Err(DomainError::NotFound { resource: "group" });
    }
    let mut errors = Vec::new();
    let mut events = Vec::new();
    let mut in_batch: HashMap<String, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let fail =
            |code: &'static str, field: &str, msg: String, existing: Option<String>| ItemError {
                index: i,
                value: Some(item.value.clone()),
                code,
                error: format!("{field}: {msg}"),
                existing_id: existing,
            };
        let (t, value) = match item.normalized() {
            Ok(v) => v,
            Err((field, msg)) => {
                errors.push(fail("VALIDATION_ERROR", field, msg, None));
                continue;
            }
        };
        let tags = match TagList::parse(item.tags.as_deref().unwrap_or_default()) {
            Ok(t) => t,
            Err(msg) => {
                errors.push(fail("VALIDATION_ERROR", "tags", msg, None));
                continue;
            }
        };
        let criticality = match parse_criticality(item.criticality.as_deref()) {
            Ok(c) => c,
            Err(msg) => {
                errors.push(fail("VALIDATION_ERROR", "criticality", msg, None));
                continue;
            }
        };
        if let Some(existing) = inventory.existing.get(&value) {
            let msg = format!("'{value}' already exists");
            errors.push(fail(
                "ASSET_EXISTS",
                "value",
                msg,
                Some(existing.to_string()),
            ));
            continue;
        }
        if let Some(first) = in_batch.insert(value.clone(), i) {
            let msg = format!("'{value}' repeats item {first}");
            errors.push(fail("DUPLICATE_IN_REQUEST", "value", msg, None));
            continue;
        }
        events.push(Event::AssetAdded(AssetAdded {
            asset_id: ids[i].clone(),
            group_id: group.id.clone(),
            value,
            asset_type: t.as_str().into(),
            tags,
            criticality,
            discovery_job_id: None,
        }));
    }
    if !errors.is_empty() {
        return Err(DomainError::Items(errors));
    }
    if let Some(max) = Limits::of(inventory.plan).assets {
        if inventory.live_assets + events.len() as u64 > max {
            return Err(DomainError::PlanLimit {
                limit: "assets",
                max,
                plan: inventory.plan.as_str().into(),
            });
        }
    }
    Ok(events)
}

impl Asset {
    pub fn live(&self) -> bool {
        self.created && !self.removed
    }

    fn require_live(&self) -> Result<(), DomainError> {
        if self.live() {
            Ok(())
        } else {
            Err(DomainError::NotFound { resource: "asset" })
        }
    }

    /// `target_group` is the group named by `patch.group_id`, when there is one.
    pub fn update(
        &self,
        patch: &AssetPatch,
        target_group: Option<&Group>,
    ) -> Result<Vec<Event>, DomainError> {
        self.require_live()?;
        let mut change = AssetUpdated {
            asset_id: self.id.clone(),
            group_id: None,
            tags: None,
            criticality: None,
        };
        if let Some(g) = &patch.group_id {
            // Like any id that names nothing: 404, the body being well formed.
            if !target_group.is_some_and(|t| t.live() && &t.id == g) {
                return Err(DomainError::NotFound { resource: "group" });
            }
            if *g != self.group_id {
                change.group_id = Some(g.clone());
            }
        }
        if let Some(tags) = &patch.tags {
            let tags = TagList::parse(tags).map_err(|m| DomainError::validation("tags", m))?;
            if tags != self.tags {
                change.tags = Some(tags);
            }
        }
        if let Some(c) = &patch.criticality {
            let c = parse_criticality(Some(c))
                .map_err(|m| DomainError::validation("criticality", m))?;
            if c != self.criticality {
                change.criticality = Some(c);
            }
        }
        if change.group_id.is_none() && change.tags.is_none() && change.criticality.is_none() {
            return Ok(vec![]);
        }
        Ok(vec![Event::AssetUpdated(change)])
    }

    pub fn remove(&self) -> Result<Vec<Event>, DomainError> {
        self.require_live()?;
        Ok(vec![Event::AssetRemoved(AssetRemoved {
            asset_id: self.id.clone(),
            value: self.value.clone(),
            group_id: self.group_id.clone(),
        })])
    }
}

impl Aggregate for Asset {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::AssetAdded(e) => {
                *self = Asset {
                    id: e.asset_id.clone(),
                    group_id: e.group_id.clone(),
                    value: e.value.clone(),
                    asset_type: e.asset_type.clone(),
                    tags: e.tags.clone(),
                    criticality: e.criticality.clone(),
                    created: true,
                    removed: false,
                }
            }
            Event::AssetUpdated(e) => {
                if let Some(g) = &e.group_id {
                    self.group_id = g.clone();
                }
                if let Some(t) = &e.tags {
                    self.tags = t.clone();
                }
                if let Some(c) = &e.criticality {
                    self.criticality = c.clone();
                }
            }
            Event::AssetRemoved(_) => self.removed = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> Group {
        Group::from_events(&Group::create(&"g1".into(), "Prod").unwrap())
    }

    fn item(v: &str, t: &str) -> NewAsset {
        NewAsset {
            value: v.into(),
            asset_type: t.into(),
            ..Default::default()
        }
    }

    fn inv(plan: Plan, live: u64) -> Inventory {
        Inventory {
            plan,
            live_assets: live,
            existing: HashMap::new(),
        }
    }

    fn ids(n: usize) -> Vec<AssetId> {
        (0..n).map(|i| format!("a{i}").into()).collect()
    }

    #[test]
    fn bulk_add_is_all_or_nothing_and_names_each_failure() {
        let items = [
            item("a.com", "domain"),
            item("not a host", "domain"),
            item("A.com", "domain"),
            item("x", "planet"),
        ];
        let Err(DomainError::Items(errs)) =
            add_assets(&group(), &items, &inv(Plan::Pro, 0), &ids(4))
        else {
            panic!("expected item errors")
        };
        let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.index, e.code)).collect();
        assert_eq!(
            got,
            vec![
                (1, "VALIDATION_ERROR"),
                (2, "DUPLICATE_IN_REQUEST"),
                (3, "VALIDATION_ERROR")
            ]
        );
        assert!(errs[2].error.starts_with("type:"));
    }

    #[test]
    fn plan_limit_and_existing_values() {
        let items = [item("a.com", "domain"), item("b.com", "domain")];
        assert!(matches!(
            add_assets(&group(), &items, &inv(Plan::Free, 24), &ids(2)),
            Err(DomainError::PlanLimit { max: 25, .. })
        ));
        assert_eq!(
            add_assets(&group(), &items, &inv(Plan::Free, 23), &ids(2))
                .unwrap()
                .len(),
            2
        );
        let mut with_existing = inv(Plan::Free, 1);
        with_existing.existing.insert("a.com".into(), "old".into());
        let Err(DomainError::Items(errs)) = add_assets(&group(), &items, &with_existing, &ids(2))
        else {
            panic!()
        };
        assert_eq!(errs[0].existing_id.as_deref(), Some("old"));
    }

    #[test]
    fn update_emits_only_real_changes() {
        let added = add_assets(
            &group(),
            &[item("a.com", "domain")],
            &inv(Plan::Pro, 0),
            &ids(1),
        )
        .unwrap();
        let a = Asset::from_events(&added);
        let same = AssetPatch {
            criticality: Some("medium".into()),
            ..Default::default()
        };
        assert!(a.update(&same, None).unwrap().is_empty());
        let patch = AssetPatch {
            tags: Some(vec![" prod ".into(), "prod".into()]),
            criticality: Some("high".into()),
            ..Default::default()
        };
        let ev = a.update(&patch, None).unwrap();
        let Event::AssetUpdated(u) = &ev[0] else {
            panic!()
        };
        assert_eq!(u.tags.as_deref(), Some(&["prod".to_string()][..]));
        assert_eq!(u.criticality.as_deref(), Some("high"));
        let bad_group = AssetPatch {
            group_id: Some("nope".into()),
            ..Default::default()
        };
        assert!(matches!(
            a.update(&bad_group, None),
            Err(DomainError::NotFound { resource: "group" })
        ));
        let bad = AssetPatch {
            criticality: Some("extreme".into()),
            ..Default::default()
        };
        assert!(a.update(&bad, None).is_err());
    }
}
