//! Assets: added to a group (all or nothing, unique per organization, within the plan), moved,
//! re-tagged, and removed.

use crate::execute::Decision;
use crate::streams::{asset_stream, group_members, group_stream, ASSET_VALUES};
use crate::{new_id, App, CommandError};
use easm_domain::{add_assets, Asset, AssetPatch, Group, Inventory, Limits, NewAsset, Plan};
use easm_events::{AssetId, Event, EventMeta, GroupId, OrgId};
use easm_projections::read::AssetView;
use easm_store::Constraint;
use std::collections::HashMap;
use std::sync::Mutex;

/// Live groups kept for asset decisions; past this many the cache starts over.
const GROUP_CACHE: usize = 10_000;

/// (organization, group stream) -> the group at a stream version.
pub(crate) type GroupCache = Mutex<HashMap<(String, String), (i64, Group)>>;

impl App {
    /// Add assets to a group, all or nothing. Returns the new assets in item order, as the read
    /// models hold them from this append on.
    pub async fn add_assets(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        plan: Plan,
        group_id: &GroupId,
        items: &[NewAsset],
    ) -> Result<Vec<AssetView>, CommandError> {
        self.add_assets_with(meta, org_id, plan, group_id, items, |_| async {
            Ok(Decision::none())
        })
        .await
    }

    /// [`App::add_assets`], committing in the same append what `also` decides on the events
    /// about to be appended (it may mark them): a promotion records its job with the assets.
    pub(crate) async fn add_assets_with<A, AF>(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        plan: Plan,
        group_id: &GroupId,
        items: &[NewAsset],
        also: A,
    ) -> Result<Vec<AssetView>, CommandError>
    where
        A: Fn(&mut Vec<Event>) -> AF,
        AF: std::future::Future<Output = Result<Decision, CommandError>>,
    {
        let also = &also;
        let ids: Vec<AssetId> = items.iter().map(|_| new_id()).collect();
        let gstream = &group_stream(group_id);
        let ids = &ids;
        // The first decision assumes every value is new and the plan has room, which the append's
        // claims and limit enforce anyway; only when they refuse is the inventory read, to say why.
        let mut informed = false;
        let events = self
            .execute(org_id, meta, || {
                let inform = std::mem::replace(&mut informed, true);
                async move {
                    let (gv, group) = self.group_for_assets(org_id, gstream, inform).await?;
                    let guess = Inventory::assumed_fresh(plan);
                    let events = match add_assets(&group, items, &guess, ids) {
                        Ok(events) if !inform => events,
                        // Refused here or by the append: decide on what is stored, so that the
                        // answer names every failing item, existing values too.
                        _ => {
                            let stored = self.inventory(org_id, plan, items).await?;
                            add_assets(&group, items, &stored, ids)?
                        }
                    };
                    let mut events = events;
                    let more = also(&mut events);
                    let mut d = adding(group_id, gstream, gv, plan, events);
                    d.extend(more.await?);
                    Ok(d)
                }
            })
            .await?;
        Ok(easm_projections::read::added_assets(&events)?)
    }

    /// A group as asset decisions see it, from a cache unless `fresh`: every such decision also
    /// states the group's stream version to its append, so a stale entry (renamed, deleted) fails
    /// the append and the retry reloads. Only live groups are kept: a group created since must
    /// not be found missing.
    async fn group_for_assets(
        &self,
        org_id: &OrgId,
        stream: &str,
        fresh: bool,
    ) -> Result<(i64, Group), CommandError> {
        let key = (org_id.to_string(), stream.to_string());
        if !fresh {
            if let Some(hit) = self.groups.lock().expect("groups").get(&key) {
                return Ok(hit.clone());
            }
        }
        let (version, group) = self.load::<Group>(org_id, stream).await?;
        if group.live() {
            let mut cache = self.groups.lock().expect("groups");
            if cache.len() >= GROUP_CACHE {
                cache.clear();
            }
            cache.insert(key, (version, group.clone()));
        }
        Ok((version, group))
    }

