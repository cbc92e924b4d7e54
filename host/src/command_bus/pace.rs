//! Where a decision runs: on the async worker that took the request, or on a blocking
//! thread.
//!
//! A decision (read what the cached state lacks, fold, handle) of a warm, well-behaved
//! plugin takes a few microseconds. Handing it to tokio's blocking pool and back costs
//! more than that: two thread wake-ups and two context switches per command, which is
//! where a loaded two-core host spent most of its time. So a plugin's decisions run
//! inline on the async worker while they are fast, and on the blocking pool once they
//! are not.
//!
//! Guarantees:
//! - a plugin whose decision took more CPU time than [`HARD`], or more than [`SLOW`]
//!   without the allowance below, is sent to the blocking pool for a cool-down that
//!   doubles each time it is caught again (from [`FIRST_COOLDOWN`] up to
//!   [`MAX_COOLDOWN`]), so a plugin that is slow, or slow now and then on purpose, holds
//!   an async worker for at most one call's deadline per cool-down;
//! - the allowance: a decision between [`SLOW`] and [`HARD`] is forgiven when the
//!   plugin made [`FAST_PER_SLOW`] fast ones for it (at most [`SLOW_BURST`] banked).
//!   A JavaScript or Python guest collects its garbage now and then, a pause of a few
//!   milliseconds every few hundred calls; without the allowance one such pause sent
//!   the plugin to the blocking pool, and the cool-downs soon kept it there. So a plugin
//!   holds an async worker for at most [`HARD`] per [`FAST_PER_SLOW`] decisions beyond
//!   its fast ones;
//! - a plugin version never seen before starts on the blocking pool: its first call
//!   instantiates it, which is slow by nature;
//! - a decision that needs a new instance goes to the blocking pool too, and its time
//!   is not counted: a JavaScript or Python guest's first call on an instance compiles
//!   what it runs and takes milliseconds, and counting it once sent such plugins to
//!   the blocking pool for good, at every instance renewal (a decision that went
//!   inline and found the idle instance taken by another creates one there, and
//!   counts);
//! - the rule is kept per code digest: a new version of a plugin starts afresh, and two
//!   plugins never share a pace.
//!
//! The state machine is pure ([`Pace::inline`] and [`Pace::record`] take the time as an
//! argument) and tested below; [`Pacer`] is the shared map around it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A decision that took more CPU time than this is no longer run on an async worker.
/// CPU time, not wall time: on a busy machine preemption stretches a fast decision's
/// wall time past any bound that still catches slow code.
pub const SLOW: Duration = Duration::from_millis(2);
/// A decision that took more CPU time than this starts a cool-down whatever the
/// allowance.
pub const HARD: Duration = Duration::from_millis(10);
/// Fast decisions that pay for one between [`SLOW`] and [`HARD`].
pub const FAST_PER_SLOW: u32 = 32;
/// Slow decisions the allowance may hold at most (a burst of pauses in a row).
pub const SLOW_BURST: u32 = 4;
/// The first cool-down after a slow decision.
pub const FIRST_COOLDOWN: Duration = Duration::from_secs(1);
/// The longest cool-down.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(600);
/// Decisions a new plugin version makes on the blocking pool before it is tried inline
/// (its instances are being created and warmed).
const WARM_UP: u32 = 8;

/// One plugin version's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pace {
    /// Fast decisions still to make on the blocking pool before trying inline.
    warming: u32,
    /// Until when decisions go to the blocking pool.
    slow_until: Option<Instant>,
    /// The next cool-down's length.
    cooldown: Duration,
    /// Fast decisions banked towards forgiving slow ones (see [`FAST_PER_SLOW`]).
    allowance: u32,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            warming: WARM_UP,
            slow_until: None,
            cooldown: FIRST_COOLDOWN,
            allowance: 0,
        }
    }
}

impl Pace {
    /// Whether the next decision may run inline at `now`.
    pub fn inline(&self, now: Instant) -> bool {
        self.warming == 0 && self.slow_until.is_none_or(|until| now >= until)
    }

