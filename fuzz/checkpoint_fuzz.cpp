// libFuzzer harness for the path an IP-CLIP prompt checkpoint takes through native code before libtorch sees it:
// the safetensors reader, then the JSON parser on the `ipclip` metadata document, then a walk over every tensor
// as the prompt loader does (names sorted into parameters / optimiser moments, float data read element by element
// with memcpy and checked for NaN/Inf, moment shapes checked against their parameter). The TypeScript validation
// (lib/checkpoint.ts parseMeta, IPPrompt.setState's name/shape checks) runs in JS and is not fuzzed here.
//
// Any input must parse or be rejected with IpclipError / json::ParseError; a sanitizer report, another
// exception or a trap is a bug. Seeds: real checkpoints written by the trainer, shrunk by fuzz/make_seeds.
// Build and run: see docs/reliability.md ("Fuzzing the checkpoint path").
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "../native/common/safetensors.h"
#include "../native/common/json.h"

using namespace ipclip;

static void require(bool ok) {
  if (!ok) __builtin_trap();
}

// Reads element i of a floating-point view as double (little-endian, possibly unaligned: memcpy, never cast).
static double element(const TensorView& t, size_t i) {
  if (t.dtype == DType::F32) {
    float f;
    std::memcpy(&f, t.data + 4 * i, 4);
    return f;
  }
  double d;
  std::memcpy(&d, t.data + 8 * i, 8);
  return d;
}

// The metadata document's fields the loader needs, checked for type (mirrors lib/checkpoint.ts parseMeta's
// first level); returns false for a document the loader would refuse.
static bool metaLooksValid(const json::Value& doc) {
  if (!doc.isObject()) return false;
  const json::Value* names = doc.get("classNames");
  if (!names || !names->isArray() || names->size() == 0) return false;
  for (size_t i = 0; i < names->size(); ++i) {
    if (!names->at(i).isString()) return false;
    require(json::isValidUtf8(names->at(i).text()));  // the parser only yields valid UTF-8
  }
  uint64_t v;
  const json::Value* nctx = doc.get("nCtx");
  if (!nctx || !nctx->toUint64(v) || v == 0) return false;
  const json::Value* clip = doc.get("clip");
  return clip && clip->isObject() && clip->get("config") && clip->get("fingerprint") && clip->get("fingerprint")->isString();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    SafetensorsFile f = SafetensorsFile::fromBytes(std::vector<uint8_t>(data, data + size), "fuzz-checkpoint");
    auto meta = f.metadata().find("ipclip");
    if (meta != f.metadata().end()) {
      try {
        json::Value doc = json::parse(meta->second);
        (void)metaLooksValid(doc);
      } catch (const json::ParseError&) {
        // ERR_BAD_FILE in the loader.
      }
    }
    // Parameters and optimiser moments, as the loader sorts them.
    std::map<std::string, const TensorView*> params;
    std::vector<std::pair<std::string, const TensorView*>> moments;
    size_t nonFinite = 0;
    for (const TensorView& t : f.tensors()) {
      if (t.dtype != DType::F32 && t.dtype != DType::F64) continue;  // ERR_BAD_WEIGHTS in the loader
      const size_t width = t.dtype == DType::F32 ? 4 : 8;
      require(t.nbytes % width == 0);
      size_t numel = 1;
      for (int64_t d : t.shape) numel *= static_cast<size_t>(d);
      require(numel * width == t.nbytes);  // the reader guarantees nbytes = numel × dtype size
      for (size_t i = 0; i < numel; ++i) nonFinite += !std::isfinite(element(t, i));
      static const std::string kOptim = "optim.";
      static const std::string kAvg = "exp_avg.";
      static const std::string kAvgSq = "exp_avg_sq.";
      if (t.name.compare(0, kOptim.size(), kOptim) == 0) {
        std::string rest = t.name.substr(kOptim.size());
        if (rest.compare(0, kAvgSq.size(), kAvgSq) == 0) moments.emplace_back(rest.substr(kAvgSq.size()), &t);
        else if (rest.compare(0, kAvg.size(), kAvg) == 0) moments.emplace_back(rest.substr(kAvg.size()), &t);
      } else {
        params.emplace(t.name, &t);
      }
    }
    // A moment must match its parameter's shape to be used; mismatches are refused (ERR_MISMATCH), never read.
    for (const auto& [name, m] : moments) {
      auto p = params.find(name);
      if (p != params.end() && p->second->shape == m->shape) require(p->second->nbytes == m->nbytes || p->second->dtype != m->dtype);
    }
    (void)nonFinite;
  } catch (const IpclipError&) {
    // Rejected cleanly by the reader.
  }
  return 0;
}
