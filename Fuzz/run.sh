#!/usr/bin/env bash
# Builds and runs one libFuzzer target of VirtioGrant.
#
#   Fuzz/run.sh TARGET SECONDS     fuzz TARGET (split-device, split-driver, packed-device,
#                                  packed-driver, grants, chain-io, vhost-user, block-device, session, inflight-recovery,
#                                  or all) for
#                                  SECONDS each; fails on any finding
#   Fuzz/run.sh --seeds            rewrite Fuzz/Corpus from the seed generator
#
# The build is a release build with coverage and AddressSanitizer (SWIFT.md A3: the fuzzer flag
# for SwiftPM, and both sanitizers appended last for the compiler; never two --sanitize flags).
# New inputs go to Fuzz/.work/<target>/corpus (not checked in); a finding is written to
# Fuzz/.work/<target>/crash-* and the script exits 1. Keep a fixed finding's input under
# Fuzz/Regressions/<target>/ so that `swift test` replays it for ever.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

if [[ "${1:-}" == "--seeds" ]]; then
    swift build --package-path . --product fuzz-seeds
    .build/debug/fuzz-seeds Corpus
    exit 0
fi
if [[ $# -ne 2 ]] || ! [[ "$2" =~ ^[0-9]+$ ]]; then
    echo "usage: Fuzz/run.sh TARGET SECONDS | Fuzz/run.sh --seeds" >&2
    exit 2
fi

declare -A binaries=([split-device]=FuzzSplitDevice [split-driver]=FuzzSplitDriver [packed-device]=FuzzPackedDevice
                     [packed-driver]=FuzzPackedDriver [grants]=FuzzGrants
                     [chain-io]=FuzzChainIO [vhost-user]=FuzzVhostUser [block-device]=FuzzBlockDevice [session]=FuzzSession
                     [inflight-recovery]=FuzzInflightRecovery)
if [[ "$1" == all ]]; then
    targets=(split-device split-driver packed-device packed-driver grants chain-io vhost-user block-device session inflight-recovery)
elif [[ -n "${binaries[$1]:-}" ]]; then
    targets=("$1")
else
    echo "unknown target '$1' (one of: ${!binaries[*]}, all)" >&2
    exit 2
fi

mkdir -p .work
for target in "${targets[@]}"; do
    if ! swift build --package-path . -c release --product "${binaries[$target]}" \
            --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address > .work/build.log 2>&1; then
        grep -E "error" .work/build.log >&2 || tail -20 .work/build.log >&2
        echo "the fuzz build of $target failed (Fuzz/.work/build.log)" >&2
        exit 1
    fi
done

status=0
for target in "${targets[@]}"; do
    work=".work/$target"
    mkdir -p "$work/corpus"
    dict=()
    [[ -f "Dictionaries/$target.dict" ]] && dict=(-dict="Dictionaries/$target.dict")
    echo "== $target: ${2} s"
    # -rss_limit_mb: the vhost-user target runs threads and maps memory; libFuzzer's default
    # of 2 GB is kept for the others. -timeout catches a hang (a session that never ends).
    if ! SWIFT_BACKTRACE=enable=no ".build/release/${binaries[$target]}" -max_total_time="$2" -print_final_stats=1 -timeout=20 \
            -max_len=16384 -artifact_prefix="$work/" "${dict[@]}" "$work/corpus" "Corpus/$target" \
            > "$work/log" 2>&1; then
        status=1
        echo "FINDING in $target: see $here/$work/log and $here/$work/crash-*" >&2
        grep -E "ERROR|Fatal error|invariant|SUMMARY" "$work/log" | head -5 >&2 || true
    fi
    grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)|^Done" "$work/log" || true
done
exit $status
