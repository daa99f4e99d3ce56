// Standalone tests for the torch-free safetensors reader and the JSON parser under it.
// Usage: safetensors_test [shared-dir] [regressions-dir]   (defaults: ../shared, test/native/regressions,
// i.e. run from the repository root). Prints "N passed, M failed"; exits non-zero on any failure.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "../../native/common/safetensors.h"
#include "safetensors_encode.h"
#include "../../native/common/json.h"

using namespace ipclip;

static int passed = 0, failed = 0;

static void check(bool ok, const std::string& what) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    std::cout << "FAIL: " << what << "\n";
  }
}

// Runs `fn`, expecting an IpclipError with `code` whose message contains `needle`.
static void expectError(const std::string& what, const char* code, const std::string& needle,
                        const std::function<void()>& fn) {
  try {
    fn();
    check(false, what + ": no error thrown");
  } catch (const IpclipError& e) {
    bool ok = e.code == code && std::string(e.what()).find(needle) != std::string::npos;
    check(ok, what + ": got " + e.code + " \"" + e.what() + "\", wanted " + code + " containing \"" + needle + "\"");
  } catch (const std::exception& e) {
    check(false, what + ": threw a non-IpclipError: " + e.what());
  }
}

// A file with an explicit header-length field (so tests can lie about it), header text and data bytes.
static std::vector<uint8_t> rawFile(uint64_t headerLen, const std::string& header, size_t dataBytes) {
  std::vector<uint8_t> out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(headerLen >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  for (size_t i = 0; i < dataBytes; ++i) out.push_back(static_cast<uint8_t>(i * 7 + 1));
  return out;
}

static std::vector<uint8_t> file(const std::string& header, size_t dataBytes) {
  return rawFile(header.size(), header, dataBytes);
}

static void expectBad(const std::string& what, const std::vector<uint8_t>& bytes, const std::string& needle) {
  expectError(what, "ERR_BAD_FILE", needle, [&] { SafetensorsFile::fromBytes(bytes, "hostile.safetensors"); });
}

static void expectBadHeader(const std::string& what, const std::string& header, size_t dataBytes,
                            const std::string& needle) {
  expectBad(what, file(header, dataBytes), needle);
}

// One tensor entry, so the cases below read as the field that is wrong.
static std::string entry(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return "{\"dtype\":" + dtype + ",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
}

static void testFraming() {
  expectBad("zero-byte file", {}, "hostile.safetensors: empty file (0 bytes)");
  expectBad("5-byte file", {1, 0, 0, 0, 0}, "5 bytes, shorter than the 8-byte header length");
  expectBad("header length 0", rawFile(0, "", 16), "header length is 0");
  expectBad("header length over 100 MB", rawFile(100000001, "{}", 0), "exceeds the 100000000-byte limit");
  expectBad("header length 2^64-1", rawFile(UINT64_MAX, "{}", 0), "exceeds");
  expectBad("header length past end", rawFile(3, "{}", 0), "runs past the end of the file (10 bytes)");
  expectBad("header not UTF-8", file("{\"\xff\":1}", 0), "not valid UTF-8");
  expectBad("overlong UTF-8 slash", file("{\"\xc0\xaf\":1}", 0), "not valid UTF-8");
  expectBad("UTF-8 surrogate", file("{\"\xed\xa0\x80\":1}", 0), "not valid UTF-8");
  expectBad("truncated JSON", file("{\"a\":", 0), "header is not valid JSON");
  expectBad("header is a list", file("[]", 0), "header is not a JSON object");
  expectBad("trailing garbage", file("{} x", 0), "unexpected data after the JSON value");
  expectBad("NUL padding", file(std::string("{}\0\0", 4), 0), "not valid JSON");
  std::string many = "[0";
  for (int i = 0; i < 1000000; ++i) many += ",0";
  expectBad("1,000,001 JSON values", file(many + "]", 0), "more than 1000000 values");
  std::string deep(100000, '[');
  expectBad("100000-deep nesting", file(deep, 0), "nesting deeper than 64");

  auto ok = SafetensorsFile::fromBytes(file("{}      ", 0), "empty.safetensors");
  check(ok.tensors().empty() && ok.metadata().empty(), "an empty header with space padding is a valid file");
}

static void testEntries() {
  const std::string ok = entry("\"F32\"", "[2]", "[0,8]");
  check(SafetensorsFile::fromBytes(file("{\"t\":" + ok + "}", 8), "x").tensors().size() == 1, "baseline entry parses");

  expectBadHeader("entry not an object", "{\"t\":[1]}", 0, "tensor 't' is not an object");
  expectBadHeader("missing field", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "needs dtype, shape and data_offsets");
  expectBadHeader("unexpected field", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8,
                  "unexpected field 'x'");
  expectBadHeader("unknown dtype", "{\"t\":" + entry("\"F8_E4M3\"", "[2]", "[0,2]") + "}", 2, "unsupported dtype 'F8_E4M3'");
  expectBadHeader("lower-case dtype", "{\"t\":" + entry("\"f32\"", "[2]", "[0,8]") + "}", 8, "unsupported dtype");
  expectBadHeader("dtype not a string", "{\"t\":" + entry("4", "[2]", "[0,8]") + "}", 8, "dtype is not a string");

  expectBadHeader("shape not a list", "{\"t\":" + entry("\"F32\"", "2", "[0,8]") + "}", 8, "shape is not a list");
  expectBadHeader("negative dim", "{\"t\":" + entry("\"F32\"", "[-2]", "[0,8]") + "}", 8, "non-negative integers");
  expectBadHeader("fractional dim", "{\"t\":" + entry("\"F32\"", "[2.0]", "[0,8]") + "}", 8, "non-negative integers");
  expectBadHeader("exponent dim", "{\"t\":" + entry("\"F32\"", "[2e0]", "[0,8]") + "}", 8, "non-negative integers");
  expectBadHeader("string dim", "{\"t\":" + entry("\"F32\"", "[\"2\"]", "[0,8]") + "}", 8, "non-negative integers");
  expectBadHeader("dim beyond int64", "{\"t\":" + entry("\"U8\"", "[9223372036854775808]", "[0,8]") + "}", 8,
                  "non-negative integers");
  expectBadHeader("9 dims", "{\"t\":" + entry("\"U8\"", "[1,1,1,1,1,1,1,1,1]", "[0,1]") + "}", 1,
                  "shape has 9 dimensions (at most 8)");
  expectBadHeader("numel overflow", "{\"t\":" + entry("\"F32\"", "[4294967296,4294967296]", "[0,0]") + "}", 0,
                  "overflows the element count");
  expectBadHeader("bytes overflow", "{\"t\":" + entry("\"F64\"", "[2305843009213693952]", "[0,0]") + "}", 0,
                  "overflows the element count");
  expectBadHeader("overflow hidden by a zero dim", "{\"t\":" + entry("\"U8\"", "[4294967296,4294967296,0]", "[0,0]") + "}",
                  0, "overflows the element count");

  expectBadHeader("offsets not a list", "{\"t\":" + entry("\"F32\"", "[2]", "0") + "}", 8, "not two non-negative integers");
  expectBadHeader("one offset", "{\"t\":" + entry("\"F32\"", "[2]", "[0]") + "}", 8, "not two non-negative integers");
  expectBadHeader("three offsets", "{\"t\":" + entry("\"F32\"", "[2]", "[0,8,8]") + "}", 8, "not two non-negative integers");
  expectBadHeader("negative offset", "{\"t\":" + entry("\"F32\"", "[2]", "[-8,0]") + "}", 8, "not two non-negative integers");
  expectBadHeader("fractional offset", "{\"t\":" + entry("\"F32\"", "[2]", "[0,8.5]") + "}", 8, "not two non-negative integers");
  expectBadHeader("offset beyond u64", "{\"t\":" + entry("\"F32\"", "[2]", "[0,18446744073709551616]") + "}", 8,
                  "not two non-negative integers");
  expectBadHeader("begin after end", "{\"t\":" + entry("\"F32\"", "[0]", "[8,4]") + "}", 8, "data_offsets [8, 4) begin after end");
  expectBadHeader("end past data", "{\"t\":" + entry("\"F32\"", "[2]", "[4,12]") + "}", 8,
                  "data_offsets [4, 12) run past the data section (8 bytes)");
  expectBadHeader("end near u64 max", "{\"t\":" + entry("\"U8\"", "[2]", "[18446744073709551614,18446744073709551615]") + "}", 8,
                  "run past the data section");
  expectBadHeader("size mismatch",
                  "{\"visual.conv1.weight\":" + entry("\"F16\"", "[64,3,8,8]", "[0,100]") + "}", 100,
                  "hostile.safetensors: tensor 'visual.conv1.weight' data_offsets [0, 100) do not match dtype F16 "
                  "\xC3\x97 shape [64,3,8,8] = 24576 bytes");

  expectBadHeader("overlap", "{\"a\":" + entry("\"U8\"", "[8]", "[0,8]") + ",\"b\":" + entry("\"U8\"", "[4]", "[6,10]") + "}",
                  10, "tensors 'a' and 'b' overlap");
  expectBadHeader("overlap listed out of order",
                  "{\"b\":" + entry("\"U8\"", "[4]", "[6,10]") + ",\"c\":" + entry("\"U8\"", "[2]", "[20,22]") +
                      ",\"a\":" + entry("\"U8\"", "[8]", "[0,8]") + "}",
                  22, "tensors 'a' and 'b' overlap");
  expectBadHeader("same range twice", "{\"a\":" + entry("\"U8\"", "[4]", "[0,4]") + ",\"b\":" + entry("\"U8\"", "[4]", "[0,4]") + "}",
                  4, "overlap");
  auto packed = SafetensorsFile::fromBytes(
      file("{\"a\":" + entry("\"U8\"", "[4]", "[0,4]") + ",\"b\":" + entry("\"U8\"", "[4]", "[4,8]") +
               ",\"e\":" + entry("\"U8\"", "[0]", "[2,2]") + ",\"end\":" + entry("\"U8\"", "[0,5]", "[12,12]") + "}",
           12),
      "x");
  check(packed.tensors().size() == 4, "adjacent tensors, empty tensors inside others, gaps and an empty tensor at the end are fine");

  expectBadHeader("duplicate tensor", "{\"a\":" + ok + ",\"a\":" + ok + "}", 8, "duplicate key \"a\"");
  expectBadHeader("duplicate field", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                  "duplicate key \"dtype\"");
  expectBadHeader("duplicate via escape", "{\"a\":" + ok + ",\"\\u0061\":" + ok + "}", 8, "duplicate key \"a\"");
  expectBadHeader("metadata not an object", "{\"__metadata__\":[]}", 0, "__metadata__ is not an object");
  expectBadHeader("metadata null", "{\"__metadata__\":null}", 0, "__metadata__ is not an object");
  expectBadHeader("metadata number value", "{\"__metadata__\":{\"epoch\":3}}", 0, "__metadata__ value 'epoch' is not a string");
  expectBadHeader("metadata nested object", "{\"__metadata__\":{\"a\":{}}}", 0, "is not a string");
  expectBadHeader("two metadata keys", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate key \"__metadata__\"");

  // A hostile name is escaped and cut short in messages.
  std::string longName = "\x1b[31m" + std::string(300, 'x');
  expectBadHeader("hostile name", "{" + ipclip::json::quote(longName) + ":[]}", 0, "tensor '\\x1b[31mxxx");
  try {
    SafetensorsFile::fromBytes(file("{" + ipclip::json::quote(longName) + ":[]}", 0), "x");
  } catch (const IpclipError& e) {
    check(std::strlen(e.what()) < 200 && std::string(e.what()).find('\x1b') == std::string::npos,
          "hostile names are shortened and escaped in messages");
  }
}

static void testJson() {
  namespace json = ipclip::json;
  auto bad = [](const std::string& text, const std::string& needle) {
    try {
      json::parse(text);
      check(false, "JSON " + text.substr(0, 40) + " should be rejected");
    } catch (const json::ParseError& e) {
      check(std::string(e.what()).find(needle) != std::string::npos, "JSON " + text.substr(0, 40) + ": " + e.what());
    }
  };
  bad("", "unexpected end");
  bad("[1,]", "unexpected character");
  bad("{\"a\":1,}", "expected a string key");
  bad("[01]", "expected ',' or ']'");
  bad("[1.]", "digit after '.'");
  bad("[1e]", "exponent");
  bad("[NaN]", "unexpected character");
  bad("[-Infinity]", "unexpected character");
  bad("// c\n{}", "unexpected character");
  bad("[\"a\tb\"]", "control character");
  bad("[\"\\x\"]", "unknown escape");
  bad("[\"\\ud800\"]", "high surrogate");
  bad("[\"\\udc00\"]", "lone low surrogate");
  bad("[\"\\u12", "truncated");
  bad("[\"\\u12x4\"]", "bad hex digit");
  bad("[tru]", "unknown literal");
  bad("{'a':1}", "expected a string key");
  bad("[\"abc", "unterminated string");

  json::Value v = json::parse(" {\"s\":\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\",\"n\":[0,-0,1.5e-3,true,false,null]} ");
  check(v.isObject() && v.size() == 2 && v.key(0) == "s", "object keys keep document order");
  check(v.get("s")->text() == "a\"\\/\b\f\n\r\t\xC3\xA9\xF0\x9F\x98\x80", "escapes decode to UTF-8, surrogate pairs combined");
  const json::Value& n = *v.get("n");
  double d = 0;
  check(n.at(2).toDouble(d) && d == 1.5e-3, "toDouble reads 1.5e-3");
  check(n.at(3).isBool() && n.at(3).boolValue() && !n.at(4).boolValue() && n.at(5).isNull(), "literals");
  check(v.get("missing") == nullptr && n.get("s") == nullptr, "get on a missing key or a non-object is null");

  json::Value ints = json::parse("[9223372036854775807,-9223372036854775808,9223372036854775808,18446744073709551615,"
                                 "18446744073709551616,1e2,-1]");
  int64_t i64 = 0;
  uint64_t u64 = 0;
  check(ints.at(0).toInt64(i64) && i64 == INT64_MAX, "INT64_MAX fits int64");
  check(ints.at(1).toInt64(i64) && i64 == INT64_MIN, "INT64_MIN fits int64");
  check(!ints.at(2).toInt64(i64) && ints.at(2).toUint64(u64) && u64 == 9223372036854775808ull, "2^63 is uint64 only");
  check(ints.at(3).toUint64(u64) && u64 == UINT64_MAX, "UINT64_MAX fits uint64");
  check(!ints.at(4).toUint64(u64), "2^64 does not fit uint64");
  check(!ints.at(5).toUint64(u64) && !ints.at(5).toInt64(i64), "1e2 is not a plain integer");
  check(!ints.at(6).toUint64(u64) && ints.at(6).toInt64(i64) && i64 == -1, "-1 is int64 only");

  json::ParseOptions small;
  small.maxValues = 3;
  try {
    json::parse("[1,2,3]", small);
    check(false, "maxValues caps the value count");
  } catch (const json::ParseError& e) {
    check(std::string(e.what()).find("more than 3 values") != std::string::npos, "maxValues message");
  }
  std::string nested = std::string(64, '[') + std::string(64, ']');
  check(json::parse(nested).isArray(), "nesting at exactly maxDepth (64) is accepted");

  std::string all;
  for (int c = 1; c < 256; ++c) all += static_cast<char>(c);
  all = "\xC3\xA9" + all.substr(0, 127);  // ASCII incl. control characters, plus a 2-byte character
  check(json::parse(json::quote(all)).text() == all, "quote() round-trips every ASCII byte through parse()");
  check(json::isValidUtf8("\xF4\x8F\xBF\xBF") && !json::isValidUtf8("\xF4\x90\x80\x80"), "U+10FFFF is the top");
}

static std::vector<uint8_t> pseudoRandomBytes(size_t n, uint32_t seed) {
  std::vector<uint8_t> out(n);
  for (auto& b : out) {
    seed = seed * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(seed >> 24);
  }
  return out;
}

static void testRoundTrip() {
  const DType all[] = {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64,
                       DType::I32, DType::I16, DType::I8,   DType::U8,  DType::BOOL};
  const size_t sizes[] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1};
  const char* names[] = {"F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"};
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<TensorView> views;
  for (size_t i = 0; i < 10; ++i) {
    check(dtypeSize(all[i]) == sizes[i] && std::string(dtypeName(all[i])) == names[i], std::string("dtype ") + names[i]);
    std::vector<int64_t> shape = {static_cast<int64_t>(i + 1), 3};
    buffers.push_back(pseudoRandomBytes((i + 1) * 3 * sizes[i], static_cast<uint32_t>(i)));
    views.push_back({std::string("layer.") + std::to_string(i) + ".\"w\"\n\xC3\xA9", all[i], shape, buffers.back().data(),
                     buffers.back().size()});
  }
  views.push_back({"scalar", DType::F32, {}, buffers[0].data(), 4});
  views.push_back({"empty", DType::F16, {0, 7}, nullptr, 0});
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "tab\tquote\" caf\xC3\xA9"}};

  std::vector<uint8_t> bytes = encodeSafetensors(views, meta);
  uint64_t headerLen = 0;
  for (int i = 7; i >= 0; --i) headerLen = (headerLen << 8) | bytes[static_cast<size_t>(i)];
  check(headerLen % 8 == 0, "encoded header is padded to a multiple of 8");

  auto f = SafetensorsFile::fromBytes(bytes, "roundtrip");
  check(f.metadata() == meta, "metadata round-trips");
  check(f.tensors().size() == views.size(), "tensor count round-trips");
  for (size_t i = 0; i < views.size() && i < f.tensors().size(); ++i) {
    const TensorView& a = views[i];
    const TensorView* b = f.find(a.name);
    bool same = b && b->dtype == a.dtype && b->shape == a.shape && b->nbytes == a.nbytes &&
                (a.nbytes == 0 || std::memcmp(a.data, b->data, a.nbytes) == 0) && f.tensors()[i].name == a.name;
    check(same, "tensor " + std::to_string(i) + " round-trips in order");
  }
  check(f.find("nope") == nullptr, "find() of a missing name is null");

  auto moved = std::move(f);
  check(moved.find("scalar") && std::memcmp(moved.find("scalar")->data, buffers[0].data(), 4) == 0,
        "views stay valid after a move");

  auto enc = [](std::vector<TensorView> v) { return [v] { encodeSafetensors(v, {}); }; };
  uint8_t byte = 0;
  expectError("encode wrong nbytes", "ERR_INVALID_ARGUMENT", "needs 8", enc({{"a", DType::F32, {2}, &byte, 1}}));
  expectError("encode negative dim", "ERR_INVALID_ARGUMENT", "negative", enc({{"a", DType::U8, {-1}, &byte, 0}}));
  expectError("encode duplicate", "ERR_INVALID_ARGUMENT", "twice",
              enc({{"a", DType::U8, {1}, &byte, 1}, {"a", DType::U8, {1}, &byte, 1}}));
  expectError("encode reserved name", "ERR_INVALID_ARGUMENT", "reserved", enc({{"__metadata__", DType::U8, {1}, &byte, 1}}));
  expectError("encode null data", "ERR_INVALID_ARGUMENT", "no data", enc({{"a", DType::U8, {1}, nullptr, 1}}));
  expectError("encode bad UTF-8", "ERR_INVALID_ARGUMENT", "UTF-8", enc({{"\xff", DType::U8, {1}, &byte, 1}}));
}

