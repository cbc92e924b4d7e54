//! The PostgreSQL server the tests of the PostgreSQL event store use: the one `make
//! postgres` starts, or the one `TESSERA_TEST_POSTGRES` names. Every test gets a
//! database of its own, so tests run in parallel on one server; a server that cannot
//! be reached fails the test with what to do, rather than skipping it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::NoTls;

/// The server `make postgres` starts (tests/postgres/start.sh prints the same URL).
pub const DEFAULT_SERVER: &str = "postgres://tessera@127.0.0.1:55432/postgres";
/// Test databases older than this are dropped by the next test that makes one: a test
/// process leaves its databases behind (it may be killed), and nothing else cleans up.
const STALE: Duration = Duration::from_secs(3600);
/// The name every test database starts with.
const PREFIX: &str = "tessera_test_";

/// The URL of the server the tests use (`TESSERA_TEST_POSTGRES`, else
/// [`DEFAULT_SERVER`]), naming its maintenance database.
pub fn server_url() -> String {
    std::env::var("TESSERA_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_SERVER.to_string())
}

/// True when the test kit should start its hosts on PostgreSQL
/// (`TESSERA_TEST_STORE=postgres`, as `make test-postgres` runs the command-path and
/// read-side tests).
pub fn hosts_on_postgres() -> bool {
    std::env::var("TESSERA_TEST_STORE").is_ok_and(|store| store == "postgres")
}

/// Creates an empty database on the test server and returns its URL. Panics, saying to
/// run `make postgres`, when the server cannot be reached.
pub async fn fresh_database() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let server = server_url();
    let (client, connection) = match tokio_postgres::connect(&server, NoTls).await {
        Ok(connected) => connected,
        Err(error) => panic!(
            "the test PostgreSQL at {server} is unreachable ({error}): run `make postgres` \
             (or set TESSERA_TEST_POSTGRES to a server where this user may create databases)"
        ),
    };
    let driving = tokio::spawn(connection);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    drop_stale(&client, now).await;
    let name = format!(
        "{PREFIX}{now}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|error| panic!("cannot create database {name} on {server}: {error}"));
    drop(client);
    let _ = driving.await;
    database_url(&server, &name)
}

/// `server` with its database replaced by `name`.
pub fn database_url(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (server, String::new()),
    };
    let authority_end = base
        .find("://")
        .map(|scheme| scheme + 3)
        .and_then(|start| base[start..].find('/').map(|slash| start + slash))
        .unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..authority_end])
}

/// Drops the test databases made more than [`STALE`] ago (their names carry the
/// second they were made). Best effort: another test may be dropping them too.
async fn drop_stale(client: &tokio_postgres::Client, now: u64) {
    let Ok(rows) = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE $1",
            &[&format!("{PREFIX}%")],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let made = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if made.is_some_and(|made| made + STALE.as_secs() < now) {
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}
