#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each and prints one table row per
# target: execs, coverage (libFuzzer's final `cov:`), crashes (new files in fuzz/artifacts/<t>/).
#
#   fuzz/run-all.sh SECONDS [TARGET...]
#
# Needs cargo-fuzz 0.13 (`cargo install cargo-fuzz --version 0.13.2 --locked`); runs on stable
# through RUSTC_BOOTSTRAP=1. Targets are built once, with AddressSanitizer unless
# FUZZ_SANITIZER=none (about twice the execs per second; our crates forbid unsafe code, but the
# dependencies have some). Each target starts from its committed seeds in fuzz/corpus/<t>/ and
# writes what it discovers to fuzz/work/<t>/ (ignored by git), so the seeds stay as committed.
# Logs: fuzz/work/<t>.log. Exit status 1 if any target crashed.
set -uo pipefail

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
    echo "usage: fuzz/run-all.sh SECONDS [TARGET...]" >&2
    exit 2
fi
seconds="$1"
shift
cd "$(dirname "$0")"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --version 0.13.2 --locked" >&2
    exit 2
fi
export RUSTC_BOOTSTRAP=1
sanitizer="${FUZZ_SANITIZER:-address}"

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build -s "$sanitizer" || exit 2

# Targets that go through files (store, corpus, canaries) use TMPDIR: keep it in RAM if we can.
scratch="$(mktemp -d "$( [ -d /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}" )/warden-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

crashed=0
rows=()
for t in "${targets[@]}"; do
    mkdir -p "work/$t" "artifacts/$t" "corpus/$t"
    before="$(find "artifacts/$t" -type f | wc -l)"
    TMPDIR="$scratch" cargo fuzz run -s "$sanitizer" "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"work/$t.log" 2>&1
    status=$?
    execs="$(grep -o 'stat::number_of_executed_units: [0-9]*' "work/$t.log" | tail -1 | awk '{print $2}')"
    cov="$(grep -E '^#[0-9]+' "work/$t.log" | grep -o 'cov: [0-9]*' | tail -1 | awk '{print $2}')"
    crashes=$(( $(find "artifacts/$t" -type f | wc -l) - before ))
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes="?"  # failed without an artifact (build or harness error): see the log
    fi
    if [ "$crashes" != 0 ]; then
        crashed=1
    fi
    rows+=("$(printf '%-28s %14s %8s %8s' "$t" "${execs:-?}" "${cov:-?}" "$crashes")")
done

printf '%-28s %14s %8s %8s\n' target execs cov crashes
printf '%s\n' "${rows[@]}"
exit "$crashed"
