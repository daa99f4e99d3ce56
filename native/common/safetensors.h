// Reads and writes .safetensors files without libtorch, treating every file as hostile.
//
// Layout: u64 little-endian N, N bytes of a UTF-8 JSON object (tensor name -> {dtype, shape, data_offsets},
// plus an optional "__metadata__" object of strings), then the data section; offsets are relative to it.
// Everything is validated before a TensorView exists: a view always lies inside the owned buffer and its
// byte size always equals numel * dtypeSize. Every rejection is an IpclipError: ERR_FILE_NOT_FOUND for a
// missing path, ERR_BAD_FILE (message "<label>: <problem>") for anything else. docs/hostile-inputs.md lists
// the cases.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "errors.h"

namespace ipclip {

enum class DType { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL };

// Bytes per element (BOOL is one byte).
size_t dtypeSize(DType dtype);
// The safetensors spelling: "F32", "F16", ..., "BOOL".
const char* dtypeName(DType dtype);

// One tensor inside a file's buffer. `data` is little-endian and NOT necessarily aligned for the element
// type: copy it (memcpy) rather than casting the pointer. It stays valid while the owning file lives.
struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const uint8_t* data;
  size_t nbytes;
};

class SafetensorsFile {
 public:
  // Largest header accepted, as in the reference implementation.
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;
  static constexpr size_t kMaxDims = 8;

  // Reads the whole file into memory and validates it. `path` (as given) labels error messages.
  static SafetensorsFile open(const std::string& path);
  // Validates `bytes`, which the result then owns; `label` names the source in error messages.
  static SafetensorsFile fromBytes(std::vector<uint8_t> bytes, std::string label);

  // Tensors in header order.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // The tensor named `name`, or nullptr.
  const TensorView* find(const std::string& name) const;
  // The "__metadata__" strings (empty when the file has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& label() const { return label_; }

  // Views point into bytes_: moving keeps the heap buffer (and so the views) in place; copying would not.
  SafetensorsFile(SafetensorsFile&&) = default;
  SafetensorsFile& operator=(SafetensorsFile&&) = default;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

 private:
  SafetensorsFile() = default;
  void parse();

  std::string label_;
  std::vector<uint8_t> bytes_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// "[2,3]": a shape as error messages show it.
std::string shapeText(const std::vector<int64_t>& shape);
// Element count of a validated shape, or false when the product of its non-zero dimensions (and hence the byte
// size, for elements of `elementSize` bytes) does not fit in int64.
bool checkedNumel(const std::vector<int64_t>& shape, size_t elementSize, uint64_t& numel);

// The writer, encodeSafetensors, is in the test build only: test/native/safetensors_encode.h.

}  // namespace ipclip
