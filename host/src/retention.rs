//! Idempotency key retention: a background task that deletes keys older than
//! [`crate::Config::idempotency_retention`], so the table stops growing forever.
//!
//! Guarantees:
//! - A key is kept at least for the retention: a command sent again with it within
//!   that time is answered from the first one. After it, the key is deleted within
//!   one sweep interval (a tenth of the retention, between 100 ms and a minute), and
//!   the same key then names a new command.
//! - Deletions go through the store's writer, in its transaction order, a bounded
//!   number per transaction ([`BATCH`]), so a command waits for at most one small
//!   delete; a backlog (after downtime) is worked off in many such rounds.
//! - The task ends when its cancellation token is cancelled; [`spawn`]'s handle is
//!   awaited at shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::event_store::{EventStore, StoreError};

/// Keys deleted per writer transaction at most.
pub const BATCH: usize = 1000;
/// The pause between two bounded deletes of one sweep, so that commands get the
/// writer in between even when a large backlog is being worked off.
const BETWEEN_BATCHES: Duration = Duration::from_millis(10);

/// How often the store is swept for a given retention.
pub fn sweep_interval(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

/// Starts sweeping `store` for keys older than `retention` (zero: never), until
/// `stop` is cancelled. The first sweep runs at once, for what expired while the host
/// was down.
pub fn spawn(
    store: Arc<dyn EventStore>,
    retention: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if retention.is_zero() {
            return;
        }
        let interval = sweep_interval(retention);
        loop {
            match sweep(store.as_ref(), retention, &stop).await {
                Ok(0) => {}
                Ok(deleted) => tracing::debug!(deleted, "idempotency keys expired"),
                // The store is closing: so is the host.
                Err(StoreError::Closed) => return,
                Err(error) => {
                    tracing::warn!(%error, "idempotency keys not expired; next sweep retries")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = stop.cancelled() => return,
            }
        }
    })
}

/// Deletes every key older than `retention`, a batch at a time; returns how many.
async fn sweep(
    store: &dyn EventStore,
    retention: Duration,
    stop: &CancellationToken,
) -> Result<usize, StoreError> {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff = jiff::Timestamp::now()
        .as_millisecond()
        .saturating_sub(retention_ms);
    let mut total = 0;
    loop {
        let deleted = tokio::select! {
            deleted = store.expire_idempotency_keys(cutoff, BATCH) => deleted?,
            () = stop.cancelled() => return Ok(total),
        };
        total += deleted;
        if deleted < BATCH {
            return Ok(total);
        }
        tokio::select! {
            () = tokio::time::sleep(BETWEEN_BATCHES) => {}
            () = stop.cancelled() => return Ok(total),
        }
    }
}
