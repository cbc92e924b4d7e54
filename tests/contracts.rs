//! Plugins of both contracts, `tessera:plugin@0.1.0` (one guest call per event) and
//! `tessera:plugin@0.2.0` (a fold or a projection batch per call), served side by side
//! in one host.
//!
//! The tally plugins come in pairs (`plugins/testing/contract-*`): `tally-v1`,
//! `tally-totals-v1` and `tally-queries-v1` are written against the 0.1.0 WIT with
//! wit-bindgen; `tally-v2`, `tally-totals-v2` and `tally-queries-v2` are 0.2.0 plugins
//! on the SDK. Each pair shares its rules and SQL (`contract-kit`), so they must give
//! the same answers; what differs is how many guest calls the host makes, which the
//! plugins count themselves (the aggregates in their state, reported by `*-probe`; the
//! projections in their database, in the batch's transaction) and the host counts
//! for a session (`CommandSession::calls`).

use std::sync::Arc;

use crate::common::lifecycle::{version_of, wait_caught_up, wait_version};
use crate::common::{Reply, TestHost, at_least, plugins};
use reqwest::Method;
use serde_json::{Value, json};
use tessera::event_store::{Metadata, RecordedEvent};
use tessera::plugin::{Contract, Limits, PluginCode, Runtime};

/// Every tally plugin, both contracts.
const TALLIES: [&str; 6] = [
    plugins::TEST_CONTRACT_V1_COMMANDS,
    plugins::TEST_CONTRACT_V1_PROJECTION,
    plugins::TEST_CONTRACT_V1_QUERIES,
    plugins::TEST_CONTRACT_V2_COMMANDS,
    plugins::TEST_CONTRACT_V2_PROJECTION,
    plugins::TEST_CONTRACT_V2_QUERIES,
];

/// The two contracts' names for the same things.
#[derive(Debug, Clone, Copy)]
struct Side {
    /// The prefix of its command names, `v1-` or `v2-`.
    prefix: &'static str,
    /// Its aggregate type: streams are `<type>-<id>`.
    aggregate: &'static str,
    projection: &'static str,
    query: &'static str,
}

const V1: Side = Side {
    prefix: "v1-",
    aggregate: "tally-v1",
    projection: "tally-totals-v1",
    query: "v1-tallies",
};
const V2: Side = Side {
    prefix: "v2-",
    aggregate: "tally-v2",
    projection: "tally-totals-v2",
    query: "v2-tallies",
};

impl Side {
    async fn command(&self, host: &TestHost, name: &str, id: &str, payload: Value) -> Reply {
        host.send(
            &format!("{}{name}", self.prefix),
            &json!({ "aggregate_id": id, "payload": payload }),
            &[],
        )
        .await
        .expect("command sent")
    }

    /// The tallies its query answers, at least as fresh as `at` if given.
    async fn tallies(&self, host: &TestHost, at: Option<u64>) -> Value {
        let reply = host
            .query(self.query, "", &at_least(at))
            .await
            .expect("query sent");
        reply.ok().clone()
    }

    /// The state its aggregate reports for stream `id` (`*-probe` appends a `Probed`
    /// event carrying it).
    async fn probe(&self, host: &TestHost, id: &str) -> Value {
        let reply = self.command(host, "probe", id, json!({})).await;
        let events = reply.ok()["events"].as_array().expect("events").clone();
        assert_eq!(events.len(), 1, "{}", reply.body);
        assert_eq!(events[0]["type"], "Probed", "{}", reply.body);
        events[0]["data"].clone()
    }
}

/// What a command's reply says, without what necessarily differs between the two
/// sides (stream names, positions, ids and times).
fn outcome(reply: &Reply) -> Value {
    if reply.status != 200 {
        return json!({ "status": reply.status, "error": reply.body["error"] });
    }
    let events: Vec<Value> = reply.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| json!({ "type": e["type"], "data": e["data"], "version": e["version"] }))
        .collect();
    json!({ "status": 200, "version": reply.body["version"], "events": events })
}

/// The last position a successful command appended.
fn position(reply: &Reply) -> u64 {
    reply.ok()["position"].as_u64().expect("position")
}

