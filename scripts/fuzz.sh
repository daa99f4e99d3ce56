#!/usr/bin/env bash
# Fuzzes the torch-free safetensors reader, the JSON parser and the torch.save reader (zip + restricted
# unpickler) with libFuzzer (clang 14 on Debian bookworm)
# under AddressSanitizer + UBSan, each for SECONDS (default 60), and prints how many inputs each ran.
# The corpus is seeded in a temporary directory (never the repository) from small crafted files and from
# shrunk/truncated derivatives of ../shared/fixtures/**/*.safetensors, plus every saved regression.
# A crasher is written to test/native/regressions/ (replayed by scripts/native-tests.sh) and fails the run.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! command -v clang++ >/dev/null 2>&1 || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  echo "== installing clang and libFuzzer (apt-get install -y clang libclang-rt-14-dev)"
  if [ "$(id -u)" -ne 0 ]; then echo "fuzz.sh: need root to install clang; install clang libclang-rt-14-dev first" >&2; exit 1; fi
  apt-get install -y clang libclang-rt-14-dev >/dev/null
fi

out=.cache/fuzz
mkdir -p "$out" test/native/regressions
lib="native/common/safetensors.cpp native/common/json.cpp native/common/untrusted.cpp"
writer="test/native/safetensors_encode.cpp"  # the test-build writer: re-encoding and crafted seeds
flags="-std=c++17 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"
echo "== building fuzzers with clang++ ($flags)"
# shellcheck disable=SC2086
clang++ $flags fuzz/safetensors_fuzz.cpp $lib $writer -o "$out/safetensors_fuzz"
# shellcheck disable=SC2086
clang++ $flags fuzz/json_fuzz.cpp native/common/json.cpp -o "$out/json_fuzz"
# shellcheck disable=SC2086
clang++ -std=c++17 -O1 fuzz/make_seeds.cpp $lib $writer -o "$out/make_seeds"
torchlib="native/common/torch_file.cpp native/common/pickle.cpp native/common/zip.cpp native/common/json.cpp native/common/untrusted.cpp"
# shellcheck disable=SC2086
clang++ $flags fuzz/torch_fuzz.cpp $torchlib -o "$out/torch_fuzz"
# shellcheck disable=SC2086
clang++ -std=c++17 -O1 -DTORCH_FUZZ_SEEDS fuzz/torch_fuzz.cpp $torchlib -o "$out/torch_fuzz_seeds"

work=$(mktemp -d /tmp/ipclip-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/safetensors" "$work/json" "$work/torch"
fixtures=()
if [ -d ../shared/fixtures ]; then
  while IFS= read -r f; do fixtures+=("$f"); done < <(find ../shared/fixtures -name '*.safetensors' | sort)
else
  echo "== ../shared/fixtures not found: seeding from crafted files only"
fi
"$out/make_seeds" "$work/safetensors" "${fixtures[@]}"
torchfiles=()
if [ -d ../shared/fixtures ]; then
  while IFS= read -r f; do torchfiles+=("$f"); done < <(find ../shared/fixtures -name '*.pth*' | sort)
fi
"$out/torch_fuzz_seeds" "$work/torch" "${torchfiles[@]}"
find test/native/regressions -maxdepth 1 -type f ! -name README.md ! -name 'torch-*' -exec cp {} "$work/safetensors/" \;
find test/native/regressions -maxdepth 1 -type f -name 'torch-*' -exec cp {} "$work/torch/" \;
# JSON seeds: the headers of the safetensors seeds, and metadata values that are JSON themselves.
for f in "$work"/safetensors/*; do
  n=$(od -An -t u8 -N 8 "$f" | tr -d ' ')
  [ -n "$n" ] && [ "$n" -lt 65536 ] && tail -c +9 "$f" | head -c "$n" > "$work/json/$(basename "$f")" || true
done

status=0
total=0
for name in safetensors json torch; do
  echo "== fuzzing $name for ${secs}s"
  log="$work/$name.log"
  dict=fuzz/safetensors.dict
  [ "$name" = torch ] && dict=fuzz/torch.dict
  set +e
  "$out/${name}_fuzz" "$work/$name" -max_total_time="$secs" -max_len=65536 -dict="$dict" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="test/native/regressions/$name-" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
  echo "$name: ${execs:-?} executions in ${secs}s (${cov:-no coverage line}), exit $rc"
  total=$((total + ${execs:-0}))
  if [ "$rc" -ne 0 ]; then
    status=1
    echo "!! $name fuzzer failed; the last lines of its log:" >&2
    tail -n 40 "$log" >&2
  fi
done
echo "== total executions: $total"
ls test/native/regressions | grep -v README.md | sed 's/^/saved crasher: test\/native\/regressions\//' || true
exit $status
