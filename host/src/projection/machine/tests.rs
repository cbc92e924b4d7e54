//! Every transition of the lifecycle, one event at a time, then random sequences of
//! events checked against the machine's guarantees.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::projection::lifecycle::OnFailure;

const NOW: &str = "2026-12-07T00:00:00Z";

fn key(version: u32, generation: u32) -> VersionKey {
    VersionKey {
        version,
        generation,
    }
}

fn id(name: &str, version: u32, generation: u32) -> VersionId {
    (name.to_string(), key(version, generation))
}

fn served(name: &str, version: u32, digest: &str) -> Served {
    Served {
        name: name.to_string(),
        schema_version: version,
        digest: digest.to_string(),
        mode: ProjectionMode::Async,
        handles: vec!["Deposited".to_string()],
    }
}

fn running(ids: &[VersionId]) -> BTreeSet<VersionId> {
    ids.iter().cloned().collect()
}

fn catalog(lifecycle: &Lifecycle, routes: &[Served], ids: &[VersionId]) -> Transition {
    step(
        lifecycle,
        Event::Catalog {
            served: routes,
            running: &running(ids),
            now: NOW,
        },
    )
    .expect("a catalog change is never refused")
}

/// A lifecycle where `totals` v1 is active and runs.
fn one_active() -> Lifecycle {
    catalog(&Lifecycle::default(), &[served("totals", 1, "d1")], &[]).lifecycle
}

/// `totals` v1 active, v2 being built beside it.
fn building_v2() -> Lifecycle {
    catalog(
        &one_active(),
        &[served("totals", 2, "d2")],
        &[id("totals", 1, 1)],
    )
    .lifecycle
}

fn state<'a>(lifecycle: &'a Lifecycle, name: &str) -> &'a ProjectionState {
    &lifecycle.projections[name]
}

fn at(checkpoint: u64) -> Progress {
    Progress {
        checkpoint,
        ready: true,
        failed: false,
    }
}

fn progress(lifecycle: &Lifecycle, head: u64, versions: &[(VersionId, Progress)]) -> Transition {
    let versions: BTreeMap<VersionId, Progress> = versions.iter().cloned().collect();
    step(
        lifecycle,
        Event::Progress {
            head,
            running: &versions,
        },
    )
    .expect("progress is never refused")
}

fn start(name: &str, record: &VersionRecord) -> Effect {
    Effect::Start {
        name: name.to_string(),
        record: record.clone(),
    }
}

fn stop(id: VersionId) -> Effect {
    Effect::Stop {
        id,
        replaced: false,
    }
}

// --- The catalog -------------------------------------------------------------------

#[test]
fn a_first_version_becomes_active_at_once_and_starts() {
    let next = catalog(&Lifecycle::default(), &[served("totals", 1, "d1")], &[]);
    let totals = state(&next.lifecycle, "totals");
    assert_eq!(totals.active, Some(key(1, 1)));
    assert_eq!(totals.previous, None);
    let record = totals.record(key(1, 1)).unwrap();
    assert!(!record.pending);
    assert_eq!(record.digest, "d1");
    assert_eq!(record.created_at, NOW);
    assert_eq!(next.effects, [Effect::Persist, start("totals", record)]);
    assert!(next.changes.is_empty());
}

#[test]
fn a_new_schema_version_is_built_beside_the_active_one() {
    let mut held = one_active();
    held.projections.get_mut("totals").unwrap().held = true;
    let next = catalog(&held, &[served("totals", 2, "d2")], &[id("totals", 1, 1)]);
    let totals = state(&next.lifecycle, "totals");
    assert_eq!(totals.active, Some(key(1, 1)), "the active version stays");
    let record = totals.record(key(2, 1)).unwrap();
    assert!(record.pending);
    assert!(!totals.held, "a new version lifts an operator's hold");
    // v1 runs already; only v2 starts.
    assert_eq!(next.effects, [Effect::Persist, start("totals", record)]);
    assert_eq!(next.changes, [Change::Building(id("totals", 2, 1))]);
}