    /// Takes note of a decision that took `elapsed`, finished at `now`; returns the
    /// cool-down it started, if it was slow.
    pub fn record(&mut self, elapsed: Duration, now: Instant) -> Option<Duration> {
        if elapsed > SLOW && elapsed <= HARD && self.allowance >= FAST_PER_SLOW {
            self.allowance -= FAST_PER_SLOW;
            None
        } else if elapsed > SLOW {
            let cooldown = self.cooldown;
            self.slow_until = Some(now + cooldown);
            self.cooldown = (cooldown * 2).min(MAX_COOLDOWN);
            Some(cooldown)
        } else {
            self.warming = self.warming.saturating_sub(1);
            self.allowance = (self.allowance + 1).min(FAST_PER_SLOW * SLOW_BURST);
            None
        }
    }
}

/// The CPU time the calling thread has used so far (zero where the clock is missing,
/// which only makes every decision look fast).
#[allow(unsafe_code)]
pub fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through the pointer, which points
    // to a live local of that type.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if status != 0 {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Whether a decision's time tells how fast its code is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counts {
    Yes,
    /// It ran on the blocking pool on an instance created for it (or none could be
    /// created): creating an instance, and a first call on it, are slow by nature.
    /// The bus counts every decision it ran inline, fresh or not, so leaving these out
    /// lets no slow call onto an async worker unbounded.
    No,
}

/// Every plugin version's pace, by code digest.
#[derive(Debug, Default)]
pub struct Pacer {
    paces: Mutex<HashMap<String, Pace>>,
}

/// Plugin versions remembered at most; past it the map starts over (every version
/// warms up again, which costs a few decisions on the blocking pool each).
const MAX_ENTRIES: usize = 1024;

impl Pacer {
    /// Whether a decision by the code of `digest` may run inline now.
    pub fn inline(&self, digest: &str) -> bool {
        let paces = self.paces.lock().expect("pacer lock");
        paces
            .get(digest)
            .is_some_and(|pace| pace.inline(Instant::now()))
    }

    /// Runs `decide` on this thread and takes note of the CPU time it took, unless
    /// `decide` says its time does not count (it ran on an instance created for it).
    pub fn timed<R>(&self, digest: &str, decide: impl FnOnce() -> (R, Counts)) -> R {
        let started = thread_cpu();
        let (decided, counts) = decide();
        if counts == Counts::Yes {
            self.record(digest, thread_cpu().saturating_sub(started));
        }
        decided
    }

