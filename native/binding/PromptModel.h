// The JS-facing IP-CLIP prompt: createPrompt(clip, classTokens, shape, options) returns one of these.
#pragma once
#include <napi.h>

#include <map>
#include <memory>
#include <mutex>

#include "binding/ClipModel.h"
#include "binding/handle.h"
#include "ipclip/prompt_model.h"

namespace ipclip::binding {

// The core model (bytes: parameters, banks and cached features).
struct PromptHandle : NativeState {
  std::shared_ptr<ClipHandle> clip;  // keeps the CLIP alive as long as the prompt
  std::unique_ptr<ipclip::PromptModel> core;
  std::mutex gradMutex;              // guards `gradients` and `gradientsKept`, read synchronously from JS
  std::map<std::string, torch::Tensor> gradients;  // host tensors of the last step that kept them
  bool gradientsKept = true;         // false after a step that did not keep them (until the next one that does)
};

class PromptModel : public BoundObject<PromptModel, PromptHandle> {
 public:
  static constexpr const char* kWhat = "prompt";
  static Napi::Function define(Napi::Env env);
  static Napi::Value create(const Napi::CallbackInfo& info);
  explicit PromptModel(const Napi::CallbackInfo& info);

 private:
  Napi::Value numClasses(const Napi::CallbackInfo& info);
  Napi::Value nCtx(const Napi::CallbackInfo& info);
  Napi::Value dims(const Napi::CallbackInfo& info);
  Napi::Value skippedSteps(const Napi::CallbackInfo& info);
  Napi::Value state(const Napi::CallbackInfo& info);
  Napi::Value setState(const Napi::CallbackInfo& info);
  Napi::Value logits(const Napi::CallbackInfo& info);
  Napi::Value bankUpdate(const Napi::CallbackInfo& info);
  Napi::Value resetBanks(const Napi::CallbackInfo& info);
  Napi::Value step(const Napi::CallbackInfo& info);
  Napi::Value encodeVision(const Napi::CallbackInfo& info);
  Napi::Value stepFeatures(const Napi::CallbackInfo& info);
  Napi::Value cacheFeatures(const Napi::CallbackInfo& info);
  Napi::Value clearFeatures(const Napi::CallbackInfo& info);
  Napi::Value shareFeatures(const Napi::CallbackInfo& info);
  Napi::Value stepCached(const Napi::CallbackInfo& info);
  Napi::Value gradients(const Napi::CallbackInfo& info);
  Napi::Value optimizerState(const Napi::CallbackInfo& info);
  Napi::Value setOptimizerState(const Napi::CallbackInfo& info);
  Napi::Value attachGroup(const Napi::CallbackInfo& info);
  Napi::Value broadcastState(const Napi::CallbackInfo& info);

  // Queues one training step (`run` does the numerics): keeps the gradients on the host when asked.
  template <typename Run>
  Napi::Promise startStep(Napi::Env env, const char* name, bool keepGradients, Run run);
};

}  // namespace ipclip::binding
