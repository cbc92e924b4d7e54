//! How a call is bounded in time, and how it is ended early.
//!
//! One thread ([`EpochTicker`]) advances the engine's epoch every [`EPOCH_TICK`]; a
//! running guest looks at its deadline at least every [`CHECK_TICKS`] ticks. The
//! deadline itself is an instant in the store ([`set_deadline`]), which the guest's
//! SQL statements share, so a call is ended on time whether it is running guest code
//! or a statement. The host's stop flag and an [`Abandon`] that was dropped end a
//! call at the same looks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store};

use super::host::HostState;

/// How often the epoch advances; deadlines are measured in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// The most ticks a running guest goes between two looks at its deadline and at the
/// host's stop flag.
const CHECK_TICKS: u64 = 10;

/// The thread that advances the epoch for every store of an engine; it ends when
/// this is dropped.
pub(super) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    /// Starts the thread for `engine`.
    pub(super) fn start(engine: &Engine) -> Result<Self, wasmtime::Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(wasmtime::Error::from)?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts a call's deadline: `deadline` from now, for the guest's code and its SQL.
pub(super) fn set_deadline(store: &mut Store<HostState>, deadline: Duration) {
    let at = Instant::now() + deadline;
    store.data_mut().deadline = at;
    store.set_epoch_deadline(ticks_until(at));
}

/// Epoch ticks until `at`, rounded up, but at most [`CHECK_TICKS`].
pub(super) fn ticks_until(at: Instant) -> u64 {
    let left = at.saturating_duration_since(Instant::now());
    let ticks = left.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64;
    ticks.clamp(1, CHECK_TICKS)
}

/// Ends a call when dropped: held by whoever waits for the call's answer, so that a
/// call nobody waits for any more (its client went away) stops at once rather than
/// at its deadline.
#[derive(Debug, Default)]
pub struct Abandon(Arc<AtomicBool>);

impl Abandon {
    /// The flag to hand to the call.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passed_deadline_is_looked_at_on_the_next_tick() {
        assert_eq!(ticks_until(Instant::now()), 1);
        assert_eq!(ticks_until(Instant::now() - Duration::from_secs(1)), 1);
    }

    #[test]
    fn a_far_deadline_is_still_looked_at_every_few_ticks() {
        assert_eq!(
            ticks_until(Instant::now() + Duration::from_secs(60)),
            CHECK_TICKS
        );
    }

    #[test]
    fn a_near_deadline_is_rounded_up_to_whole_ticks() {
        // Time passes between the two instants, so only a bound holds exactly.
        let ticks = ticks_until(Instant::now() + EPOCH_TICK * 3);
        assert!((1..=3).contains(&ticks), "{ticks}");
    }

    #[test]
    fn dropping_an_abandon_sets_its_flag() {
        let abandon = Abandon::default();
        let flag = abandon.flag();
        assert!(!flag.load(Ordering::Relaxed));
        drop(abandon);
        assert!(flag.load(Ordering::Relaxed));
    }
}
