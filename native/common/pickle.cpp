#include "pickle.h"

#include <cstring>
#include <unordered_map>

#include "json.h"

namespace ipclip::pickle {

namespace {

struct StorageType {
  const char* global;
  const char* dtype;
  size_t size;
};

constexpr StorageType kStorageTypes[] = {
    {"torch.FloatStorage", "F32", 4}, {"torch.DoubleStorage", "F64", 8}, {"torch.HalfStorage", "F16", 2},
    {"torch.BFloat16Storage", "BF16", 2}, {"torch.LongStorage", "I64", 8}, {"torch.IntStorage", "I32", 4},
    {"torch.ShortStorage", "I16", 2}, {"torch.CharStorage", "I8", 1}, {"torch.ByteStorage", "U8", 1},
    {"torch.BoolStorage", "BOOL", 1},
};

constexpr const char* kRebuildTensor = "torch._utils._rebuild_tensor_v2";
constexpr const char* kRebuildParameter = "torch._utils._rebuild_parameter";
constexpr const char* kOrderedDict = "collections.OrderedDict";

const StorageType* storageType(const std::string& global) {
  for (const auto& t : kStorageTypes) {
    if (global == t.global) return &t;
  }
  return nullptr;
}

bool allowedGlobal(const std::string& g) {
  return g == kRebuildTensor || g == kRebuildParameter || g == kOrderedDict || storageType(g) != nullptr;
}

const char* kindName(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "a bool";
    case Kind::Int: return "an int";
    case Kind::Float: return "a float";
    case Kind::String: return "a string";
    case Kind::Tuple: return "a tuple";
    case Kind::List: return "a list";
    case Kind::Dict: return "a dict";
    case Kind::Global: return "a global";
    case Kind::Storage: return "a storage";
    case Kind::Tensor: return "a tensor";
  }
  return "?";
}

}  // namespace

class Unpickler {
 public:
  Unpickler(std::string_view data, const std::string& label, Document& doc) : d_(data), label_(label), doc_(doc) {}

