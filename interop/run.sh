#!/usr/bin/env bash
# The SCTP interop matrix: dcengine's server against usrsctp, webrtc-sctp
# and the published dcsctp, over UDP on loopback; and full WebRTC peer
# connections (webrtc-rs, str0m) joining a DTLS server engine. Installs
# libusrsctp-dev (Debian) if it is missing, then runs `cargo test --locked`
# here.
#
# Debug build: the matrix waits on the network, not the CPU, and a debug
# build of these dependencies is much faster than a release one.
# Extra arguments go to the test binaries (e.g. a name filter).
set -euo pipefail
cd "$(dirname "$0")"

have_usrsctp() {
    [ -e /usr/include/usrsctp.h ] && compgen -G "/usr/lib/*/libusrsctp.so" > /dev/null
}
if ! have_usrsctp; then
    echo "interop: installing libusrsctp-dev"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libusrsctp-dev
fi

# The cells wait on the network, not the CPU: run many at once (each has
# its own server, tap and peer; the idle column starts all its cells
# together on its own).
THREADS="${INTEROP_TEST_THREADS:-12}"
start=$(date +%s)
cargo test --locked -- --test-threads="$THREADS" "$@"
echo "interop: matrix finished in $(( $(date +%s) - start )) s"
