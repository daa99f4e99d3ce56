// The JS-facing CLIP model: `loadClip(path, options)` resolves to one of these.
#pragma once
#include <napi.h>

#include <memory>
#include <mutex>
#include <string>

#include "clip/model.h"

namespace ipclip::binding {

// Everything a loaded model owns. Workers hold a shared_ptr, so dispose() never frees a model under a
// running computation; `mutex` serialises computations on one model.
struct ClipHandle {
  Clip model{nullptr};
  torch::Device device{torch::kCPU};
  torch::Dtype dtype = torch::kFloat32;
  std::string format, fingerprint, source;
  int64_t bytes = 0;  // parameter memory, reported to V8
  std::mutex mutex;
};

class ClipModel : public Napi::ObjectWrap<ClipModel> {
 public:
  static Napi::Function define(Napi::Env env);
  static Napi::Value load(const Napi::CallbackInfo& info);  // loadClip(path, {device, dtype, threads})
  static Napi::Value createRandom(const Napi::CallbackInfo& info);  // createRandomClip(config, {seed, device, dtype})
  static Napi::Value wrap(Napi::Env env, const std::shared_ptr<ClipHandle>& h);
  explicit ClipModel(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env env) override;

  // The handle, or a JS ERR_DISPOSED error. Other bound classes (prompts, trainers) use it.
  std::shared_ptr<ClipHandle> handle(Napi::Env env);
  static ClipModel* unwrap(Napi::Env env, Napi::Value v);

 private:
  Napi::Value config(const Napi::CallbackInfo& info);
  Napi::Value info(const Napi::CallbackInfo& info);
  Napi::Value encodeImage(const Napi::CallbackInfo& info);  // (data, shape, {layers, stats})
  Napi::Value encodeText(const Napi::CallbackInfo& info);   // (ids, shape)
  Napi::Value dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<ClipHandle> handle_;
  std::mutex disposeMutex_;
};

}  // namespace ipclip::binding
