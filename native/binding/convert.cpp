#include "binding/convert.h"

#include <torch/cuda.h>

#include <cmath>
#include <cstring>

#include "binding/common.h"

namespace ipclip::binding {

std::vector<int64_t> toShape(Napi::Env env, Napi::Value v, const char* what) {
  IPCLIP_CHECK_ARG(env, v.IsArray(), std::string(what) + ": shape must be an array of integers");
  auto arr = v.As<Napi::Array>();
  IPCLIP_CHECK_ARG(env, arr.Length() <= 8, std::string(what) + ": shape has too many dimensions");
  std::vector<int64_t> shape;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value d = arr.Get(i);
    IPCLIP_CHECK_ARG(env, d.IsNumber(), std::string(what) + ": shape must be an array of integers");
    double x = d.As<Napi::Number>().DoubleValue();
    IPCLIP_CHECK_ARG(env, x >= 0 && x == static_cast<double>(static_cast<int64_t>(x)) && x < 1e12,
                     std::string(what) + ": shape entries must be non-negative integers");
    shape.push_back(static_cast<int64_t>(x));
  }
  return shape;
}

namespace {
int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}
}  // namespace

torch::Tensor floatTensorFrom(Napi::Env env, Napi::Value data, Napi::Value shapeV, const char* what) {
  const auto type = data.IsTypedArray() ? data.As<Napi::TypedArray>().TypedArrayType() : napi_int8_array;
  IPCLIP_CHECK_ARG(env, type == napi_float32_array || type == napi_float64_array,
                   std::string(what) + ": data must be a Float32Array (or a Float64Array)");
  auto arr = data.As<Napi::TypedArray>();
  auto shape = toShape(env, shapeV, what);
  IPCLIP_CHECK_ARG(env, static_cast<int64_t>(arr.ElementLength()) == numel(shape),
                   std::string(what) + ": data has " + std::to_string(arr.ElementLength()) +
                       " elements but the shape needs " + std::to_string(numel(shape)));
  auto t = torch::empty(shape, type == napi_float64_array ? torch::kFloat64 : torch::kFloat32);
  if (arr.ElementLength()) {
    const void* src = type == napi_float64_array ? static_cast<const void*>(data.As<Napi::Float64Array>().Data())
                                                 : static_cast<const void*>(data.As<Napi::Float32Array>().Data());
    std::memcpy(t.data_ptr(), src, arr.ByteLength());
  }
  return t;
}

torch::Tensor longTensorFrom(Napi::Env env, Napi::Value data, Napi::Value shapeV, const char* what) {
  IPCLIP_CHECK_ARG(env, data.IsTypedArray(), std::string(what) + ": data must be an Int32Array or BigInt64Array");
  auto ta = data.As<Napi::TypedArray>();
  auto shape = toShape(env, shapeV, what);
  IPCLIP_CHECK_ARG(env, static_cast<int64_t>(ta.ElementLength()) == numel(shape),
                   std::string(what) + ": data has " + std::to_string(ta.ElementLength()) +
                       " elements but the shape needs " + std::to_string(numel(shape)));
  auto copy = [&](auto typed, torch::Dtype dtype) {
    auto t = torch::empty(shape, dtype);
    if (typed.ElementLength()) std::memcpy(t.data_ptr(), typed.Data(), typed.ByteLength());
    return t.to(torch::kInt64);
  };
  if (ta.TypedArrayType() == napi_int32_array) return copy(data.As<Napi::Int32Array>(), torch::kInt32);
  if (ta.TypedArrayType() == napi_bigint64_array) return copy(data.As<Napi::BigInt64Array>(), torch::kInt64);
  throwJs(env, "ERR_INVALID_ARGUMENT", std::string(what) + ": data must be an Int32Array or BigInt64Array");
}

torch::Tensor imageBatchFrom(Napi::Env env, Napi::Value data, Napi::Value shape, const ClipConfig& c, const char* what) {
  auto images = floatTensorFrom(env, data, shape, what);
  const auto S = c.vision.imageSize;
  IPCLIP_CHECK_ARG(env, images.dim() == 4 && images.size(1) == 3 && images.size(2) == S && images.size(3) == S,
                   std::string(what) + ": images must have shape [N,3," + std::to_string(S) + "," + std::to_string(S) + "]");
  if (images.size(0) == 0) throwJs(env, "ERR_EMPTY_INPUT", std::string(what) + ": the batch is empty");
  return images;
}

