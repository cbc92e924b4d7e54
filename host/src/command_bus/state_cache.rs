//! Aggregate states kept between commands, so a command folds only the events that
//! arrived since the last one instead of the whole stream.
//!
//! An entry is tagged with the digest of the code that folded it: after a plugin's
//! code changes, its old states are misses and are folded again from the start.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

/// A stream's state as a handler folded it.
#[derive(Debug, Clone)]
pub struct CachedState {
    pub digest: String,
    /// The stream version the state includes.
    pub version: u64,
    /// None before the first event.
    pub state: Option<Arc<str>>,
}

/// A bounded cache of aggregate states, least recently used out first.
#[derive(Debug)]
pub struct StateCache {
    entries: Mutex<LruCache<String, CachedState>>,
}

impl StateCache {
    pub fn new(capacity: usize) -> Self {
        StateCache {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// The state of `stream` folded by code `digest`, or an empty state at version 0.
    pub fn get(&self, stream: &str, digest: &str) -> CachedState {
        let mut entries = self.entries.lock().expect("state cache lock");
        match entries.get(stream) {
            Some(entry) if entry.digest == digest => entry.clone(),
            _ => CachedState {
                digest: digest.to_string(),
                version: 0,
                state: None,
            },
        }
    }

    pub fn put(&self, stream: String, entry: CachedState) {
        let mut entries = self.entries.lock().expect("state cache lock");
        // Two hosts may fold the same stream; never replace a newer state with an older.
        if let Some(existing) = entries.peek(&stream)
            && existing.digest == entry.digest
            && existing.version > entry.version
        {
            return;
        }
        entries.put(stream, entry);
    }
}