  void run() {
    for (;;) {
      if (pos_ >= d_.size()) bad("ends without STOP (truncated)");
      at_ = pos_;
      const auto op = static_cast<uint8_t>(d_[pos_++]);
      switch (op) {
        case 0x80: {  // PROTO
          const uint64_t p = u(1);
          if (p < 2 || p > 5) bad("protocol " + std::to_string(p) + " (2 to 5 are read)");
          break;
        }
        case 0x95: {  // FRAME: a length hint; the bytes follow inline
          const uint64_t n = u(8);
          if (n > d_.size() - pos_) bad("frame of " + std::to_string(n) + " bytes runs past the end");
          break;
        }
        case '(':  // MARK
          if (marks_.size() >= Document::kMaxMarks) bad("nesting deeper than " + std::to_string(Document::kMaxMarks) + " marks");
          marks_.push_back(stack_.size());
          break;
        case '.': {  // STOP
          if (stack_.size() != 1 || !marks_.empty()) bad("STOP with " + std::to_string(stack_.size()) + " values on the stack");
          if (pos_ != d_.size()) bad(std::to_string(d_.size() - pos_) + " bytes after STOP");
          doc_.root_ = stack_[0];
          return;
        }
        case '}': push(make(Kind::Dict)); break;   // EMPTY_DICT
        case ']': push(make(Kind::List)); break;   // EMPTY_LIST
        case ')': push(make(Kind::Tuple)); break;  // EMPTY_TUPLE
        case 's': {  // SETITEM
          Value* v = pop();
          Value* k = pop();
          Value* dict = top(Kind::Dict, "SETITEM");
          dict->items.push_back(k);
          dict->items.push_back(v);
          break;
        }
        case 'u': {  // SETITEMS
          auto items = popMark();
          if (items.size() % 2) bad("SETITEMS with an odd number of values");
          Value* dict = top(Kind::Dict, "SETITEMS");
          dict->items.insert(dict->items.end(), items.begin(), items.end());
          break;
        }
        case 'a': {  // APPEND
          Value* v = pop();
          top(Kind::List, "APPEND")->items.push_back(v);
          break;
        }
        case 'e': {  // APPENDS
          auto items = popMark();
          Value* list = top(Kind::List, "APPENDS");
          list->items.insert(list->items.end(), items.begin(), items.end());
          break;
        }
        case 't': {  // TUPLE
          auto items = popMark();
          Value* t = make(Kind::Tuple);
          t->items.assign(items.begin(), items.end());
          push(t);
          break;
        }
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          const size_t n = op - 0x84u;
          Value* t = make(Kind::Tuple);
          t->items.resize(n);
          for (size_t i = n; i-- > 0;) t->items[i] = pop();
          push(t);
          break;
        }
        case 'q': memoize(u(1)); break;  // BINPUT
        case 'r': memoize(u(4)); break;  // LONG_BINPUT
        case 0x94: memoize(memo_.size()); break;  // MEMOIZE
        case 'h': recall(u(1)); break;  // BINGET
        case 'j': recall(u(4)); break;  // LONG_BINGET
        case 'K': pushInt(static_cast<int64_t>(u(1))); break;  // BININT1
        case 'M': pushInt(static_cast<int64_t>(u(2))); break;  // BININT2
        case 'J': pushInt(static_cast<int32_t>(static_cast<uint32_t>(u(4)))); break;  // BININT
        case 0x8a: {  // LONG1: n-byte two's complement, little-endian
          const uint64_t n = u(1);
          if (n > 8) bad("integer of " + std::to_string(n) + " bytes (at most 8)");
          uint64_t v = n ? u(static_cast<int>(n)) : 0;
          if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);
          pushInt(static_cast<int64_t>(v));
          break;
        }
        case 'G': {  // BINFLOAT, big-endian
          uint64_t bits = 0;
          for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<uint8_t>(take(1)[0]);
          Value* v = make(Kind::Float);
          std::memcpy(&v->number, &bits, 8);
          push(v);
          break;
        }
        case 'X': pushString(u(4), true); break;     // BINUNICODE
        case 0x8c: pushString(u(1), true); break;    // SHORT_BINUNICODE
        case 0x8d: pushString(u(8), true); break;    // BINUNICODE8
        case 'U': pushString(u(1), false); break;    // SHORT_BINSTRING
        case 'T': {                                  // BINSTRING (signed length)
          const auto n = static_cast<int32_t>(static_cast<uint32_t>(u(4)));
          if (n < 0) bad("negative string length");
          pushString(static_cast<uint64_t>(n), false);
          break;
        }
        case 'N': push(make(Kind::None)); break;
        case 0x88: case 0x89: {  // NEWTRUE / NEWFALSE
          Value* v = make(Kind::Bool);
          v->boolean = op == 0x88;
          push(v);
          break;
        }
        case 'c': {  // GLOBAL "module\nname\n"
          std::string module = line(), name = line();
          pushGlobal(module + "." + name);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Value* name = pop();
          Value* module = pop();
          if (module->kind != Kind::String || name->kind != Kind::String) bad("STACK_GLOBAL needs two strings");
          pushGlobal(module->text + "." + name->text);
          break;
        }
        case 'R': {  // REDUCE
          Value* args = pop();
          Value* fn = pop();
          push(reduce(fn, args));
          break;
        }
        case 'b': {  // BUILD
          Value* state = pop();
          Value* obj = top(Kind::None, "BUILD");
          build(obj, state);
          break;
        }
        case 'Q': push(persistent(pop())); break;  // BINPERSID
        case '0': pop(); break;                    // POP
        case '1': popMark(); break;                // POP_MARK
        case '2': {                                // DUP
          Value* v = pop();
          push(v);
          push(v);
          break;
        }
        default: {
          static const char* hex = "0123456789abcdef";
          std::string code = {'0', 'x', hex[op >> 4], hex[op & 0xF]};
          bad("opcode " + code + (op >= 0x20 && op < 0x7F ? std::string(" ('") + static_cast<char>(op) + "')" : "") +
              " is not allowed in a tensor checkpoint");
        }
      }
    }
  }

 private:
  [[noreturn]] void bad(const std::string& problem) {
    fail("ERR_BAD_FILE", label_ + ": pickle: " + problem + " (at byte " + std::to_string(at_) + ")");
  }

  std::string_view take(uint64_t n) {
    if (n > d_.size() - pos_) bad("truncated: needs " + std::to_string(n) + " more bytes");
    auto s = d_.substr(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }

  uint64_t u(int bytes) {
    auto s = take(static_cast<uint64_t>(bytes));
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(s[static_cast<size_t>(i)]);
    return v;
  }

  std::string line() {
    const size_t nl = d_.find('\n', pos_);
    if (nl == std::string_view::npos || nl - pos_ > 200) bad("GLOBAL name is unterminated or longer than 200 bytes");
    std::string s(d_.substr(pos_, nl - pos_));
    pos_ = nl + 1;
    return s;
  }

  Value* make(Kind k) {
    if (doc_.values_.size() >= Document::kMaxValues) bad("more than " + std::to_string(Document::kMaxValues) + " objects");
    doc_.values_.emplace_back();
    Value* v = &doc_.values_.back();
    v->kind = k;
    return v;
  }

  void push(Value* v) {
    if (stack_.size() >= Document::kMaxStack) bad("stack deeper than " + std::to_string(Document::kMaxStack));
    stack_.push_back(v);
  }

  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }

  Value* pop() {
    if (stack_.size() <= floor()) bad("pops an empty stack");
    Value* v = stack_.back();
    stack_.pop_back();
    return v;
  }

  // The value on top of the stack (above the current mark), of kind `k` (Kind::None: any kind).
  Value* top(Kind k, const char* op) {
    if (stack_.size() <= floor()) bad(std::string(op) + " on an empty stack");
    Value* v = stack_.back();
    if (k != Kind::None && v->kind != k) bad(std::string(op) + " on " + kindName(v->kind) + ", not " + kindName(k));
    return v;
  }

  std::vector<Value*> popMark() {
    if (marks_.empty()) bad("no MARK to pop to");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Value*> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }

  void memoize(uint64_t index) {
    if (stack_.size() <= floor()) bad("memoizes an empty stack");
    if (memo_.size() >= Document::kMaxValues && !memo_.count(index)) bad("memo larger than " + std::to_string(Document::kMaxValues));
    memo_[index] = stack_.back();
  }

  void recall(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) bad("memo entry " + std::to_string(index) + " was never stored");
    push(it->second);
  }

  void pushInt(int64_t v) {
    Value* x = make(Kind::Int);
    x->integer = v;
    push(x);
  }

  void pushString(uint64_t n, bool unicode) {
    auto s = take(n);
    if (!json::isValidUtf8(s)) bad(std::string(unicode ? "unicode" : "byte") + " string is not valid UTF-8");
    Value* v = make(Kind::String);
    v->text.assign(s);
    push(v);
  }

  void pushGlobal(const std::string& name) {
    if (!allowedGlobal(name)) {
      bad("refuses the global " + shownText(name) + ": only tensor rebuilders, OrderedDict and storage types are "
          "allowed (nothing is imported or executed)");
    }
    Value* v = make(Kind::Global);
    v->text = name;
    push(v);
  }

  int64_t intArg(const Value* v, const char* what) {
    if (v->kind != Kind::Int) bad(std::string(what) + " is " + kindName(v->kind) + ", not an int");
    return v->integer;
  }

  bool emptyOrNone(const Value* v) { return v->kind == Kind::None || (v->kind == Kind::Dict && v->items.empty()); }

  std::vector<int64_t> intTuple(const Value* v, const char* what) {
    if (v->kind != Kind::Tuple) bad(std::string(what) + " is " + kindName(v->kind) + ", not a tuple");
    if (v->items.size() > Document::kMaxDims) bad(std::string(what) + " has more than " + std::to_string(Document::kMaxDims) + " dimensions");
    std::vector<int64_t> out;
    for (const Value* x : v->items) {
      const int64_t i = intArg(x, what);
      if (i < 0) bad(std::string(what) + " has a negative entry");
      out.push_back(i);
    }
    return out;
  }

  Value* reduce(Value* fn, Value* args) {
    if (fn->kind != Kind::Global) bad(std::string("REDUCE calls ") + kindName(fn->kind));
    if (args->kind != Kind::Tuple) bad("REDUCE arguments are not a tuple");
    const auto& a = args->items;
    if (fn->text == kOrderedDict) {
      if (!a.empty()) bad("OrderedDict with arguments");
      return make(Kind::Dict);
    }
    if (fn->text == kRebuildParameter) {
      if (a.size() != 3 || a[0]->kind != Kind::Tensor || a[1]->kind != Kind::Bool || !emptyOrNone(a[2])) {
        bad("_rebuild_parameter needs (tensor, requires_grad, empty hooks)");
      }
      return const_cast<Value*>(a[0]);
    }
    if (fn->text == kRebuildTensor) return rebuildTensor(a);
    bad("REDUCE of " + shownText(fn->text) + " (not callable here)");
  }

  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  Value* rebuildTensor(const std::vector<const Value*>& a) {
    if (a.size() != 6 && a.size() != 7) bad("_rebuild_tensor_v2 takes 6 or 7 arguments, got " + std::to_string(a.size()));
    if (a[0]->kind != Kind::Storage) bad("_rebuild_tensor_v2: the first argument is not a storage");
    if (a[4]->kind != Kind::Bool) bad("_rebuild_tensor_v2: requires_grad is not a bool");
    if (!emptyOrNone(a[5])) bad("_rebuild_tensor_v2: backward hooks are not allowed");
    if (a.size() == 7 && !emptyOrNone(a[6])) bad("_rebuild_tensor_v2: tensor metadata is not supported");
    const int64_t offset = intArg(a[1], "storage offset");
    if (offset < 0) bad("negative storage offset");
    auto sizes = intTuple(a[2], "size");
    auto strides = intTuple(a[3], "stride");
    if (sizes.size() != strides.size()) bad("size and stride have different lengths");
    // Every element must lie inside the storage: offset + Σ (size_i − 1)·stride_i < numel, without overflow.
    const int64_t numel = a[0]->storage.numel;
    bool empty = false;
    for (int64_t s : sizes) empty = empty || s == 0;
    if (!empty) {
      unsigned __int128 last = static_cast<uint64_t>(offset);
      for (size_t i = 0; i < sizes.size(); ++i) {
        last += static_cast<unsigned __int128>(static_cast<uint64_t>(sizes[i] - 1)) * static_cast<uint64_t>(strides[i]);
        if (last >= static_cast<uint64_t>(numel)) {
          bad("tensor of size " + shape(sizes) + ", stride " + shape(strides) + " at offset " + std::to_string(offset) +
              " reaches past its storage of " + std::to_string(numel) + " elements");
        }
      }
      if (last >= static_cast<uint64_t>(numel)) bad("storage offset " + std::to_string(offset) + " past its storage of " + std::to_string(numel) + " elements");
    } else if (offset > numel) {
      bad("storage offset " + std::to_string(offset) + " past its storage of " + std::to_string(numel) + " elements");
    }
    Value* t = make(Kind::Tensor);
    t->tensor = {a[0], offset, std::move(sizes), std::move(strides)};
    return t;
  }

  static std::string shape(const std::vector<int64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
    return out + "]";
  }

  void build(Value* obj, Value* state) {
    if (emptyOrNone(state)) return;
    if (obj->kind == Kind::Dict && state->kind == Kind::Dict) {
      obj->items.insert(obj->items.end(), state->items.begin(), state->items.end());
      return;
    }
    bad(std::string("BUILD of ") + kindName(obj->kind) + " with " + kindName(state->kind) + " state");
  }

  // ('storage', <storage type>, key, location, numel)
  Value* persistent(Value* pid) {
    const auto& a = pid->items;
    if (pid->kind != Kind::Tuple || a.size() != 5 || a[0]->kind != Kind::String || a[0]->text != "storage") {
      bad("persistent id is not ('storage', type, key, location, numel)");
    }
    const StorageType* type = a[1]->kind == Kind::Global ? storageType(a[1]->text) : nullptr;
    if (!type) bad("persistent id names no storage type");
    if (a[2]->kind != Kind::String || a[3]->kind != Kind::String) bad("storage key and location must be strings");
    const int64_t numel = intArg(a[4], "storage size");
    if (numel < 0) bad("negative storage size");
    Value* s = make(Kind::Storage);
    s->storage = {type->dtype, type->size, a[2]->text, a[3]->text, numel};
    return s;
  }

  std::string_view d_;
  const std::string& label_;
  Document& doc_;
  size_t pos_ = 0, at_ = 0;
  std::vector<Value*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value*> memo_;
};

Document Document::parse(std::string_view data, const std::string& label) {
  Document doc;
  Unpickler(data, label, doc).run();
  return doc;
}

}  // namespace ipclip::pickle