    /// What an organization holds of the values being added, and how many assets it has.
    async fn inventory(
        &self,
        org_id: &OrgId,
        plan: Plan,
        items: &[NewAsset],
    ) -> Result<Inventory, CommandError> {
        let values: Vec<String> = items
            .iter()
            .filter_map(|i| i.normalized().ok())
            .map(|(_, v)| v)
            .collect();
        let existing = self
            .log
            .reservations(org_id, ASSET_VALUES, &values)
            .await?
            .into_iter()
            .map(|(value, owner)| (value, AssetId::new(owner)))
            .collect();
        Ok(Inventory {
            plan,
            live_assets: self.log.count_reservations(org_id, ASSET_VALUES).await?,
            existing,
        })
    }

    pub async fn update_asset(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        asset_id: &AssetId,
        patch: &AssetPatch,
    ) -> Result<(), CommandError> {
        let stream = asset_stream(asset_id);
        self.execute(org_id, meta, || async {
            let (v, asset) = self.load::<Asset>(org_id, &stream).await?;
            let target = match &patch.group_id {
                Some(g) => Some(self.load::<Group>(org_id, &group_stream(g)).await?),
                None => None,
            };
            let events = asset.update(patch, target.as_ref().map(|(_, g)| g))?;
            let moved = events.iter().find_map(|e| match e {
                Event::AssetUpdated(u) => u.group_id.clone(),
                _ => None,
            });
            let mut d = Decision::one(stream.clone(), v, events);
            if let (Some(new_group), Some((gv, _))) = (moved, target) {
                d.constraints.extend([
                    Constraint::Release {
                        scope: group_members(&asset.group_id),
                        key: asset_id.to_string(),
                    },
                    Constraint::Claim {
                        scope: group_members(&new_group),
                        key: asset_id.to_string(),
                        owner: asset_id.to_string(),
                    },
                    Constraint::StreamAt {
                        stream_id: group_stream(&new_group),
                        version: gv,
                    },
                ]);
            }
            Ok(d)
        })
        .await?;
        Ok(())
    }

    /// Frees the asset's value and its place in its group in the same append.
    pub async fn remove_asset(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        asset_id: &AssetId,
    ) -> Result<(), CommandError> {
        let stream = asset_stream(asset_id);
        self.execute(org_id, meta, || async {
            let (v, asset) = self.load::<Asset>(org_id, &stream).await?;
            let mut d = Decision::one(stream.clone(), v, asset.remove()?);
            d.constraints.extend([
                Constraint::Release {
                    scope: ASSET_VALUES.into(),
                    key: asset.value.clone(),
                },
                Constraint::Release {
                    scope: group_members(&asset.group_id),
                    key: asset_id.to_string(),
                },
            ]);
            Ok(d)
        })
        .await?;
        Ok(())
    }
}

/// The append of new assets: one stream each, their values and group places claimed, the plan's
/// limit held, the group at the version the decision saw.
fn adding(group_id: &GroupId, gstream: &str, gv: i64, plan: Plan, events: Vec<Event>) -> Decision {
    let mut d = Decision::none();
    d.constraints.push(Constraint::StreamAt {
        stream_id: gstream.to_string(),
        version: gv,
    });
    if let Some(max) = Limits::of(plan).assets {
        d.constraints.push(Constraint::AtMost {
            scope: ASSET_VALUES.into(),
            max,
        });
    }
    for e in events {
        if let Event::AssetAdded(a) = &e {
            d.constraints.push(Constraint::Claim {
                scope: ASSET_VALUES.into(),
                key: a.value.clone(),
                owner: a.asset_id.to_string(),
            });
            d.constraints.push(Constraint::Claim {
                scope: group_members(group_id),
                key: a.asset_id.to_string(),
                owner: a.asset_id.to_string(),
            });
            d.push(asset_stream(&a.asset_id), 0, vec![e]);
        }
    }
    d
}
