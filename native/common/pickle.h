// A restricted, torch-free unpickler for tensor checkpoints (what `torch.load(weights_only=True)` accepts, and
// less). The pickle is hostile data: nothing is imported, called or executed. Only the opcodes a tensor
// checkpoint uses are understood (protocols 2–5: containers, ints, floats, strings, memo, GLOBAL/STACK_GLOBAL,
// REDUCE, BUILD, BINPERSID), and only these globals may appear, each turned into plain data:
//   torch._utils._rebuild_tensor_v2 / _rebuild_parameter → a Tensor value (storage, offset, sizes, strides),
//   collections.OrderedDict → an empty Dict, torch.<T>Storage → a storage type named in a persistent id.
// Anything else — another global (os.system, builtins.eval, numpy …), another opcode, a malformed argument —
// refuses the whole pickle with IpclipError ERR_BAD_FILE "<label>: …"; no partial value is ever returned.
// Memory is bounded by the input: at most kMaxValues objects, kMaxStack stack entries, kMaxMarks open marks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "errors.h"
#include "untrusted.h"

namespace ipclip::pickle {

enum class Kind { None, Bool, Int, Float, String, Tuple, List, Dict, Global, Storage, Tensor };

struct Value;

// A persistent id ('storage', <type>, key, location, numel) of torch's zip format.
struct StorageRef {
  std::string dtype;  // safetensors spelling: "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"
  size_t elementSize = 0;
  std::string key;       // entry `<stem>/data/<key>`
  std::string location;  // "cpu", "cuda:0", … (data only)
  int64_t numel = 0;
};

struct TensorRef {
  const Value* storage = nullptr;  // a Kind::Storage value
  int64_t offset = 0;              // in elements
  std::vector<int64_t> sizes, strides;
};

struct Value {
  Kind kind = Kind::None;
  bool boolean = false;
  int64_t integer = 0;
  double number = 0;
  std::string text;                  // String; Global: "module.name"
  std::vector<const Value*> items;   // Tuple / List; Dict: key0, value0, key1, value1, …
  StorageRef storage;
  TensorRef tensor;
};

// The unpickled object graph. Values live in (and are owned by) the Document; containers hold pointers into
// it, so shared and even cyclic references are safe to destroy. Consumers must bound their own traversal
// depth (the graph may contain cycles built through the memo).
class Document {
 public:
  static constexpr size_t kMaxValues = 2'000'000;
  static constexpr size_t kMaxStack = 4'000'000;
  static constexpr size_t kMaxMarks = 1000;
  static constexpr size_t kMaxDims = 16;

  // Unpickles `data`. `label` names the source in error messages.
  static Document parse(std::string_view data, const std::string& label);

  const Value& root() const { return *root_; }

  Document(Document&&) = default;
  Document& operator=(Document&&) = default;

 private:
  Document() = default;
  std::deque<Value> values_;
  const Value* root_ = nullptr;
  friend class Unpickler;
};

// Quoting of file text in messages: the one shared with the other hostile-file readers.
using ipclip::shownText;

}  // namespace ipclip::pickle
