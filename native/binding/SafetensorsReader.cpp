// readSafetensors(path): the hostile-file reader exposed to JS, for checkpoints and tests. Parsing and
// validation happen on a worker thread; tensors come back as raw bytes with dtype and shape.
#include <memory>

#include "binding/register.h"
#include "binding/worker.h"
#include "common/safetensors.h"

namespace ipclip::binding {

namespace {

Napi::Value readSafetensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IPCLIP_CHECK_ARG(env, info.Length() >= 1 && info[0].IsString(), "readSafetensors: path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  using File = std::shared_ptr<SafetensorsFile>;
  return PromiseWorker<File>::start(
      env, Napi::Object(), "ipclip.readSafetensors",
      [path]() { return std::make_shared<SafetensorsFile>(SafetensorsFile::open(path)); },
      [](Napi::Env env, File& f) -> Napi::Value {
        auto tensors = Napi::Object::New(env);
        for (const auto& v : f->tensors()) {
          auto t = Napi::Object::New(env);
          t.Set("dtype", dtypeName(v.dtype));
          auto shape = Napi::Array::New(env, v.shape.size());
          for (size_t i = 0; i < v.shape.size(); ++i) shape.Set(static_cast<uint32_t>(i), static_cast<double>(v.shape[i]));
          t.Set("shape", shape);
          t.Set("data", Napi::Buffer<uint8_t>::Copy(env, v.data, v.nbytes));
          tensors.Set(v.name, t);
        }
        auto metadata = Napi::Object::New(env);
        for (const auto& [k, val] : f->metadata()) metadata.Set(k, val);
        auto out = Napi::Object::New(env);
        out.Set("tensors", tensors);
        out.Set("metadata", metadata);
        return out;
      });
}

}  // namespace

void registerSafetensors(Napi::Env env, Napi::Object exports) {
  exports.Set("readSafetensors", Napi::Function::New(env, readSafetensors, "readSafetensors"));
}

}  // namespace ipclip::binding
