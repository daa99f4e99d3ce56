// The addon's entry point: per-environment data (so worker_threads each get their own constructors)
// and the exports of every bound area.
#include <napi.h>

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "binding/ClipModel.h"
#include "binding/addon_data.h"
#include "binding/common.h"
#include "binding/register.h"

namespace ipclip::binding {

void registerClip(Napi::Env env, Napi::Object exports) {
  auto ctor = ClipModel::define(env);
  addonData(env).clipModel = Napi::Persistent(ctor);
  exports.Set("ClipModel", ctor);
  exports.Set("loadClip", Napi::Function::New(env, ClipModel::load, "loadClip"));
  exports.Set("createRandomClip", Napi::Function::New(env, ClipModel::createRandom, "createRandomClip"));
}

namespace {

Napi::Value runtimeInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto out = Napi::Object::New(env);
  out.Set("torchVersion", TORCH_VERSION);
  out.Set("cudaAvailable", torch::cuda::is_available());
  out.Set("cudaDevices", static_cast<double>(torch::cuda::device_count()));
  out.Set("threads", at::get_num_threads());
  return out;
}

Napi::Value setThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IPCLIP_CHECK_ARG(env, info.Length() == 1 && info[0].IsNumber(), "setThreads: expected a number");
  int n = info[0].As<Napi::Number>().Int32Value();
  IPCLIP_CHECK_ARG(env, n >= 1 && n <= 1024, "setThreads: threads must be between 1 and 1024");
  at::set_num_threads(n);
  return env.Undefined();
}

}  // namespace

Napi::Object init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  registerSafetensors(env, exports);
  registerClip(env, exports);
  registerPrompt(env, exports);
  registerPretrainer(env, exports);
  exports.Set("runtimeInfo", Napi::Function::New(env, runtimeInfo, "runtimeInfo"));
  exports.Set("setThreads", Napi::Function::New(env, setThreads, "setThreads"));
  return exports;
}

}  // namespace ipclip::binding

static Napi::Object InitIpclip(Napi::Env env, Napi::Object exports) { return ipclip::binding::init(env, exports); }
NODE_API_MODULE(ipclip, InitIpclip)
