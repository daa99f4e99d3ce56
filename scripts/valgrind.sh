#!/usr/bin/env bash
# Runs the torch-free native unit tests (test/native: safetensors reader, JSON parser, saved fuzz regressions)
# under valgrind memcheck once, on an unsanitised build (valgrind and ASan do not mix). CI-able; not part of
# `npm test`. scripts/native-tests.sh runs the same tests under ASan/UBSan first and then valgrind; this script is
# the valgrind half alone, failing (exit 99) on any memory error or definite leak.
# (The libtorch addon is not run under valgrind: libtorch's own start-up takes minutes there and reports
# allocations it keeps for the process lifetime; the addon gets ASan/UBSan in scripts/sanitize.sh instead.)
# Usage: scripts/valgrind.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v valgrind >/dev/null 2>&1 || { echo "valgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
out=${NATIVE_TEST_OUT:-.cache/native-tests}
mkdir -p "$out"
srcs="test/native/safetensors_test.cpp test/native/safetensors_encode.cpp native/common/safetensors.cpp native/common/json.cpp native/common/untrusted.cpp"
# shellcheck disable=SC2086
g++ -std=c++17 -Wall -Wextra -Werror -g -O1 $srcs -o "$out/safetensors_test_valgrind"
valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --track-origins=yes \
  "$out/safetensors_test_valgrind" "$root/../shared" test/native/regressions 2>&1 | tee "$out/valgrind.log" | tail -n 15
status=${PIPESTATUS[0]}
echo "== valgrind.sh: exit $status ($(grep -o 'ERROR SUMMARY: [0-9]* errors' "$out/valgrind.log" | tail -n 1))"
exit "$status"
