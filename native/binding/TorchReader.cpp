// readTorchCheckpoint(path): the torch-free reader of torch.save files (native/common/torch_file.h) exposed to
// JS; and tokenEmbeddings(clip, ids, shape): rows of a CLIP's frozen token embedding, so an imported prompt's
// stored token_prefix / token_suffix can be compared with the ones this CLIP gives. Both run on worker threads.
#include <memory>

#include "binding/ClipModel.h"
#include "binding/convert.h"
#include "binding/register.h"
#include "binding/worker.h"
#include "clip/weights.h"
#include "common/errors.h"
#include "common/torch_file.h"

namespace ipclip::binding {

namespace {

Napi::Array pathToJs(Napi::Env env, const std::vector<std::string>& path) {
  auto a = Napi::Array::New(env, path.size());
  for (size_t i = 0; i < path.size(); ++i) a.Set(static_cast<uint32_t>(i), path[i]);
  return a;
}

// { tensors: [{ path, dtype, shape, data: Buffer }], scalars: [{ path, value }] }: arrays, never objects keyed
// by names from the file (a key such as "__proto__" stays plain data).
Napi::Value checkpointToJs(Napi::Env env, const TorchCheckpoint& c) {
  auto tensors = Napi::Array::New(env, c.tensors.size());
  for (size_t i = 0; i < c.tensors.size(); ++i) {
    const TorchTensor& t = c.tensors[i];
    auto o = Napi::Object::New(env);
    o.Set("path", pathToJs(env, t.path));
    o.Set("dtype", t.dtype);
    auto shape = Napi::Array::New(env, t.shape.size());
    for (size_t d = 0; d < t.shape.size(); ++d) shape.Set(static_cast<uint32_t>(d), static_cast<double>(t.shape[d]));
    o.Set("shape", shape);
    o.Set("data", Napi::Buffer<uint8_t>::Copy(env, t.data.data(), t.data.size()));
    tensors.Set(static_cast<uint32_t>(i), o);
  }
  auto scalars = Napi::Array::New(env, c.scalars.size());
  for (size_t i = 0; i < c.scalars.size(); ++i) {
    const TorchScalar& s = c.scalars[i];
    auto o = Napi::Object::New(env);
    o.Set("path", pathToJs(env, s.path));
    switch (s.type) {
      case TorchScalar::Type::None: o.Set("value", env.Null()); break;
      case TorchScalar::Type::Bool: o.Set("value", s.boolean); break;
      case TorchScalar::Type::Int: o.Set("value", static_cast<double>(s.integer)); break;
      case TorchScalar::Type::Float: o.Set("value", s.number); break;
      case TorchScalar::Type::String: o.Set("value", s.text); break;
    }
    scalars.Set(static_cast<uint32_t>(i), o);
  }
  auto out = Napi::Object::New(env);
  out.Set("tensors", tensors);
  out.Set("scalars", scalars);
  return out;
}

Napi::Value readTorchCheckpoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IPCLIP_CHECK_ARG(env, info.Length() >= 1 && info[0].IsString(), "readTorchCheckpoint: path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  using Result = std::shared_ptr<TorchCheckpoint>;
  return PromiseWorker<Result>::start(
      env, Napi::Object(), "ipclip.readTorchCheckpoint",
      [path]() { return std::make_shared<TorchCheckpoint>(ipclip::readTorchCheckpoint(path)); },
      [](Napi::Env env, Result& c) -> Napi::Value { return checkpointToJs(env, *c); });
}

// The safetensors spelling of a dtype a TorchScript CLIP holds (others are refused by name).
const char* safetensorsDtype(torch::ScalarType t, const std::string& name) {
  switch (t) {
    case torch::kFloat: return "F32";
    case torch::kDouble: return "F64";
    case torch::kHalf: return "F16";
    case torch::kBFloat16: return "BF16";
    case torch::kLong: return "I64";
    case torch::kInt: return "I32";
    case torch::kByte: return "U8";
    case torch::kBool: return "BOOL";
    default: fail("ERR_BAD_WEIGHTS", "tensor '" + name + "' has a dtype safetensors cannot hold here");
  }
}

// readTorchScriptArchive(path): the parameters and buffers of a TorchScript archive (libtorch's loader: a
// trusted file), in readTorchCheckpoint's shape, so `ipclip convert` writes them the same way.
Napi::Value readTorchScriptArchive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IPCLIP_CHECK_ARG(env, info.Length() >= 1 && info[0].IsString(), "readTorchScriptArchive: path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  using Result = std::shared_ptr<TorchCheckpoint>;
  return PromiseWorker<Result>::start(
      env, Napi::Object(), "ipclip.readTorchScriptArchive",
      [path]() {
        auto out = std::make_shared<TorchCheckpoint>();
        for (const auto& [name, tensor] : ipclip::readTorchScriptArchive(path)) {
          const auto t = tensor.contiguous();
          TorchTensor tt;
          tt.path = {name};
          tt.dtype = safetensorsDtype(t.scalar_type(), name);
          tt.shape.assign(t.sizes().begin(), t.sizes().end());
          const auto* bytes = static_cast<const uint8_t*>(t.data_ptr());
          tt.data.assign(bytes, bytes + t.numel() * t.element_size());
          out->tensors.push_back(std::move(tt));
        }
        return out;
      },
      [](Napi::Env env, Result& c) -> Napi::Value { return checkpointToJs(env, *c); });
}

// tokenEmbeddings(clip, ids: Int32Array, shape [N, T]) → { data: Float32Array, shape [N, T, Wt] }.
Napi::Value tokenEmbeddings(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IPCLIP_CHECK_ARG(env, info.Length() >= 3 && info[0].IsObject(), "tokenEmbeddings: expected (clip, ids, shape)");
  auto h = ClipModel::unwrap(env, info[0])->handle(env);
  const auto& c = h->model->config();
  auto ids = longTensorFrom(env, info[1], info[2], "tokenEmbeddings");
  IPCLIP_CHECK_ARG(env, ids.dim() == 2 && ids.numel() > 0, "tokenEmbeddings: ids must have shape [N, T] with N, T > 0");
  IPCLIP_CHECK_ARG(env, ids.min().item<int64_t>() >= 0 && ids.max().item<int64_t>() < c.text.vocabSize,
                   "tokenEmbeddings: token ids must lie in [0, " + std::to_string(c.text.vocabSize) + ")");
  return PromiseWorker<torch::Tensor>::start(
      env, info[0].As<Napi::Object>(), "ipclip.tokenEmbeddings",
      [h, ids]() {
        std::lock_guard<std::mutex> lock(h->mutex);
        c10::InferenceMode guard;
        return hostFloat(h->model->token_embedding->forward(ids.to(h->device)));
      },
      [](Napi::Env env, torch::Tensor& t) -> Napi::Value { return toJsTensor(env, t); });
}

}  // namespace

void registerTorchReader(Napi::Env env, Napi::Object exports) {
  exports.Set("readTorchCheckpoint", Napi::Function::New(env, readTorchCheckpoint, "readTorchCheckpoint"));
  exports.Set("readTorchScriptArchive", Napi::Function::New(env, readTorchScriptArchive, "readTorchScriptArchive"));
  exports.Set("tokenEmbeddings", Napi::Function::New(env, tokenEmbeddings, "tokenEmbeddings"));
}

}  // namespace ipclip::binding
