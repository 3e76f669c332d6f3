#!/usr/bin/env bash
# /tmp/wan3-ab.sh ROUNDS LOSS BIN... : our binaries only, interleaved, on the wan bridge path.
set -u
R=$1; LOSS=$2; shift 2
BRIDGE=/work/wt-wan3/target/perf-wan-bridge/release/wan-bridge
A=dcq-a-$$; B=dcq-b-$$; SECRET=s$RANDOM
$BRIDGE --tap-a qa$$ --tap-b qb$$ --delay-ms 25 --loss $LOSS --rate-mbit 1000 --seed 1 --max-seconds 600 > /tmp/wan3-bridge-$$.json &
BP=$!
for i in $(seq 50); do ip link show qb$$ >/dev/null 2>&1 && break; sleep 0.1; done
ip netns add $A; ip netns add $B
ip link set qa$$ netns $A; ip link set qb$$ netns $B
ip -n $A addr add 10.77.0.1/24 dev qa$$; ip -n $B addr add 10.77.0.2/24 dev qb$$
ip -n $A link set lo up; ip -n $B link set lo up
ip -n $A link set qa$$ txqueuelen 10000 up; ip -n $B link set qb$$ txqueuelen 10000 up
sleep 0.5
PORT=$((30000 + RANDOM % 10000))
for r in $(seq $R); do
  for dc in "$@"; do
    PORT=$((PORT+1))
    ip netns exec $B $dc serve --insecure-plaintext --bind 10.77.0.2:$PORT --secret $SECRET --workers 1 \
      --durable-kbps 0 --lossy-kbps 0 --high-lossy-kbps 0 --broadcast-pps 0 --member-kbps 0 --member-mps 0 --log-level warn >/dev/null 2>&1 &
    srv=$!; sleep 0.3
    j=$(DCENGINE_SECRET=$SECRET ip netns exec $A timeout 40 $dc load --server 10.77.0.2:$PORT --server-pid $srv --duration 8 --warmup 2 --json --sending-participants 1 --size 1200 --window 0 --no-progress 2>/dev/null)
    kill -TERM $srv; wait $srv 2>/dev/null
    python3 /tmp/wan3-show.py "$dc" "$j"
  done
done
kill -TERM $BP; wait $BP
ip netns del $A; ip netns del $B
