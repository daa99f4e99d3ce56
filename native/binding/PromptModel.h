// The JS-facing IP-CLIP prompt: createPrompt(clip, classTokens, shape, options) returns one of these.
#pragma once
#include <napi.h>

#include <map>
#include <memory>
#include <mutex>

#include "binding/ClipModel.h"
#include "ipclip/prompt_model.h"

namespace ipclip::binding {

struct PromptHandle {
  std::shared_ptr<ClipHandle> clip;  // keeps the CLIP alive as long as the prompt
  std::unique_ptr<ipclip::PromptModel> core;
  std::mutex mutex;                  // serialises work on this prompt
  std::mutex gradMutex;              // guards `gradients` and `gradientsKept`, read synchronously from JS
  std::map<std::string, torch::Tensor> gradients;  // host tensors of the last step that kept them
  bool gradientsKept = true;         // false after a step that did not keep them (until the next one that does)
  int64_t bytes = 0;
};

class PromptModel : public Napi::ObjectWrap<PromptModel> {
 public:
  static Napi::Function define(Napi::Env env);
  static Napi::Value create(const Napi::CallbackInfo& info);
  explicit PromptModel(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env env) override;

 private:
  std::shared_ptr<PromptHandle> handle(Napi::Env env);
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
  Napi::Value gradients(const Napi::CallbackInfo& info);
  Napi::Value optimizerState(const Napi::CallbackInfo& info);
  Napi::Value setOptimizerState(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<PromptHandle> handle_;
  std::mutex disposeMutex_;
};

}  // namespace ipclip::binding
