#!/usr/bin/env bash
# Tests of the JS client (@dcengine/client): installs its one dev dependency
# (typescript) and runs `npm test` (tsc, then node's test runner over
# dist/test/: the shared codec vectors and the codec's unit tests).
# Exits non-zero on any failure. Needs node (>= 20) and npm.
set -euo pipefail
cd "$(dirname "$0")"
command -v node >/dev/null 2>&1 || { echo "run-tests.sh: node is not installed" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "run-tests.sh: npm is not installed" >&2; exit 1; }
node --version
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi
npm test