/// The positions of the events a successful command appended, in order.
fn positions(reply: &Reply) -> Vec<u64> {
    reply.ok()["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["position"].as_u64().expect("position"))
        .collect()
}

/// The tallies of an answer by stream id (the stream name without the aggregate type),
/// as `(id, total, events)`.
fn by_id(answer: &Value) -> Vec<(String, i64, i64)> {
    let mut rows: Vec<(String, i64, i64)> = answer["tallies"]
        .as_array()
        .expect("tallies")
        .iter()
        .map(|row| {
            let stream = row["stream"].as_str().expect("stream");
            (
                stream.to_string(),
                row["total"].as_i64().expect("total"),
                row["events"].as_i64().expect("events"),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The contract each plugin reports in `GET /plugins`, by plugin name.
async fn contracts(host: &TestHost) -> Vec<(String, String)> {
    let (status, body) = host.get("/plugins").await.expect("listing");
    assert_eq!(status, 200, "{body}");
    let mut listed: Vec<(String, String)> = body["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|p| {
            (
                p["plugin"]["name"].as_str().expect("name").to_string(),
                p["plugin"]["contract"]
                    .as_str()
                    .expect("contract")
                    .to_string(),
            )
        })
        .collect();
    listed.sort();
    listed
}

/// A 0.1.0 and a 0.2.0 plugin of each kind in one host: the same commands get the same
/// answers, both projections build the same read model from the same log (each
/// reading the events of both aggregates), and both query handlers answer it alike.
/// Only the number of guest calls differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plugins_of_both_contracts_serve_side_by_side_alike() {
    let host = TestHost::start(&TALLIES).await.expect("host starts");
    assert_eq!(
        contracts(&host).await,
        [
            ("tally-queries-v1", "0.1.0"),
            ("tally-queries-v2", "0.2.0"),
            ("tally-totals-v1", "0.1.0"),
            ("tally-totals-v2", "0.2.0"),
            ("tally-v1", "0.1.0"),
            ("tally-v2", "0.2.0"),
        ]
        .map(|(name, contract)| (name.to_string(), contract.to_string()))
    );
    for side in [V1, V2] {
        wait_caught_up(&host, side.projection, 1, "active").await;
    }

    // The same script on both sides, stream by stream.
    let script: Vec<(&str, &str, Value)> = vec![
        ("add", "a", json!({ "amount": 5 })),
        ("add-many", "a", json!({ "amounts": [1, 2, 3] })),
        ("add", "a", json!({ "amount": 2000 })),
        ("add-many", "a", json!({ "amounts": [7, 0] })),
        ("add", "b", json!({ "amount": 1000 })),
        ("add-many", "b", json!({ "amounts": vec![1000; 9] })),
        ("add", "b", json!({ "amount": 1 })),
        // (13 is the amount the projections cannot apply: none here.)
        (
            "add-many",
            "c",
            json!({ "amounts": (1..=60).filter(|a| *a != 13).collect::<Vec<u64>>() }),
        ),
        ("add", "c", json!({ "amount": 4 })),
        ("add", "a", json!({ "nothing": true })),
    ];
    let mut last = 0;
    for (name, id, payload) in &script {
        let v1 = V1.command(&host, name, id, payload.clone()).await;
        let v2 = V2.command(&host, name, id, payload.clone()).await;
        assert_eq!(outcome(&v1), outcome(&v2), "{name} {id} {payload}");
        for reply in [&v1, &v2] {
            if reply.status == 200 {
                last = last.max(position(reply));
            }
        }
    }
    // The refusals were refusals, and alike.
    let refused = V2
        .command(&host, "add", "a", json!({ "amount": 2000 }))
        .await;
    refused.assert_error(422, "validation_failed");
    let refused = V2.command(&host, "add", "b", json!({ "amount": 1 })).await;
    refused.assert_error(422, "rejected");
    assert_eq!(refused.body["error"]["details"]["reason"], "limit");

    // Each aggregate folded its streams alike; a 0.1.0 one made one call per event,
    // a 0.2.0 one at most one call per command.
    for id in ["a", "b", "c"] {
        let v1 = V1.probe(&host, id).await;
        let v2 = V2.probe(&host, id).await;
        assert_eq!(v1["total"], v2["total"], "{id}: {v1} {v2}");
        assert_eq!(v1["events"], v2["events"], "{id}: {v1} {v2}");
        assert_eq!(v1["calls"], v1["events"], "{id}: {v1}");
        assert!(v2["calls"].as_u64() < v2["events"].as_u64(), "{id}: {v2}");
    }
    let totals: Vec<(String, i64, i64)> = [("a", 11, 4), ("b", 10_000, 10), ("c", 1821, 60)]
        .iter()
        .flat_map(|(id, total, events)| {
            [V1, V2].map(|side| (format!("{}-{id}", side.aggregate), *total, *events))
        })
        .collect();
    let mut expected = totals.clone();
    expected.sort();

    // Both projections read every `Added` of both aggregates from the one log, and
    // both query handlers answer the same read model.
    let v1 = V1.tallies(&host, Some(last)).await;
    let v2 = V2.tallies(&host, Some(last)).await;
    assert_eq!(by_id(&v1), expected, "{v1}");
    assert_eq!(by_id(&v2), expected, "{v2}");
    let added = expected.iter().map(|(_, _, events)| events).sum::<i64>();
    assert_eq!(v1["calls"], added, "{v1}");
    let batches = v2["calls"].as_i64().expect("calls");
    assert!((1..=added).contains(&batches), "{v2}");

    // A backlog projected from scratch: the 0.2.0 projection takes it in one call,
    // the 0.1.0 one in one call per event. (A rebuild builds a new generation beside
    // the active one and swaps when it has caught up.)
    for side in [V1, V2] {
        let rebuilt = host
            .call(
                Method::POST,
                &format!("/projections/{}/rebuild", side.projection),
                None,
                None,
            )
            .await
            .expect("rebuild");
        assert!(rebuilt.status < 300, "{}", rebuilt.body);
    }
    let v1 = crate::common::eventually("the 0.1.0 rebuild", async || {
        let answer = V1.tallies(&host, Some(last)).await;
        (answer["calls"] == added && by_id(&answer) == expected)
            .then_some(answer.clone())
            .ok_or(answer.to_string())
    })
    .await;
    let v2 = crate::common::eventually("the 0.2.0 rebuild", async || {
        let answer = V2.tallies(&host, Some(last)).await;
        (answer["calls"] == 1 && by_id(&answer) == expected)
            .then_some(answer.clone())
            .ok_or(answer.to_string())
    })
    .await;
    assert_eq!(v1["tallies"], v2["tallies"]);
}

/// The events of one stream, as the store would hand them to a handler.
fn stream(count: u64) -> Vec<RecordedEvent> {
    (1..=count)
        .map(|version| RecordedEvent {
            position: version,
            stream: "tally-1".into(),
            version,
            event_type: "Added".into(),
            data: serde_json::value::to_raw_value(&json!({ "amount": version % 7 + 1 }))
                .expect("JSON"),
            metadata: Metadata {
                command_id: "c".into(),
                correlation_id: "c".into(),
                causation_id: "c".into(),
                principal: None,
                timestamp: "2026-01-01T00:00:00Z".into(),
                request_id: None,
                claims: None,
            },
            timestamp: "2026-01-01T00:00:00Z".into(),
        })
        .collect()
}

/// A 0.2.0 command handler folds a stream of many events in a few calls of up to 256
/// events each (each call has its own deadline, so a long fold is never one call the
/// deadline cuts), whose state is the same as the 0.1.0 handler's after one call per
/// event; the host's session and the guest agree on the count.
#[test]
fn a_0_2_0_handler_folds_a_long_stream_in_calls_of_256_events() {
    let runtime = Runtime::new(Limits::default()).expect("runtime");
    let events = stream(2000);
    let expected_total: u64 = (1..=2000u64).map(|v| v % 7 + 1).sum();
    for (plugin, contract, calls) in [
        (plugins::TEST_CONTRACT_V1_COMMANDS, Contract::V0_1, 2000),
        (
            plugins::TEST_CONTRACT_V2_COMMANDS,
            Contract::V0_2,
            2000_u64.div_ceil(256),
        ),
    ] {
        let loaded = runtime
            .load(&std::fs::read(plugin).expect("plugin file"))
            .expect("plugin loads");
        assert_eq!(loaded.description.contract, contract);
        let PluginCode::CommandHandler(handler) = loaded.code else {
            panic!("{plugin} is not a command handler");
        };
        assert_eq!(handler.contract(), contract);
        let mut session = handler.session().expect("instance");
        let state = session.fold(None, &events).expect("fold").expect("a state");
        assert_eq!(session.calls(), calls, "{contract}");
        let state: Value = serde_json::from_str(&state).expect("JSON");
        assert_eq!(
            state,
            json!({ "total": expected_total, "events": 2000, "calls": calls }),
            "{contract}"
        );
        // Nothing to fold is no call at all.
        let mut session = handler.session().expect("instance");
        let same: Option<Arc<str>> = Some(Arc::from("{}"));
        assert_eq!(session.fold(same.clone(), &[]).expect("fold"), same);
        assert_eq!(session.calls(), 0);
    }
}

/// Through the command bus: the command after one that appended 300 events folds them
/// in two calls of a 0.2.0 handler (256 events at most per call; the guest counts its
/// calls in its state), against one call per event for 0.1.0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bus_folds_a_0_2_0_stream_in_calls_of_256_events() {
    let host = TestHost::start(&[
        plugins::TEST_CONTRACT_V1_COMMANDS,
        plugins::TEST_CONTRACT_V2_COMMANDS,
    ])
    .await
    .expect("host starts");
    let amounts = vec![3; 300];
    for side in [V1, V2] {
        let reply = side
            .command(&host, "add-many", "long", json!({ "amounts": amounts }))
            .await;
        assert_eq!(positions(&reply).len(), 300);
    }
    let v1 = V1.probe(&host, "long").await;
    let v2 = V2.probe(&host, "long").await;
    assert_eq!(v1, json!({ "total": 900, "events": 300, "calls": 300 }));
    assert_eq!(v2, json!({ "total": 900, "events": 300, "calls": 2 }));
}

/// The tally projections of both contracts, their queries, and the 0.2.0 commands.
const PROJECTING: [&str; 5] = [
    plugins::TEST_CONTRACT_V2_COMMANDS,
    plugins::TEST_CONTRACT_V1_PROJECTION,
    plugins::TEST_CONTRACT_V1_QUERIES,
    plugins::TEST_CONTRACT_V2_PROJECTION,
    plugins::TEST_CONTRACT_V2_QUERIES,
];

/// The parked events of `projection`.
async fn parked(host: &TestHost, projection: &str) -> Vec<Value> {
    let (status, body) = host
        .get(&format!("/projections/{projection}/parked"))
        .await
        .expect("parked");
    assert_eq!(status, 200, "{body}");
    body["parked"].as_array().expect("parked list").clone()
}

/// Waits until both projections are halted at `failing`, having applied everything
/// before it; returns the 0.2.0 projection's error.
async fn halted_at(host: &TestHost, failing: u64) -> String {
    let mut error = String::new();
    for side in [V1, V2] {
        let halted = wait_version(host, side.projection, 1, "halted", |s| {
            s["halted"] == true && s["status"] == "failed"
        })
        .await;
        assert_eq!(halted["failed_at"], failing, "{halted}");
        assert_eq!(halted["checkpoint"], failing - 1, "{halted}");
        error = halted["error"].as_str().expect("error").to_string();
    }
    error
}

/// Switches both projections to parking failing events and resumes them; waits until
/// both are live at the head.
async fn park_and_resume(host: &TestHost) {
    for side in [V1, V2] {
        host.set_policy(
            side.projection,
            json!({ "on_failure": "skip", "max_attempts": 2 }),
        )
        .await;
        let resumed = host
            .call(
                Method::POST,
                &format!("/projections/{}/resume", side.projection),
                None,
                None,
            )
            .await
            .expect("resume");
        assert!(resumed.status < 300, "{}", resumed.body);
    }
    for side in [V1, V2] {
        wait_caught_up(host, side.projection, 1, "active").await;
    }
}

/// A 0.2.0 batch that fails at one event (the guest names it): the host narrows down
/// to that event as for 0.1.0, halts exactly there with everything before it applied,
/// and under `skip` parks exactly that event and applies the rest. The 0.1.0
/// projection on the same log halts and parks at the same event with the same read
/// model.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_0_2_0_batch_failing_at_one_event_halts_and_parks_exactly_that_event() {
    let host = TestHost::start(&PROJECTING).await.expect("host starts");
    for side in [V1, V2] {
        wait_caught_up(&host, side.projection, 1, "active").await;
        host.set_policy(side.projection, json!({ "max_attempts": 2 }))
            .await;
    }
    // 40 events appended at once, so the projections see them in one batch; the 13th
    // (amount 13) cannot be applied.
    let amounts: Vec<u64> = (1..=40).collect();
    let reply = V2
        .command(&host, "add-many", "p", json!({ "amounts": amounts }))
        .await;
    let appended = positions(&reply);
    let poison = appended[12];

    let error = halted_at(&host, poison).await;
    assert!(error.contains("unlucky"), "{error}");
    let before = vec![("tally-v2-p".to_string(), (1..=12).sum::<i64>(), 12)];
    for side in [V1, V2] {
        assert_eq!(by_id(&side.tallies(&host, None).await), before);
    }
    // The events before the failing one went in one call (the failed batch rolled
    // back, its count with it).
    assert_eq!(V2.tallies(&host, None).await["calls"], 1);
    assert_eq!(V1.tallies(&host, None).await["calls"], 12);

    park_and_resume(&host).await;
    let after = vec![("tally-v2-p".to_string(), (1..=40).sum::<i64>() - 13, 39)];
    for side in [V1, V2] {
        let answer = side.tallies(&host, Some(*appended.last().unwrap())).await;
        assert_eq!(by_id(&answer), after, "{answer}");
        let list = parked(&host, side.projection).await;
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0]["position"], poison, "{list:?}");
        assert!(
            list[0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("unlucky")),
            "{list:?}"
        );
    }
    assert_eq!(V2.tallies(&host, None).await["calls"], 2);
}