#[test]
fn new_code_for_a_running_version_replaces_its_worker() {
    let next = catalog(
        &one_active(),
        &[served("totals", 1, "d1-fixed")],
        &[id("totals", 1, 1)],
    );
    let record = state(&next.lifecycle, "totals").record(key(1, 1)).unwrap();
    assert_eq!(record.digest, "d1-fixed");
    assert_eq!(
        next.effects,
        [
            Effect::Stop {
                id: id("totals", 1, 1),
                replaced: true
            },
            Effect::Persist,
            start("totals", record),
        ]
    );
}

#[test]
fn new_code_for_a_version_not_running_just_starts_it() {
    let next = catalog(&one_active(), &[served("totals", 1, "d1-fixed")], &[]);
    let record = state(&next.lifecycle, "totals").record(key(1, 1)).unwrap();
    assert_eq!(next.effects, [Effect::Persist, start("totals", record)]);
}

#[test]
fn the_same_code_already_running_changes_nothing_but_the_saved_file() {
    let before = one_active();
    let next = catalog(&before, &[served("totals", 1, "d1")], &[id("totals", 1, 1)]);
    assert_eq!(next.effects, [Effect::Persist]);
    assert_eq!(
        serde_json::to_value(&next.lifecycle).unwrap(),
        serde_json::to_value(&before).unwrap()
    );
}

#[test]
fn every_recorded_version_of_a_served_projection_runs_with_its_own_code() {
    // After a restart nothing runs: v1 (standby, older code) and v2 both start.
    let lifecycle = progress(
        &building_v2(),
        10,
        &[(id("totals", 1, 1), at(10)), (id("totals", 2, 1), at(10))],
    )
    .lifecycle;
    let next = catalog(&lifecycle, &[served("totals", 2, "d2")], &[]);
    let totals = state(&next.lifecycle, "totals");
    assert_eq!(
        next.effects,
        [
            Effect::Persist,
            start("totals", totals.record(key(1, 1)).unwrap()),
            start("totals", totals.record(key(2, 1)).unwrap()),
        ]
    );
    assert_eq!(totals.record(key(1, 1)).unwrap().digest, "d1");
}

#[test]
fn a_projection_no_longer_served_stops_but_keeps_its_lifecycle() {
    let next = catalog(
        &building_v2(),
        &[],
        &[id("totals", 1, 1), id("totals", 2, 1)],
    );
    assert_eq!(
        next.effects,
        [
            stop(id("totals", 1, 1)),
            stop(id("totals", 2, 1)),
            Effect::Persist
        ]
    );
    assert_eq!(state(&next.lifecycle, "totals").versions.len(), 2);
}

#[test]
fn retired_code_is_not_built_again_until_it_changes() {
    let retired = step(
        &progress(&building_v2(), 0, &[]).lifecycle,
        Event::Retire {
            name: "totals",
            version: 2,
        },
    )
    .unwrap()
    .lifecycle;
    let same = catalog(
        &retired,
        &[served("totals", 2, "d2")],
        &[id("totals", 1, 1)],
    );
    assert!(state(&same.lifecycle, "totals").record(key(2, 1)).is_none());
    assert_eq!(same.effects, [Effect::Persist]);

    let changed = catalog(&retired, &[served("totals", 2, "d2-new")], &[]);
    let totals = state(&changed.lifecycle, "totals");
    assert!(totals.record(key(2, 1)).is_some_and(|r| r.pending));
    assert!(totals.retired.is_empty(), "{:?}", totals.retired);
}

// --- Progress and cutover ----------------------------------------------------------

