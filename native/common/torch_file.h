// Reads a `torch.save` file (PyTorch ≥ 1.6 zip format) without libtorch or Python, as hostile input: the zip
// container (zip.h), then data.pkl through the restricted unpickler (pickle.h), then every tensor checked
// against its storage entry and copied out contiguously. The result is plain data: the tensors and the scalar
// leaves (int, float, bool, None, string) of the unpickled tree, each with its path of keys from the root
// (dict keys as text, list/tuple positions as decimal indices).
// Errors: ERR_FILE_NOT_FOUND for a missing path; ERR_BAD_FILE "<path>: …" for everything else, including the
// legacy (pre-1.6) non-zip format and TorchScript archives, which are recognised and named.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "errors.h"

namespace ipclip {

struct TorchTensor {
  std::vector<std::string> path;
  std::string dtype;  // safetensors spelling ("F32", "F16", "I64", …)
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;  // little-endian, contiguous (row-major)
};

struct TorchScalar {
  enum class Type { None, Bool, Int, Float, String } type = Type::None;
  std::vector<std::string> path;
  bool boolean = false;
  int64_t integer = 0;
  double number = 0;
  std::string text;
};

struct TorchCheckpoint {
  std::vector<TorchTensor> tensors;
  std::vector<TorchScalar> scalars;
};

// Deepest nesting of the unpickled tree that is walked (cycles through the memo end here too).
constexpr int kTorchMaxDepth = 64;
// Tensors may not expand to more than this many times the file's bytes (plus 1 MiB): views that share or
// repeat storage (stride 0) cannot make the reader allocate what the file does not justify.
constexpr uint64_t kTorchMaxExpansion = 4;

TorchCheckpoint readTorchCheckpoint(const std::string& path);
// The same for bytes in memory; `label` names the source in messages.
TorchCheckpoint decodeTorchCheckpoint(const uint8_t* data, size_t size, const std::string& label);

}  // namespace ipclip
