#!/usr/bin/env bash
# sctp-proto against dcsctp, side by side (issue 14). One command:
#
#   perf/sctp-stacks/run.sh [options of the binary, e.g. --rounds 3]
#
# Two runs, one after the other (never at once):
#  1. results.json / results.md: sctp-proto (vendored) against dcsctp as
#     published (0.1.16 from crates.io).
#  2. results-nolog.json / results-nolog.md: the same against dcsctp 0.1.16
#     with one line added, so that `logging::log_packet` returns unless the
#     `log` crate's Info level is on: as published it hex-formats every
#     packet sent and received into a String before asking `log` whether
#     anyone listens (src/lib.rs), which is most of its CPU in the
#     throughput cases. The patched copy is made under the target directory
#     from cargo's own copy of the crate; nothing of it is committed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"

nice -n 10 cargo build --release --locked
nice -n 10 "$CARGO_TARGET_DIR/release/sctp-stacks" --out results.json "$@" | tee results.md

# The patched dcsctp, in a target directory of its own.
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/dcsctp-0.1.16 | head -n 1)
patched="$CARGO_TARGET_DIR/dcsctp-0.1.16-nolog"
rm -rf "$patched"
cp -r "$src" "$patched"
rm -f "$patched/rust-toolchain.toml"
grep -c '^    pub fn log_packet(' "$patched/src/lib.rs" | grep -qx 1
sed -i '/^    pub fn log_packet(/a\        if !log::log_enabled!(log::Level::Info) {\n            return;\n        }' \
    "$patched/src/lib.rs"
grep -q 'log_enabled!(log::Level::Info)' "$patched/src/lib.rs"
# `--config patch` rewrites Cargo.lock: keep the committed one.
cp Cargo.lock "$CARGO_TARGET_DIR/Cargo.lock.keep"
trap 'cp "$CARGO_TARGET_DIR/Cargo.lock.keep" "$here/Cargo.lock"' EXIT
nice -n 10 cargo build --release --target-dir "$CARGO_TARGET_DIR/nolog" \
    --config "patch.crates-io.dcsctp.path=\"$patched\""
nice -n 10 "$CARGO_TARGET_DIR/nolog/release/sctp-stacks" --dcsctp-name dcsctp-nolog \
    --out results-nolog.json "$@" | tee results-nolog.md
