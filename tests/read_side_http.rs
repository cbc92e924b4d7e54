//! The read side over HTTP: projections, the read store and query handlers, with
//! honest consistency. A real host serves the bank's plugins: `bank-account`
//! (commands), `account-balance` (an inline projection), `bank-totals` (an async one)
//! and `bank-queries` (`account`, `accounts`, `totals`, reading both).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::common::read_side::{Ledger, projection};
use crate::common::{Api, Reply, TestHost, plugins};
use serde_json::{Value, json};

async fn start() -> TestHost {
    let host = TestHost::start(&[
        plugins::BANK_ACCOUNT,
        plugins::ACCOUNT_BALANCE,
        plugins::BANK_TOTALS,
        plugins::BANK_QUERIES,
    ])
    .await
    .expect("host starts");
    // Queries answer once the projections they read are set up.
    host.wait_live(&["account-balance", "bank-totals"])
        .await
        .expect("projections live");
    host
}

/// Sends a command that must succeed; returns the reply.
async fn command(host: &TestHost, name: &str, id: &str, payload: Value) -> Reply {
    let reply = host
        .send(
            name,
            &json!({ "aggregate_id": id, "payload": payload }),
            &[],
        )
        .await
        .expect("command sent");
    assert_eq!(reply.status, 200, "{name} {id}: {}", reply.body);
    reply
}

fn position_of(reply: &Reply) -> u64 {
    reply.body["position"].as_u64().expect("position")
}

fn number_header(reply: &Reply, name: &str) -> u64 {
    reply
        .header(name)
        .unwrap_or_else(|| panic!("no {name} header: {:?}", reply.headers))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number: {:?}", reply.headers))
}

