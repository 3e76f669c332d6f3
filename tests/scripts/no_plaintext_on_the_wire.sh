#!/usr/bin/env bash
# The demo's traffic captured on loopback with tcpdump: with the defaults
# (ICE + DTLS) no message text, call id or participant id crosses the wire
# in the clear; with --insecure-plaintext (the control) it does.
#
#   tests/scripts/no_plaintext_on_the_wire.sh PATH/TO/dcengine
set -euo pipefail
dc=${1:?usage: $0 PATH/TO/dcengine}
if ! command -v tcpdump >/dev/null 2>&1; then
    echo "installing tcpdump"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcpdump >/dev/null
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

capture() { # NAME DEMO-ARGS...
    local name=$1
    shift
    tcpdump -i lo -U -w "$dir/$name.pcap" udp >/dev/null 2>&1 &
    local pid=$!
    sleep 1
    "$dc" demo --seconds 2 "$@" > "$dir/$name.out"
    sleep 0.5
    kill "$pid"
    wait "$pid" || true
}

count() { # FILE NEEDLE
    python3 -c 'import sys; print(open(sys.argv[1], "rb").read().count(sys.argv[2].encode()))' "$1" "$2"
}

capture dtls
capture plain --insecure-plaintext
grep -q 'Durable messages lost: 0' "$dir/dtls.out"
packets=$(tcpdump -r "$dir/dtls.pcap" 2>/dev/null | wc -l)
fail=0
for needle in 'hello #' 'demo' 'alice' 'bob'; do
    in_dtls=$(count "$dir/dtls.pcap" "$needle")
    in_plain=$(count "$dir/plain.pcap" "$needle")
    echo "\"$needle\": $in_dtls times in $packets encrypted packets, $in_plain times in plaintext"
    [ "$in_dtls" -eq 0 ] || fail=1
done
[ "$(count "$dir/plain.pcap" 'hello #')" -gt 0 ] || { echo "the control saw no plaintext: the capture is broken"; exit 1; }
[ "$packets" -gt 500 ] || { echo "only $packets packets captured"; exit 1; }
[ $fail -eq 0 ] || { echo "plaintext on the wire"; exit 1; }
echo "no plaintext on the wire: ok"
