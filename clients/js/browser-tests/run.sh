#!/usr/bin/env bash
# The browser suite: headless Chromium (three pages) and the native
# `dcengine chat` in calls on a real `dcengine serve` over loopback, and the
# demo page with a screenshot (artifacts/demo.png).
#
#   bash clients/js/browser-tests/run.sh [test files...]
#
# Installs Chromium with apt-get if /usr/bin/chromium is missing, builds the
# binary (cargo build --bin dcengine; or set DCENGINE_BIN), bundles the
# client into web/dcengine.js, starts the server on free loopback ports
# (UDP and HTTP; --web clients/js/web --demo-tokens), waits for
# /v1/health, runs the tests (node --test, one file at a time) and always
# stops the server. Artifacts (screenshot, server log) go to
# browser-tests/artifacts/. Exits non-zero on any failure.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
JS="$(cd "$HERE/.." && pwd)"
ROOT="$(cd "$JS/../.." && pwd)"
ARTIFACTS="$HERE/artifacts"
TESTS=()
for t in "$@"; do TESTS+=("$(realpath "$t")"); done
[ ${#TESTS[@]} -gt 0 ] || TESTS=("$HERE"/*.test.mjs)
mkdir -p "$ARTIFACTS"
start=$(date +%s)
step() { echo "== $* ($(($(date +%s) - start)) s)"; }

# Chromium.
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  step "installing chromium"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
"$CHROMIUM" --version 2>/dev/null

# The binary.
if [ -z "${DCENGINE_BIN:-}" ]; then
  step "cargo build --bin dcengine"
  (cd "$ROOT" && cargo build --bin dcengine)
  DCENGINE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/dcengine"
fi
[ -x "$DCENGINE_BIN" ] || { echo "run.sh: no binary at $DCENGINE_BIN" >&2; exit 1; }

# The client bundle (web/dcengine.js).
cd "$JS"
[ -d node_modules/playwright-core ] && [ -d node_modules/esbuild ] || npm ci --no-audit --no-fund
step "bundling the client"
if node -e 'process.exit(require("./package.json").scripts?.bundle ? 0 : 1)'; then
  npm run --silent bundle
else
  npx esbuild src/index.ts --bundle --format=esm --outfile=web/dcengine.js
fi

# Free loopback ports: one UDP, one TCP.
read -r UDP_PORT HTTP_PORT < <(node -e '
  const dgram = require("node:dgram"), net = require("node:net");
  const u = dgram.createSocket("udp4");
  u.bind(0, "127.0.0.1", () => {
    const t = net.createServer().listen(0, "127.0.0.1", () => {
      console.log(u.address().port, t.address().port);
      u.close(); t.close();
    });
  });')
export DCENGINE_SECRET="browser-tests-$RANDOM$RANDOM$RANDOM"
export DCENGINE_UDP="127.0.0.1:$UDP_PORT"
export DCENGINE_BASE_URL="http://127.0.0.1:$HTTP_PORT"
export DCENGINE_BIN DCENGINE_ARTIFACTS="$ARTIFACTS" CHROMIUM
rm -f "$ARTIFACTS/demo.png"

step "starting dcengine serve (udp $DCENGINE_UDP, http $DCENGINE_BASE_URL)"
"$DCENGINE_BIN" serve --bind "$DCENGINE_UDP" --http "127.0.0.1:$HTTP_PORT" \
  --web "$JS/web" --demo-tokens --log-level "${DCENGINE_LOG_LEVEL:-info}" \
  >"$ARTIFACTS/server.log" 2>&1 &
SERVER=$!
stop_server() {
  if kill -0 "$SERVER" 2>/dev/null; then
    kill -TERM "$SERVER" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER" 2>/dev/null || true
  fi
  wait "$SERVER" 2>/dev/null || true
}
trap stop_server EXIT

for i in $(seq 1 300); do
  if curl -fsS "$DCENGINE_BASE_URL/v1/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "run.sh: the server exited:" >&2; cat "$ARTIFACTS/server.log" >&2; exit 1
  fi
  if [ "$i" -eq 300 ]; then
    echo "run.sh: no /v1/health after 30 s:" >&2; cat "$ARTIFACTS/server.log" >&2; exit 1
  fi
  sleep 0.1
done

step "running the tests"
status=0
node --test --test-concurrency=1 --test-reporter=spec "${TESTS[@]}" || status=$?
step "tests done (exit $status)"
if [ -f "$ARTIFACTS/demo.png" ]; then
  echo "screenshot: $ARTIFACTS/demo.png ($(wc -c <"$ARTIFACTS/demo.png") bytes)"
fi
if [ "$status" -ne 0 ]; then
  echo "--- server log (last 40 lines) ---"; tail -n 40 "$ARTIFACTS/server.log"
fi
exit "$status"
