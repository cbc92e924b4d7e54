//! Queries: routing to query handlers, freshness, and the result cache.
//!
//! Every answer says how fresh it is: the lowest checkpoint among the projections the
//! handler reads (taken before it reads, so the data is at least that fresh) and the
//! write store's head. A caller that needs its own writes names a position; the query
//! waits, up to a bound, for the projections to reach it, and past the bound fails
//! as stale rather than answer with older data.
//!
//! Results are cached by query, parameters, handler code and the checkpoints of the
//! projections read: a checkpoint that advances makes the entry unreachable, so the
//! cache never serves data older than the freshness it reports.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::event_store::EventStore;
use crate::plugin::{CallError, Plugins, Refusal};
use crate::projection::{Projections, wait_all};

/// How often a query waiting for a projection to become readable looks again.
const READY_POLL: Duration = Duration::from_millis(10);
/// The most bytes of answers kept; the least recently used go first.
const CACHE_BYTES: usize = 64 << 20;
/// Answers larger than this are not cached: one would crowd out many small ones.
const CACHE_LARGEST: usize = 1 << 20;

/// An answer and how fresh it is.
#[derive(Debug, Clone)]
pub struct Answer {
    pub body: Arc<RawValue>,
    /// The log position the read models behind the answer have reached.
    pub position: u64,
    /// The write store's head when the query ran.
    pub head: u64,
    pub cached: bool,
}

/// Why a query was not answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    /// No handler answers this query name.
    #[error("no plugin answers the query {0:?}")]
    UnknownQuery(String),
    /// A projection the handler reads is not running (not deployed, or not set up
    /// yet). Retry later or deploy it.
    #[error("projection {0:?} is not available")]
    ProjectionUnavailable(String),
    /// The projections did not reach `min_position` within the wait bound.
    #[error("the read models are at position {position}, not yet at {min_position}")]
    Stale { min_position: u64, position: u64 },
    /// The handler refused the parameters.
    #[error("the query was refused")]
    Refused(Refusal),
    /// The handler failed (trap, deadline, bad output).
    #[error(transparent)]
    Plugin(#[from] CallError),
}

/// Hit and miss counts of one query's cache.
#[derive(Debug, Default, Serialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    query: String,
    params: String,
    digest: String,
    /// The version of each projection read, its revision and its checkpoint.
    checkpoints: Vec<(crate::projection::VersionKey, u64, u64)>,
}

/// Cached answers, bounded in bytes (answers and keys), least recently used out
/// first. Concurrent misses on one key are answered by one call (single flight).
type Cache = moka::future::Cache<CacheKey, Arc<RawValue>>;

fn new_cache() -> Cache {
    moka::future::Cache::builder()
        .max_capacity(CACHE_BYTES as u64)
        .weigher(|key: &CacheKey, body: &Arc<RawValue>| {
            let bytes = 64 + key.query.len() + key.params.len() + body.get().len();
            u32::try_from(bytes).unwrap_or(u32::MAX)
        })
        .build()
}

/// Answers queries.
#[derive(Debug)]
pub struct Queries {
    store: Arc<dyn EventStore>,
    plugins: Arc<Plugins>,
    projections: Arc<Projections>,
    cache: Cache,
    counters: Mutex<HashMap<String, Arc<Counters>>>,
}

impl Queries {
    pub fn new(
        store: Arc<dyn EventStore>,
        plugins: Arc<Plugins>,
        projections: Arc<Projections>,
    ) -> Self {
        Queries {
            store,
            plugins,
            projections,
            cache: new_cache(),
            counters: Mutex::default(),
        }
    }

