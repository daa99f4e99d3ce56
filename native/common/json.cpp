#include "json.h"

#include <algorithm>
#include <charconv>
#include <limits>

namespace ipclip::json {

const Value* Value::get(std::string_view k) const {
  if (type_ != Type::Object) return nullptr;
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i] == k) return &items_[i];
  }
  return nullptr;
}

// Both integer conversions accept only the plain-integer form of the JSON grammar: "-"? digits.
static bool parseDigits(std::string_view digits, uint64_t& out) {
  if (digits.empty()) return false;
  uint64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

bool Value::toUint64(uint64_t& out) const {
  return type_ == Type::Number && parseDigits(text_, out);
}

bool Value::toInt64(int64_t& out) const {
  if (type_ != Type::Number) return false;
  bool negative = !text_.empty() && text_[0] == '-';
  uint64_t magnitude = 0;
  if (!parseDigits(std::string_view(text_).substr(negative ? 1 : 0), magnitude)) return false;
  const uint64_t maxPositive = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (!negative) {
    if (magnitude > maxPositive) return false;
    out = static_cast<int64_t>(magnitude);
  } else {
    if (magnitude > maxPositive + 1) return false;
    // -(2^63) cannot be formed by negating an int64; build it from the unsigned value instead.
    out = magnitude == maxPositive + 1 ? std::numeric_limits<int64_t>::min() : -static_cast<int64_t>(magnitude);
  }
  return true;
}

bool Value::toDouble(double& out) const {
  if (type_ != Type::Number) return false;
  double v = 0;
  auto r = std::from_chars(text_.data(), text_.data() + text_.size(), v);  // locale-independent, unlike strtod
  if (r.ec != std::errc() || r.ptr != text_.data() + text_.size()) return false;
  out = v;
  return true;
}

bool isValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c < 0x80) { ++i; continue; }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
    else return false;
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

static void appendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string quote(std::string_view s) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xF];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

// Recursive descent over text already checked to be valid UTF-8. Recursion depth is bounded by maxDepth.
class Parser {
 public:
  Parser(std::string_view text, const ParseOptions& options) : s_(text), opt_(options) {}

  Value document() {
    Value v;
    skipSpace();
    value(v, 0);
    skipSpace();
    if (pos_ != s_.size()) error("unexpected data after the JSON value");
    return v;
  }

 private:
  std::string_view s_;
  const ParseOptions& opt_;
  size_t pos_ = 0;
  size_t values_ = 0;

  [[noreturn]] void error(const std::string& what) const {
    throw ParseError("invalid JSON at byte " + std::to_string(pos_) + ": " + what, pos_);
  }

  bool atEnd() const { return pos_ >= s_.size(); }
  char peek() const { return atEnd() ? '\0' : s_[pos_]; }

  void skipSpace() {
    while (!atEnd() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }

  void expect(char c, const char* what) {
    if (peek() != c || atEnd()) error(std::string("expected ") + what);
    ++pos_;
  }

  void literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) error("unknown literal");
    pos_ += word.size();
  }

  void value(Value& v, size_t depth) {
    if (++values_ > opt_.maxValues) error("more than " + std::to_string(opt_.maxValues) + " values");
    if (atEnd()) error("unexpected end of input");
    switch (s_[pos_]) {
      case '{': v.type_ = Type::Object; container(v, depth, '}'); break;
      case '[': v.type_ = Type::Array; container(v, depth, ']'); break;
      case '"': v.type_ = Type::String; string(v.text_); break;
      case 't': v.type_ = Type::Bool; literal("true"); v.bool_ = true; break;
      case 'f': v.type_ = Type::Bool; literal("false"); break;
      case 'n': v.type_ = Type::Null; literal("null"); break;
      default: v.type_ = Type::Number; number(v.text_); break;
    }
  }

  void container(Value& v, size_t depth, char close) {
    if (depth + 1 > opt_.maxDepth) error("nesting deeper than " + std::to_string(opt_.maxDepth));
    ++pos_;  // '{' or '['
    skipSpace();
    if (peek() == close && !atEnd()) { ++pos_; return; }
    for (;;) {
      if (close == '}') {
        skipSpace();
        if (peek() != '"' || atEnd()) error("expected a string key");
        v.keys_.emplace_back();
        string(v.keys_.back());
        skipSpace();
        expect(':', "':'");
      }
      skipSpace();
      v.items_.emplace_back();
      value(v.items_.back(), depth + 1);
      skipSpace();
      if (peek() == ',' && !atEnd()) { ++pos_; continue; }
      expect(close, close == '}' ? "',' or '}'" : "',' or ']'");
      break;
    }
    if (close == '}') rejectDuplicateKeys(v.keys_);
  }

  // Sorting copies of the keys keeps this O(n log n) even for headers with many thousands of tensors.
  void rejectDuplicateKeys(const std::vector<std::string>& keys) const {
    if (keys.size() < 2) return;
    std::vector<std::string_view> sorted(keys.begin(), keys.end());
    std::sort(sorted.begin(), sorted.end());
    auto dup = std::adjacent_find(sorted.begin(), sorted.end());
    if (dup != sorted.end()) error("duplicate key " + quote(dup->substr(0, 80)));
  }

  unsigned hex4() {
    if (s_.size() - pos_ < 4) error("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
      else error("bad hex digit in \\u escape");
    }
    return v;
  }

  void string(std::string& out) {
    ++pos_;  // opening quote
    for (;;) {
      if (atEnd()) error("unterminated string");
      auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') { ++pos_; return; }
      if (c < 0x20) error("control character in string");
      if (c != '\\') { out += static_cast<char>(c); ++pos_; continue; }
      ++pos_;
      if (atEnd()) error("unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) error("lone low surrogate escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(pos_, 2) != "\\u") error("high surrogate escape without a low one");
            pos_ += 2;
            uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) error("high surrogate escape without a low one");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          appendUtf8(out, cp);
          break;
        }
        default: --pos_; error("unknown escape");
      }
    }
  }

  bool digit() const { return !atEnd() && s_[pos_] >= '0' && s_[pos_] <= '9'; }

  void number(std::string& out) {
    size_t start = pos_;
    if (peek() == '-' && !atEnd()) ++pos_;
    if (!digit()) error("unexpected character");
    if (s_[pos_] == '0') ++pos_;
    else while (digit()) ++pos_;
    if (peek() == '.' && !atEnd()) {
      ++pos_;
      if (!digit()) error("expected a digit after '.'");
      while (digit()) ++pos_;
    }
    if ((peek() == 'e' || peek() == 'E') && !atEnd()) {
      ++pos_;
      if ((peek() == '+' || peek() == '-') && !atEnd()) ++pos_;
      if (!digit()) error("expected a digit in the exponent");
      while (digit()) ++pos_;
    }
    out.assign(s_.substr(start, pos_ - start));
  }
};

Value parse(std::string_view text, const ParseOptions& options) {
  if (!isValidUtf8(text)) throw ParseError("invalid JSON: not valid UTF-8", 0);
  return Parser(text, options).document();
}

}  // namespace ipclip::json
