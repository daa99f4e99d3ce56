// Per-environment state (one per main thread or worker_thread that loads the addon).
#pragma once
#include <napi.h>

namespace ipclip::binding {

struct AddonData {
  Napi::FunctionReference clipModel;
  Napi::FunctionReference promptModel;
  Napi::FunctionReference pretrainer;
  Napi::FunctionReference processGroup;  // native/binding/ProcessGroup.cpp
};

inline AddonData& addonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace ipclip::binding
