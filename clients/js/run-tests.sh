#!/usr/bin/env bash
# Tests of the JS client (@dcengine/client): installs its dev dependencies
# (npm ci), then
#   1. `npm test`: tsc (the package alone, without Node's types, then with
#      the tests), node's test runner over dist/test/: the codec vectors
#      shared with Rust, the codec's and the client core's unit tests;
#   2. `npm run test:integration`: the client black-box against a real
#      `dcengine serve` over loopback UDP (ICE, DTLS, SCTP), with
#      node-datachannel (libdatachannel) as the RTCPeerConnection. Uses
#      $DCENGINE_BIN, or builds the workspace's debug binary.
# Exits non-zero on any failure. Needs node (>= 20), npm and cargo.
set -euo pipefail
cd "$(dirname "$0")"
command -v node >/dev/null 2>&1 || { echo "run-tests.sh: node is not installed" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "run-tests.sh: npm is not installed" >&2; exit 1; }
node --version
npm ci --no-audit --no-fund
npm test
if [ -z "${DCENGINE_BIN:-}" ]; then
  (cd ../.. && cargo build --bin dcengine)
fi
npm run test:integration
