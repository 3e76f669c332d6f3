#!/usr/bin/env bash
# Runs the wire fuzz targets.
#
#   fuzz/run.sh SECONDS [TARGET...]
#
# Runs each TARGET (default: every file in fuzz/fuzz_targets/) for SECONDS
# seconds with `cargo fuzz run -s none` (no sanitizer: that build works on
# the stable toolchain; the default AddressSanitizer build needs nightly).
# Each target fuzzes a scratch corpus, fuzz/corpus-run/TARGET, seeded from the
# checked-in fuzz/corpus/TARGET, so the seed corpus in the repo stays small;
# the scratch corpus is kept between runs. Crash inputs are written by
# libFuzzer to fuzz/artifacts/TARGET/ (reproduce one with
# `cargo fuzz run -s none TARGET fuzz/artifacts/TARGET/crash-...`).
#
# Prints an exec/s summary line per target and exits non-zero if any target
# failed (a crash, a panic, a timeout, or a build error).
set -uo pipefail

usage() {
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
}

[[ $# -ge 1 && $1 =~ ^[0-9]+$ && $1 -gt 0 ]] || usage
seconds=$1
shift

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# cargo-fuzz finds the fuzz project from the crate root.
cd "$fuzz_dir/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found; installing it" >&2
    cargo install cargo-fuzz --locked || exit 1
fi

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    targets=()
    for f in "$fuzz_dir"/fuzz_targets/*.rs; do
        targets+=("$(basename "$f" .rs)")
    done
fi

logs="$fuzz_dir/corpus-run/logs"
mkdir -p "$logs"
summary=()
failed=0

for target in "${targets[@]}"; do
    if [[ ! -f "$fuzz_dir/fuzz_targets/$target.rs" ]]; then
        echo "no such target: $target" >&2
        summary+=("$target: no such target")
        failed=1
        continue
    fi
    corpus="$fuzz_dir/corpus-run/$target"
    mkdir -p "$corpus" "$fuzz_dir/artifacts/$target"
    if [[ -d "$fuzz_dir/corpus/$target" ]]; then
        # Seed without overwriting what earlier runs found.
        cp -n "$fuzz_dir/corpus/$target"/* "$corpus"/ 2>/dev/null || true
    fi

    log="$logs/$target.log"
    echo "=== $target: ${seconds}s (log: $log)"
    # Show the progress lines that matter; the full output is in the log.
    cargo fuzz run -s none "$target" "$corpus" -- \
        -max_total_time="$seconds" -print_final_stats=1 2>&1 | tee "$log" |
        grep -E '^(#[0-9]+.*(INITED|DONE)|==[0-9]+==|SUMMARY|thread .* panicked|Done |error)'
    status=${PIPESTATUS[0]}

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    units=$(ls "$corpus" | wc -l)
    if [[ $status -eq 0 ]]; then
        result=ok
    else
        result="FAILED (exit $status; crash inputs in fuzz/artifacts/$target/)"
        failed=1
    fi
    summary+=("$target: ${execs:-?} runs, ${rate:-?} exec/s, corpus $units inputs: $result")
done

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
exit $failed
