// libFuzzer harness for the torch.save reader (native/common/{zip,pickle,torch_file}): the stored-zip container,
// the restricted unpickler and the tensor walk. Any input must decode or raise IpclipError; a sanitizer report,
// another exception, a trap or a timeout is a bug. Inputs that decode are checked against invariants: every
// tensor's bytes equal numel × element size, and the total never exceeds the expansion bound.
//
// Two ways in, chosen by the first byte, so the fuzzer reaches the unpickler without first having to forge a
// valid zip with CRCs: even → the input is a whole file; odd → the rest is data.pkl, wrapped here in a valid
// archive together with storages "0".."3" of 64 bytes each.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../native/common/torch_file.h"
#include "../native/common/zip.h"

using namespace ipclip;

static void require(bool ok) {
  if (!ok) __builtin_trap();
}

static void put(std::vector<uint8_t>& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// A stored zip of `files`, as torch.save lays it out (without the alignment padding).
static std::vector<uint8_t> archive(const std::vector<std::pair<std::string, std::vector<uint8_t>>>& files) {
  std::vector<uint8_t> out, cd;
  for (const auto& [name, data] : files) {
    const uint32_t crc = zip::crc32(data.data(), data.size());
    const size_t offset = out.size();
    put(out, 0x04034b50, 4); put(out, 20, 2); put(out, 0, 2); put(out, 0, 2); put(out, 0, 4);
    put(out, crc, 4); put(out, data.size(), 4); put(out, data.size(), 4); put(out, name.size(), 2); put(out, 0, 2);
    out.insert(out.end(), name.begin(), name.end());
    out.insert(out.end(), data.begin(), data.end());
    put(cd, 0x02014b50, 4); put(cd, 20, 2); put(cd, 20, 2); put(cd, 0, 2); put(cd, 0, 2); put(cd, 0, 4);
    put(cd, crc, 4); put(cd, data.size(), 4); put(cd, data.size(), 4); put(cd, name.size(), 2);
    put(cd, 0, 2); put(cd, 0, 2); put(cd, 0, 2); put(cd, 0, 2); put(cd, 0, 4); put(cd, offset, 4);
    cd.insert(cd.end(), name.begin(), name.end());
  }
  const size_t cdOffset = out.size();
  out.insert(out.end(), cd.begin(), cd.end());
  put(out, 0x06054b50, 4); put(out, 0, 2); put(out, 0, 2); put(out, files.size(), 2); put(out, files.size(), 2);
  put(out, cd.size(), 4); put(out, cdOffset, 4); put(out, 0, 2);
  return out;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::vector<uint8_t> file;
  if (data[0] & 1) {
    std::vector<std::pair<std::string, std::vector<uint8_t>>> files;
    files.push_back({"archive/data.pkl", std::vector<uint8_t>(data + 1, data + size)});
    for (int k = 0; k < 4; ++k) {
      std::vector<uint8_t> storage(64);
      for (size_t i = 0; i < storage.size(); ++i) storage[i] = static_cast<uint8_t>(i * 13 + k);
      files.push_back({"archive/data/" + std::to_string(k), storage});
    }
    files.push_back({"archive/version", {'3', '\n'}});
    file = archive(files);
  } else {
    file.assign(data + 1, data + size);
  }
  try {
    TorchCheckpoint c = decodeTorchCheckpoint(file.data(), file.size(), "fuzz");
    uint64_t total = 0;
    for (const TorchTensor& t : c.tensors) {
      uint64_t numel = 1;
      for (int64_t d : t.shape) numel *= static_cast<uint64_t>(d);
      const uint64_t es = t.dtype == "F64" || t.dtype == "I64" ? 8 : t.dtype == "F32" || t.dtype == "I32" ? 4
                          : t.dtype == "F16" || t.dtype == "BF16" || t.dtype == "I16" ? 2 : 1;
      require(t.data.size() == numel * es);
      unsigned sum = 0;
      for (uint8_t b : t.data) sum += b;
      (void)sum;
      total += t.data.size();
    }
    require(total <= kTorchMaxExpansion * file.size() + (1u << 20));
  } catch (const IpclipError&) {
    // Rejected cleanly.
  }
  return 0;
}

#ifdef TORCH_FUZZ_SEEDS
// Built without -fsanitize=fuzzer and with -DTORCH_FUZZ_SEEDS, this file writes a starting corpus:
//   torch_fuzz_seeds OUT_DIR [model.pth.tar ...]
// crafted pickles (both ways in) using every supported opcode, and for each real torch.save file given, its
// data.pkl in the "pickle only" way (the release's Dassl structure: optimizer, scheduler, nested dicts).
#include <fstream>
#include <iostream>
#include <iterator>

static void write(const std::string& path, uint8_t mode, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.put(static_cast<char>(mode));
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

static void str(std::vector<uint8_t>& p, const std::string& s) {
  p.push_back('X');
  put(p, s.size(), 4);
  p.insert(p.end(), s.begin(), s.end());
}

static void raw(std::vector<uint8_t>& p, const std::string& s) { p.insert(p.end(), s.begin(), s.end()); }

static void tensor(std::vector<uint8_t>& p, const std::string& key, int numel, int offset,
                   const std::vector<int>& sizes, const std::vector<int>& strides) {
  raw(p, "ctorch._utils\n_rebuild_tensor_v2\n((");
  str(p, "storage");
  raw(p, "ctorch\nFloatStorage\n");
  str(p, key);
  str(p, "cpu");
  p.push_back('K'); p.push_back(static_cast<uint8_t>(numel));
  raw(p, "tQ");
  p.push_back('K'); p.push_back(static_cast<uint8_t>(offset));
  p.push_back('(');
  for (int s : sizes) { p.push_back('K'); p.push_back(static_cast<uint8_t>(s)); }
  raw(p, "t(");
  for (int s : strides) { p.push_back('K'); p.push_back(static_cast<uint8_t>(s)); }
  raw(p, "t");
  p.push_back(0x89);
  raw(p, "ccollections\nOrderedDict\n)RtR");
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: torch_fuzz_seeds OUT_DIR [file.pth ...]\n";
    return 2;
  }
  const std::string out = argv[1];
  std::vector<uint8_t> p = {0x80, 2, '}', 'q', 0, '('};
  str(p, "state_dict");
  raw(p, "}(");
  str(p, "w");
  tensor(p, "0", 16, 0, {4, 4}, {4, 1});
  str(p, "wt");
  tensor(p, "1", 16, 2, {2, 3}, {1, 4});
  str(p, "p");
  raw(p, "ctorch._utils\n_rebuild_parameter\n(");
  tensor(p, "2", 16, 0, {16}, {1});
  p.push_back(0x88);
  raw(p, "}tR");
  raw(p, "u");
  str(p, "epoch");
  p.push_back('M'); put(p, 300, 2);
  str(p, "lr");
  p.push_back('G'); for (uint8_t b : {0x3f, 0x84, 0x7a, 0xe1, 0x47, 0xae, 0x14, 0x7b}) p.push_back(b);
  str(p, "misc");
  raw(p, "](N");
  p.push_back(0x8a); p.push_back(2); p.push_back(0x01); p.push_back(0x80);
  p.push_back('J'); put(p, 0xFFFFFFFEu, 4);
  p.push_back(0x8c); p.push_back(1); p.push_back('s');
  raw(p, "q\x01h\x01");  // BINPUT / BINGET: the same string twice
  p.push_back(0x94);      // MEMOIZE
  raw(p, "eu.");
  write(out + "/crafted-pickle", 1, p);

  std::vector<std::pair<std::string, std::vector<uint8_t>>> files = {{"archive/data.pkl", p}};
  for (int k = 0; k < 3; ++k) files.push_back({"archive/data/" + std::to_string(k), std::vector<uint8_t>(64, static_cast<uint8_t>(k))});
  files.push_back({"archive/version", {'3', '\n'}});
  write(out + "/crafted-archive", 0, archive(files));
  int written = 2;

  for (int i = 2; i < argc; ++i) {
    std::ifstream f(argv[i], std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    try {
      zip::Archive a = zip::Archive::parse(bytes.data(), bytes.size(), argv[i]);
      for (const auto& e : a.entries()) {
        if (e.name.size() > 9 && e.name.compare(e.name.size() - 9, 9, "/data.pkl") == 0) {
          write(out + "/real-" + std::to_string(i) + ".pkl", 1,
                std::vector<uint8_t>(bytes.begin() + static_cast<std::ptrdiff_t>(e.offset),
                                     bytes.begin() + static_cast<std::ptrdiff_t>(e.offset + e.size)));
          ++written;
        }
      }
    } catch (const IpclipError& e) {
      std::cerr << "skipping " << argv[i] << ": " << e.what() << "\n";
    }
  }
  std::cerr << "wrote " << written << " torch seeds\n";
  return 0;
}
#endif
