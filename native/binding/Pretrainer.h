// The JS-facing contrastive pretrainer: `createPretrainer(config, {seed, device})` returns one of these.
#pragma once
#include <napi.h>

#include <memory>
#include <mutex>

#include "binding/handle.h"
#include "pretrain/pretrain.h"

namespace ipclip::binding {

// The pretrainer's model and optimiser (bytes: parameters + AdamW moments).
struct PretrainerHandle : NativeState {
  std::unique_ptr<ClipPretrainerCore> core;
};

class Pretrainer : public BoundObject<Pretrainer, PretrainerHandle> {
 public:
  static constexpr const char* kWhat = "pretrainer";
  static Napi::Function define(Napi::Env env);
  static Napi::Value create(const Napi::CallbackInfo& info);  // createPretrainer(config, {seed, device})
  explicit Pretrainer(const Napi::CallbackInfo& info);

 private:
  Napi::Value config(const Napi::CallbackInfo& info);
  Napi::Value steps(const Napi::CallbackInfo& info);
  Napi::Value step(const Napi::CallbackInfo& info);         // (images, imageShape, ids, idsShape, {lr, weightDecay, gradClip})
  Napi::Value state(const Napi::CallbackInfo& info);        // () → {name: {data, shape}}
  Napi::Value encodeImage(const Napi::CallbackInfo& info);  // (images, shape) → normalised [N,D]
  Napi::Value encodeText(const Napi::CallbackInfo& info);   // (ids, shape) → normalised [N,D]
};

}  // namespace ipclip::binding
