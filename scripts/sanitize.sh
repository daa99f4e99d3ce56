#!/usr/bin/env bash
# Builds the native addon with AddressSanitizer + UBSan into .cache/build-asan/ (beside, never over, build/) and runs
# a subset of the vitest suite against it, then the torch-free native unit tests (scripts/native-tests.sh,
# which has its own ASan/UBSan and valgrind builds). CI-able; not part of `npm test`.
#
# Node itself is not instrumented, so the sanitizer runtimes are LD_PRELOADed into it and leak checking is off
# (node and libtorch keep allocations alive until exit by design). lib/native/load.ts loads the addon named by
# $IPCLIP_ADDON, which points the tests at the instrumented build.
#
# Usage: scripts/sanitize.sh [vitest test files…]   (default: the reliability suite and the native-facing tests)
#   IPCLIP_ASAN_JOBS=N   compile jobs (default: number of cores)
#   IPCLIP_ASAN_SKIP_BUILD=1  reuse .cache/build-asan as it is
#   IPCLIP_ASAN_BUILD_ONLY=1  build and stop
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=.cache/build-asan
addon="$out/Release/ipclip.node"
jobs=${IPCLIP_ASAN_JOBS:-$(nproc)}
san="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize=vptr"

if [ -z "${IPCLIP_ASAN_SKIP_BUILD:-}" ]; then
  echo "== building the addon with $san into $out/ ($jobs jobs)"
  launcher=()
  command -v ccache >/dev/null 2>&1 && launcher=(--CDCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  # -fno-sanitize=vptr: libtorch is built without RTTI checks in mind; vptr checks across its
  # uninstrumented classes only produce noise. -O1 -g keeps stacks readable and the tests fast enough.
  CMAKE_BUILD_PARALLEL_LEVEL=$jobs node node_modules/cmake-js/bin/cmake-js compile --directory "$root" --out "$out" \
    --parallel "$jobs" "${launcher[@]}" \
    "--CDCMAKE_CXX_FLAGS=$san -g -O1" \
    "--CDCMAKE_SHARED_LINKER_FLAGS=$san"
fi
[ -f "$addon" ] || { echo "sanitize.sh: $addon was not built" >&2; exit 1; }
[ -n "${IPCLIP_ASAN_BUILD_ONLY:-}" ] && { echo "== built $addon"; exit 0; }

libasan=$(g++ -print-file-name=libasan.so)
libubsan=$(g++ -print-file-name=libubsan.so)
for l in "$libasan" "$libubsan"; do
  [ -f "$l" ] || { echo "sanitize.sh: $l not found (install the g++ that built the addon)" >&2; exit 1; }
done

tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  tests=(test/reliability/hostile.test.ts test/reliability/untrusted.test.ts test/reliability/concurrency.test.ts
    test/safetensors.test.ts test/clip.test.ts)
fi
echo "== vitest under ASan/UBSan: ${tests[*]}"
# halt_on_error: any report fails the run. alloc_dealloc_mismatch=0: libtorch frees some buffers from
# uninstrumented code paths that ASan cannot pair with their allocation. The RSS/soak test is skipped under
# ASan (its quarantine makes memory grow by design): IPCLIP_SANITIZED tells it so.
IPCLIP_ADDON="$root/$addon" IPCLIP_SANITIZED=1 LD_PRELOAD="$libasan $libubsan" \
  ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:alloc_dealloc_mismatch=0:abort_on_error=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  node node_modules/vitest/vitest.mjs run "${tests[@]}"

echo "== native unit tests (ASan/UBSan, then valgrind)"
scripts/native-tests.sh
echo "== sanitize.sh: all passed"
