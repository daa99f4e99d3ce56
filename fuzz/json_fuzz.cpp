// libFuzzer harness for the strict JSON parser: any input must parse or raise json::ParseError, within the
// depth and value limits. Parsed strings must survive quote() -> parse() unchanged.
#include <cstdint>
#include <string_view>

#include "../native/common/json.h"

using namespace ipclip;

static void requireRoundTrip(const json::Value& v) {
  if (v.isString() && json::parse(json::quote(v.text())).text() != v.text()) __builtin_trap();
  for (size_t i = 0; i < v.size(); ++i) requireRoundTrip(v.at(i));  // depth is bounded by maxDepth
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    json::ParseOptions options;
    options.maxValues = 10000;
    requireRoundTrip(json::parse(std::string_view(reinterpret_cast<const char*>(data), size), options));
  } catch (const json::ParseError&) {
  }
  return 0;
}
