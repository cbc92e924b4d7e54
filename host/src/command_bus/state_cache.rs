//! Aggregate states kept between commands, so a command folds only the events that
//! arrived since the last one instead of the whole stream.
//!
//! An entry is tagged with the digest of the code that folded it: after a plugin's
//! code changes, its old states are misses and are folded again from the start.
//! The cache is bounded both in entries and in bytes: least recently used states go
//! first, and a state larger than a sixteenth of the byte bound is never kept, so a
//! plugin with huge states costs folds, not the host's memory.

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
    /// The version of the latest snapshot kept of this stream (0: none).
    pub snapshot: u64,
}

impl CachedState {
    /// What the entry costs the host, roughly.
    fn bytes(&self, stream: &str) -> usize {
        const OVERHEAD: usize = 96;
        OVERHEAD + stream.len() + self.digest.len() + self.state.as_deref().map_or(0, str::len)
    }
}

/// A bounded cache of aggregate states, least recently used out first.
#[derive(Debug)]
pub struct StateCache {
    inner: Mutex<Entries>,
    max_bytes: usize,
}

#[derive(Debug)]
struct Entries {
    lru: LruCache<String, CachedState>,
    bytes: usize,
}

impl StateCache {
    /// A cache of at most `capacity` states and `max_bytes` bytes.
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        StateCache {
            inner: Mutex::new(Entries {
                lru: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)),
                bytes: 0,
            }),
            max_bytes,
        }
    }

    /// The state of `stream` folded by code `digest`, or an empty state at version 0.
    pub fn get(&self, stream: &str, digest: &str) -> CachedState {
        let mut inner = self.inner.lock().expect("state cache lock");
        match inner.lru.get(stream) {
            Some(entry) if entry.digest == digest => entry.clone(),
            _ => CachedState {
                digest: digest.to_string(),
                version: 0,
                state: None,
                snapshot: 0,
            },
        }
    }

    pub fn put(&self, stream: String, entry: CachedState) {
        let mut inner = self.inner.lock().expect("state cache lock");
        // Two hosts may fold the same stream; never replace a newer state with an older.
        if let Some(existing) = inner.lru.peek(&stream)
            && existing.digest == entry.digest
            && existing.version > entry.version
        {
            return;
        }
        if let Some(old) = inner.lru.pop(&stream) {
            inner.bytes -= old.bytes(&stream);
        }
        let bytes = entry.bytes(&stream);
        if bytes > self.max_bytes / 16 {
            return;
        }
        while inner.bytes + bytes > self.max_bytes {
            match inner.lru.pop_lru() {
                Some((key, old)) => inner.bytes -= old.bytes(&key),
                None => break,
            }
        }
        inner.bytes += bytes;
        if let Some((key, old)) = inner.lru.push(stream, entry) {
            // The entry bound pushed out the least recently used state.
            inner.bytes -= old.bytes(&key);
        }
    }

    /// The bytes held now.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.inner.lock().expect("state cache lock").bytes
    }
}

#[cfg(test)]
mod tests {
    use super::{CachedState, StateCache};

    fn state(text: &str, version: u64) -> CachedState {
        CachedState {
            digest: "d".into(),
            version,
            state: Some(text.into()),
            snapshot: 0,
        }
    }

    #[test]
    fn holds_no_more_bytes_than_its_bound() {
        let cache = StateCache::new(1000, 64 << 10);
        for n in 0..200 {
            cache.put(format!("s{n}"), state(&"x".repeat(3000), 1));
            assert!(cache.bytes() <= 64 << 10);
        }
        // The most recent states are kept, the oldest went.
        assert_eq!(cache.get("s199", "d").version, 1);
        assert_eq!(cache.get("s0", "d").version, 0);
    }

    #[test]
    fn never_keeps_a_state_too_large_for_it() {
        let cache = StateCache::new(1000, 64 << 10);
        cache.put("small".into(), state("{}", 1));
        cache.put("big".into(), state(&"x".repeat(8 << 10), 2));
        assert_eq!(cache.get("big", "d").version, 0);
        assert_eq!(cache.get("small", "d").version, 1);
        // Replacing an entry with a too-large state forgets the old one too.
        cache.put("small".into(), state(&"x".repeat(8 << 10), 2));
        assert_eq!(cache.get("small", "d").version, 0);
        assert!(cache.bytes() < 200);
    }

    #[test]
    fn counts_entries_pushed_out_by_the_entry_bound() {
        let cache = StateCache::new(2, 1 << 20);
        for n in 0..10 {
            cache.put(format!("s{n}"), state("{}", 1));
        }
        let one = state("{}", 1).bytes("s0");
        assert_eq!(cache.bytes(), 2 * one);
    }
}
