// The addon's entry point: per-environment data (so worker_threads each get their own constructors)
// and the exports of every bound area.
#include <napi.h>

#include <ATen/Parallel.h>
#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "binding/ClipModel.h"
#include "binding/addon_data.h"
#include "binding/common.h"
#include "binding/register.h"
#include "binding/worker.h"
#include "clip/cpu_cache.h"
#include "clip/linear.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

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
  // What the bench's theoretical peak and dtype 'auto' read: the CPU's vector ISA from /proc/cpuinfo.
  const auto& cpu = ipclip::cpuFeatures();
  auto c = Napi::Object::New(env);
  c.Set("model", cpu.model);
  c.Set("mhz", cpu.mhz);
  c.Set("physicalCores", cpu.physicalCores);
  c.Set("avx2", cpu.avx2);
  c.Set("avx512f", cpu.avx512f);
  c.Set("avx512bf16", cpu.avx512bf16);
  c.Set("amxBf16", cpu.amxBf16);
  c.Set("onednn", at::hasMKLDNN());
  out.Set("cpu", c);
  const auto cache = ipclip::cpuCacheStats();
  auto m = Napi::Object::New(env);
  m.Set("installed", cache.installed);
  m.Set("capBytes", static_cast<double>(cache.capBytes));
  m.Set("cachedBytes", static_cast<double>(cache.cachedBytes));
  m.Set("liveBytes", static_cast<double>(cache.liveBytes));
  m.Set("hits", static_cast<double>(cache.hits));
  m.Set("misses", static_cast<double>(cache.misses));
  out.Set("cpuCache", m);
  return out;
}

// The CPU caching allocator's cap (clip/cpu_cache.h): IPCLIP_CPU_CACHE_MB, default 1024; 0 keeps libtorch's
// default allocator. Read once, at the first load of the addon in the process.
int64_t cpuCacheCapFromEnv() {
  const char* v = std::getenv("IPCLIP_CPU_CACHE_MB");
  if (!v || !*v) return int64_t{1024} << 20;
  char* end = nullptr;
  const long long mb = std::strtoll(v, &end, 10);
  if (*end != '\0' || mb < 0) return int64_t{1024} << 20;  // not a number: the default, as for an unset variable
  return static_cast<int64_t>(mb) << 20;
}

// libtorch's default intra-op thread count comes from the cpuinfo library's core count, which some VMs get wrong
// (a 2-core AMD EPYC VM with AVX-512: 1 thread). The default here is the physical cores this process may run on,
// as /proc/cpuinfo and the affinity mask say; OMP_NUM_THREADS, when set, is left to libtorch.
void applyDefaultThreads() {
  if (const char* omp = std::getenv("OMP_NUM_THREADS"); omp && *omp) return;
  const int cores = ipclip::cpuFeatures().physicalCores;
  if (cores > 0 && cores != at::get_num_threads()) at::set_num_threads(cores);
}

Napi::Value releaseCpuCache(const Napi::CallbackInfo& info) {
  ipclip::releaseCpuCache();
  return info.Env().Undefined();
}

// benchMatmul(n, repeats, kernel = 'blas'): median milliseconds of an n×n float32 matrix product on the CPU,
// computed on a worker thread with the addon's own libtorch and thread count — the bench's measure of the
// machine's peak. 'blas' is torch::mm (OpenBLAS in Debian's libtorch); 'onednn' is the towers' oneDNN linear
// (clip/linear.h) with its per-call layout conversions, so it is what a tower's layer pays.
Napi::Value benchMatmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IPCLIP_CHECK_ARG(env, info.Length() >= 1 && info[0].IsNumber(), "benchMatmul: expected (n, repeats)");
  int64_t n = info[0].As<Napi::Number>().Int64Value();
  int64_t repeats = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 5;
  IPCLIP_CHECK_ARG(env, n >= 16 && n <= 16384 && repeats >= 1 && repeats <= 100, "benchMatmul: n in [16,16384], repeats in [1,100]");
  const std::string kernelName = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "blas";
  IPCLIP_CHECK_ARG(env, kernelName == "blas" || kernelName == "onednn", "benchMatmul: kernel must be 'blas' or 'onednn'");
  const bool oneDnn = kernelName == "onednn";
  return PromiseWorker<double>::start(
      env, Napi::Object(), "ipclip.benchMatmul",
      [n, repeats, oneDnn]() {
        c10::InferenceMode guard;
        auto a = torch::randn({n, n}), b = torch::randn({n, n});
        ipclip::LinearPack pack;  // packed once, as the towers' layers are
        auto product = [&] {
          return oneDnn ? ipclip::linear(a, b, {}, ipclip::LinearKernel::OneDnn, &pack) : torch::mm(a, b);
        };
        product();  // warm-up
        std::vector<double> ms;
        for (int64_t i = 0; i < repeats; ++i) {
          auto t0 = std::chrono::steady_clock::now();
          auto c = product();
          ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
        std::sort(ms.begin(), ms.end());
        return ms[ms.size() / 2];
      },
      [](Napi::Env env, double& ms) -> Napi::Value { return Napi::Number::New(env, ms); });
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
  // Process-wide settings, once per process (worker_threads load the addon again into the same process).
  static const bool processDefaultsApplied = [] {
    ipclip::installCpuCache(cpuCacheCapFromEnv());
    applyDefaultThreads();
    return true;
  }();
  (void)processDefaultsApplied;
  registerSafetensors(env, exports);
  registerClip(env, exports);
  registerPrompt(env, exports);
  registerPretrainer(env, exports);
  registerResample(env, exports);
  registerTorchReader(env, exports);
  registerDistributed(env, exports);
  exports.Set("runtimeInfo", Napi::Function::New(env, runtimeInfo, "runtimeInfo"));
  exports.Set("setThreads", Napi::Function::New(env, setThreads, "setThreads"));
  exports.Set("releaseCpuCache", Napi::Function::New(env, releaseCpuCache, "releaseCpuCache"));
  exports.Set("benchMatmul", Napi::Function::New(env, benchMatmul, "benchMatmul"));
  return exports;
}

}  // namespace ipclip::binding

static Napi::Object InitIpclip(Napi::Env env, Napi::Object exports) { return ipclip::binding::init(env, exports); }
NODE_API_MODULE(ipclip, InitIpclip)
