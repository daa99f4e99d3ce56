// The JS-facing CLIP model: `loadClip(path, options)` resolves to one of these.
#pragma once
#include <napi.h>

#include <memory>
#include <mutex>
#include <string>

#include "binding/handle.h"
#include "clip/model.h"

namespace ipclip::binding {

// Everything a loaded model owns (bytes: its parameters). Prompts hold it too (they run its towers).
struct ClipHandle : NativeState {
  Clip model{nullptr};
  torch::Device device{torch::kCPU};
  torch::Dtype dtype = torch::kFloat32;
  std::string format, fingerprint, source;
};

class ClipModel : public BoundObject<ClipModel, ClipHandle> {
 public:
  static constexpr const char* kWhat = "CLIP model";
  static Napi::Function define(Napi::Env env);
  static Napi::Value load(const Napi::CallbackInfo& info);  // loadClip(path, {device, dtype, threads})
  static Napi::Value createRandom(const Napi::CallbackInfo& info);  // createRandomClip(config, {seed, device, dtype})
  static Napi::Value wrap(Napi::Env env, const std::shared_ptr<ClipHandle>& h);
  explicit ClipModel(const Napi::CallbackInfo& info);

  static ClipModel* unwrap(Napi::Env env, Napi::Value v);

 private:
  Napi::Value config(const Napi::CallbackInfo& info);
  Napi::Value info(const Napi::CallbackInfo& info);
  Napi::Value encodeImage(const Napi::CallbackInfo& info);  // (data, shape, {layers, stats})
  Napi::Value encodeText(const Napi::CallbackInfo& info);   // (ids, shape)
};

}  // namespace ipclip::binding