#[test]
fn a_version_that_has_caught_up_takes_over_and_the_old_one_stays_for_rollback() {
    let next = progress(
        &building_v2(),
        100,
        &[
            (id("totals", 1, 1), at(100 - CUTOVER_LAG)),
            (id("totals", 2, 1), at(100 - CUTOVER_LAG)),
        ],
    );
    let totals = state(&next.lifecycle, "totals");
    assert_eq!(totals.active, Some(key(2, 1)));
    assert_eq!(totals.previous, Some(key(1, 1)));
    assert!(!totals.record(key(2, 1)).unwrap().pending);
    assert_eq!(next.effects, [Effect::Persist]);
    assert_eq!(next.changes, [Change::CutOver(id("totals", 2, 1))]);
}

#[test]
fn a_version_that_has_not_caught_up_does_not_take_over() {
    let lifecycle = building_v2();
    let active = (id("totals", 1, 1), at(100));
    let cases = [
        ("too far behind the head", at(100 - CUTOVER_LAG - 1)),
        ("behind the active version", at(99)),
        (
            "not set up",
            Progress {
                ready: false,
                ..at(100)
            },
        ),
        (
            "failing",
            Progress {
                failed: true,
                ..at(100)
            },
        ),
    ];
    for (why, building) in cases {
        let next = progress(
            &lifecycle,
            100,
            &[active.clone(), (id("totals", 2, 1), building)],
        );
        assert_eq!(
            state(&next.lifecycle, "totals").active,
            Some(key(1, 1)),
            "{why}"
        );
        assert!(next.effects.is_empty(), "{why}: {:?}", next.effects);
    }
    let not_running = progress(&lifecycle, 100, &[active]);
    assert!(not_running.effects.is_empty());
}

#[test]
fn without_an_active_worker_only_the_head_counts() {
    let next = progress(&building_v2(), 100, &[(id("totals", 2, 1), at(90))]);
    assert_eq!(state(&next.lifecycle, "totals").active, Some(key(2, 1)));
}

#[test]
fn a_manual_policy_or_a_hold_keeps_a_caught_up_version_waiting() {
    for manual in [true, false] {
        let mut lifecycle = building_v2();
        let totals = lifecycle.projections.get_mut("totals").unwrap();
        if manual {
            totals.policy.cutover = Cutover::Manual;
        } else {
            totals.held = true;
        }
        let next = progress(&lifecycle, 10, &[(id("totals", 2, 1), at(10))]);
        assert_eq!(state(&next.lifecycle, "totals").active, Some(key(1, 1)));
        assert!(next.effects.is_empty());
    }
}

/// `totals` v1 active at generation 1, its rebuild (generation 2) under way.
fn rebuilding() -> Lifecycle {
    step(
        &one_active(),
        Event::Rebuild {
            name: "totals",
            now: NOW,
        },
    )
    .unwrap()
    .lifecycle
}

#[test]
fn a_rebuild_that_has_caught_up_replaces_its_generation_whatever_the_policy() {
    let mut lifecycle = rebuilding();
    let totals = lifecycle.projections.get_mut("totals").unwrap();
    totals.policy.cutover = Cutover::Manual;
    totals.held = true;
    let next = progress(
        &lifecycle,
        50,
        &[(id("totals", 1, 1), at(50)), (id("totals", 1, 2), at(50))],
    );
    let totals = state(&next.lifecycle, "totals");
    assert_eq!(totals.active, Some(key(1, 2)));
    assert_eq!(
        totals.previous, None,
        "rollback never returns to a deleted generation"
    );
    assert!(totals.record(key(1, 1)).is_none());
    let record = totals.record(key(1, 2)).unwrap();
    assert!(!record.pending && record.rebuild_of.is_none());
    assert_eq!(
        next.effects,
        [
            stop(id("totals", 1, 1)),
            Effect::Persist,
            Effect::Delete(id("totals", 1, 1))
        ]
    );
}

// --- Operators -----------------------------------------------------------------------

#[test]
fn promote_makes_the_version_being_built_active_and_holds() {
    let next = step(
        &building_v2(),
        Event::Promote {
            name: "totals",
            version: None,
        },
    )
    .unwrap();
    let totals = state(&next.lifecycle, "totals");
    assert_eq!(totals.active, Some(key(2, 1)));
    assert_eq!(totals.previous, Some(key(1, 1)));
    assert!(totals.held);
    assert_eq!(next.effects, [Effect::Persist]);
    assert_eq!(next.version(), Some(key(2, 1)));
}

