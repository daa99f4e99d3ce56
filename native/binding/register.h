// Each bound area adds its exports here; addon.cpp calls them all.
#pragma once
#include <napi.h>

namespace ipclip::binding {

void registerSafetensors(Napi::Env env, Napi::Object exports);
void registerClip(Napi::Env env, Napi::Object exports);
void registerPrompt(Napi::Env env, Napi::Object exports);      // native/binding/PromptModel.cpp
void registerPretrainer(Napi::Env env, Napi::Object exports);  // native/binding/Pretrainer.cpp
void registerResample(Napi::Env env, Napi::Object exports);    // native/binding/Resample.cpp
void registerTorchReader(Napi::Env env, Napi::Object exports);  // native/binding/TorchReader.cpp
void registerDistributed(Napi::Env env, Napi::Object exports);  // native/binding/ProcessGroup.cpp

}  // namespace ipclip::binding
