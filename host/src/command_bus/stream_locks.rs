//! One lock per stream, so that commands to the same aggregate in this host take
//! turns instead of racing and retrying. Commands to different streams run in
//! parallel. Other writers (another host on the same store) are still handled by
//! optimistic concurrency and retry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Entries kept before dead locks are swept out.
const SWEEP_AT: usize = 4096;

#[derive(Debug, Default)]
pub struct StreamLocks {
    locks: Mutex<HashMap<String, Weak<AsyncMutex<()>>>>,
}

impl StreamLocks {
    /// Waits for the stream's turn; the turn lasts as long as the guard.
    pub async fn lock(&self, stream: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().expect("stream locks");
            if locks.len() >= SWEEP_AT {
                locks.retain(|_, lock| lock.strong_count() > 0);
            }
            match locks.get(stream).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(AsyncMutex::new(()));
                    locks.insert(stream.to_string(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}