#[test]
fn promote_refuses_what_does_not_exist_and_changes_nothing() {
    let lifecycle = one_active();
    let refused =
        |name, version| step(&lifecycle, Event::Promote { name, version }).expect_err("refused");
    assert!(matches!(
        refused("totals", None),
        LifecycleError::NothingBuilding(_)
    ));
    assert!(matches!(
        refused("totals", Some(7)),
        LifecycleError::UnknownVersion { version: 7, .. }
    ));
    assert!(matches!(
        refused("nope", None),
        LifecycleError::UnknownProjection(_)
    ));
}

#[test]
fn promoting_the_active_version_keeps_what_rollback_returns_to() {
    let lifecycle = progress(&building_v2(), 5, &[(id("totals", 2, 1), at(5))]).lifecycle;
    let next = step(
        &lifecycle,
        Event::Promote {
            name: "totals",
            version: Some(2),
        },
    )
    .unwrap();
    let totals = state(&next.lifecycle, "totals");
    assert_eq!(totals.active, Some(key(2, 1)));
    assert_eq!(totals.previous, Some(key(1, 1)));
}

/// Found by writing the machine: promoting a rebuild used to set `previous` to the
/// generation it replaced, after dropping that generation's record, and left its
/// worker running and its database on disk. A rollback then pointed queries at a
/// version the lifecycle no longer knew.
#[test]
fn promoting_a_rebuild_retires_the_generation_it_replaces() {
    let next = step(
        &rebuilding(),
        Event::Promote {
            name: "totals",
            version: None,
        },
    )
    .unwrap();
    let totals = state(&next.lifecycle, "totals");
    assert_eq!(totals.active, Some(key(1, 2)));
    assert_eq!(totals.previous, None);
    assert!(totals.record(key(1, 1)).is_none());
    assert_eq!(
        next.effects,
        [
            stop(id("totals", 1, 1)),
            Effect::Persist,
            Effect::Delete(id("totals", 1, 1))
        ]
    );
    assert!(matches!(
        step(&next.lifecycle, Event::Rollback { name: "totals" }),
        Err(LifecycleError::NoPrevious(_))
    ));
}

#[test]
fn rollback_swaps_active_and_previous_and_holds() {
    let lifecycle = progress(&building_v2(), 5, &[(id("totals", 2, 1), at(5))]).lifecycle;
    let next = step(&lifecycle, Event::Rollback { name: "totals" }).unwrap();
    let totals = state(&next.lifecycle, "totals");
    assert_eq!(totals.active, Some(key(1, 1)));
    assert_eq!(totals.previous, Some(key(2, 1)));
    assert!(totals.held);
    assert_eq!(next.effects, [Effect::Persist]);
    assert_eq!(next.version(), Some(key(1, 1)));
    assert!(matches!(
        step(&one_active(), Event::Rollback { name: "totals" }),
        Err(LifecycleError::NoPrevious(_))
    ));
}

#[test]
fn retire_stops_and_deletes_every_generation_of_a_version() {
    let lifecycle = progress(&building_v2(), 5, &[(id("totals", 2, 1), at(5))]).lifecycle;
    let next = step(
        &lifecycle,
        Event::Retire {
            name: "totals",
            version: 1,
        },
    )
    .unwrap();
    let totals = state(&next.lifecycle, "totals");
    assert!(totals.record(key(1, 1)).is_none());
    assert_eq!(totals.previous, None);
    assert_eq!(totals.retired, [(1, "d1".to_string())]);
    assert_eq!(
        next.effects,
        [
            stop(id("totals", 1, 1)),
            Effect::Persist,
            Effect::Delete(id("totals", 1, 1))
        ]
    );
}