torch::Tensor tokenIdsFrom(Napi::Env env, Napi::Value data, Napi::Value shape, const ClipConfig& c, const char* what) {
  auto ids = longTensorFrom(env, data, shape, what);
  IPCLIP_CHECK_ARG(env, ids.dim() == 2 && ids.size(1) >= 2 && ids.size(1) <= c.text.contextLength,
                   std::string(what) + ": token ids must have shape [N,ctx] with 2 <= ctx <= " +
                       std::to_string(c.text.contextLength));
  if (ids.size(0) == 0) throwJs(env, "ERR_EMPTY_INPUT", std::string(what) + ": the batch is empty");
  IPCLIP_CHECK_ARG(env, ids.min().item<int64_t>() >= 0 && ids.max().item<int64_t>() < c.text.vocabSize,
                   std::string(what) + ": token ids must lie in [0, " + std::to_string(c.text.vocabSize) + ")");
  return ids;
}

torch::Tensor hostFloat(const torch::Tensor& t) {
  // float64 results stay float64 (exactness checks need every digit); everything else comes back as float32.
  const auto dtype = t.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  return t.detach().to(torch::kCPU, dtype).contiguous();
}

namespace {
// A contiguous CPU tensor of element type T → { data: <ArrayType>, shape: number[] } (copied).
template <typename ArrayType, typename T>
Napi::Object hostToJs(Napi::Env env, const torch::Tensor& host) {
  auto arr = ArrayType::New(env, host.numel());
  if (host.numel()) std::memcpy(arr.Data(), host.data_ptr(), host.numel() * sizeof(T));
  auto shape = Napi::Array::New(env, host.dim());
  for (int64_t i = 0; i < host.dim(); ++i) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, host.size(i)));
  auto out = Napi::Object::New(env);
  out.Set("data", arr);
  out.Set("shape", shape);
  return out;
}
}  // namespace

Napi::Object toJsTensor(Napi::Env env, const torch::Tensor& t) {
  auto host = hostFloat(t);
  if (host.scalar_type() == torch::kFloat64) return hostToJs<Napi::Float64Array, double>(env, host);
  return hostToJs<Napi::Float32Array, float>(env, host);
}

torch::Device parseDevice(const std::string& s) {
  if (s == "cpu") return torch::Device(torch::kCPU);
  if (s == "cuda" || s.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available())
      fail("ERR_DEVICE", "device '" + s + "' requested but this libtorch has no usable CUDA device "
                         "(build against a CUDA libtorch: see the README, 'CUDA')");
    int64_t index = 0;
    if (s.size() > 5) {
      const std::string n = s.substr(5);
      if (n.empty() || n.find_first_not_of("0123456789") != std::string::npos || n.size() > 3)
        fail("ERR_DEVICE", "device '" + s + "' is not of the form cuda:N");
      index = std::stoll(n);
    }
    if (index >= static_cast<int64_t>(torch::cuda::device_count()))
      fail("ERR_DEVICE", "device '" + s + "' does not exist (" + std::to_string(torch::cuda::device_count()) +
                             " CUDA device(s))");
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  fail("ERR_DEVICE", "unknown device '" + s + "' (use 'cpu', 'cuda' or 'cuda:N')");
}

torch::Dtype parseDtype(const std::string& s, const torch::Device& device) {
  if (s == "float32") return torch::kFloat32;
  if (s == "float64") {
    // For exactness checks and reference computations: CPU only (GPUs run float64 at a fraction of their speed).
    if (!device.is_cpu()) fail("ERR_DEVICE", "dtype float64 is offered on the CPU only; on CUDA use float32, float16 or bfloat16");
    return torch::kFloat64;
  }
  if (s == "bfloat16") return torch::kBFloat16;
  if (s == "float16") {
    // libtorch's CPU kernels lack half-precision matrix products in 1.13: refuse rather than crawl or fail later.
    if (device.is_cpu()) fail("ERR_DEVICE", "dtype float16 needs a CUDA device; on CPU use float32 or bfloat16");
    return torch::kFloat16;
  }
  fail("ERR_INVALID_ARGUMENT", "unknown dtype '" + s + "' (use 'float32', 'float16', 'bfloat16' or 'float64')");
}

std::string dtypeName(torch::Dtype d) {
  if (d == torch::kFloat32) return "float32";
  if (d == torch::kFloat16) return "float16";
  if (d == torch::kBFloat16) return "bfloat16";
  if (d == torch::kFloat64) return "float64";
  return "other";
}

}  // namespace ipclip::binding