static std::string tempDir() {
  char tmpl[] = "/tmp/safetensors-test-XXXXXX";
  const char* d = mkdtemp(tmpl);
  return d ? d : "/tmp";
}

static void testOpen() {
  std::string dir = tempDir();
  uint8_t payload[6] = {1, 2, 3, 4, 5, 6};
  std::vector<uint8_t> bytes = encodeSafetensors({{"t", DType::I16, {3}, payload, 6}}, {});
  std::string path = dir + "/t.safetensors";
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  auto f = SafetensorsFile::open(path);
  check(f.find("t") && f.find("t")->data[5] == 6 && f.label() == path, "open() reads a file written by encode");

  std::string truncated = dir + "/truncated.safetensors";
  std::ofstream(truncated, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size() - 1));
  expectError("truncated data", "ERR_BAD_FILE", truncated + ": tensor 't' data_offsets [0, 6) run past", [&] { SafetensorsFile::open(truncated); });

  expectError("missing file", "ERR_FILE_NOT_FOUND", dir + "/nope.safetensors", [&] { SafetensorsFile::open(dir + "/nope.safetensors"); });
  expectError("path through a file", "ERR_FILE_NOT_FOUND", "no such file", [&] { SafetensorsFile::open(path + "/x"); });
  expectError("directory", "ERR_BAD_FILE", "is a directory", [&] { SafetensorsFile::open(dir); });
  expectError("character device", "ERR_BAD_FILE", "not a regular file", [&] { SafetensorsFile::open("/dev/zero"); });
  std::string fifo = dir + "/fifo";
  if (mkfifo(fifo.c_str(), 0600) == 0) {
    expectError("FIFO does not hang", "ERR_BAD_FILE", "not a regular file", [&] { SafetensorsFile::open(fifo); });
    unlink(fifo.c_str());
  }
  std::string empty = dir + "/empty.safetensors";
  std::ofstream(empty, std::ios::binary).close();
  expectError("zero-byte file on disk", "ERR_BAD_FILE", "empty file (0 bytes)", [&] { SafetensorsFile::open(empty); });
  unlink(path.c_str());
  unlink(truncated.c_str());
  unlink(empty.c_str());
  rmdir(dir.c_str());
}

