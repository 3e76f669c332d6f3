#!/usr/bin/env bash
# perf/run.sh SCENARIO... — load scenarios with their peers in the same run,
# A/B interleaved (ours, peer, ours, peer, ...), JSON lines under
# perf/results/<UTC stamp>/ (perf/results/latest points at the last run),
# then the table of min/median/max and ratios and the plots (perf/report).
#
# Scenarios: p2p-100B p2p-1200B relay-100B fanout-63 broadcast-64
# latency-under-load scale-10k priority-under-saturation (root: a network
# namespace, a veth pair and tbf at 1 Mbit/s each way) wan (root: two
# namespaces joined by perf/wan-bridge, a userspace path of 1 Gbit/s, 50 ms
# round trip and 0.1 % loss each way; Durable bulk, relayed through a
# server and point to point, against iperf3's TCP and usrsctp on the same
# path), or all.
# Knobs (environment): ROUNDS (3), DURATION (seconds measured, 3), WARMUP (1),
# CARGO_TARGET_DIR (target); for wan: WAN_DURATION (10), WAN_RATE_MBIT
# (1000), WAN_DELAY_MS (one way, 25), WAN_LOSS (each way, 0.001), WAN_SEED (1),
# WAN_BEFORE (a dcengine binary to run as side ours-before; unset: none).
#
# What runs: dcengine load (p2p: one process; relay and fan-out: against a
# `dcengine serve` process started here, its CPU and peak RSS read from
# /proc), usrsctp_peer (perf/peers/usrsctp_peer.c, built here against
# Debian's libusrsctp-dev, installed with apt-get if missing), the
# straightforward design (perf/peers/straightforward: sctp-proto, one
# blocking UDP socket and one thread per side, 64 KiB in flight) and raw_udp
# (perf/peers/raw_udp.c: sendmmsg/recvmmsg and GSO blasts, a 1 -> N
# forwarder). Everything on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
PEERS=$TARGET/perf-peers
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=perf/results/$STAMP
SECRET=perf-run-$RANDOM$RANDOM
PORT=$((20000 + RANDOM % 20000))

scenarios=("$@")
ALL=(p2p-100B p2p-1200B relay-100B fanout-63 broadcast-64 latency-under-load scale-10k priority-under-saturation wan)
[ ${#scenarios[@]} -eq 0 ] && { echo "usage: perf/run.sh SCENARIO... (${ALL[*]} all)" >&2; exit 2; }
if [ "${scenarios[0]}" = all ]; then scenarios=("${ALL[@]}"); fi
for s in "${scenarios[@]}"; do
  case " ${ALL[*]} " in *" $s "*) ;; *) echo "unknown scenario: $s" >&2; exit 2 ;; esac
done

say() { printf '==> %s\n' "$*" >&2; }

say "building dcengine (release), the peers and perf-report"
cargo build --release --locked --bin dcengine >&2
DC=$TARGET/release/dcengine
mkdir -p "$PEERS"
if [ ! -e /usr/include/usrsctp.h ]; then
  say "installing libusrsctp-dev"
  DEBIAN_FRONTEND=noninteractive apt-get install -y libusrsctp-dev >&2
fi
cc -O2 -Wall -o "$PEERS/usrsctp_peer" perf/peers/usrsctp_peer.c -lusrsctp -lpthread
cc -O2 -Wall -o "$PEERS/raw_udp" perf/peers/raw_udp.c
(cd perf/report && CARGO_TARGET_DIR=$TARGET/perf-report cargo build --release --locked >&2)
(cd perf/peers/straightforward && CARGO_TARGET_DIR=$TARGET/perf-straightforward cargo build --release --locked >&2)
STRAIGHT=$TARGET/perf-straightforward/release/straightforward
REPORT=$TARGET/perf-report/release/perf-report
BRIDGE=$TARGET/perf-wan-bridge/release/wan-bridge
case " ${scenarios[*]} " in
  *" wan "*)
    if ! command -v iperf3 > /dev/null; then
      say "installing iperf3"
      DEBIAN_FRONTEND=noninteractive apt-get install -y iperf3 >&2
    fi
    if ! command -v socat > /dev/null; then
      say "installing socat"
      DEBIAN_FRONTEND=noninteractive apt-get install -y socat >&2
    fi
    (cd perf/wan-bridge && CARGO_TARGET_DIR=$TARGET/perf-wan-bridge cargo build --release --locked >&2)
    ;;
