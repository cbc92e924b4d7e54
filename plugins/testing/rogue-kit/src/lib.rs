//! The misbehaviours shared by the rogue test plugins: a loop that never ends, memory
//! that grows without end, outputs of any size, and a probe of the sandbox that tries
//! the filesystem, the environment and the network and reports what happened; and a
//! counter of calls kept in a global, which tells a fresh instance from a reused one.
//!
//! Everything here runs inside a guest. What the host must do about it (cut the loop
//! at the deadline, trap the growth at the memory bound, deny every probe) is what the
//! tests in `tests/hostile_plugins.rs` check.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// Counts this call in a global of the instance and returns the count: 1 in a fresh
/// instance, n in an instance's n-th call (globals survive when the host reuses it).
pub fn count_call() -> u64 {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
}

/// Loops forever, doing nothing anyone can see.
pub fn spin_forever() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Busy-waits for `ms` milliseconds of wall-clock time, then returns how many turns
/// it took: a call that is slow but finite.
pub fn spin_for(ms: u64) -> u64 {
    let start = Instant::now();
    let mut turns: u64 = 0;
    while start.elapsed() < Duration::from_millis(ms) {
        turns = black_box(turns.wrapping_add(1));
    }
    turns
}

/// Grows a vector of 1 MiB chunks until something stops it.
pub fn grow_forever() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        // Touch every page so the memory is really used.
        for page in chunk.iter_mut().step_by(4096) {
            *page = 1;
        }
        hoard.push(black_box(chunk));
        black_box(&hoard);
    }
}

/// Allocates and touches `mb` MiB, then frees it and returns how many bytes it held.
pub fn allocate(mb: u64) -> u64 {
    let bytes = (mb as usize) << 20;
    let mut block = vec![0u8; bytes];
    for page in block.iter_mut().step_by(4096) {
        *page = 1;
    }
    black_box(&block);
    block
        .iter()
        .step_by(4096)
        .map(|b| u64::from(*b))
        .sum::<u64>()
        * 4096
}

/// Recurses until the stack runs out (the end condition is never met in practice).
pub fn overflow_stack(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let frame = black_box([depth; 64]);
    overflow_stack(black_box(depth + 1)) + frame[black_box(7)]
}

/// A JSON string of `bytes` characters (`"xxx...x"`), built in place so that the guest
/// holds it once.
pub fn huge_json_string(bytes: usize) -> String {
    let mut text = vec![b'x'; bytes + 2];
    text[0] = b'"';
    text[bytes + 1] = b'"';
    String::from_utf8(text).expect("ASCII")
}

/// Tries every way out of the sandbox and reports each outcome: `denied: <error>` or
/// `allowed: <what it got>`. `ports` are TCP ports on 127.0.0.1 to connect to.
pub fn probe(ports: &[u16]) -> Value {
    let mut report = Map::new();
    let mut note = |what: &str, outcome: String| {
        report.insert(what.to_string(), Value::String(outcome));
    };

    note(
        "read /etc/passwd",
        outcome(std::fs::read_to_string("/etc/passwd")),
    );
    note(
        "read /proc/self/environ",
        outcome(
            std::fs::read("/proc/self/environ").map(|b| String::from_utf8_lossy(&b).into_owned()),
        ),
    );
    note(
        "read ./Cargo.toml",
        outcome(std::fs::read_to_string("Cargo.toml")),
    );
    note("list /", outcome(list("/")));
    note("list .", outcome(list(".")));
    note(
        "write /tmp/tessera-escape",
        outcome(std::fs::write("/tmp/tessera-escape", b"escaped").map(|()| "written".to_string())),
    );
    note(
        "write ./escape.txt",
        outcome(std::fs::write("escape.txt", b"escaped").map(|()| "written".to_string())),
    );
    note(
        "create dir /tmp/tessera-escape-dir",
        outcome(std::fs::create_dir("/tmp/tessera-escape-dir").map(|()| "created".to_string())),
    );
    note(
        "current dir",
        outcome(std::env::current_dir().map(|d| d.display().to_string())),
    );

    let vars: Vec<String> = std::env::vars_os()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    note(
        "env vars",
        if vars.is_empty() {
            "denied: none".to_string()
        } else {
            format!("allowed: {}", vars.join(";"))
        },
    );
    for name in ["PATH", "HOME", "USER", "RUST_LOG", "TESSERA_ADMIN_TOKEN"] {
        note(
            &format!("env {name}"),
            match std::env::var_os(name) {
                None => "denied: not set".to_string(),
                Some(value) => format!("allowed: {}", value.to_string_lossy()),
            },
        );
    }
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    note(
        "args",
        if args.is_empty() {
            "denied: none".to_string()
        } else {
            format!("allowed: {}", args.join(" "))
        },
    );

    for port in ports {
        note(
            &format!("tcp connect 127.0.0.1:{port}"),
            outcome(
                std::net::TcpStream::connect_timeout(
                    &([127, 0, 0, 1], *port).into(),
                    Duration::from_millis(200),
                )
                .map(|s| format!("connected from {:?}", s.local_addr().ok())),
            ),
        );
    }
    note(
        "tcp listen 127.0.0.1:0",
        outcome(
            std::net::TcpListener::bind("127.0.0.1:0")
                .map(|l| format!("listening on {:?}", l.local_addr().ok())),
        ),
    );
    note(
        "udp bind 0.0.0.0:0",
        outcome(
            std::net::UdpSocket::bind("0.0.0.0:0")
                .map(|s| format!("bound to {:?}", s.local_addr().ok())),
        ),
    );
    note(
        "dns localhost",
        outcome(
            std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80))
                .map(|a| format!("{:?}", a.collect::<Vec<_>>())),
        ),
    );

    json!(report)
}

fn list(dir: &str) -> std::io::Result<String> {
    let names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    Ok(names.join(","))
}

fn outcome(result: std::io::Result<String>) -> String {
    match result {
        Ok(got) => format!("allowed: {got}"),
        Err(error) => format!("denied: {error}"),
    }
}