async fn get(host: &TestHost, name: &str, query: &str, headers: &[(&str, String)]) -> Reply {
    host.query(name, query, headers).await.expect("query sent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_query_at_the_commands_position_always_sees_the_command() {
    let host = start().await;
    command(&host, "open-account", "mp", json!({ "owner": "ada" })).await;
    let mut balance = 0;
    for i in 1..=30u64 {
        let amount = i * 3;
        balance += amount;
        let position =
            position_of(&command(&host, "deposit", "mp", json!({ "amount": amount })).await);
        let at = [("tessera-min-position", position.to_string())];

        // `account` reads the inline projection...
        let reply = get(&host, "account", "id=mp", &at).await;
        assert_eq!(
            reply.ok()["balance"],
            balance,
            "deposit {i}: {}",
            reply.body
        );
        let answered_at = number_header(&reply, "tessera-position");
        let head = number_header(&reply, "tessera-head");
        assert!(
            answered_at >= position,
            "deposit {i}: {answered_at} < {position}"
        );
        assert!(
            head >= answered_at,
            "deposit {i}: head {head} < {answered_at}"
        );

        // ...and `totals` the async one, which commands never wait for.
        let reply = get(&host, "totals", "", &at).await;
        assert_eq!(
            reply.ok()["total_balance"],
            balance,
            "deposit {i}: {}",
            reply.body
        );
        assert_eq!(
            reply.ok()["open_accounts"],
            1,
            "deposit {i}: {}",
            reply.body
        );
        assert!(number_header(&reply, "tessera-position") >= position);
        assert!(number_header(&reply, "tessera-head") >= position);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_inline_projection_is_current_when_the_command_returns() {
    let host = start().await;
    let mut balances: BTreeMap<String, (i64, u64)> = BTreeMap::new();
    for i in 0..40u64 {
        let id = format!("inline-{}", i % 4);
        let reply = if !balances.contains_key(&id) {
            balances.insert(id.clone(), (0, 1));
            command(
                &host,
                "open-account",
                &id,
                json!({ "owner": format!("owner of {id}") }),
            )
            .await
        } else if i % 3 == 0 && balances[&id].0 >= 5 {
            let entry = balances.get_mut(&id).expect("known");
            entry.0 -= 5;
            entry.1 += 1;
            command(&host, "withdraw", &id, json!({ "amount": 5 })).await
        } else {
            let entry = balances.get_mut(&id).expect("known");
            entry.0 += i as i64 + 1;
            entry.1 += 1;
            command(&host, "deposit", &id, json!({ "amount": i + 1 })).await
        };
        assert_eq!(
            reply.header("tessera-inline"),
            None,
            "the inline projection lagged behind command {i}"
        );
        // No Tessera-Min-Position: the command's response already waited.
        let answer = get(&host, "account", &format!("id={id}"), &[]).await;
        let (balance, version) = balances[&id];
        assert_eq!(
            answer.ok()["balance"],
            balance,
            "after command {i}: {}",
            answer.body
        );
        assert_eq!(
            answer.ok()["version"],
            version,
            "after command {i}: {}",
            answer.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_query_that_cannot_be_fresh_enough_answers_stale() {
    let host = start().await;
    let position =
        position_of(&command(&host, "open-account", "st", json!({ "owner": "ada" })).await);
    let far = position + 1_000_000;
    let reply = get(
        &host,
        "account",
        "id=st",
        &[
            ("tessera-min-position", far.to_string()),
            ("tessera-max-wait", "200".to_string()),
        ],
    )
    .await;
    reply.assert_error(503, "stale");
    let retry_after = number_header(&reply, "retry-after");
    assert!(retry_after >= 1, "Retry-After: {retry_after}");
    let details = &reply.body["error"]["details"];
    assert_eq!(details["min_position"], far, "{}", reply.body);
    assert!(
        details["position"]
            .as_u64()
            .is_some_and(|p| p >= position && p < far),
        "{}",
        reply.body
    );

    // The same by POST; and a header that is not a number is the client's mistake.
    let reply = host
        .query_post(
            "totals",
            &json!({}),
            &[
                ("tessera-min-position", far.to_string()),
                ("tessera-max-wait", "200".to_string()),
            ],
        )
        .await
        .expect("query sent");
    reply.assert_error(503, "stale");
    assert!(reply.header("retry-after").is_some());
    let reply = get(
        &host,
        "account",
        "id=st",
        &[("tessera-min-position", "soon".into())],
    )
    .await;
    reply.assert_error(400, "bad_request");

    // A position already reached answers at once.
    let reply = get(
        &host,
        "account",
        "id=st",
        &[
            ("tessera-min-position", position.to_string()),
            ("tessera-max-wait", "200".to_string()),
        ],
    )
    .await;
    assert_eq!(reply.ok()["owner"], "ada");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_answer_by_get_and_post_and_refuse_clearly() {
    let host = start().await;
    command(&host, "open-account", "gp", json!({ "owner": "ada" })).await;
    let last = position_of(&command(&host, "deposit", "gp", json!({ "amount": 12 })).await);
    let at = [("tessera-min-position", last.to_string())];

    let by_post = host
        .query_post("totals", &json!({}), &at)
        .await
        .expect("post");
    assert_eq!(by_post.ok()["open_accounts"], 1, "{}", by_post.body);
    assert_eq!(by_post.ok()["total_balance"], 12, "{}", by_post.body);
    let by_get = get(&host, "totals", "", &at).await;
    assert_eq!(by_get.ok(), by_post.ok());
    assert!(
        by_post
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );

    let account = host
        .query_post("account", &json!({ "id": "gp" }), &[])
        .await
        .expect("post");
    assert_eq!(account.ok()["balance"], 12, "{}", account.body);
    assert_eq!(account.ok()["id"], "gp", "{}", account.body);

    get(&host, "no-such-query", "", &[])
        .await
        .assert_error(404, "unknown_query");
    host.query_post("no-such-query", &json!({}), &[])
        .await
        .expect("post")
        .assert_error(404, "unknown_query");

    let missing = get(&host, "account", "", &[]).await;
    missing.assert_error(422, "validation_failed");
    assert!(
        missing.body["error"]["details"]["id"].is_string(),
        "{}",
        missing.body
    );
    get(&host, "account", "id=nobody", &[])
        .await
        .assert_error(404, "not_found");
    get(&host, "accounts", "limit=0", &[])
        .await
        .assert_error(422, "validation_failed");
    get(&host, "accounts", "cursor=zz", &[])
        .await
        .assert_error(422, "validation_failed");
    host.query_post("totals", &json!([1, 2]), &[])
        .await
        .expect("post")
        .assert_error(400, "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn totals_add_up_the_commands_sent() {
    let host = start().await;
    let mut deposits = (0i64, 0i64);
    let mut withdrawals = (0i64, 0i64);
    let mut last = 0;
    for i in 0..6i64 {
        let id = format!("t{i}");
        command(
            &host,
            "open-account",
            &id,
            json!({ "owner": format!("owner {i}") }),
        )
        .await;
        for amount in [100 + i, 7 * i + 1] {
            last = position_of(&command(&host, "deposit", &id, json!({ "amount": amount })).await);
            deposits.0 += amount;
            deposits.1 += 1;
        }
        if i % 2 == 0 {
            let amount = 50 + i;
            last = position_of(&command(&host, "withdraw", &id, json!({ "amount": amount })).await);
            withdrawals.0 += amount;
            withdrawals.1 += 1;
        }
    }
    // A refused withdrawal moves nothing.
    let refused = host
        .send(
            "withdraw",
            &json!({ "aggregate_id": "t1", "payload": { "amount": 1_000_000 } }),
            &[],
        )
        .await
        .expect("sent");
    refused.assert_error(422, "rejected");

    let reply = host.query_at("totals", "", last).await.expect("totals");
    let totals = reply.ok();
    assert_eq!(totals["open_accounts"], 6, "{totals}");
    assert_eq!(
        totals["total_balance"],
        deposits.0 - withdrawals.0,
        "{totals}"
    );

    // Per day: the days are those of the events' timestamps (a run may straddle
    // midnight UTC), and the sums over the days are what was sent.
    let log = host.read_log().await.expect("log");
    let ledger = Ledger::from_log(&log, u64::MAX).expect("ledger");
    let days: BTreeMap<String, (i64, i64, i64, i64)> = totals["days"]
        .as_array()
        .expect("days")
        .iter()
        .map(|d| {
            (
                d["day"].as_str().expect("day").to_string(),
                (
                    d["deposits"].as_i64().expect("deposits"),
                    d["deposit_count"].as_i64().expect("deposit_count"),
                    d["withdrawals"].as_i64().expect("withdrawals"),
                    d["withdrawal_count"].as_i64().expect("withdrawal_count"),
                ),
            )
        })
        .collect();
    assert_eq!(days, ledger.days, "{totals}");
    let sum = days.values().fold((0, 0, 0, 0), |acc, d| {
        (acc.0 + d.0, acc.1 + d.1, acc.2 + d.2, acc.3 + d.3)
    });
    assert_eq!(sum, (deposits.0, deposits.1, withdrawals.0, withdrawals.1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_query_cache_hits_until_a_command_moves_the_read_models() {
    let host = start().await;
    command(&host, "open-account", "c1", json!({ "owner": "ada" })).await;
    command(&host, "deposit", "c1", json!({ "amount": 10 })).await;
    // Every projection at the head: nothing moves the checkpoints between the asks.
    host.wait_live(&["account-balance", "bank-totals"])
        .await
        .expect("live");

    let first = get(&host, "account", "id=c1", &[]).await;
    assert_eq!(first.header("tessera-cache"), Some("miss"));
    let second = get(&host, "account", "id=c1", &[]).await;
    assert_eq!(second.header("tessera-cache"), Some("hit"));
    assert_eq!(first.ok(), second.ok());
    assert_eq!(
        first.header("tessera-position"),
        second.header("tessera-position")
    );

    // Any command moves the checkpoints: the cached answer is out of reach.
    command(&host, "deposit", "c1", json!({ "amount": 5 })).await;
    let third = get(&host, "account", "id=c1", &[]).await;
    assert_eq!(third.header("tessera-cache"), Some("miss"));
    assert_eq!(third.ok()["balance"], 15, "{}", third.body);

    let listed = host.get("/queries").await.expect("GET /queries");
    assert_eq!(listed.0, 200, "{}", listed.1);
    let queries = listed.1["queries"].as_array().expect("queries");
    let names: BTreeSet<&str> = queries.iter().filter_map(|q| q["name"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(["account", "accounts", "totals"]));
    let account = queries
        .iter()
        .find(|q| q["name"] == "account")
        .expect("account listed");
    assert_eq!(account["plugin"], "bank-queries", "{account}");
    assert_eq!(account["cache"]["hits"], 1, "{account}");
    assert_eq!(account["cache"]["misses"], 2, "{account}");
    let reads: BTreeSet<&str> = account["reads"]
        .as_array()
        .expect("reads")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(reads, BTreeSet::from(["account-balance", "bank-totals"]));
    let accounts = queries
        .iter()
        .find(|q| q["name"] == "accounts")
        .expect("listed");
    assert_eq!(accounts["cache"], json!({ "hits": 0, "misses": 0 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_on_one_answer_make_one_call() {
    let host = start().await;
    command(&host, "open-account", "sf", json!({ "owner": "ada" })).await;
    host.wait_live(&["account-balance", "bank-totals"])
        .await
        .expect("live");
    // Many clients ask the same uncached question at once: one of them calls the
    // handler, the others wait for its answer (single flight).
    let asks: Vec<_> = (0..24).map(|_| get(&host, "totals", "", &[])).collect();
    let replies = futures::future::join_all(asks).await;
    let first = replies[0].ok().clone();
    for reply in &replies {
        assert_eq!(reply.ok(), &first);
    }
    let misses = replies
        .iter()
        .filter(|r| r.header("tessera-cache") == Some("miss"))
        .count();
    assert_eq!(misses, 1, "every ask but one is answered by the one call");
    let listed = host.get("/queries").await.expect("GET /queries");
    let totals = listed.1["queries"]
        .as_array()
        .expect("queries")
        .iter()
        .find(|q| q["name"] == "totals")
        .cloned()
        .expect("totals listed");
    assert_eq!(
        totals["cache"],
        json!({ "hits": 23, "misses": 1 }),
        "{totals}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projections_are_listed_with_their_progress() {
    let host = start().await;
    for i in 0..5 {
        command(
            &host,
            "open-account",
            &format!("p{i}"),
            json!({ "owner": "ada" }),
        )
        .await;
    }
    let listed = host.projections().await.expect("projections");
    assert_eq!(listed.len(), 2, "{listed:#?}");
    for (name, mode) in [("account-balance", "inline"), ("bank-totals", "async")] {
        let p = projection(&listed, name).unwrap_or_else(|| panic!("{name} listed"));
        assert_eq!(p["version"], 1, "{p}");
        assert_eq!(p["mode"], mode, "{p}");
        assert!(
            ["starting", "catching_up", "live", "failed"]
                .contains(&p["status"].as_str().unwrap_or("")),
            "{p}"
        );
        let checkpoint = p["checkpoint"].as_u64().expect("checkpoint");
        let head = p["head"].as_u64().expect("head");
        assert!(head >= 5 && checkpoint <= head, "{p}");
        assert_eq!(p["lag_events"].as_u64(), Some(head - checkpoint), "{p}");
        assert!(p["lag_ms"].is_u64(), "{p}");
    }
    // The inline projection already holds every acknowledged command.
    let inline = projection(&listed, "account-balance").expect("listed");
    assert!(inline["checkpoint"].as_u64() >= Some(5), "{inline}");

    let live = host
        .wait_live(&["account-balance", "bank-totals"])
        .await
        .expect("live");
    for p in &live {
        assert_eq!(p["checkpoint"], p["head"], "{p}");
        assert_eq!(p["lag_events"], 0, "{p}");
        assert_eq!(p["lag_ms"], 0, "{p}");
        assert!(p.get("error").is_none(), "{p}");
    }
}

/// Pages through `accounts?limit=7` while another task deposits into the accounts
/// (reordering them) and opens new ones. The walk reads as of the position of its
/// first page: every account that existed before it appears exactly once, the order
/// holds across pages, and the whole walk is the bank as of one log position.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_sees_every_account_once_while_balances_move() {
    let host = start().await;
    let ids: Vec<String> = (0..120).map(|i| format!("acct-{i:03}")).collect();
    // Open them from a few tasks at once, with balances that tie now and then.
    let tasks: Vec<_> = (0..6)
        .map(|task| {
            let client = host.client.clone();
            let url = host.url.clone();
            let mine: Vec<(usize, String)> = ids
                .iter()
                .cloned()
                .enumerate()
                .filter(|(i, _)| i % 6 == task)
                .collect();
            tokio::spawn(async move {
                for (i, id) in mine {
                    let open =
                        json!({ "aggregate_id": id, "payload": { "owner": format!("owner {i}") } });
                    let reply = Api::of(&client, &url)
                        .send("open-account", &open, &[])
                        .await
                        .expect("open");
                    assert_eq!(reply.status, 200, "{}", reply.body);
                    let amount = (i * 37 % 25) * 10;
                    if amount > 0 {
                        let deposit =
                            json!({ "aggregate_id": id, "payload": { "amount": amount } });
                        let reply = Api::of(&client, &url)
                            .send("deposit", &deposit, &[])
                            .await
                            .expect("deposit");
                        assert_eq!(reply.status, 200, "{}", reply.body);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("opening task");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let writer = {
        let (client, url) = (host.client.clone(), host.url.clone());
        let (stop, done, ids) = (stop.clone(), done.clone(), ids.clone());
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(7);
            let mut opened = 0;
            for n in 0..5000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let body = if n % 5 == 4 {
                    opened += 1;
                    (
                        "open-account",
                        json!({ "aggregate_id": format!("new-{opened:03}"), "payload": { "owner": "late" } }),
                    )
                } else {
                    let id = &ids[rng.usize(..ids.len())];
                    (
                        "deposit",
                        json!({ "aggregate_id": id, "payload": { "amount": rng.u64(1..=300) } }),
                    )
                };
                let reply = Api::of(&client, &url)
                    .send(body.0, &body.1, &[])
                    .await
                    .expect("concurrent command");
                assert_eq!(reply.status, 200, "{}", reply.body);
                done.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let mut walk: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 200, "the walk does not end");
        let query = match &cursor {
            None => "limit=7".to_string(),
            Some(cursor) => format!("limit=7&cursor={cursor}"),
        };
        let reply = get(&host, "accounts", &query, &[]).await;
        let page = reply.ok();
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 7, "{page}");
        walk.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        // Let a few commands land between every two pages (bounded: a writer stuck
        // for this long means a broken host, and the count below says so).
        let target = done.load(Ordering::Relaxed) + 3;
        for _ in 0..4000 {
            if done.load(Ordering::Relaxed) >= target {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let moved = done.load(Ordering::Relaxed);
    assert!(
        moved >= 3 * (pages - 1),
        "only {moved} commands during {pages} pages"
    );

    // Every account that existed before the walk, exactly once; nothing twice.
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for item in &walk {
        *count.entry(item["id"].as_str().expect("id")).or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "accounts seen twice: {twice:?}");
    let missing: Vec<_> = ids
        .iter()
        .filter(|id| !count.contains_key(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "accounts the walk missed: {missing:?}");

    // In order across pages: balance descending, then id ascending.
    for pair in walk.windows(2) {
        let key = |item: &Value| {
            (
                -item["balance"].as_i64().expect("balance"),
                item["id"].as_str().expect("id").to_string(),
            )
        };
        assert!(
            key(&pair[0]) < key(&pair[1]),
            "out of order: {} then {}",
            pair[0],
            pair[1]
        );
    }

    // The walk is the bank as of one log position, while the log went on past it.
    let seen: BTreeMap<String, i64> = walk
        .iter()
        .map(|item| {
            (
                item["id"].as_str().expect("id").to_string(),
                item["balance"].as_i64().expect("balance"),
            )
        })
        .collect();
    let log = host.read_log().await.expect("log");
    let mut ledger = Ledger::default();
    let mut matched = None;
    for event in &log {
        ledger.fold(event).expect("fold");
        if ledger.balances() == seen {
            matched = event["position"].as_u64();
        }
    }
    let matched = matched.expect("the walk matches no position of the log");
    let last = log
        .last()
        .and_then(|e| e["position"].as_u64())
        .expect("log");
    assert!(
        matched < last,
        "the writes during the walk are in the log after {matched}"
    );
}