esac

mkdir -p "$OUT"
ln -sfn "$STAMP" perf/results/latest
{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
  echo "kernel: $(uname -sr); cpus: $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "rounds: $ROUNDS; duration: $DURATION s; warm-up: $WARMUP s"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# record SCENARIO SIDE ROUND KIND JSON
record() {
  local json=$5
  [ -n "$json" ] || { echo "  ($2 round $3: no result)" >&2; return 0; }
  printf '{"scenario":"%s","side":"%s","round":%s,"kind":"%s","result":%s}\n' "$1" "$2" "$3" "$4" "$json" >> "$OUT/$1.jsonl"
}

field() { python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r.get(sys.argv[2], 0))' "$1" "$2"; }

next_port() { PORT=$((PORT + 70)); }

# The usrsctp peer: one association, reliable ordered, SIZE bytes.
usrsctp() {
  next_port
  local out; out=$(mktemp)
  timeout $((DURATION + 20)) "$PEERS/usrsctp_peer" recv $((PORT + 1)) $((PORT + 2)) > "$out" 2>/dev/null &
  local rx=$!
  sleep 0.3
  timeout $((DURATION + 15)) "$PEERS/usrsctp_peer" send "$PORT" $((PORT + 1)) $((PORT + 2)) "$1" "$DURATION" 2>/dev/null || true
  wait $rx || true
  cat "$out"; rm -f "$out"
}

# The raw-UDP limit: MODE (send: sendmmsg x32, gso) to one receiver.
raw_blast() {
  next_port
  local out; out=$(mktemp)
  "$PEERS/raw_udp" recv "$PORT" 1 > "$out" &
  local rx=$!
  sleep 0.2
  "$PEERS/raw_udp" "$1" "$PORT" "$2" "$DURATION" 2>/dev/null
  wait $rx || true
  cat "$out"; rm -f "$out"
}

# The raw-UDP forwarder: a sendmmsg blast, forwarded to COUNT receivers.
raw_forward() {
  next_port
  local out; out=$(mktemp)
  "$PEERS/raw_udp" recv $((PORT + 1)) "$1" > "$out" &
  local rx=$!
  timeout $((DURATION + 10)) "$PEERS/raw_udp" forward "$PORT" $((PORT + 1)) "$1" 2>/dev/null &
  local fw=$!
  sleep 0.2
  "$PEERS/raw_udp" send "$PORT" "$2" "$DURATION" 2>/dev/null
  wait $rx || true
  kill "$fw" 2>/dev/null || true
  wait "$fw" 2>/dev/null || true
  cat "$out"; rm -f "$out"
}

# ours_served ARGS...: dcengine load against a `dcengine serve` process.
ours_served() {
  next_port
  "$DC" serve --insecure-plaintext --bind 127.0.0.1:$PORT --secret "$SECRET" --workers 2 --durable-kbps 0 \
    --lossy-kbps 0 --high-lossy-kbps 0 --broadcast-pps 0 --member-kbps 0 --member-mps 0 \
    --log-level warn > /dev/null &
  local srv=$!
  sleep 0.3
  DCENGINE_SECRET=$SECRET "$DC" load --server 127.0.0.1:$PORT --server-pid $srv \
    --duration "$DURATION" --warmup "$WARMUP" --json "$@" || true
  kill -TERM "$srv" 2>/dev/null || true
  wait "$srv" 2>/dev/null || true
}

# The shaped path of priority-under-saturation: a namespace whose veth
# pair to the root namespace carries 1 Mbit/s each way (tbf; this kernel
# has no netem, so no added delay or loss).
NS=dcperf-$$
shaped_up() {
  ip netns add "$NS"
  ip link add "$NS-a" type veth peer name "$NS-b"
  ip link set "$NS-b" netns "$NS"
  ip addr add 10.77.0.1/24 dev "$NS-a"
  ip link set "$NS-a" up
  ip netns exec "$NS" ip addr add 10.77.0.2/24 dev "$NS-b"
  ip netns exec "$NS" ip link set "$NS-b" up
  ip netns exec "$NS" ip link set lo up
  ip netns exec "$NS" tc qdisc add dev "$NS-b" root tbf rate 1mbit burst 1600 latency 200ms
  # Both ways unless told "uplink": then only the namespace's uplink (the
  # sender's hop to the server) is shaped, and the server's egress to the
  # receiver runs at veth speed.
  [ "${1:-both}" = uplink ] || tc qdisc add dev "$NS-a" root tbf rate 1mbit burst 1600 latency 200ms
}
shaped_down() {
  ip link del "$NS-a" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
}

# ours_shaped ARGS...: the server on 10.77.0.1, the load in the namespace.
ours_shaped() {
  next_port
  "$DC" serve --insecure-plaintext --bind 10.77.0.1:$PORT --secret "$SECRET" --workers 1 --durable-kbps 0 \
    --lossy-kbps 0 --high-lossy-kbps 0 --broadcast-pps 0 --member-kbps 0 --member-mps 0 \
    --log-level warn > /dev/null &
  local srv=$!
  sleep 0.3
  # A drain of 30 s: at 1 Mbit/s an open-loop sender's queue (1 MiB)
  # takes 8 s to cross, more on a loaded machine.
  DCENGINE_SECRET=$SECRET ip netns exec "$NS" "$DC" load --server 10.77.0.1:$PORT --server-pid $srv \
    --duration "$DURATION" --warmup "$WARMUP" --drain 30 --json "$@" || true
  kill -TERM "$srv" 2>/dev/null || true
  wait "$srv" 2>/dev/null || true
}

# The wan path: two namespaces, each with a TAP device that perf/wan-bridge
# (in the root namespace) created and still holds, moved into it; the
# bridge forwards frames between them with WAN_DELAY_MS one way, WAN_LOSS
# random loss each way and WAN_RATE_MBIT with a tail-drop queue of twice
# the bandwidth-delay product. 10.77.0.1 in $WAN_A, 10.77.0.2 in $WAN_B.
WAN_DURATION=${WAN_DURATION:-10}
WAN_RATE_MBIT=${WAN_RATE_MBIT:-1000}
WAN_DELAY_MS=${WAN_DELAY_MS:-25}
WAN_LOSS=${WAN_LOSS:-0.001}
WAN_SEED=${WAN_SEED:-1}
WAN_A=dcw-a-$$
WAN_B=dcw-b-$$
WAN_BRIDGE_PID=
wan_up() {
  local max=$((ROUNDS * (3 * (WAN_DURATION + WARMUP + 30) + 60) + 60))
  "$BRIDGE" --tap-a "dcwa$$" --tap-b "dcwb$$" --delay-ms "$WAN_DELAY_MS" --loss "$WAN_LOSS" \
    --rate-mbit "$WAN_RATE_MBIT" --seed "$WAN_SEED" --max-seconds "$max" > "$OUT/wan-bridge.json" &
  WAN_BRIDGE_PID=$!
  local i
  for i in $(seq 50); do ip link show "dcwb$$" > /dev/null 2>&1 && break; sleep 0.1; done
  ip netns add "$WAN_A"
  ip netns add "$WAN_B"
  ip link set "dcwa$$" netns "$WAN_A"
  ip link set "dcwb$$" netns "$WAN_B"
  ip -n "$WAN_A" addr add 10.77.0.1/24 dev "dcwa$$"
  ip -n "$WAN_B" addr add 10.77.0.2/24 dev "dcwb$$"
  for ns in "$WAN_A" "$WAN_B"; do
    ip -n "$ns" link set lo up
  done
  # 10,000 frames of queue into the bridge (a TAP's default is 1,000): a
  # sender's burst waits there for the bridge to read it instead of being
  # dropped before the path's own queue (2 × BDP) sees it.
  ip -n "$WAN_A" link set "dcwa$$" txqueuelen 10000 up
  ip -n "$WAN_B" link set "dcwb$$" txqueuelen 10000 up
  sleep 0.5
}
wan_down() {
  if [ -n "$WAN_BRIDGE_PID" ]; then
    # The devices' drop counters (the bridge's input queues), then its own.
    ip -n "$WAN_A" -s link show "dcwa$$" > "$OUT/wan-links.txt" 2>&1 || true
    ip -n "$WAN_B" -s link show "dcwb$$" >> "$OUT/wan-links.txt" 2>&1 || true
    kill -TERM "$WAN_BRIDGE_PID" 2>/dev/null || true
    wait "$WAN_BRIDGE_PID" 2>/dev/null || true
    WAN_BRIDGE_PID=
  fi
  ip netns del "$WAN_A" 2>/dev/null || true
  ip netns del "$WAN_B" 2>/dev/null || true
}

# TCP on the wan path: one iperf3 stream from $WAN_A to $WAN_B, the first
# WARMUP seconds omitted (slow start), as {"bytes_per_s", ...}; with an
# argument, that congestion control (iperf3 -C) instead of the system's.
# tcp_wan relay: the system's TCP the way ours goes, across the path twice:
# iperf3's client in $WAN_A to socat in $WAN_B, which relays each
# connection (a second TCP connection, back across the path) to iperf3's
# server in $WAN_A: two 50 ms connections in series through the same
# bridge, and a user-space relay on the same 2 cores, as our server is.
tcp_wan() {
  local cc=() relay=
  if [ "${1:-}" = relay ]; then
    relay=1
  elif [ -n "${1:-}" ]; then
    cc=(-C "$1")
  fi
  next_port
  local srv_ns=$WAN_B srv_addr=10.77.0.2 sock=
  [ -n "$relay" ] && { srv_ns=$WAN_A; srv_addr=10.77.0.1; }
  ip netns exec "$srv_ns" timeout $((WAN_DURATION + WARMUP + 20)) iperf3 -s -1 -B "$srv_addr" -p "$PORT" > /dev/null 2>&1 &
  local srv=$!
  if [ -n "$relay" ]; then
    ip netns exec "$WAN_B" timeout $((WAN_DURATION + WARMUP + 20)) socat \
      "TCP-LISTEN:$((PORT + 1)),bind=10.77.0.2,reuseaddr,fork" "TCP:10.77.0.1:$PORT" > /dev/null 2>&1 &
    sock=$!
  fi
  sleep 0.5
  local out; out=$(mktemp)
  local to_port=$PORT
  [ -n "$relay" ] && to_port=$((PORT + 1))
  ip netns exec "$WAN_A" timeout $((WAN_DURATION + WARMUP + 15)) iperf3 -c 10.77.0.2 -p "$to_port" \
    -t "$WAN_DURATION" -O "$WARMUP" "${cc[@]}" -J > "$out" 2>/dev/null || true
  wait "$srv" 2>/dev/null || true
  if [ -n "$sock" ]; then
    kill -TERM "$sock" 2>/dev/null || true
    wait "$sock" 2>/dev/null || true
  fi
  python3 -c '
import json,sys
try:
    e=json.load(open(sys.argv[1]))["end"]
except Exception:
    sys.exit(0)
r=e["sum_received"]; s=e["sum_sent"]
print(json.dumps({"peer":"iperf3-tcp","bytes":r["bytes"],"seconds":r["seconds"],
  "bytes_per_s":r["bits_per_second"]/8,"retransmits":s.get("retransmits"),
  "congestion":e.get("sender_tcp_congestion"),
  "sender_cpu":e.get("cpu_utilization_percent",{}).get("host_total")}))' "$out"
  rm -f "$out"
}

# usrsctp on the wan path: the receiver in $WAN_B, the sender in $WAN_A.
usrsctp_wan() {
  next_port
  local out; out=$(mktemp)
  ip netns exec "$WAN_B" timeout $((WAN_DURATION + 20)) "$PEERS/usrsctp_peer" recv $((PORT + 1)) $((PORT + 2)) 10.77.0.2 \
    > "$out" 2>/dev/null &
  local rx=$!
  sleep 0.3
  ip netns exec "$WAN_A" timeout $((WAN_DURATION + 15)) "$PEERS/usrsctp_peer" send "$PORT" $((PORT + 1)) $((PORT + 2)) \
    "$1" "$WAN_DURATION" 10.77.0.2 10.77.0.1 2>/dev/null || true
  wait $rx || true
  cat "$out"; rm -f "$out"
}

# dcengine on the wan path: `dcengine serve` in $WAN_B, the load (sender
# and receiver) in $WAN_A, so every message crosses the path twice (two
# associations of 50 ms round trip in series, each direction's bottleneck
# once). ours_wan big ARGS...: the server and the load with 8 MiB uplink
# buffers and 16 MiB SCTP receive buffers (the defaults: 4 and 4 MiB), the
# server's pause overrun and slow-consumer bound raised to match
# (`HubConfig::check`). ours_wan before ARGS...: $WAN_BEFORE (another
# dcengine binary, e.g. the one before a change) with its own defaults.
# Up to 30 s of drain: with the large buffers seconds of messages can be
# queued when the sending stops (the default 5 s counted them lost).
ours_wan() {
  next_port
  local big=() srv_big=() dc=$DC
  if [ "$1" = big ]; then
    shift
    big=(--uplink-buffer 8388608 --sctp-receive-buffer 16777216)
    srv_big=("${big[@]}" --pause-overrun 33554432 --slow-consumer-buffer 67108864)
    set -- "$@" "${big[@]}"
  elif [ "$1" = before ]; then
    shift
    dc=$WAN_BEFORE
  fi
  ip netns exec "$WAN_B" "$dc" serve --insecure-plaintext --bind 10.77.0.2:$PORT --secret "$SECRET" --workers 1 \
    --durable-kbps 0 --lossy-kbps 0 --high-lossy-kbps 0 --broadcast-pps 0 --member-kbps 0 --member-mps 0 \
    --log-level warn "${srv_big[@]}" > /dev/null &
  local srv=$!
  sleep 0.3
  DCENGINE_SECRET=$SECRET ip netns exec "$WAN_A" timeout $((WAN_DURATION + WARMUP + 60)) "$dc" load \
    --server 10.77.0.2:$PORT --server-pid $srv --duration "$WAN_DURATION" --warmup "$WARMUP" --drain 30 \
    --json "$@" || true
  kill -TERM "$srv" 2>/dev/null || true
  wait "$srv" 2>/dev/null || true
}

# dcengine point to point on the wan path, the way TCP goes: one process
# in $WAN_A whose embedded server (10.77.0.1, one worker as `serve` above)
# hosts the sender (--p2p) and whose client engine starts in $WAN_B
# (--client-netns): every message crosses the path once, over one
# association, from $WAN_A to $WAN_B as iperf3's bytes do.
ours_wan_p2p() {
  ip netns exec "$WAN_A" timeout $((WAN_DURATION + WARMUP + 60)) "$DC" load \
    --bind 10.77.0.1:0 --client-netns "$WAN_B" --p2p --server-workers 1 \
    --duration "$WAN_DURATION" --warmup "$WARMUP" --drain 30 --json "$@" || true
}

ours_p2p() {
  "$DC" load --embedded --p2p --duration "$DURATION" --warmup "$WARMUP" --json "$@" || true
}

show() { # SIDE JSON
  python3 -c '
import json,sys
r=json.loads(sys.argv[2]) if sys.argv[2] else {}
m=r.get("delivered_messages_per_s", r.get("messages_per_s", r.get("datagrams_per_s", 0)))
b=r.get("delivered_bytes_per_s", r.get("bytes_per_s", 0))
e=r.get("errors") or ""
print(f"  {sys.argv[1]:<14} {m/1e3:9.1f} k/s {b/1e6:8.1f} MB/s {e}")' "$1" "$2" >&2
}

for sc in "${scenarios[@]}"; do
  say "$sc: $ROUNDS rounds, A/B interleaved"
  for r in $(seq 1 "$ROUNDS"); do
    case $sc in
      p2p-100B|p2p-1200B)
        size=${sc#p2p-}; size=${size%B}
        j=$(ours_p2p --sending-participants 1 --size "$size"); show ours "$j"; record "$sc" ours "$r" ab "$j"
        j=$(usrsctp "$size"); show usrsctp "$j"; record "$sc" usrsctp "$r" ab "$j"
        j=$(timeout $((DURATION + 20)) "$STRAIGHT" "$size" "$DURATION" 65536 || true)
        show straightforward "$j"; record "$sc" straightforward "$r" ab "$j"
        j=$(raw_blast send "$size"); show raw-mmsg "$j"; record "$sc" raw-mmsg "$r" ab "$j"
        j=$(raw_blast gso "$size"); show raw-gso "$j"; record "$sc" raw-gso "$r" ab "$j"
        ;;
      relay-100B)
        j=$(ours_served --sending-participants 1 --size 100); show ours "$j"; record "$sc" ours "$r" ab "$j"
        max=$(field "$j" delivered_messages_per_s | cut -d. -f1)
        if [ "${max:-0}" -gt 0 ]; then
          j=$(ours_served --sending-participants 1 --size 100 --rate $((max / 2)))
          show "ours@50%" "$j"; record "$sc" ours "$r" half-load "$j"
        fi
        j=$(raw_forward 1 100); show raw-forwarder "$j"; record "$sc" raw-forwarder "$r" ab "$j"
        ;;
      fanout-63)
        j=$(ours_served --participants 64 --sending-participants 1 --size 100); show ours "$j"; record "$sc" ours "$r" ab "$j"
        j=$(raw_forward 63 100); show raw-forwarder "$j"; record "$sc" raw-forwarder "$r" ab "$j"
        ;;
      broadcast-64)
        # Everyone talks to everyone: 64 participants, each broadcasting.
        j=$(ours_served --participants 64 --sending-participants 64 --size 100); show ours "$j"; record "$sc" ours "$r" ab "$j"
        j=$(raw_forward 63 100); show raw-forwarder "$j"; record "$sc" raw-forwarder "$r" ab "$j"
        ;;
      latency-under-load)
        # Relay 100 B: the open-loop maximum, then p50/p99 at 10, 50 and
        # 90 % of it, paced.
        j=$(ours_served --sending-participants 1 --size 100); show ours "$j"; record "$sc" ours "$r" ab "$j"
        lmax=$(field "$j" delivered_messages_per_s | cut -d. -f1)
        if [ "${lmax:-0}" -gt 0 ]; then
          for pct in 10 50 90; do
            kind=sweep; [ "$pct" = 50 ] && kind=half-load
            j=$(ours_served --sending-participants 1 --size 100 --rate $((lmax * pct / 100)))
            show "ours@$pct%" "$j"; record "$sc" ours "$r" "$kind" "$j"
          done
        fi
        ;;
      priority-under-saturation)
        # One sender participant: a Normal Durable sender open loop
        # (1,000-byte, then 32 KiB messages) and a High Lossy one at 20
        # messages/s of 100 B, to one receiver in the same namespace: both
        # legs cross the 1 Mbit/s link. The Normal class's latency is what
        # a FIFO would give the High messages.
        # Then the same with only the uplink shaped: one 1 Mbit/s link, as
        # P4 states it.
        trap 'shaped_down; wan_down' EXIT
        for hops in both uplink; do
          shaped_down; shaped_up "$hops"
          for bulk in 1000 32768; do
            j=$(ours_shaped --participants 2 --sending-participants 1 --senders 2 --high 50 --high-lossy \
                  --high-rate 20 --high-size 100 --size "$bulk" --window 0 --no-progress)
            kind=bulk-$bulk
            [ "$hops" = uplink ] && kind=$kind-one-hop
            show "ours/$kind" "$j"; record "$sc" ours "$r" "$kind" "$j"
          done
        done
        shaped_down
        ;;
      wan)
        # Durable bulk against TCP and usrsctp on the same emulated path,
        # the path up once for all rounds (its counters at the end).
        if [ "$r" = 1 ]; then
          trap 'shaped_down; wan_down' EXIT
          wan_down; wan_up
          echo "wan: $WAN_RATE_MBIT Mbit/s, $WAN_DELAY_MS ms one way, loss $WAN_LOSS each way, seed $WAN_SEED, $WAN_DURATION s measured; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
        fi
        j=$(ours_wan --sending-participants 1 --size 1200 --window 0 --no-progress); show ours "$j"; record "$sc" ours "$r" ab "$j"
        if [ -n "${WAN_BEFORE:-}" ]; then
          j=$(ours_wan before --sending-participants 1 --size 1200 --window 0 --no-progress)
          show ours-before "$j"; record "$sc" ours-before "$r" ab "$j"
        fi
        j=$(ours_wan big --sending-participants 1 --size 1200 --window 0 --no-progress)
        show ours/big-buffers "$j"; record "$sc" ours "$r" big-buffers "$j"
        j=$(ours_wan_p2p --sending-participants 1 --size 1200 --window 0 --no-progress)
        show ours-p2p "$j"; record "$sc" ours-p2p "$r" ab "$j"
        j=$(tcp_wan); show tcp "$j"; record "$sc" tcp "$r" ab "$j"
        j=$(tcp_wan relay); show tcp-relayed "$j"; record "$sc" tcp-relayed "$r" ab "$j"
        # SCTP's congestion control is TCP Reno's (RFC 9260 7.2): the same
        # algorithm over TCP, and CUBIC, beside the system's default.
        j=$(tcp_wan reno); show tcp-reno "$j"; record "$sc" tcp-reno "$r" ab "$j"
        j=$(tcp_wan cubic); show tcp-cubic "$j"; record "$sc" tcp-cubic "$r" ab "$j"
        j=$(usrsctp_wan 1200); show usrsctp "$j"; record "$sc" usrsctp "$r" ab "$j"
        if [ "$r" = "$ROUNDS" ]; then
          echo "wan: load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
          wan_down
        fi
        ;;
      scale-10k)
        # Idle associations on one server (2 workers), each participant
        # sending 1 message a second to one other: the server's RSS and CPU
        # against the number of associations, and how fast they joined.
        for n in 100 2500 5000 10000; do
          j=$(ours_served --clients 4 --calls $((n / 10)) --participants 10 --sending-participants 10 \
                --recipients 1 --rate 1 --size 100 --window 0)
          show "ours@$n" "$j"; record "$sc" ours "$r" "scale-$n" "$j"
        done
        # And idle: 10,000 associations that send nothing (the tool then
        # says nothing was delivered, which is the point).
        j=$(ours_served --clients 4 --calls 1000 --participants 10 --sending-participants 0)
        record "$sc" ours "$r" idle-10000 "$j"
        ;;
    esac
  done
  if [ "$sc" = relay-100B ] && [ "${max:-0}" -gt 0 ]; then
    say "$sc: offered-load sweep up to 125 % of the last open-loop maximum ($max/s)"
    for pct in 10 25 50 75 90 100 125; do
      rate=$((max * pct / 100))
      j=$(ours_served --sending-participants 1 --size 100 --rate "$rate"); show "ours@$pct%" "$j"; record "$sc" ours 0 sweep "$j"
    done
  fi
done

say "report"
"$REPORT" "$OUT" | tee "$OUT/report.txt"
