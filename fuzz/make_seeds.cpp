// Writes a starting corpus for the fuzzers into a directory: small crafted files, and for each real
// safetensors file given, two derivatives small enough to mutate quickly (the fixtures are megabytes):
//   <name>.shrunk  the same header (names, dtypes, rank, metadata) with every dimension cut to 1, re-encoded;
//   <name>.head    the original bytes cut 64 bytes into the data section (a truncated download).
// Usage: make_seeds OUT_DIR [file.safetensors ...]
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "../native/common/safetensors.h"
#include "../test/native/safetensors_encode.h"

using namespace ipclip;

static void write(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

static std::vector<uint8_t> withHeader(const std::string& header, size_t dataBytes) {
  std::vector<uint8_t> out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + dataBytes, 0x3c);
  return out;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: make_seeds OUT_DIR [file.safetensors ...]\n";
    return 2;
  }
  const std::string out = argv[1];
  int written = 0;

  std::vector<uint8_t> data(64);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 37);
  write(out + "/crafted-all-dtypes", encodeSafetensors({{"a.f32", DType::F32, {2, 2}, data.data(), 16},
                                                        {"b.f16", DType::F16, {3}, data.data(), 6},
                                                        {"c.bf16", DType::BF16, {1, 1, 2}, data.data(), 4},
                                                        {"d.f64", DType::F64, {1}, data.data(), 8},
                                                        {"e.i64", DType::I64, {1}, data.data(), 8},
                                                        {"f.i32", DType::I32, {2}, data.data(), 8},
                                                        {"g.i16", DType::I16, {1}, data.data(), 2},
                                                        {"h.i8", DType::I8, {2}, data.data(), 2},
                                                        {"i.u8", DType::U8, {}, data.data(), 1},
                                                        {"j.bool", DType::BOOL, {0, 3}, nullptr, 0}},
                                                       {{"format", "pt"}, {"texts", "[\"caf\\u00e9\"]"}}));
  write(out + "/crafted-empty-header", withHeader("{}      ", 0));
  write(out + "/crafted-overlap", withHeader("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                                             "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6));
  write(out + "/crafted-size-mismatch", withHeader("{\"w\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,10]}}", 10));
  write(out + "/crafted-deep", withHeader(std::string(80, '[') + std::string(80, ']'), 0));
  write(out + "/crafted-escapes", withHeader("{\"__metadata__\":{\"\\ud83d\\ude00\":\"\\u0000\\n\"},"
                                             "\"x\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8));
  written += 6;

  for (int i = 2; i < argc; ++i) {
    const std::string path = argv[i];
    const std::string base = out + "/" + path.substr(path.find_last_of('/') + 1);
    std::ifstream in(path, std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    try {
      SafetensorsFile f = SafetensorsFile::fromBytes(bytes, path);
      std::vector<TensorView> small;
      for (const TensorView& t : f.tensors()) {
        TensorView s = t;
        for (auto& d : s.shape) d = d > 0 ? 1 : 0;
        size_t numel = 1;
        for (auto d : s.shape) numel *= static_cast<size_t>(d);
        s.nbytes = numel * dtypeSize(s.dtype);
        small.push_back(s);  // s.data still points into the original, which holds at least nbytes
      }
      write(base + ".shrunk", encodeSafetensors(small, f.metadata()));
      uint64_t headerLen = 0;
      for (int b = 7; b >= 0; --b) headerLen = (headerLen << 8) | bytes[static_cast<size_t>(b)];
      bytes.resize(std::min<size_t>(bytes.size(), 8 + headerLen + 64));
      write(base + ".head", bytes);
      written += 2;
    } catch (const IpclipError& e) {
      std::cerr << "make_seeds: skipped " << e.what() << "\n";
    }
  }
  std::cout << written << " seed files in " << out << "\n";
  return 0;
}
