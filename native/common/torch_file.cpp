#include "torch_file.h"

#include <cerrno>
#include <cstring>
#include <string_view>

#include "pickle.h"
#include "untrusted.h"
#include "zip.h"

namespace ipclip {

namespace {

using pickle::Kind;
using pickle::Value;

// The legacy format starts with a pickled magic number (protocol 2, LONG1 of 10 bytes).
constexpr uint8_t kLegacyMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

class Walker {
 public:
  Walker(const uint8_t* data, const zip::Archive& zip, std::string prefix, uint64_t budget, const std::string& label)
      : data_(data), zip_(zip), prefix_(std::move(prefix)), budget_(budget), label_(label) {}

  void walk(const Value& v, std::vector<std::string>& path, int depth) {
    if (depth > kTorchMaxDepth) bad("nesting deeper than " + std::to_string(kTorchMaxDepth) + " levels (or a cycle)");
    if (++visits_ > pickle::Document::kMaxValues) bad("more than " + std::to_string(pickle::Document::kMaxValues) + " values to walk");
    switch (v.kind) {
      case Kind::Dict:
        for (size_t i = 0; i + 1 < v.items.size(); i += 2) {
          path.push_back(keyText(*v.items[i]));
          walk(*v.items[i + 1], path, depth + 1);
          path.pop_back();
        }
        break;
      case Kind::List:
      case Kind::Tuple:
        for (size_t i = 0; i < v.items.size(); ++i) {
          path.push_back(std::to_string(i));
          walk(*v.items[i], path, depth + 1);
          path.pop_back();
        }
        break;
      case Kind::Tensor: tensor(v.tensor, path); break;
      case Kind::Storage: bad("a bare storage at " + pathText(path) + " (not a tensor)");
      case Kind::Global: bad("a bare global " + pickle::shownText(v.text) + " at " + pathText(path));
      default: {
        TorchScalar s;
        s.path = path;
        s.type = v.kind == Kind::None ? TorchScalar::Type::None
                 : v.kind == Kind::Bool ? TorchScalar::Type::Bool
                 : v.kind == Kind::Int  ? TorchScalar::Type::Int
                 : v.kind == Kind::Float ? TorchScalar::Type::Float
                                         : TorchScalar::Type::String;
        s.boolean = v.boolean;
        s.integer = v.integer;
        s.number = v.number;
        s.text = v.text;
        out.scalars.push_back(std::move(s));
      }
    }
  }

  TorchCheckpoint out;

 private:
  [[noreturn]] void bad(const std::string& problem) { fail("ERR_BAD_FILE", label_ + ": " + problem); }

  std::string keyText(const Value& k) {
    if (k.kind == Kind::String) return k.text;
    if (k.kind == Kind::Int) return std::to_string(k.integer);
    bad(std::string("a dict key that is not a string or an int"));
  }

  static std::string pathText(const std::vector<std::string>& path) {
    std::string s;
    for (const auto& p : path) s += (s.empty() ? "" : ".") + p;
    return pickle::shownText(s.empty() ? "<root>" : s);
  }

