#include "safetensors.h"


#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <new>

#include "json.h"
#include "untrusted.h"

namespace ipclip {

namespace {

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::F32, "F32", 4}, {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2}, {DType::F64, "F64", 8},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4}, {DType::I16, "I16", 2},   {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},   {DType::BOOL, "BOOL", 1},
};

const DTypeInfo& info(DType dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d;
  }
  fail("ERR_INVALID_ARGUMENT", "unknown DType value " + std::to_string(static_cast<int>(dtype)));
}

uint64_t readU64LE(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

std::string shapeText(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

// Element count of a validated shape, or false when the product of its non-zero dimensions (and hence the
// byte size, for elements of `elementSize` bytes) does not fit in int64. Zero dimensions make numel 0 but
// do not excuse an overflowing product: libtorch would reject such a shape anyway.
bool checkedNumel(const std::vector<int64_t>& shape, size_t elementSize, uint64_t& numel) {
  const uint64_t limit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / elementSize;
  uint64_t product = 1;
  bool hasZero = false;
  for (int64_t d : shape) {
    if (d == 0) { hasZero = true; continue; }
    auto u = static_cast<uint64_t>(d);
    if (product > limit / u) return false;
    product *= u;
  }
  numel = hasZero ? 0 : product;
  return true;
}


size_t dtypeSize(DType dtype) { return info(dtype).size; }
const char* dtypeName(DType dtype) { return info(dtype).name; }

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

SafetensorsFile SafetensorsFile::fromBytes(std::vector<uint8_t> bytes, std::string label) {
  SafetensorsFile f;
  f.label_ = std::move(label);
  f.bytes_ = std::move(bytes);
  f.parse();
  return f;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  return fromBytes(readUntrustedFile(path, "a safetensors file"), path);
}

void SafetensorsFile::parse() {
  const std::string& L = label_;
  auto bad = [&L](const std::string& problem) { fail("ERR_BAD_FILE", L + ": " + problem); };

  const size_t size = bytes_.size();
  if (size == 0) bad("empty file (0 bytes)");
  if (size < 8) bad("file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  const uint64_t headerLen = readU64LE(bytes_.data());
  if (headerLen == 0) bad("header length is 0");
  if (headerLen > kMaxHeaderBytes) {
    bad("header length " + std::to_string(headerLen) + " exceeds the " + std::to_string(kMaxHeaderBytes) +
        "-byte limit");
  }
  if (headerLen > size - 8) {
    bad("header length " + std::to_string(headerLen) + " runs past the end of the file (" + std::to_string(size) +
        " bytes)");
  }
  const size_t dataStart = 8 + static_cast<size_t>(headerLen);
  const uint64_t dataSize = size - dataStart;

  json::Value header;
  try {
    header = json::parse(std::string_view(reinterpret_cast<const char*>(bytes_.data() + 8), headerLen));
  } catch (const json::ParseError& e) {
    bad(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.isObject()) bad("header is not a JSON object");

  struct Span {
    uint64_t begin, end;
    size_t tensor;
  };
  std::vector<Span> spans;
  tensors_.reserve(header.size());

  for (size_t i = 0; i < header.size(); ++i) {
    const std::string& name = header.key(i);
    const json::Value& entry = header.at(i);

    if (name == "__metadata__") {
      if (!entry.isObject()) bad("__metadata__ is not an object");
      for (size_t m = 0; m < entry.size(); ++m) {
        if (!entry.at(m).isString()) bad("__metadata__ value " + shownText(entry.key(m)) + " is not a string");
        metadata_[entry.key(m)] = entry.at(m).text();
      }
      continue;
    }

    const std::string what = "tensor " + shownText(name);
    if (!entry.isObject()) bad(what + " is not an object");
    for (size_t k = 0; k < entry.size(); ++k) {
      const std::string& field = entry.key(k);
      if (field != "dtype" && field != "shape" && field != "data_offsets") {
        bad(what + " has unexpected field " + shownText(field));
      }
    }
    const json::Value* dtypeV = entry.get("dtype");
    const json::Value* shapeV = entry.get("shape");
    const json::Value* offsetsV = entry.get("data_offsets");
    if (!dtypeV || !shapeV || !offsetsV) bad(what + " needs dtype, shape and data_offsets");

    if (!dtypeV->isString()) bad(what + " dtype is not a string");
    const DTypeInfo* dt = nullptr;
    for (const auto& d : kDTypes) {
      if (dtypeV->text() == d.name) dt = &d;
    }
    if (!dt) bad(what + " has unsupported dtype " + shownText(dtypeV->text()));

    if (!shapeV->isArray()) bad(what + " shape is not a list");
    if (shapeV->size() > kMaxDims) {
      bad(what + " shape has " + std::to_string(shapeV->size()) + " dimensions (at most " +
          std::to_string(kMaxDims) + ")");
    }
    std::vector<int64_t> shape;
    for (size_t d = 0; d < shapeV->size(); ++d) {
      int64_t dim = 0;
      if (!shapeV->at(d).toInt64(dim) || dim < 0) bad(what + " shape is not a list of non-negative integers");
      shape.push_back(dim);
    }
    uint64_t numel = 0;
    if (!checkedNumel(shape, dt->size, numel)) bad(what + " shape " + shapeText(shape) + " overflows the element count");
    const uint64_t nbytes = numel * dt->size;

    uint64_t begin = 0, end = 0;
    if (!offsetsV->isArray() || offsetsV->size() != 2 || !offsetsV->at(0).toUint64(begin) ||
        !offsetsV->at(1).toUint64(end)) {
      bad(what + " data_offsets is not two non-negative integers");
    }
    const std::string range = "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + ")";
    if (begin > end) bad(what + " " + range + " begin after end");
    if (end > dataSize) {
      bad(what + " " + range + " run past the data section (" + std::to_string(dataSize) + " bytes)");
    }
    if (end - begin != nbytes) {
      bad(what + " " + range + " do not match dtype " + dt->name + " \xC3\x97 shape " + shapeText(shape) + " = " +
          std::to_string(nbytes) + " bytes");
    }

    index_[name] = tensors_.size();  // the JSON parser already rejected duplicate keys
    spans.push_back({begin, end, tensors_.size()});
    tensors_.push_back({name, dt->dtype, std::move(shape), bytes_.data() + dataStart + begin,
                        static_cast<size_t>(nbytes)});
  }

  // Empty tensors cannot overlap anything; among the rest, sorted by begin, any overlap shows between
  // neighbours.
  spans.erase(std::remove_if(spans.begin(), spans.end(), [](const Span& s) { return s.begin == s.end; }),
              spans.end());
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i - 1].end > spans[i].begin) {
      bad("tensors " + shownText(tensors_[spans[i - 1].tensor].name) + " and " + shownText(tensors_[spans[i].tensor].name) +
          " overlap in the data section");
    }
  }
}

}  // namespace ipclip
