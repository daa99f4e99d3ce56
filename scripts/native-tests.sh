#!/usr/bin/env bash
# Builds and runs the torch-free native unit tests (safetensors reader + JSON parser, loss scale) with g++ under
# AddressSanitizer and UBSan, then once more under valgrind (a separate unsanitised build) if it is installed.
# Usage: scripts/native-tests.sh        (from anywhere; needs only g++)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${NATIVE_TEST_OUT:-.cache/native-tests}
mkdir -p "$out"
shared="$root/../shared"
srcs="test/native/safetensors_test.cpp test/native/safetensors_encode.cpp native/common/safetensors.cpp native/common/json.cpp native/common/untrusted.cpp"
flags="-std=c++17 -Wall -Wextra -Werror -g"

echo "== building with -fsanitize=address,undefined"
# shellcheck disable=SC2086
g++ $flags -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer $srcs -o "$out/safetensors_test"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "$out/safetensors_test" "$shared" test/native/regressions
# The float16 loss scale (GradScaler's rule), also torch-free.
g++ $flags -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -Inative \
  test/native/loss_scale_test.cpp native/ipclip/loss_scale.cpp -o "$out/loss_scale_test"
"$out/loss_scale_test"

if command -v valgrind >/dev/null 2>&1; then
  echo "== building without sanitizers for valgrind"
  # shellcheck disable=SC2086
  g++ $flags -O1 $srcs -o "$out/safetensors_test_plain"
  valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
    "$out/safetensors_test_plain" "$shared" test/native/regressions
else
  echo "== valgrind not installed: skipped the valgrind run"
fi
