#!/usr/bin/env bash
# The handshake flood (issues 14, 15): builds perf/flood and runs, for each
# transport, a baseline (no flood) and 100,000 handshakes a second for 5 s
# from 256 source ports, a legitimate participant joining 1 s in. One JSON
# line per run: join time and this process's RSS before, at peak, after.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --locked >&2
for mode in sctp dtls; do
  ./target/release/dcengine-flood "$mode" 0 3 256
  ./target/release/dcengine-flood "$mode" 100000 5 256
done
