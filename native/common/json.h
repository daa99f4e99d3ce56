// A small strict JSON (RFC 8259) parser for headers and configs that come from untrusted files.
//
// Strict: input must be valid UTF-8; no comments, trailing commas, NaN/Infinity, leading zeros, lone
// surrogate escapes, control characters in strings, or duplicate object keys. Bounded: nesting depth and
// the number of values are capped (ParseOptions), and the parser recurses at most maxDepth levels, so a
// hostile document can neither overflow the stack nor allocate far beyond its own size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ipclip::json {

enum class Type { Null, Bool, Number, String, Array, Object };

// Thrown for any malformed document; `offset` is the byte position where parsing stopped.
struct ParseError : std::runtime_error {
  size_t offset;
  ParseError(const std::string& message, size_t offset_) : std::runtime_error(message), offset(offset_) {}
};

struct ParseOptions {
  size_t maxDepth = 64;           // arrays/objects nested deeper than this are rejected
  size_t maxValues = 1000000;     // total values (scalars, arrays, objects) in the document
};

// One JSON value. Numbers keep their literal text so integers beyond 2^53 (file offsets) stay exact.
class Value {
 public:
  Type type() const { return type_; }
  bool isNull() const { return type_ == Type::Null; }
  bool isBool() const { return type_ == Type::Bool; }
  bool isNumber() const { return type_ == Type::Number; }
  bool isString() const { return type_ == Type::String; }
  bool isArray() const { return type_ == Type::Array; }
  bool isObject() const { return type_ == Type::Object; }

  bool boolValue() const { return bool_; }
  // The decoded string (String) or the literal text (Number); empty otherwise.
  const std::string& text() const { return text_; }

  // Arrays and objects: number of elements / members, and element or member value i (0-based).
  size_t size() const { return items_.size(); }
  const Value& at(size_t i) const { return items_.at(i); }
  // Objects: key of member i, in document order.
  const std::string& key(size_t i) const { return keys_.at(i); }
  // Objects: the member named `k`, or nullptr (also for non-objects). Linear: objects here are small.
  const Value* get(std::string_view k) const;

  // Numbers written as plain integers (no fraction or exponent) that fit: true and sets `out`.
  bool toUint64(uint64_t& out) const;
  bool toInt64(int64_t& out) const;
  // Any number as a double (may round); false for non-numbers or values out of double range.
  bool toDouble(double& out) const;

 private:
  friend class Parser;
  Type type_ = Type::Null;
  bool bool_ = false;
  std::string text_;
  std::vector<Value> items_;      // array elements, or object member values
  std::vector<std::string> keys_; // object member keys, parallel to items_
};

// Parses exactly one JSON value surrounded by optional whitespace. Throws ParseError.
Value parse(std::string_view text, const ParseOptions& options = {});

// True when `s` is well-formed UTF-8 (no overlongs, surrogates, or code points above U+10FFFF).
bool isValidUtf8(std::string_view s);

// `s` (UTF-8) as a JSON string literal, quotes included; control characters are escaped.
std::string quote(std::string_view s);

}  // namespace ipclip::json
