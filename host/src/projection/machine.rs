//! The projection lifecycle as a pure state machine: [`step`] takes the lifecycle and
//! one [`Event`] and returns the next lifecycle and the [`Effect`]s that make the
//! running workers and the files on disk match it. It reads no clock, touches no file
//! and starts no task, so every transition is unit-tested here; `projection/mod.rs` is
//! the shell that feeds it events and runs its effects.
//!
//! Guarantees of every transition:
//! - a refused event ([`LifecycleError`]) leaves the lifecycle as it was;
//! - a version's worker is stopped before its database is deleted, and a worker is
//!   started only after every worker of the same transition was stopped, so two
//!   workers never share a database (the shell runs the effects in the order
//!   [`Effect`] documents);
//! - a version that leaves the lifecycle (replaced by a rebuild, retired) has its
//!   worker stopped and its database deleted: none keeps running unseen;
//! - the version taking over is never behind the active one, and `previous` (what
//!   rollback returns to) always names a version the lifecycle still holds.

use std::collections::{BTreeMap, BTreeSet};

use super::LifecycleError;
use super::lifecycle::{Cutover, Lifecycle, Policy, ProjectionState, VersionKey, VersionRecord};
use crate::plugin::ProjectionMode;

/// A building version within this many events of the head has caught up.
pub const CUTOVER_LAG: u64 = 16;

/// One projection version: the projection's name and the version's storage.
pub type VersionId = (String, VersionKey);

/// A projection the plugin catalog serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub name: String,
    pub schema_version: u32,
    pub digest: String,
    pub mode: ProjectionMode,
    pub handles: Vec<String>,
}

/// How far a running version's worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// The last log position it applied.
    pub checkpoint: u64,
    /// Its database is open and set up: queries can read it.
    pub ready: bool,
    /// It is failing at an event.
    pub failed: bool,
}