    /// Takes note of a decision by the code of `digest` that took `elapsed`.
    pub fn record(&self, digest: &str, elapsed: Duration) {
        let now = Instant::now();
        let cooldown = {
            let mut paces = self.paces.lock().expect("pacer lock");
            if let Some(pace) = paces.get_mut(digest) {
                pace.record(elapsed, now)
            } else {
                if paces.len() >= MAX_ENTRIES {
                    paces.clear();
                }
                let mut pace = Pace::default();
                let cooldown = pace.record(elapsed, now);
                paces.insert(digest.to_string(), pace);
                cooldown
            }
        };
        // Cool-downs double, so this line is rare even for a plugin that stays slow.
        if let Some(cooldown) = cooldown {
            tracing::info!(
                code = %&digest[..digest.len().min(12)],
                cpu_ms = elapsed.as_secs_f64() * 1000.0,
                cooldown_s = cooldown.as_secs(),
                "a decision was slow: this plugin version decides on the blocking pool for a while"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_micros(20);
    const SLOW_CALL: Duration = Duration::from_millis(5);

    fn warmed(now: Instant) -> Pace {
        let mut pace = Pace::default();
        for _ in 0..WARM_UP {
            assert!(!pace.inline(now), "inline before warming up");
            pace.record(FAST, now);
        }
        pace
    }

    #[test]
    fn a_new_version_warms_up_on_the_blocking_pool_then_runs_inline() {
        let now = Instant::now();
        let pace = warmed(now);
        assert!(pace.inline(now));
    }

    #[test]
    fn a_slow_decision_sends_the_plugin_away_for_a_doubling_cooldown() {
        let start = Instant::now();
        let mut pace = warmed(start);
        pace.record(SLOW_CALL, start);
        assert!(!pace.inline(start));
        assert!(!pace.inline(start + FIRST_COOLDOWN - Duration::from_millis(1)));
        let back = start + FIRST_COOLDOWN;
        assert!(pace.inline(back));
        // Caught again: twice as long away.
        pace.record(SLOW_CALL, back);
        assert!(!pace.inline(back + FIRST_COOLDOWN));
        assert!(pace.inline(back + FIRST_COOLDOWN * 2));
    }

    #[test]
    fn the_cooldown_is_bounded() {
        let mut now = Instant::now();
        let mut pace = warmed(now);
        for _ in 0..40 {
            pace.record(SLOW_CALL, now);
            now += MAX_COOLDOWN;
        }
        assert_eq!(pace.cooldown, MAX_COOLDOWN);
        assert!(pace.inline(now));
    }

    #[test]
    fn fast_decisions_do_not_shorten_a_cooldown() {
        let now = Instant::now();
        let mut pace = warmed(now);
        pace.record(SLOW_CALL, now);
        for _ in 0..100 {
            pace.record(FAST, now);
        }
        assert!(!pace.inline(now + Duration::from_millis(10)));
    }

    #[test]
    fn an_occasional_pause_is_forgiven_once_paid_for_by_fast_decisions() {
        let now = Instant::now();
        let mut pace = warmed(now);
        // Not paid for yet: warming up banks only WARM_UP.
        let mut early = pace.clone();
        assert!(early.record(SLOW_CALL, now).is_some());
        for _ in 0..FAST_PER_SLOW {
            pace.record(FAST, now);
        }
        assert_eq!(pace.record(SLOW_CALL, now), None, "paid for");
        assert!(pace.inline(now));
        // Pauses every FAST_PER_SLOW decisions are forgiven for as long as they last.
        for _ in 0..100 {
            for _ in 0..FAST_PER_SLOW {
                pace.record(FAST, now);
            }
            assert_eq!(pace.record(SLOW_CALL, now), None);
        }
        // More often than that, the bank runs dry.
        let caught = (0..=SLOW_BURST).find_map(|_| pace.record(SLOW_CALL, now));
        assert_eq!(caught, Some(FIRST_COOLDOWN));
        assert!(!pace.inline(now));
    }

    #[test]
    fn a_decision_past_the_hard_bound_is_never_forgiven() {
        let now = Instant::now();
        let mut pace = warmed(now);
        for _ in 0..FAST_PER_SLOW * SLOW_BURST * 2 {
            pace.record(FAST, now);
        }
        assert!(pace.record(HARD + Duration::from_micros(1), now).is_some());
        assert!(!pace.inline(now));
    }

    #[test]
    fn the_allowance_holds_a_bounded_burst() {
        let now = Instant::now();
        let mut pace = warmed(now);
        for _ in 0..FAST_PER_SLOW * SLOW_BURST * 10 {
            pace.record(FAST, now);
        }
        for _ in 0..SLOW_BURST {
            assert_eq!(pace.record(SLOW_CALL, now), None);
        }
        assert!(pace.record(SLOW_CALL, now).is_some());
    }

    #[test]
    fn thread_cpu_time_counts_work_not_sleep() {
        let before = thread_cpu();
        std::thread::sleep(Duration::from_millis(30));
        let slept = thread_cpu() - before;
        assert!(slept < Duration::from_millis(10), "sleeping used {slept:?}");
        let before = thread_cpu();
        let mut x = 0u64;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(thread_cpu() - before > Duration::ZERO);
    }

    #[test]
    fn versions_are_paced_apart() {
        let pacer = Pacer::default();
        for _ in 0..WARM_UP {
            pacer.record("a", FAST);
        }
        assert!(pacer.inline("a"));
        assert!(!pacer.inline("b"), "an unseen version starts on the pool");
        pacer.record("b", SLOW_CALL);
        assert!(pacer.inline("a"), "b's slowness is not a's");
    }
}
