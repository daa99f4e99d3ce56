// The safetensors writer of the test and fuzz builds (the addon writes safetensors in TS, lib/safetensors.ts):
// round trips of the reader, crafted seeds for the fuzzers.
#include "safetensors_encode.h"

#include <set>
#include <string_view>

#include "../../native/common/json.h"
#include "../../native/common/untrusted.h"

namespace ipclip {

std::vector<uint8_t> encodeSafetensors(const std::vector<TensorView>& tensors,
                                       const std::map<std::string, std::string>& metadata) {
  auto invalid = [](const std::string& msg) { fail("ERR_INVALID_ARGUMENT", "encodeSafetensors: " + msg); };

  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!json::isValidUtf8(k) || !json::isValidUtf8(v)) invalid("metadata " + shownText(k) + " is not valid UTF-8");
      if (!first) header += ',';
      first = false;
      header += json::quote(k) + ":" + json::quote(v);
    }
    header += "}";
  }

  std::set<std::string_view> names;
  uint64_t offset = 0;
  for (const TensorView& t : tensors) {
    const std::string what = "tensor " + shownText(t.name);
    if (t.name == "__metadata__") invalid(what + " uses the reserved name");
    if (!json::isValidUtf8(t.name)) invalid(what + " name is not valid UTF-8");
    if (!names.insert(t.name).second) invalid(what + " appears twice");
    if (t.shape.size() > SafetensorsFile::kMaxDims) invalid(what + " has more than 8 dimensions");
    for (int64_t d : t.shape) {
      if (d < 0) invalid(what + " has a negative dimension");
    }
    const size_t elementSize = dtypeSize(t.dtype);
    uint64_t numel = 0;
    if (!checkedNumel(t.shape, elementSize, numel)) invalid(what + " shape overflows the element count");
    if (numel * elementSize != t.nbytes) {
      invalid(what + " has " + std::to_string(t.nbytes) + " bytes but dtype " + dtypeName(t.dtype) + " \xC3\x97 shape " +
              shapeText(t.shape) + " needs " + std::to_string(numel * elementSize));
    }
    if (t.nbytes > 0 && t.data == nullptr) invalid(what + " has no data");

    if (header.size() > 1) header += ',';
    header += json::quote(t.name) + ":{\"dtype\":\"" + dtypeName(t.dtype) + "\",\"shape\":" + shapeText(t.shape) +
              ",\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + t.nbytes) + "]}";
    offset += t.nbytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');

  std::vector<uint8_t> out;
  out.reserve(8 + header.size() + offset);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  for (const TensorView& t : tensors) {
    if (t.nbytes > 0) out.insert(out.end(), t.data, t.data + t.nbytes);
  }
  return out;
}

}  // namespace ipclip