static bool exists(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0;
}

// The shared fixtures were written by the reference (Python) implementation.
static void testFixtures(const std::string& shared) {
  const std::string tiny = shared + "/fixtures/clip-tiny/";
  if (!exists(tiny + "openai.safetensors")) {
    std::cout << "skip: fixtures not found under " << shared << " (pass the shared dir as the first argument)\n";
    return;
  }
  auto openai = SafetensorsFile::open(tiny + "openai.safetensors");
  const TensorView* conv = openai.find("visual.conv1.weight");
  check(conv && conv->dtype == DType::F16 && conv->shape == std::vector<int64_t>{128, 3, 8, 8} && conv->nbytes == 128 * 3 * 8 * 8 * 2,
        "openai.safetensors visual.conv1.weight is F16 [128,3,8,8]");
  size_t total = 0;
  bool allF16 = true;
  for (const auto& t : openai.tensors()) {
    total += t.nbytes;
    allF16 = allF16 && t.dtype == DType::F16;
  }
  check(allF16, "openai.safetensors holds fp16 weights only");

  auto hf = SafetensorsFile::open(tiny + "hf/model.safetensors");
  size_t hfTotal = 0;
  for (const auto& t : hf.tensors()) hfTotal += t.nbytes;
  check(hfTotal == total && total > 0, "the HF and OpenAI files hold the same number of weight bytes");

  auto golden = SafetensorsFile::open(tiny + "golden.safetensors");
  auto it = golden.metadata().find("texts");
  check(it != golden.metadata().end(), "golden.safetensors has metadata 'texts'");
  if (it != golden.metadata().end()) {
    ipclip::json::Value texts = ipclip::json::parse(it->second);
    check(texts.isArray() && texts.size() == 5 && texts.at(4).text() == "Caf\xC3\xA9 cr\xC3\xA8me & <b>na\xC3\xAFve</b> r\xC3\xA9sum\xC3\xA9!",
          "golden texts are a JSON list of five strings, the last with accents");
  }
  const TensorView* tokens = golden.find("text_tokens");
  check(tokens && tokens->dtype == DType::I64 && tokens->shape == std::vector<int64_t>{5, 77}, "text_tokens is I64 [5,77]");
  if (tokens && tokens->nbytes == 5 * 77 * 8) {
    bool sot = true;
    for (int row = 0; row < 5; ++row) {
      int64_t first = 0;
      std::memcpy(&first, tokens->data + row * 77 * 8, 8);  // data may be unaligned: copy, do not cast
      sot = sot && first == 49406;
    }
    check(sot, "every tokenised text starts with SOT (49406)");
  }

  const std::string step = shared + "/fixtures/ipclip-step/step.safetensors";
  if (exists(step)) {
    auto s = SafetensorsFile::open(step);
    auto cn = s.metadata().find("classnames");
    check(cn != s.metadata().end() && ipclip::json::parse(cn->second).size() == 5, "step.safetensors lists five class names");
  }
}