#[test]
fn retire_refuses_the_active_version_and_unknown_ones() {
    let lifecycle = building_v2();
    let retire = |version| {
        step(
            &lifecycle,
            Event::Retire {
                name: "totals",
                version,
            },
        )
    };
    assert!(matches!(
        retire(1),
        Err(LifecycleError::ActiveVersion { version: 1, .. })
    ));
    assert!(matches!(
        retire(3),
        Err(LifecycleError::UnknownVersion { version: 3, .. })
    ));
}

#[test]
fn rebuild_builds_a_new_generation_in_fresh_storage() {
    let next = step(
        &one_active(),
        Event::Rebuild {
            name: "totals",
            now: NOW,
        },
    )
    .unwrap();
    let totals = state(&next.lifecycle, "totals");
    assert_eq!(
        totals.active,
        Some(key(1, 1)),
        "the old generation serves meanwhile"
    );
    let record = totals.record(key(1, 2)).unwrap();
    assert!(record.pending);
    assert_eq!(record.rebuild_of, Some(key(1, 1)));
    assert_eq!(record.digest, "d1");
    assert_eq!(
        next.effects,
        [
            Effect::Persist,
            Effect::Delete(id("totals", 1, 2)),
            start("totals", record)
        ]
    );
    assert_eq!(next.version(), Some(key(1, 2)));
}

/// Found by writing the machine: a second rebuild dropped the first one's record but
/// left its worker running and its database on disk.
#[test]
fn a_second_rebuild_replaces_the_first_and_discards_it() {
    let next = step(
        &rebuilding(),
        Event::Rebuild {
            name: "totals",
            now: NOW,
        },
    )
    .unwrap();
    let totals = state(&next.lifecycle, "totals");
    assert!(totals.record(key(1, 2)).is_none());
    let record = totals.record(key(1, 3)).unwrap();
    assert_eq!(
        next.effects,
        [
            stop(id("totals", 1, 2)),
            Effect::Persist,
            Effect::Delete(id("totals", 1, 2)),
            Effect::Delete(id("totals", 1, 3)),
            start("totals", record)
        ]
    );
}

#[test]
fn rebuild_needs_an_active_version() {
    let mut lifecycle = Lifecycle::default();
    lifecycle
        .projections
        .insert("totals".into(), ProjectionState::default());
    assert!(matches!(
        step(
            &lifecycle,
            Event::Rebuild {
                name: "totals",
                now: NOW
            }
        ),
        Err(LifecycleError::NoActiveVersion(_))
    ));
}

#[test]
fn a_policy_change_is_saved_and_sent_to_the_workers() {
    let policy = Policy {
        cutover: Cutover::Manual,
        on_failure: OnFailure::Skip,
        max_attempts: 2,
    };
    let next = step(
        &one_active(),
        Event::SetPolicy {
            name: "totals",
            policy,
        },
    )
    .unwrap();
    assert_eq!(state(&next.lifecycle, "totals").policy, policy);
    assert_eq!(
        next.effects,
        [
            Effect::Persist,
            Effect::Policy {
                name: "totals".into(),
                policy
            }
        ]
    );
    assert!(matches!(
        step(
            &one_active(),
            Event::SetPolicy {
                name: "nope",
                policy
            }
        ),
        Err(LifecycleError::UnknownProjection(_))
    ));
}

// --- Random sequences ----------------------------------------------------------------

/// The workers a shell would run after `effects`.
fn run(effects: &[Effect], running: &mut BTreeSet<VersionId>) {
    for effect in effects {
        match effect {
            Effect::Stop { id, .. } => {
                running.remove(id);
            }
            Effect::Start { name, record } => {
                running.insert((name.clone(), record.key));
            }
            Effect::Persist | Effect::Delete(_) | Effect::Policy { .. } => {}
        }
    }
}

fn phase(effect: &Effect) -> u8 {
    match effect {
        Effect::Stop { .. } => 0,
        Effect::Persist => 1,
        Effect::Delete(_) => 2,
        Effect::Start { .. } => 3,
        Effect::Policy { .. } => 4,
    }
}