  void tensor(const pickle::TensorRef& t, const std::vector<std::string>& path) {
    const pickle::StorageRef& s = t.storage->storage;
    const std::string name = prefix_ + "data/" + s.key;
    const zip::Entry* e = zip_.find(name);
    if (!e) bad("tensor " + pathText(path) + " refers to storage " + pickle::shownText(s.key) + ", which the archive lacks");
    if (e->compressed) bad("storage " + pickle::shownText(s.key) + " is compressed; torch.save stores entries uncompressed");
    // The pickle's element count was checked against the tensor's extent; the entry must hold exactly that.
    if (static_cast<uint64_t>(s.numel) > UINT64_MAX / s.elementSize || e->size != static_cast<uint64_t>(s.numel) * s.elementSize) {
      bad("storage " + pickle::shownText(s.key) + " has " + std::to_string(e->size) + " bytes, not " + std::to_string(s.numel) +
          " × " + std::to_string(s.elementSize));
    }
    uint64_t numel = 1;
    for (int64_t d : t.sizes) {
      // Each dimension's extent already fits in the storage (size ≤ numel + 1 unless another is 0).
      if (d != 0 && numel > UINT64_MAX / static_cast<uint64_t>(d)) bad("tensor " + pathText(path) + " has too many elements");
      numel *= static_cast<uint64_t>(d);
    }
    if (numel > UINT64_MAX / s.elementSize) bad("tensor " + pathText(path) + " has too many elements");
    const uint64_t bytes = numel * s.elementSize;
    if (bytes > budget_) {
      bad("tensors expand to more than " + std::to_string(kTorchMaxExpansion) + "× the file's size (at " + pathText(path) + ")");
    }
    budget_ -= bytes;

    TorchTensor out1;
    out1.path = path;
    out1.dtype = s.dtype;
    out1.shape = t.sizes;
    out1.data.resize(static_cast<size_t>(bytes));
    const uint8_t* src = data_ + e->offset;
    const size_t es = s.elementSize;
    if (numel > 0) {
      // Odometer over the index space, copying one element at a time (contiguous rows in one block).
      const size_t nd = t.sizes.size();
      bool contiguous = true;
      int64_t expect = 1;
      for (size_t i = nd; i-- > 0;) {
        if (t.sizes[i] != 1 && t.strides[i] != expect) contiguous = false;
        expect *= t.sizes[i];
      }
      if (contiguous) {
        std::memcpy(out1.data.data(), src + static_cast<size_t>(t.offset) * es, static_cast<size_t>(bytes));
      } else {
        std::vector<int64_t> idx(nd, 0);
        for (uint64_t k = 0; k < numel; ++k) {
          int64_t off = t.offset;
          for (size_t i = 0; i < nd; ++i) off += idx[i] * t.strides[i];
          std::memcpy(out1.data.data() + k * es, src + static_cast<size_t>(off) * es, es);
          for (size_t i = nd; i-- > 0;) {
            if (++idx[i] < t.sizes[i]) break;
            idx[i] = 0;
          }
        }
      }
    }
    out.tensors.push_back(std::move(out1));
  }

  const uint8_t* data_;
  const zip::Archive& zip_;
  std::string prefix_;
  uint64_t budget_;
  const std::string& label_;
  size_t visits_ = 0;
};

}  // namespace

TorchCheckpoint decodeTorchCheckpoint(const uint8_t* data, size_t size, const std::string& label) {
  auto bad = [&label](const std::string& problem) { fail("ERR_BAD_FILE", label + ": " + problem); };
  if (size == 0) bad("empty file (0 bytes)");
  if (size >= sizeof(kLegacyMagic) && std::memcmp(data, kLegacyMagic, sizeof(kLegacyMagic)) == 0) {
    bad("the legacy torch.save format (PyTorch < 1.6) is not supported; re-save it with a newer PyTorch "
        "(torch.save(torch.load(f), f2)) or convert the state_dict to safetensors");
  }
  if (!zip::looksLikeZip(data, size)) bad("not a torch.save file (no zip archive)");
  const zip::Archive zip = zip::Archive::parse(data, size, label);

  // Entries sit under one top-level folder named after the file when it was saved.
  std::string prefix;
  int found = 0;
  for (const auto& e : zip.entries()) {
    const size_t slash = e.name.find('/');
    if (slash != std::string::npos && e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      prefix = e.name.substr(0, slash + 1);
      ++found;
    }
  }
  for (const auto& e : zip.entries()) {
    if (e.name.size() >= 14 && e.name.compare(e.name.size() - 14, 14, "/constants.pkl") == 0) {
      bad("a TorchScript archive (torch.jit.save), not a torch.save checkpoint");
    }
  }
  if (found == 0) bad("the archive has no <name>/data.pkl (not a torch.save checkpoint)");
  if (found > 1) bad("the archive has " + std::to_string(found) + " data.pkl entries");
  const zip::Entry* pkl = zip.find(prefix + "data.pkl");
  if (pkl->compressed) bad("data.pkl is compressed; torch.save stores entries uncompressed");
  if (const zip::Entry* order = zip.find(prefix + "byteorder"); order && !order->compressed) {
    const std::string_view v(reinterpret_cast<const char*>(data + order->offset), order->size);
    if (v != "little") bad("byte order " + pickle::shownText(v) + " is not supported (little-endian only)");
  }

  const pickle::Document doc =
      pickle::Document::parse(std::string_view(reinterpret_cast<const char*>(data + pkl->offset), pkl->size), label);
  Walker walker(data, zip, prefix, kTorchMaxExpansion * static_cast<uint64_t>(size) + (1u << 20), label);
  std::vector<std::string> path;
  walker.walk(doc.root(), path, 0);
  return std::move(walker.out);
}

TorchCheckpoint readTorchCheckpoint(const std::string& path) {
  auto bytes = readUntrustedFile(path, "a torch.save file");
  return decodeTorchCheckpoint(bytes.data(), bytes.size(), path);
}

}  // namespace ipclip
