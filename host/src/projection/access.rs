//! What the read side asks of the projections: read access to the versions a query
//! reads (`name`, or `name@N` pinned to schema version N), whether a version is still
//! starting, and a command's wait for the inline projections.
//!
//! Guarantees: a query reads only a version whose database is set up (its worker is
//! ready); a command's response waits until every inline projection active at the end
//! of the wait holds its position, or says it did not, within the inline projections'
//! deadlines, and never waits for one that is failing.

use std::time::Duration;

use tokio::sync::watch;

use super::{Projections, ReadAccess, VersionKey};
use crate::plugin::ProjectionMode;

/// `name@N` is version N of `name`; a plain `name` is its active version, and so is
/// `name@` followed by anything that is not a version number.
fn parse_name(wanted: &str) -> (&str, Option<u32>) {
    match wanted.split_once('@') {
        Some((name, version)) => (name, version.parse::<u32>().ok()),
        None => (wanted, None),
    }
}

impl Projections {
    /// Read access to the named projections (`name` for the active version,
    /// `name@N` to pin schema version N), or the first name that has none.
    pub fn read_access(&self, names: &[String]) -> Result<Vec<ReadAccess>, String> {
        let inner = self.lock();
        names
            .iter()
            .map(|wanted| {
                let (name, pinned) = parse_name(wanted);
                let state = inner
                    .lifecycle
                    .projections
                    .get(name)
                    .ok_or_else(|| wanted.clone())?;
                let key = match pinned {
                    Some(version) => match state.active {
                        Some(active) if active.version == version => Some(active),
                        _ => state
                            .versions
                            .iter()
                            .filter(|r| r.key.version == version && r.rebuild_of.is_none())
                            .map(|r| r.key)
                            .max(),
                    },
                    None => state.active,
                }
                .ok_or_else(|| wanted.clone())?;
                let worker = inner
                    .workers
                    .get(&(name.to_string(), key))
                    .filter(|worker| worker.ready())
                    .ok_or_else(|| wanted.clone())?;
                Ok(ReadAccess {
                    name: wanted.clone(),
                    key,
                    revision: worker.revision(),
                    pool: worker.pool.clone(),
                    checkpoint: worker.checkpoint(),
                })
            })
            .collect()
    }

    /// Whether `name` (or `name@N`) has an active version that is not readable yet:
    /// its database is being opened or set up, or its worker is being replaced by one
    /// running new code.
    pub fn starting(&self, name: &str) -> bool {
        let (name, _) = parse_name(name);
        let inner = self.lock();
        let Some(key) = inner
            .lifecycle
            .projections
            .get(name)
            .and_then(|state| state.active)
        else {
            return false;
        };
        let id = (name.to_string(), key);
        inner.replacing.contains_key(&id)
            || inner.workers.get(&id).is_some_and(|worker| !worker.ready())
    }

    /// Waits until every active inline projection has applied the log up to
    /// `position`, or `timeout` passes. Returns whether they all got there.
    ///
    /// A command never waits longer than about the slowest inline projection's
    /// deadline (one batch's time), and not at all for one that is failing: a broken
    /// or hung inline projection makes responses say `lagging`, not slow.
    pub async fn wait_inline(&self, position: u64, timeout: Duration) -> bool {
        let started = tokio::time::Instant::now();
        // The active versions can change while waiting (a cutover): the answer is only
        // complete once the versions active at the end hold the position too.
        loop {
            // An inline projection whose worker is being replaced by new code has no
            // checkpoint to wait on for a moment; its successor starts from the
            // checkpoint, so wait for it within the same bound rather than answer
            // without it.
            let inline = match self.active_inline() {
                Ok(inline) => inline,
                Err(Replacing(deadline)) => {
                    if tokio::time::Instant::now()
                        >= started + (deadline + INLINE_SLACK).min(timeout)
                    {
                        return false;
                    }
                    tokio::time::sleep(REPLACING_POLL).await;
                    continue;
                }
            };
            if inline
                .iter()
                .any(|v| v.failing && *v.checkpoint.borrow() < position)
            {
                return false;
            }
            let bound = inline
                .iter()
                .map(|v| v.deadline + INLINE_SLACK)
                .max()
                .unwrap_or_default()
                .min(timeout);
            let left = (started + bound).saturating_duration_since(tokio::time::Instant::now());
            let keys: Vec<_> = inline.iter().map(|v| v.key.clone()).collect();
            let checkpoints = inline.into_iter().map(|v| v.checkpoint).collect();
            if !wait_all(checkpoints, position, left).await {
                return false;
            }
            // A replacement begun meanwhile is waited for on the next round.
            if let Ok(now) = self.active_inline()
                && now.into_iter().map(|v| v.key).eq(keys)
            {
                return true;
            }
        }
    }

    /// The active versions of inline projections, with their checkpoints; or, while
    /// the worker of any of them is being replaced by new code, the longest deadline
    /// of those being replaced.
    fn active_inline(&self) -> Result<Vec<InlineVersion>, Replacing> {
        let inner = self.lock();
        let mut versions = Vec::new();
        let mut replacing = None;
        for (name, state) in &inner.lifecycle.projections {
            let Some(key) = state.active else { continue };
            if !state
                .record(key)
                .is_some_and(|r| r.mode == ProjectionMode::Inline)
            {
                continue;
            }
            let id = (name.clone(), key);
            if let Some(deadline) = inner.replacing.get(&id) {
                replacing = replacing.max(Some(*deadline));
            } else if let Some(worker) = inner.workers.get(&id) {
                versions.push(InlineVersion {
                    checkpoint: worker.checkpoint(),
                    failing: worker.failing(),
                    deadline: worker.deadline,
                    key: id,
                });
            }
        }
        match replacing {
            Some(deadline) => Err(Replacing(deadline)),
            None => Ok(versions),
        }
    }
}

/// An active inline version's worker is being replaced; the longest deadline of those
/// that are.
struct Replacing(Duration);

/// What a command waits on beyond an inline projection's deadline: the time for its
/// worker to notice the new events and commit.
const INLINE_SLACK: Duration = Duration::from_millis(250);
/// How often a command looks again for an inline projection's replacement worker.
const REPLACING_POLL: Duration = Duration::from_millis(2);

/// An active inline projection version, as a command's response waits for it.
struct InlineVersion {
    key: (String, VersionKey),
    checkpoint: watch::Receiver<u64>,
    failing: bool,
    deadline: Duration,
}

/// Waits until every checkpoint reaches `position`, or `timeout` passes.
pub async fn wait_all(
    checkpoints: Vec<watch::Receiver<u64>>,
    position: u64,
    timeout: Duration,
) -> bool {
    let all = async {
        for mut checkpoint in checkpoints {
            if checkpoint.wait_for(|at| *at >= position).await.is_err() {
                // The worker stopped (replaced or shutting down): it will not get there.
                return false;
            }
        }
        true
    };
    tokio::time::timeout(timeout, all).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::parse_name;

    #[test]
    fn a_name_is_the_active_version_and_name_at_n_pins_version_n() {
        assert_eq!(parse_name("totals"), ("totals", None));
        assert_eq!(parse_name("totals@2"), ("totals", Some(2)));
        assert_eq!(parse_name("totals@x"), ("totals", None));
        assert_eq!(parse_name("totals@"), ("totals", None));
        assert_eq!(parse_name("totals@4294967296"), ("totals", None));
    }
}
