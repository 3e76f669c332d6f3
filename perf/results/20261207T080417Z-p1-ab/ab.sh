#!/bin/bash
# ab.sh ROUNDS DUR bin1 bin2 ... : interleaved p2p 100 B runs; msg/s and CPU µs per message
R=$1; D=$2; shift 2
for r in $(seq 1 $R); do
  for b in "$@"; do
    l=$(cut -d' ' -f1 /proc/loadavg)
    $b load --embedded --p2p --sending-participants 1 --size 100 --duration $D --warmup 1 --json 2>/dev/null > /tmp/p1/ab_last.json
    v=$(python3 -c '
import json; j=json.load(open("/tmp/p1/ab_last.json"))
n=j["delivered_messages"]; cpu=(j["server"]["cpu_s"] or 0)+(j["client"]["cpu_s"] or 0)
print(round(j["delivered_messages_per_s"]), "msg/s", round(cpu*1e6/max(n,1),3), "cpu-us/msg", "lost", j["durable_lost"], "err", j["errors"])' 2>/dev/null)
    echo "round $r $(basename $b) load $l: $v"
  done
done