namespace ipclip::binding {

namespace {

int64_t intField(Napi::Env env, Napi::Object o, const char* key, const std::string& where, int64_t lo, int64_t hi) {
  Napi::Value v = o.Get(key);
  IPCLIP_CHECK_ARG(env, v.IsNumber(), where + "." + key + " must be an integer");
  double x = v.As<Napi::Number>().DoubleValue();
  IPCLIP_CHECK_ARG(env, std::isfinite(x) && x == std::floor(x) && x >= static_cast<double>(lo) && x <= static_cast<double>(hi),
                   where + "." + key + " must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
  return static_cast<int64_t>(x);
}

Napi::Object objectField(Napi::Env env, Napi::Object o, const char* key, const std::string& where) {
  Napi::Value v = o.Get(key);
  IPCLIP_CHECK_ARG(env, v.IsObject(), where + "." + key + " must be an object");
  return v.As<Napi::Object>();
}

// A tower's optional `activation`: 'quick_gelu' (the default, OpenAI's) or 'gelu'.
Activation activationField(Napi::Env env, Napi::Object o, const std::string& where) {
  Napi::Value v = o.Get("activation");
  if (v.IsUndefined()) return Activation::QuickGelu;
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  IPCLIP_CHECK_ARG(env, s == "quick_gelu" || s == "gelu", where + ".activation must be 'quick_gelu' or 'gelu'");
  return s == "gelu" ? Activation::Gelu : Activation::QuickGelu;
}

}  // namespace

std::string optionString(Napi::Object o, const char* key, const std::string& fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return fallback;
  IPCLIP_CHECK_ARG(o.Env(), o.Get(key).IsString(), std::string("option '") + key + "' must be a string");
  return o.Get(key).As<Napi::String>().Utf8Value();
}

double optionNumber(Napi::Object o, const char* key, double fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return fallback;
  IPCLIP_CHECK_ARG(o.Env(), o.Get(key).IsNumber(), std::string("option '") + key + "' must be a number");
  double v = o.Get(key).As<Napi::Number>().DoubleValue();
  IPCLIP_CHECK_ARG(o.Env(), std::isfinite(v), std::string("option '") + key + "' must be finite");
  return v;
}

bool optionBool(Napi::Object o, const char* key, bool fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return fallback;
  return o.Get(key).ToBoolean();
}

ClipConfig clipConfigFromJs(Napi::Env env, Napi::Value v, const char* where) {
  const std::string w = std::string(where) + ": config";
  IPCLIP_CHECK_ARG(env, v.IsObject(), w + " must be an object");
  auto o = v.As<Napi::Object>();
  ClipConfig c;
  c.embedDim = intField(env, o, "embedDim", w, 1, 4096);
  auto vis = objectField(env, o, "vision", w);
  c.vision.width = intField(env, vis, "width", w + ".vision", 1, 4096);
  c.vision.layers = intField(env, vis, "layers", w + ".vision", 1, 64);
  c.vision.heads = intField(env, vis, "heads", w + ".vision", 1, 256);
  c.vision.patchSize = intField(env, vis, "patchSize", w + ".vision", 1, 1024);
  c.vision.imageSize = intField(env, vis, "imageSize", w + ".vision", 1, 4096);
  c.vision.activation = activationField(env, vis, w + ".vision");
  auto txt = objectField(env, o, "text", w);
  c.text.width = intField(env, txt, "width", w + ".text", 1, 4096);
  c.text.layers = intField(env, txt, "layers", w + ".text", 1, 64);
  c.text.heads = intField(env, txt, "heads", w + ".text", 1, 256);
  c.text.contextLength = intField(env, txt, "contextLength", w + ".text", 2, 1024);
  c.text.vocabSize = intField(env, txt, "vocabSize", w + ".text", 3, 1 << 20);
  c.text.activation = activationField(env, txt, w + ".text");
  IPCLIP_CHECK_ARG(env, c.vision.width % c.vision.heads == 0, w + ".vision.width must be divisible by its heads");
  IPCLIP_CHECK_ARG(env, c.text.width % c.text.heads == 0, w + ".text.width must be divisible by its heads");
  IPCLIP_CHECK_ARG(env, c.vision.imageSize % c.vision.patchSize == 0, w + ".vision.imageSize must be a multiple of patchSize");
  IPCLIP_CHECK_ARG(env, c.vision.tokens() <= 1 + 256 * 256, w + ".vision: too many patches");
  return c;
}

Napi::Object clipConfigToJs(Napi::Env env, const ClipConfig& c) {
  auto vision = Napi::Object::New(env);
  vision.Set("width", c.vision.width);
  vision.Set("layers", c.vision.layers);
  vision.Set("heads", c.vision.heads);
  vision.Set("patchSize", c.vision.patchSize);
  vision.Set("imageSize", c.vision.imageSize);
  vision.Set("activation", activationName(c.vision.activation));
  auto text = Napi::Object::New(env);
  text.Set("width", c.text.width);
  text.Set("layers", c.text.layers);
  text.Set("heads", c.text.heads);
  text.Set("contextLength", c.text.contextLength);
  text.Set("vocabSize", c.text.vocabSize);
  text.Set("activation", activationName(c.text.activation));
  auto out = Napi::Object::New(env);
  out.Set("embedDim", c.embedDim);
  out.Set("vision", vision);
  out.Set("text", text);
  return out;
}

}  // namespace ipclip::binding
