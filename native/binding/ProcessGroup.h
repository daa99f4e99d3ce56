// The JS-facing process group of a data-parallel job: createProcessGroup(options) resolves to one of these
// (the rendezvous blocks, so it runs on a worker thread). A PromptModel attached to it all-reduces its steps.
#pragma once
#include <napi.h>

#include <memory>

#include "binding/handle.h"
#include "ipclip/distributed.h"

namespace ipclip::binding {

struct GroupHandle : NativeState {
  std::shared_ptr<ipclip::ProcessGroup> group;
};

class ProcessGroup : public BoundObject<ProcessGroup, GroupHandle> {
 public:
  static constexpr const char* kWhat = "process group";
  static Napi::Function define(Napi::Env env);
  static Napi::Value create(const Napi::CallbackInfo& info);
  // The ProcessGroup JS object `v` (ERR_INVALID_ARGUMENT otherwise).
  static ProcessGroup* unwrap(Napi::Env env, Napi::Value v);
  explicit ProcessGroup(const Napi::CallbackInfo& info);

 private:
  Napi::Value rank(const Napi::CallbackInfo& info);
  Napi::Value worldSize(const Napi::CallbackInfo& info);
  Napi::Value backend(const Napi::CallbackInfo& info);
  Napi::Value allReduce(const Napi::CallbackInfo& info);
  Napi::Value allGather(const Napi::CallbackInfo& info);
  Napi::Value broadcast(const Napi::CallbackInfo& info);
  Napi::Value barrier(const Napi::CallbackInfo& info);
  Napi::Value close(const Napi::CallbackInfo& info);
};

}  // namespace ipclip::binding
