#!/usr/bin/env bash
# What metrics cost the command path, in instructions rather than seconds (repeatable
# on a shared, noisy machine): the release host under callgrind, instrumentation on
# only while N open-account commands on new streams go through C connections, once
# with metrics and once with --no-metrics, R rounds. Prints instructions per command.
#   host/benches/metrics_cost/run.sh [N=2000] [C=16] [R=2]
# Needs valgrind, `make plugins` and `cargo build --release -p tessera --bin tessera`.
set -euo pipefail
n=${1:-2000}; c=${2:-16}; rounds=${3:-2}
root=$(cd "$(dirname "$0")/../../.." && pwd)
bin=$root/target/release/tessera
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/plugins"; cp "$root/target/plugins/bank-account.wasm" "$work/plugins/"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 1 600); do curl -sf "localhost:$1/ready" >/dev/null && return; sleep 1; done; echo "host never ready" >&2; exit 1; }

# Compile once natively, so that the hosts under valgrind load compiled code.
port=$(free_port); "$bin" serve --data "$work/seed" --plugins "$work/plugins" --listen "127.0.0.1:$port" >/dev/null 2>&1 &
seed=$!; wait_ready "$port"; kill -TERM $seed; wait $seed || true

one() { # mode
  local d=$work/$1-$RANDOM; mkdir -p "$d"; cp -r "$work/seed/plugins" "$d/"
  local extra=(); [ "$1" = off ] && extra=(--no-metrics)
  local port; port=$(free_port)
  valgrind --tool=callgrind --instr-atstart=no --smc-check=all-non-file --callgrind-out-file="$d/cg.out" \
    "$bin" serve --data "$d" --plugins "$work/plugins" --listen "127.0.0.1:$port" --durability normal "${extra[@]}" >"$d/host.log" 2>&1 &
  local pid=$!
  wait_ready "$port"
  python3 "$root/host/benches/metrics_cost/load.py" "$port" 200 "$c" warm >/dev/null
  callgrind_control -i on $pid >/dev/null 2>&1
  python3 "$root/host/benches/metrics_cost/load.py" "$port" "$n" "$c" run >/dev/null
  callgrind_control -i off $pid >/dev/null 2>&1
  callgrind_control -d $pid >/dev/null 2>&1
  sleep 2; kill -TERM $pid; wait $pid || true
  local total=0 t
  for f in "$d"/cg.out*; do t=$(grep -E '^totals:' "$f" | head -1 | awk '{print $2}'); total=$((total + ${t:-0})); done
  echo $((total / n))
}
for round in $(seq 1 "$rounds"); do
  on=$(one on); off=$(one off)
  python3 -c "print(f'round $round, $n commands at $c connections: metrics on {$on:,} instructions/command, off {$off:,}: {($on-$off)/$off*100:+.2f}%')"
done
