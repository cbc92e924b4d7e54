//! Command handler and query handler instances are reused, within the rules: an
//! instance serves several calls of its own plugin version only, a failed instance is
//! never called again, and a plugin can be made to get a fresh instance for every call.
//!
//! The test plugins' `count` command and `rogue-count` and `count-calls` queries report
//! a global counter of the instance they ran in: 1 means a fresh instance, n means the
//! instance's n-th count. Each query is asked with its own `n`, so no answer comes from
//! the host's query cache.

use crate::common::{Reply, TestHost, plugins, test_dir};
use anyhow::Result;
use serde_json::json;
use tessera::plugin::PluginLimits;

const ROGUE: &str = "test-rogue-commands";

async fn count(host: &TestHost, id: &str) -> u64 {
    let Reply { status, body, .. } = host.command("count", id, json!({})).await.expect("count");
    assert_eq!(status, 200, "{body}");
    body["events"][0]["data"]["calls"]
        .as_u64()
        .unwrap_or_else(|| panic!("no count in {body}"))
}

async fn start(configure: impl FnOnce(&mut tessera::Config)) -> Result<TestHost> {
    let dir = test_dir(&[plugins::TEST_ROGUE_COMMANDS])?;
    TestHost::start_configured(dir, configure).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_serves_several_commands_and_a_failed_one_is_never_called_again() -> Result<()>
{
    let host = start(|_| {}).await?;
    // One command at a time: each finds the instance the last one left.
    assert_eq!(count(&host, "a").await, 1);
    assert_eq!(count(&host, "b").await, 2);
    assert_eq!(count(&host, "c").await, 3);

    // A trap in that instance: it is dropped, and the next command gets a fresh one.
    let Reply { status, body, .. } = host.command("panic", "d", json!({})).await?;
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        count(&host, "e").await,
        1,
        "the trapped instance served again"
    );
    assert_eq!(count(&host, "f").await, 2);

    // A deadline is a failure too.
    let Reply { status, body, .. } = host.command("spin", "g", json!({})).await?;
    assert_eq!(status, 504, "{body}");
    assert_eq!(
        count(&host, "h").await,
        1,
        "the timed-out instance served again"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_of_a_plugin_never_gets_the_old_versions_instances() -> Result<()> {
    let mut host = start(|_| {}).await?;
    assert_eq!(count(&host, "a").await, 1);
    assert_eq!(count(&host, "b").await, 2);

    // The same code with other bytes (a custom section appended) is another version.
    let mut bytes = std::fs::read(plugins::TEST_ROGUE_COMMANDS)?;
    bytes.extend(custom_section("tessera-test", b"version two"));
    let reply = host.deploy(ROGUE, bytes, None).await?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        count(&host, "c").await,
        1,
        "the new version ran in an old instance"
    );
    assert_eq!(count(&host, "d").await, 2);

    // And after a restart, nothing is carried over either.
    host = host.restart().await?;
    assert_eq!(count(&host, "e").await, 1);
    host.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_can_be_turned_off_for_one_plugin_or_bounded() -> Result<()> {
    let fresh = start(|config| {
        config.limits.per_plugin.insert(
            ROGUE.into(),
            PluginLimits {
                reuse: Some(0),
                ..PluginLimits::default()
            },
        );
    })
    .await?;
    for id in ["a", "b", "c"] {
        assert_eq!(count(&fresh, id).await, 1, "reuse=0 reused an instance");
    }

    // At most three commands per instance.
    let bounded = start(|config| config.limits.instance_reuse = 3).await?;
    let counts: Vec<u64> = {
        let mut counts = Vec::new();
        for n in 0..7 {
            counts.push(count(&bounded, &format!("n{n}")).await);
        }
        counts
    };
    assert_eq!(counts, vec![1, 2, 3, 1, 2, 3, 1]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_instance_keeps_its_memory_bound() -> Result<()> {
    let host = start(|config| config.limits.max_memory = 32 << 20).await?;
    assert_eq!(count(&host, "a").await, 1);
    // Within the bound, twice on the same instance...
    for id in ["b", "c"] {
        let Reply { status, body, .. } = host.command("allocate", id, json!({"mb": 8})).await?;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(count(&host, "d").await, 2, "the instance was not reused");
    // ...and past it, on that instance, the call still fails.
    let Reply { status, body, .. } = host.command("allocate", "e", json!({"mb": 48})).await?;
    assert!(
        status >= 500,
        "48 MiB in a 32 MiB instance: {status} {body}"
    );
    assert_eq!(count(&host, "f").await, 1);
    Ok(())
}

const ROGUE_QUERY: &str = "test-rogue-query";

/// A host serving the bank's command handler and projection (the query handlers
/// declare that they read `account-balance`) and the two counting query handlers.
async fn query_host(configure: impl FnOnce(&mut tessera::Config)) -> Result<TestHost> {
    let dir = test_dir(&[
        plugins::BANK_ACCOUNT,
        plugins::ACCOUNT_BALANCE,
        plugins::TEST_ROGUE_QUERY,
        plugins::TEST_COUNT_QUERY,
    ])?;
    let host = TestHost::start_configured(dir, configure).await?;
    host.wait_live_at_head("account-balance").await;
    Ok(host)
}

/// Asks `query` (`rogue-count` or `count-calls`) with a parameter no other request of
/// the test uses, and returns the instance's count.
async fn count_query(host: &TestHost, query: &str, n: &mut u32) -> u64 {
    *n += 1;
    let reply = host
        .query(query, &format!("n={n}"), &[])
        .await
        .expect(query);
    let answer = reply.ok();
    answer["calls"]
        .as_u64()
        .unwrap_or_else(|| panic!("no count in {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_handler_instance_answers_several_queries_and_a_failed_one_is_never_called_again()
-> Result<()> {
    let mut host = query_host(|_| {}).await?;
    let n = &mut 0;
    // One query at a time: each finds the instance the last one left.
    assert_eq!(count_query(&host, "rogue-count", n).await, 1);
    assert_eq!(count_query(&host, "rogue-count", n).await, 2);
    assert_eq!(count_query(&host, "rogue-count", n).await, 3);

    // Another plugin has instances of its own: it never gets this one, and this one
    // is still there for its plugin afterwards.
    assert_eq!(count_query(&host, "count-calls", n).await, 1);
    assert_eq!(count_query(&host, "count-calls", n).await, 2);
    assert_eq!(count_query(&host, "rogue-count", n).await, 4);

    // A refusal is an answer: the instance stays.
    host.query("rogue-spin-for", "ms=abc", &[])
        .await?
        .assert_error(422, "validation_failed");
    assert_eq!(count_query(&host, "rogue-count", n).await, 5);

    // A trap drops the instance: the next query gets a fresh one.
    host.query("rogue-panic", "", &[])
        .await?
        .assert_error(500, "plugin_failed");
    assert_eq!(
        count_query(&host, "rogue-count", n).await,
        1,
        "the trapped instance answered again"
    );
    assert_eq!(count_query(&host, "rogue-count", n).await, 2);

    // A deadline is a failure too.
    host.query("rogue-spin", "", &[])
        .await?
        .assert_error(504, "deadline_exceeded");
    assert_eq!(
        count_query(&host, "rogue-count", n).await,
        1,
        "the timed-out instance answered again"
    );

    // So is an answer that is not JSON.
    host.query("rogue-bad-json", "", &[])
        .await?
        .assert_error(500, "plugin_failed");
    assert_eq!(count_query(&host, "rogue-count", n).await, 1);
    assert_eq!(count_query(&host, "rogue-count", n).await, 2);

    // The memory bound holds on a reused instance: growing past it fails the call,
    // and the instance goes with it.
    host.query("rogue-grow", "", &[])
        .await?
        .assert_error(500, "plugin_failed");
    assert_eq!(count_query(&host, "rogue-count", n).await, 1);

    // A new version of the plugin (the same code with other bytes) starts afresh...
    let mut bytes = std::fs::read(plugins::TEST_ROGUE_QUERY)?;
    bytes.extend(custom_section("tessera-test", b"version two"));
    let reply = host.deploy(ROGUE_QUERY, bytes, None).await?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        count_query(&host, "rogue-count", n).await,
        1,
        "the new version ran in an old instance"
    );
    assert_eq!(count_query(&host, "rogue-count", n).await, 2);
    // ...and so does a restarted host.
    host = host.restart().await?;
    host.wait_live_at_head("account-balance").await;
    assert_eq!(count_query(&host, "rogue-count", n).await, 1);
    host.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_handler_reuse_can_be_turned_off_for_one_plugin_or_bounded() -> Result<()> {
    let host = query_host(|config| {
        config.limits.per_plugin.insert(
            ROGUE_QUERY.into(),
            PluginLimits {
                reuse: Some(0),
                ..PluginLimits::default()
            },
        );
    })
    .await?;
    let n = &mut 0;
    for _ in 0..3 {
        assert_eq!(
            count_query(&host, "rogue-count", n).await,
            1,
            "reuse=0 reused an instance"
        );
    }
    // The other plugin still reuses its instances.
    assert_eq!(count_query(&host, "count-calls", n).await, 1);
    assert_eq!(count_query(&host, "count-calls", n).await, 2);

    // At most three queries per instance.
    let bounded = query_host(|config| config.limits.instance_reuse = 3).await?;
    let mut counts = Vec::new();
    for _ in 0..7 {
        counts.push(count_query(&bounded, "rogue-count", n).await);
    }
    assert_eq!(counts, vec![1, 2, 3, 1, 2, 3, 1]);
    Ok(())
}

/// A component custom section (id 0) named `name`.
fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut content = leb128(name.len());
    content.extend(name.as_bytes());
    content.extend(payload);
    let mut section = vec![0u8];
    section.extend(leb128(content.len()));
    section.extend(content);
    section
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}