#[test]
fn random_sequences_keep_the_guarantees() {
    let names = ["totals", "balances"];
    for seed in 0..300 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut lifecycle = Lifecycle::default();
        let mut running = BTreeSet::new();
        let mut checkpoints: BTreeMap<VersionId, u64> = BTreeMap::new();
        let mut routes: Vec<Served> = Vec::new();
        let mut head = 0;
        for round in 0..60 {
            let name = names[rng.usize(..names.len())];
            let now = format!("t{round}");
            let versions: BTreeMap<VersionId, Progress>;
            let event = match rng.u8(..9) {
                0 | 1 => {
                    routes.retain(|s| s.name != name);
                    if rng.u8(..4) > 0 {
                        let version = rng.u32(1..4);
                        let digest = format!("{name}-{version}-{}", rng.u8(..2));
                        routes.push(served(name, version, &digest));
                    }
                    routes.sort_by(|a, b| a.name.cmp(&b.name));
                    Event::Catalog {
                        served: &routes,
                        running: &running,
                        now: &now,
                    }
                }
                2 | 3 => {
                    head += rng.u64(0..40);
                    for id in &running {
                        let at = checkpoints.entry(id.clone()).or_default();
                        *at = (*at + rng.u64(0..60)).min(head);
                    }
                    versions = running
                        .iter()
                        .map(|id| {
                            let progress = Progress {
                                checkpoint: checkpoints[id],
                                ready: rng.u8(..5) > 0,
                                failed: rng.u8(..8) == 0,
                            };
                            (id.clone(), progress)
                        })
                        .collect();
                    Event::Progress {
                        head,
                        running: &versions,
                    }
                }
                4 => Event::Promote {
                    name,
                    version: rng.bool().then(|| rng.u32(1..4)),
                },
                5 => Event::Rollback { name },
                6 => Event::Retire {
                    name,
                    version: rng.u32(1..4),
                },
                7 => Event::Rebuild { name, now: &now },
                _ => Event::SetPolicy {
                    name,
                    policy: Policy {
                        cutover: if rng.bool() {
                            Cutover::Auto
                        } else {
                            Cutover::Manual
                        },
                        ..Policy::default()
                    },
                },
            };
            let context = format!("seed {seed}, round {round}, {event:?}");
            let is_catalog = matches!(event, Event::Catalog { .. });
            let Ok(next) = step(&lifecycle, event) else {
                continue;
            };
            let phases: Vec<u8> = next.effects.iter().map(phase).collect();
            assert!(
                phases.is_sorted(),
                "{context}: effects out of order: {:?}",
                next.effects
            );
            for effect in &next.effects {
                if let Effect::Delete(id) = effect {
                    assert!(
                        !running.contains(id),
                        "{context}: {id:?} deleted while its worker runs"
                    );
                    checkpoints.remove(id);
                }
                if let Effect::Start { name, record } = effect {
                    assert!(
                        !running.contains(&(name.clone(), record.key)),
                        "{context}: {name} {} started twice",
                        record.key
                    );
                }
                run(std::slice::from_ref(effect), &mut running);
            }
            lifecycle = next.lifecycle;
            for (name, state) in &lifecycle.projections {
                let known = |key: VersionKey| state.record(key).is_some();
                assert!(state.active.is_none_or(known), "{context}: active unknown");
                assert!(
                    state.previous.is_none_or(known),
                    "{context}: previous unknown"
                );
                assert!(
                    state.previous.is_none() || state.previous != state.active,
                    "{context}: previous is the active version"
                );
                for (running_name, key) in &running {
                    if running_name == name {
                        assert!(known(*key), "{context}: {name} {key} runs unrecorded");
                    }
                }
                if is_catalog && routes.iter().any(|s| &s.name == name) {
                    for record in &state.versions {
                        assert!(
                            running.contains(&(name.clone(), record.key)),
                            "{context}: {name} {} is recorded but not started",
                            record.key
                        );
                    }
                }
            }
        }
    }
}
