//! The CPU time of a warm `handle` call in process: one instance of the bank's command
//! handler called again and again on this thread, with no HTTP, no store and no other
//! thread, so the figure is the guest's own cost and moves little with the machine's
//! load (it is CPU time, the least of several rounds).
//!
//! Measured twice: back to back, and with [`BETWEEN`] of other memory traffic between
//! two calls, as a loaded host has (its HTTP, SQLite and other plugins run between two
//! calls of one plugin and take the CPU's caches). The second is closer to what a call
//! costs inside a host under load; the gap between the two says how much of a guest's
//! cost is its memory, not its instructions.

use std::path::Path;

use anyhow::{Context, Result};
use tessera::event_store::Metadata;
use tessera::plugin::{Command, Limits, PluginCode, Runtime};

/// Rounds per figure; the least is reported (the others lost time to other work).
const ROUNDS: usize = 5;
/// Calls per round.
const CALLS: usize = 1_000;
/// Calls made before measuring (the guest compiles what it runs on its first calls).
const WARM_UP: usize = 300;
/// Memory written between two calls in the second figure: twice a core's L2 here.
pub const BETWEEN: usize = 4 << 20;

/// A warm call's CPU time, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct CallCost {
    pub back_to_back_us: f64,
    pub between_work_us: f64,
}

/// Measures `handle` of the command handler in `wasm` on `open-account` commands for
/// new streams. Compiles the component in process: CPU-heavy, call it on a blocking
/// thread.
pub fn measure(wasm: &Path) -> Result<CallCost> {
    let runtime = Runtime::new(Limits::default())?;
    let plugin = runtime
        .load(&std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?)
        .map_err(|e| anyhow::anyhow!("loading {}: {e}", wasm.display()))?;
    let PluginCode::CommandHandler(handler) = plugin.code else {
        anyhow::bail!("{} is not a command handler", wasm.display());
    };
    let mut session = handler.session()?;
    let mut other = vec![0u8; BETWEEN];
    let mut seq = 0u64;
    let mut call = |session: &mut tessera::plugin::CommandSession| -> Result<u64> {
        seq += 1;
        let command = open_account(seq);
        let started = thread_cpu_ns();
        let decision = session.handle(None, &command)?;
        let took = thread_cpu_ns() - started;
        anyhow::ensure!(decision.is_ok(), "open-account was refused: {decision:?}");
        Ok(took)
    };
    for _ in 0..WARM_UP {
        call(&mut session)?;
    }
    let mut back_to_back = f64::MAX;
    let mut between_work = f64::MAX;
    for _ in 0..ROUNDS {
        let mut total = 0;
        for _ in 0..CALLS {
            total += call(&mut session)?;
        }
        back_to_back = back_to_back.min(total as f64 / CALLS as f64 / 1e3);
        let mut total = 0;
        for round in 0..CALLS {
            // One write per cache line: the lines the guest had are evicted.
            for line in other.iter_mut().step_by(64) {
                *line = line.wrapping_add(round as u8);
            }
            std::hint::black_box(&other);
            total += call(&mut session)?;
        }
        between_work = between_work.min(total as f64 / CALLS as f64 / 1e3);
    }
    Ok(CallCost {
        back_to_back_us: back_to_back,
        between_work_us: between_work,
    })
}

fn open_account(seq: u64) -> Command {
    let id = uuid::Uuid::now_v7().to_string();
    Command {
        name: "open-account".to_string(),
        aggregate_id: format!("call-cost-{seq}"),
        payload: r#"{"owner":"bench"}"#.to_string(),
        metadata: Metadata {
            command_id: id.clone(),
            correlation_id: id.clone(),
            causation_id: id,
            principal: None,
            timestamp: jiff::Timestamp::now().to_string(),
            request_id: None,
            claims: None,
        },
    }
}

/// This thread's CPU time in nanoseconds (through the vDSO: no system call, so the
/// clock costs the figure well under a microsecond).
#[allow(unsafe_code)]
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through the pointer, which points
    // to a live local of that type.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(
        status, 0,
        "CLOCK_THREAD_CPUTIME_ID is always there on Linux"
    );
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}