    /// Answers query `name` with `params`, at least as fresh as `min_position` (waiting
    /// up to `max_wait` for it).
    pub async fn ask(
        &self,
        name: &str,
        params: Map<String, Value>,
        min_position: Option<u64>,
        max_wait: Duration,
    ) -> Result<Answer, QueryError> {
        let catalog = self.plugins.catalog();
        let route = catalog
            .query(name)
            .ok_or_else(|| QueryError::UnknownQuery(name.to_string()))?
            .clone();
        let access = self.read_access(&route.reads, max_wait).await?;
        if let Some(min_position) = min_position {
            let checkpoints = access.iter().map(|a| a.checkpoint.clone()).collect();
            if !wait_all(checkpoints, min_position, max_wait).await {
                return Err(QueryError::Stale {
                    min_position,
                    position: lowest(&access),
                });
            }
        }
        let head = *self.store.head().borrow();
        let checkpoints: Vec<_> = access
            .iter()
            .map(|a| (a.key, a.revision, *a.checkpoint.borrow()))
            .collect();
        let position = checkpoints.iter().map(|(_, _, at)| *at).min().unwrap_or(0);
        // serde_json's map keeps keys sorted, so equal parameters give equal text.
        let params = Value::Object(params).to_string();
        let key = CacheKey {
            query: name.to_string(),
            params: params.clone(),
            digest: route.digest.clone(),
            checkpoints,
        };
        let counters = self.counters(name);
        let handler = route.handler.clone();
        let query = name.to_string();
        let reads: Vec<_> = access.into_iter().map(|a| (a.name, a.pool)).collect();
        let plugin = route.plugin.clone();
        let call = async move {
            // A client that goes away drops this future: the guard then ends the call,
            // and with it any statement it runs, instead of leaving it to its deadline.
            // (Another caller waiting on the same answer then makes the call itself.)
            let abandoned = crate::plugin::Abandon::default();
            let flag = abandoned.flag();
            // The plugin's log lines name the request that made the call.
            let request_id = crate::request_id::current();
            let answer = tokio::task::spawn_blocking(move || {
                crate::request_id::carry(request_id, || handler.call(&query, &params, reads, flag))
            })
            .await
            .map_err(|e| CallError::Trapped {
                plugin,
                reason: format!("host task failed: {e}"),
            })??;
            drop(abandoned);
            answer
                .map(Arc::<RawValue>::from)
                .map_err(QueryError::Refused)
        };
        let entry = self
            .cache
            .entry(key.clone())
            .or_try_insert_with(call)
            .await
            .map_err(Arc::unwrap_or_clone)?;
        let cached = !entry.is_fresh();
        let body = entry.into_value();
        if cached {
            counters.hits.fetch_add(1, Ordering::Relaxed);
        } else {
            counters.misses.fetch_add(1, Ordering::Relaxed);
            if body.get().len() > CACHE_LARGEST {
                // One large answer would crowd out many small ones.
                self.cache.invalidate(&key).await;
            }
        }
        Ok(Answer {
            body,
            position,
            head: head.max(position),
            cached,
        })
    }

    /// Read access to `names`, waiting up to `max_wait` for projections that are still
    /// opening or running their setup (right after a start or a deploy), so that a
    /// query then is answered late rather than refused.
    async fn read_access(
        &self,
        names: &[String],
        max_wait: Duration,
    ) -> Result<Vec<crate::projection::ReadAccess>, QueryError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            match self.projections.read_access(names) {
                Ok(access) => return Ok(access),
                Err(name)
                    if tokio::time::Instant::now() >= deadline
                        || !self.projections.starting(&name) =>
                {
                    return Err(QueryError::ProjectionUnavailable(name));
                }
                Err(_) => tokio::time::sleep(READY_POLL).await,
            }
        }
    }

    /// Cache hits and misses per query name.
    pub fn cache_stats(&self) -> HashMap<String, CacheStats> {
        self.counters
            .lock()
            .expect("counters lock")
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    CacheStats {
                        hits: c.hits.load(Ordering::Relaxed),
                        misses: c.misses.load(Ordering::Relaxed),
                    },
                )
            })
            .collect()
    }

    fn counters(&self, name: &str) -> Arc<Counters> {
        self.counters
            .lock()
            .expect("counters lock")
            .entry(name.to_string())
            .or_default()
            .clone()
    }
}

fn lowest(access: &[crate::projection::ReadAccess]) -> u64 {
    access
        .iter()
        .map(|a| *a.checkpoint.borrow())
        .min()
        .unwrap_or(0)
}