/// What happened, as the lifecycle sees it.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// The catalog now serves `served`; `running` are the versions whose workers run.
    /// A new schema version starts building (beside the active one, or as the first
    /// active one); new code for a known version replaces its worker; every version of
    /// a served projection runs; workers of projections no longer served stop (their
    /// storage and lifecycle stay for a redeploy).
    Catalog {
        served: &'a [Served],
        running: &'a BTreeSet<VersionId>,
        /// The time to record as a new version's creation.
        now: &'a str,
    },
    /// Where the running versions stand (the shell looks periodically): a building
    /// version that has caught up takes over, per policy.
    Progress {
        head: u64,
        running: &'a BTreeMap<VersionId, Progress>,
    },
    /// An operator makes `version` (or the newest one being built) active now.
    Promote { name: &'a str, version: Option<u32> },
    /// An operator makes the previously active version active again.
    Rollback { name: &'a str },
    /// An operator stops a version that is not active and deletes its storage.
    Retire { name: &'a str, version: u32 },
    /// An operator rebuilds the active version into a new generation beside it.
    Rebuild { name: &'a str, now: &'a str },
    /// An operator changes a projection's policies.
    SetPolicy { name: &'a str, policy: Policy },
}

/// What the shell must do for a transition, in this order: every `Stop` (and wait for
/// those workers to end), then `Persist`, `Delete`, `Start` and `Policy`. Within a
/// kind, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Stop the version's worker, if one runs. With `replaced`, a worker for the same
    /// version starts again in the same transition (new code): readers and inline
    /// waits hold on for it rather than find the version gone.
    Stop { id: VersionId, replaced: bool },
    /// Save the lifecycle (`lifecycle.json`).
    Persist,
    /// Delete the version's database (its worker was stopped first).
    Delete(VersionId),
    /// Start a worker for the version with the code its record names
    /// (`record.digest`: the served plugin's, or the archived one).
    Start { name: String, record: VersionRecord },
    /// Tell the running workers of the projection its new policies.
    Policy { name: String, policy: Policy },
}

/// What changed, for the shell to log and for callers to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new schema version is being built beside the active one.
    Building(VersionId),
    /// A version became active: queries now read it.
    CutOver(VersionId),
    Promoted(VersionId),
    RolledBack(VersionId),
    Rebuilding(VersionId),
    Retired {
        name: String,
        version: u32,
    },
}

/// The outcome of one event.
#[derive(Debug, Clone)]
pub struct Transition {
    pub lifecycle: Lifecycle,
    pub effects: Vec<Effect>,
    pub changes: Vec<Change>,
}

impl Transition {
    /// The version a `Promote`, `Rollback` or `Rebuild` was about.
    pub fn version(&self) -> Option<VersionKey> {
        self.changes.iter().find_map(|change| match change {
            Change::Promoted((_, key))
            | Change::RolledBack((_, key))
            | Change::Rebuilding((_, key)) => Some(*key),
            _ => None,
        })
    }
}

/// The lifecycle after `event`, and what to do about it.
pub fn step(lifecycle: &Lifecycle, event: Event<'_>) -> Result<Transition, LifecycleError> {
    let mut next = Machine {
        lifecycle: lifecycle.clone(),
        effects: Vec::new(),
        changes: Vec::new(),
    };
    match event {
        Event::Catalog {
            served,
            running,
            now,
        } => next.catalog(served, running, now),
        Event::Progress { head, running } => next.progress(head, running),
        Event::Promote { name, version } => next.promote(name, version)?,
        Event::Rollback { name } => next.rollback(name)?,
        Event::Retire { name, version } => next.retire(name, version)?,
        Event::Rebuild { name, now } => next.rebuild(name, now)?,
        Event::SetPolicy { name, policy } => next.set_policy(name, policy)?,
    }
    Ok(next.finish())
}

/// A transition being worked out.
struct Machine {
    lifecycle: Lifecycle,
    effects: Vec<Effect>,
    changes: Vec<Change>,
}

impl Machine {
    fn state(&mut self, name: &str) -> Result<&mut ProjectionState, LifecycleError> {
        self.lifecycle
            .projections
            .get_mut(name)
            .ok_or_else(|| LifecycleError::UnknownProjection(name.to_string()))
    }

    fn stop(&mut self, name: &str, key: VersionKey, replaced: bool) {
        self.effects.push(Effect::Stop {
            id: (name.to_string(), key),
            replaced,
        });
    }

    /// Stops the version's worker and deletes its database.
    fn discard(&mut self, name: &str, key: VersionKey) {
        self.stop(name, key, false);
        self.effects.push(Effect::Delete((name.to_string(), key)));
    }

    fn catalog(&mut self, served: &[Served], running: &BTreeSet<VersionId>, now: &str) {
        let mut replaced = BTreeSet::new();
        for route in served {
            let state = self
                .lifecycle
                .projections
                .entry(route.name.clone())
                .or_default();
            let existing = state
                .latest_generation(route.schema_version)
                .map(|r| (r.key, r.digest.clone()));
            let retired = state.retired.iter().any(|(version, digest)| {
                *version == route.schema_version && *digest == route.digest
            });
            match existing {
                // An operator retired this very code: not built again until it changes.
                None if retired => {}
                None => {
                    state
                        .retired
                        .retain(|(version, _)| *version != route.schema_version);
                    let key = VersionKey {
                        version: route.schema_version,
                        generation: 1,
                    };
                    let pending = state.active.is_some();
                    state.versions.push(VersionRecord {
                        key,
                        digest: route.digest.clone(),
                        mode: route.mode,
                        handles: route.handles.clone(),
                        created_at: now.to_string(),
                        pending,
                        rebuild_of: None,
                    });
                    if pending {
                        // A new version is a new candidate: a hold set by an earlier
                        // rollback or promotion no longer applies to it.
                        state.held = false;
                        self.changes
                            .push(Change::Building((route.name.clone(), key)));
                    } else {
                        state.active = Some(key);
                    }
                }
                Some((key, digest)) if digest != route.digest => {
                    if let Some(record) = state.record_mut(key) {
                        record.digest = route.digest.clone();
                        record.mode = route.mode;
                        record.handles = route.handles.clone();
                    }
                    let id = (route.name.clone(), key);
                    if running.contains(&id) {
                        replaced.insert(id);
                    }
                }
                Some(_) => {}
            }
        }
        let is_served = |name: &str| served.iter().any(|route| route.name == name);
        for (name, key) in running {
            if replaced.contains(&(name.clone(), *key)) {
                self.stop(name, *key, true);
            } else if !is_served(name) {
                self.stop(name, *key, false);
            }
        }
        let mut starts = Vec::new();
        for (name, state) in &self.lifecycle.projections {
            if !is_served(name) {
                continue;
            }
            for record in &state.versions {
                let id = (name.clone(), record.key);
                if !running.contains(&id) || replaced.contains(&id) {
                    starts.push(Effect::Start {
                        name: name.clone(),
                        record: record.clone(),
                    });
                }
            }
        }
        self.effects.push(Effect::Persist);
        self.effects.extend(starts);
    }

    fn progress(&mut self, head: u64, running: &BTreeMap<VersionId, Progress>) {
        let mut switches = Vec::new();
        for (name, state) in &self.lifecycle.projections {
            let at = |key: VersionKey| running.get(&(name.clone(), key));
            // Where the version queries read now stands: the one taking over must not be
            // behind it, or queries would lose what they already saw, and an inline
            // projection's acknowledged commands (a `200` promises the next read sees
            // it) with them.
            let active_at = state.active.and_then(at).map(|p| p.checkpoint);
            for record in state.versions.iter().filter(|r| r.pending) {
                let Some(progress) = at(record.key) else {
                    continue;
                };
                let caught_up = progress.ready
                    && !progress.failed
                    && progress.checkpoint + CUTOVER_LAG >= head
                    && active_at.is_none_or(|active| progress.checkpoint >= active);
                // A rebuild replaces the active version with the same code: no policy
                // holds it back.
                let allowed = record.rebuild_of.is_some()
                    || (state.policy.cutover == Cutover::Auto && !state.held);
                if caught_up && allowed {
                    switches.push((name.clone(), record.key));
                }
            }
        }
        if switches.is_empty() {
            return;
        }
        for (name, key) in switches {
            self.take_over(&name, key);
            self.changes.push(Change::CutOver((name, key)));
        }
        self.effects.push(Effect::Persist);
    }

    /// Makes `key` active: a rebuild replaces the generation it was built from, which
    /// leaves the lifecycle (and rollback does not return to it); a new version leaves
    /// the one it replaces as `previous`.
    fn take_over(&mut self, name: &str, key: VersionKey) {
        let Some(state) = self.lifecycle.projections.get_mut(name) else {
            return;
        };
        let rebuild_of = state.record_mut(key).and_then(|record| {
            record.pending = false;
            record.rebuild_of.take()
        });
        match rebuild_of {
            Some(old) => {
                state.active = Some(key);
                state.versions.retain(|r| r.key != old);
                if state.previous == Some(old) {
                    state.previous = None;
                }
                self.discard(name, old);
            }
            None => {
                if state.active != Some(key) {
                    state.previous = state.active.replace(key);
                }
            }
        }
    }

    fn promote(&mut self, name: &str, version: Option<u32>) -> Result<(), LifecycleError> {
        let state = self.state(name)?;
        let key = match version {
            Some(version) => {
                state
                    .latest_generation(version)
                    .ok_or_else(|| LifecycleError::UnknownVersion {
                        name: name.to_string(),
                        version,
                    })?
                    .key
            }
            None => state
                .versions
                .iter()
                .filter(|r| r.pending)
                .map(|r| r.key)
                .max()
                .ok_or_else(|| LifecycleError::NothingBuilding(name.to_string()))?,
        };
        // An operator's choice stands: no automatic cutover until a new version comes.
        state.held = true;
        self.take_over(name, key);
        self.changes.push(Change::Promoted((name.to_string(), key)));
        self.effects.push(Effect::Persist);
        Ok(())
    }

    fn rollback(&mut self, name: &str) -> Result<(), LifecycleError> {
        let state = self.state(name)?;
        let previous = state
            .previous
            .ok_or_else(|| LifecycleError::NoPrevious(name.to_string()))?;
        state.previous = state.active.replace(previous);
        state.held = true;
        self.changes
            .push(Change::RolledBack((name.to_string(), previous)));
        self.effects.push(Effect::Persist);
        Ok(())
    }

    fn retire(&mut self, name: &str, version: u32) -> Result<(), LifecycleError> {
        let state = self.state(name)?;
        if state.active.is_some_and(|k| k.version == version) {
            return Err(LifecycleError::ActiveVersion {
                name: name.to_string(),
                version,
            });
        }
        let keys: Vec<VersionKey> = state
            .versions
            .iter()
            .filter(|r| r.key.version == version)
            .map(|r| r.key)
            .collect();
        if keys.is_empty() {
            return Err(LifecycleError::UnknownVersion {
                name: name.to_string(),
                version,
            });
        }
        let retired: Vec<(u32, String)> = state
            .versions
            .iter()
            .filter(|r| r.key.version == version)
            .map(|r| (version, r.digest.clone()))
            .collect();
        state.retired.extend(retired);
        state.versions.retain(|r| r.key.version != version);
        if state.previous.is_some_and(|k| k.version == version) {
            state.previous = None;
        }
        for key in keys {
            self.discard(name, key);
        }
        self.effects.push(Effect::Persist);
        self.changes.push(Change::Retired {
            name: name.to_string(),
            version,
        });
        Ok(())
    }

    fn rebuild(&mut self, name: &str, now: &str) -> Result<(), LifecycleError> {
        let state = self.state(name)?;
        let active = state
            .active
            .ok_or_else(|| LifecycleError::NoActiveVersion(name.to_string()))?;
        let template = state
            .record(active)
            .cloned()
            .ok_or_else(|| LifecycleError::NoActiveVersion(name.to_string()))?;
        // Counted before an earlier rebuild is dropped: a new generation never reuses
        // the storage of one still being stopped.
        let generation = state
            .versions
            .iter()
            .filter(|r| r.key.version == active.version)
            .map(|r| r.key.generation)
            .max()
            .unwrap_or(active.generation)
            + 1;
        // A rebuild already under way for this version is replaced by this one.
        let superseded: Vec<VersionKey> = state
            .versions
            .iter()
            .filter(|r| r.pending && r.rebuild_of == Some(active))
            .map(|r| r.key)
            .collect();
        state
            .versions
            .retain(|r| !(r.pending && r.rebuild_of == Some(active)));
        let record = VersionRecord {
            key: VersionKey {
                version: active.version,
                generation,
            },
            created_at: now.to_string(),
            pending: true,
            rebuild_of: Some(active),
            ..template
        };
        state.versions.push(record.clone());
        for old in superseded {
            self.discard(name, old);
        }
        self.effects.push(Effect::Persist);
        // Whatever an earlier run left at that path is not this generation's.
        self.effects
            .push(Effect::Delete((name.to_string(), record.key)));
        self.changes
            .push(Change::Rebuilding((name.to_string(), record.key)));
        self.effects.push(Effect::Start {
            name: name.to_string(),
            record,
        });
        Ok(())
    }

    fn set_policy(&mut self, name: &str, policy: Policy) -> Result<(), LifecycleError> {
        self.state(name)?.policy = policy;
        self.effects.push(Effect::Persist);
        self.effects.push(Effect::Policy {
            name: name.to_string(),
            policy,
        });
        Ok(())
    }

    /// Puts the effects in the order the shell runs them (see [`Effect`]).
    fn finish(mut self) -> Transition {
        self.effects.sort_by_key(|effect| match effect {
            Effect::Stop { .. } => 0,
            Effect::Persist => 1,
            Effect::Delete(_) => 2,
            Effect::Start { .. } => 3,
            Effect::Policy { .. } => 4,
        });
        self.effects
            .dedup_by(|a, b| *a == Effect::Persist && *b == Effect::Persist);
        Transition {
            lifecycle: self.lifecycle,
            effects: self.effects,
            changes: self.changes,
        }
    }
}

#[cfg(test)]
mod tests;