// Every saved fuzzer crasher (from either harness) must now be rejected or accepted cleanly.
static void testRegressions(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  int n = 0;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == ".." || name == "README.md") continue;
    std::ifstream in(dir + "/" + name, std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    try {
      SafetensorsFile::fromBytes(bytes, name);
      check(true, name);
    } catch (const IpclipError& e) {
      check(e.code == "ERR_BAD_FILE", "regression " + name + ": " + e.code);
    }
    try {  // the JSON fuzzer's crashers are replayed through the parser alone as well
      ipclip::json::parse(std::string(bytes.begin(), bytes.end()));
    } catch (const ipclip::json::ParseError&) {
    }
    ++n;
  }
  closedir(d);
  std::cout << n << " regression input(s) replayed\n";
}

int main(int argc, char** argv) {
  std::string shared = argc > 1 ? argv[1] : "../shared";
  std::string regressions = argc > 2 ? argv[2] : "test/native/regressions";
  try {
    testFraming();
    testEntries();
    testJson();
    testRoundTrip();
    testOpen();
    testFixtures(shared);
    testRegressions(regressions);
  } catch (const std::exception& e) {
    check(false, std::string("uncaught exception: ") + e.what());
  }
  std::cout << passed << " passed, " << failed << " failed\n";
  return failed == 0 ? 0 : 1;
}