/// A 0.2.0 batch in which the guest traps cannot say which event failed: the host
/// hands the guest smaller batches until the trapping event is alone in one, then
/// halts exactly there, and parks exactly it under `skip`, like the 0.1.0 projection
/// (which traps at that event's own call).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_0_2_0_batch_that_traps_is_narrowed_down_to_the_trapping_event() {
    let host = TestHost::start(&PROJECTING).await.expect("host starts");
    for side in [V1, V2] {
        wait_caught_up(&host, side.projection, 1, "active").await;
        host.set_policy(side.projection, json!({ "max_attempts": 2 }))
            .await;
    }
    let mut amounts: Vec<u64> = (1..=30).filter(|a| *a != 13).collect();
    amounts.insert(17, 666);
    let reply = V2
        .command(&host, "add-many", "t", json!({ "amounts": amounts }))
        .await;
    let appended = positions(&reply);
    let trap = appended[17];

    let error = halted_at(&host, trap).await;
    assert!(error.contains("trapped"), "{error}");
    let sum = |list: &[u64]| list.iter().map(|a| *a as i64).sum::<i64>();
    let before = vec![("tally-v2-t".to_string(), sum(&amounts[..17]), 17)];
    for side in [V1, V2] {
        assert_eq!(by_id(&side.tallies(&host, None).await), before);
    }

    park_and_resume(&host).await;
    let after = vec![(
        "tally-v2-t".to_string(),
        sum(&amounts) - 666,
        amounts.len() as i64 - 1,
    )];
    for side in [V1, V2] {
        let answer = side.tallies(&host, Some(*appended.last().unwrap())).await;
        assert_eq!(by_id(&answer), after, "{answer}");
        let list = parked(&host, side.projection).await;
        let at: Vec<u64> = list.iter().filter_map(|p| p["position"].as_u64()).collect();
        assert_eq!(at, [trap], "{list:?}");
    }
    // Still listed with its contract, and serving.
    let list = host.projections().await.expect("statuses");
    let v2 = version_of(&list, V2.projection, 1).expect("listed");
    assert_eq!(v2["halted"], false, "{v2}");
}
