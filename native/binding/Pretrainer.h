// The JS-facing contrastive pretrainer: `createPretrainer(config, {seed, device})` returns one of these.
#pragma once
#include <napi.h>

#include <memory>
#include <mutex>

#include "pretrain/pretrain.h"

namespace ipclip::binding {

// Workers hold a shared_ptr, so dispose() never frees the model under a running step; `mutex`
// serialises steps, state reads and encodes.
struct PretrainerHandle {
  std::unique_ptr<ClipPretrainerCore> core;
  std::mutex mutex;
  int64_t bytes = 0;  // parameters + AdamW moments, reported to V8
};

class Pretrainer : public Napi::ObjectWrap<Pretrainer> {
 public:
  static Napi::Function define(Napi::Env env);
  static Napi::Value create(const Napi::CallbackInfo& info);  // createPretrainer(config, {seed, device})
  explicit Pretrainer(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env env) override;

 private:
  std::shared_ptr<PretrainerHandle> handle(Napi::Env env);
  Napi::Value config(const Napi::CallbackInfo& info);
  Napi::Value steps(const Napi::CallbackInfo& info);
  Napi::Value step(const Napi::CallbackInfo& info);         // (images, imageShape, ids, idsShape, {lr, weightDecay, gradClip})
  Napi::Value state(const Napi::CallbackInfo& info);        // () → {name: {data, shape}}
  Napi::Value encodeImage(const Napi::CallbackInfo& info);  // (images, shape) → normalised [N,D]
  Napi::Value encodeText(const Napi::CallbackInfo& info);   // (ids, shape) → normalised [N,D]
  Napi::Value dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<PretrainerHandle> handle_;
  std::mutex disposeMutex_;
};

}  // namespace ipclip::binding
