#!/usr/bin/env bash
# Builds udp-backends in release and runs the whole matrix (every backend,
# 100 B and 1,200 B) REPS times, round-robin so background load spreads over
# all rows. Writes results.json (machine note + one object per run) and, via
# plot.py, prints the median table and draws results.png.
#
#   bash perf/udp-backends/run.sh            # REPS=3 COUNT=2000000 by default
#   REPS=5 COUNT=1000000 bash perf/udp-backends/run.sh
set -euo pipefail
cd "$(dirname "$0")"
REPS=${REPS:-3}
COUNT=${COUNT:-2000000}
MAX_SECS=${MAX_SECS:-10}

cargo build --release --locked
BIN="${CARGO_TARGET_DIR:-target}/release/udp-backends"

runs=$(mktemp)
trap 'rm -f "$runs"' EXIT
for rep in $(seq 1 "$REPS"); do
  for size in 100 1200; do
    for backend in $("$BIN" --list); do
      load=$(cut -d' ' -f1 /proc/loadavg)
      "$BIN" --backend "$backend" --size "$size" --count "$COUNT" --max-secs "$MAX_SECS" \
        | sed "s/^{/{\"rep\":$rep,\"load1_before\":$load,/" >>"$runs"
    done
  done
done

python3 - "$runs" >results.json <<'PY'
import json, os, platform, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def read(p):
    try:
        return open(p).read().strip()
    except OSError:
        return None
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None)
meta = {
    "kernel": platform.release(),
    "cpus": os.cpu_count(),
    "cpu_model": cpu,
    "rmem_max": int(read("/proc/sys/net/core/rmem_max") or 0),
    "wmem_max": int(read("/proc/sys/net/core/wmem_max") or 0),
    "reps": max((r["rep"] for r in runs), default=0),
}
json.dump({"meta": meta, "runs": runs}, sys.stdout, indent=1)
print()
PY
echo "wrote $(pwd)/results.json ($(grep -c '"backend"' results.json) runs)"
python3 plot.py results.json
