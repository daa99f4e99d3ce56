#include "binding/ClipModel.h"

#include <ATen/Parallel.h>
#include <ATen/Context.h>

#include "binding/addon_data.h"
#include "binding/convert.h"
#include "binding/worker.h"
#include "clip/init.h"
#include "clip/linear.h"
#include "clip/weights.h"

namespace ipclip::binding {

namespace {

struct LoadOptions {
  std::string path, device = "cpu", dtype = "float32", linear = "auto";
  int threads = 0;  // 0: leave libtorch's default
};

// dtype 'auto': bfloat16 on a CPU with bf16 matrix hardware (AVX512-BF16 or AMX), where oneDNN's bf16 kernels
// run; float32 everywhere else (without it libtorch 1.13's bf16 products are a scalar fallback, ~50× slower).
std::string resolveDtype(const std::string& dtype, const torch::Device& device) {
  if (dtype != "auto") return dtype;
  const auto& cpu = cpuFeatures();
  return device.is_cpu() && (cpu.avx512bf16 || cpu.amxBf16) ? "bfloat16" : "float32";
}

void readLoadOptions(Napi::Object o, LoadOptions& opts) {
  opts.device = optionString(o, "device", opts.device);
  opts.dtype = optionString(o, "dtype", opts.dtype);
  opts.linear = optionString(o, "linear", opts.linear);
}

// Fingerprint, device/dtype move, freezing and memory accounting, shared by load and createRandom.
void finishSetup(ClipHandle& h, torch::Device device, torch::Dtype dtype, LinearKernel kernel,
                 const std::string& format, const std::string& source) {
  h.fingerprint = fingerprintWeights(*h.model);
  // float32 asked on CUDA means float32: cuDNN convolutions (the patch embedding) allow TF32 by default on
  // Ampere and later, and cuBLAS may have been allowed it; both are switched off (process-wide, as in PyTorch).
  if (device.is_cuda() && dtype == torch::kFloat32) {
    at::globalContext().setAllowTF32CuDNN(false);
    at::globalContext().setAllowTF32CuBLAS(false);
  }
  castClip(*h.model, device, dtype);
  h.model->setLinearKernel(kernel);
  h.model->eval();
  for (auto& p : h.model->parameters()) p.set_requires_grad(false);  // CLIP stays frozen
  h.device = device;
  h.dtype = dtype;
  h.format = format;
  h.source = source;
  for (auto& p : h.model->parameters()) h.bytes += p.numel() * p.element_size();
}


}  // namespace

Napi::Function ClipModel::define(Napi::Env env) {
  return DefineClass(env, "ClipModel",
                     {InstanceAccessor<&ClipModel::config>("config"),
                      InstanceAccessor<&ClipModel::info>("info"),
                      InstanceMethod<&ClipModel::encodeImage>("encodeImage"),
                      InstanceMethod<&ClipModel::encodeText>("encodeText"),
                      InstanceMethod("dispose", &ClipModel::dispose)});
}

ClipModel::ClipModel(const Napi::CallbackInfo& info) : BoundObject(info) {}

ClipModel* ClipModel::unwrap(Napi::Env env, Napi::Value v) {
  IPCLIP_CHECK_ARG(env, v.IsObject() && v.As<Napi::Object>().InstanceOf(addonData(env).clipModel.Value()),
                   "expected a loaded CLIP model");
  return ClipModel::Unwrap(v.As<Napi::Object>());
}

Napi::Value ClipModel::load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IPCLIP_CHECK_ARG(env, info.Length() >= 1 && info[0].IsString(), "loadClip: path must be a string");
  LoadOptions opts;
  opts.path = info[0].As<Napi::String>().Utf8Value();
  if (info.Length() > 1 && info[1].IsObject()) {
    auto o = info[1].As<Napi::Object>();
    readLoadOptions(o, opts);
    if (o.Has("threads") && o.Get("threads").IsNumber()) opts.threads = o.Get("threads").As<Napi::Number>().Int32Value();
  }
  IPCLIP_CHECK_ARG(env, opts.threads >= 0 && opts.threads <= 1024, "loadClip: threads must be between 0 and 1024");
  // Device and dtype are validated before queuing so their errors are immediate and precise.
  auto device = guarded(env, [&] { return parseDevice(opts.device); });
  auto dtype = guarded(env, [&] { return parseDtype(resolveDtype(opts.dtype, device), device); });
  auto kernel = guarded(env, [&] { return parseLinearKernel(opts.linear); });
  if (opts.threads > 0) at::set_num_threads(opts.threads);

  return PromiseWorker<std::shared_ptr<ClipHandle>>::start(
      env, Napi::Object(), "ipclip.loadClip",
      [opts, device, dtype, kernel]() {
        auto weights = readClipWeights(opts.path);
        auto config = inferClipConfig(weights);
        auto h = std::make_shared<ClipHandle>();
        h->model = Clip(config);
        assignClipWeights(*h->model, weights);
        finishSetup(*h, device, dtype, kernel, formatName(weights.format), opts.path);
        return h;
      },
      [](Napi::Env env, std::shared_ptr<ClipHandle>& h) -> Napi::Value { return wrap(env, h); });
}

Napi::Value ClipModel::wrap(Napi::Env env, const std::shared_ptr<ClipHandle>& h) {
  return BoundObject::wrap(env, addonData(env).clipModel, h);
}

// createRandomClip(config, {seed, device, dtype}): a CLIP with OpenAI-style random weights, for benchmarks and
// tests that need a given architecture (ViT-B/16 …) without a checkpoint.
Napi::Value ClipModel::createRandom(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto config = clipConfigFromJs(env, info[0], "createRandomClip");
  LoadOptions opts;
  double seed = 0;
  if (info.Length() > 1 && info[1].IsObject()) {
    auto o = info[1].As<Napi::Object>();
    readLoadOptions(o, opts);
    if (o.Has("seed") && o.Get("seed").IsNumber()) seed = o.Get("seed").As<Napi::Number>().DoubleValue();
  }
  IPCLIP_CHECK_ARG(env, seed >= 0 && seed < 9007199254740992.0, "createRandomClip: seed must be a non-negative integer");
  auto device = guarded(env, [&] { return parseDevice(opts.device); });
  auto dtype = guarded(env, [&] { return parseDtype(resolveDtype(opts.dtype, device), device); });
  auto kernel = guarded(env, [&] { return parseLinearKernel(opts.linear); });
  return PromiseWorker<std::shared_ptr<ClipHandle>>::start(
      env, Napi::Object(), "ipclip.createRandomClip",
      [config, device, dtype, kernel, seed]() {
        auto h = std::make_shared<ClipHandle>();
        h->model = Clip(config);
        initializeClip(*h->model, static_cast<uint64_t>(seed));
        finishSetup(*h, device, dtype, kernel, "random", "random");
        return h;
      },
      [](Napi::Env env, std::shared_ptr<ClipHandle>& h) -> Napi::Value { return wrap(env, h); });
}

Napi::Value ClipModel::config(const Napi::CallbackInfo& info) {
  return clipConfigToJs(info.Env(), handle(info.Env())->model->config());
}

Napi::Value ClipModel::info(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto h = handle(env);
  auto out = Napi::Object::New(env);
  out.Set("format", h->format);
  out.Set("fingerprint", h->fingerprint);
  out.Set("device", h->device.str());
  out.Set("dtype", dtypeName(h->dtype));
  // The engine of the towers' linear layers: 'onednn' only where it applies (float32 or bfloat16 on the CPU,
  // as clip/linear.cpp's usesOneDnn decides per layer).
  const bool oneDnn = h->model->linearKernel() == LinearKernel::OneDnn && h->device.is_cpu() &&
                      (h->dtype == torch::kFloat32 || h->dtype == torch::kBFloat16) && at::hasMKLDNN();
  out.Set("linear", oneDnn ? "onednn" : h->device.is_cuda() ? "cublas" : "blas");
  out.Set("bytes", static_cast<double>(h->bytes.load()));
  out.Set("source", h->source);
  // Whether matrix products and convolutions may round to TF32 (CUDA only; false for float32 models).
  if (h->device.is_cuda())
    out.Set("tf32", at::globalContext().allowTF32CuBLAS() || at::globalContext().allowTF32CuDNN());
  out.Set("logitScale", h->model->logit_scale.detach().to(torch::kCPU, torch::kFloat64).exp().item<double>());
  return out;
}

Napi::Value ClipModel::encodeImage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = handle(env);
  const auto& c = h->model->config();
  auto images = imageBatchFrom(env, info[0], info[1], c, "encodeImage");
  VisionRequest request;
  if (info.Length() > 2 && info[2].IsObject()) {
    auto o = info[2].As<Napi::Object>();
    request.layers = o.Get("layers").ToBoolean();
    request.stats = o.Get("stats").ToBoolean();
  }
  struct Out { torch::Tensor embeds, layers, stats; };
  return queue<Out>(
      env, "ipclip.encodeImage",
      [images, request](ClipHandle& h) {
        c10::InferenceMode guard;
        auto out = h.model->encodeImage(images.to(h.device), request);
        Out r{hostFloat(out.embeds), {}, {}};
        if (out.layers.defined()) r.layers = hostFloat(out.layers);
        if (out.stats.defined()) r.stats = hostFloat(out.stats);
        return r;
      },
      [](Napi::Env env, Out& r) -> Napi::Value {
        auto o = Napi::Object::New(env);
        o.Set("embeds", toJsTensor(env, r.embeds));
        if (r.layers.defined()) o.Set("layers", toJsTensor(env, r.layers));
        if (r.stats.defined()) o.Set("stats", toJsTensor(env, r.stats));
        return o;
      });
}

Napi::Value ClipModel::encodeText(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = handle(env);
  const auto& c = h->model->config();
  auto ids = tokenIdsFrom(env, info[0], info[1], c, "encodeText");
  return queue<torch::Tensor>(
      env, "ipclip.encodeText",
      [ids](ClipHandle& h) {
        c10::InferenceMode guard;
        return hostFloat(h.model->encodeText(ids.to(h.device)));
      },
      [](Napi::Env env, torch::Tensor& t) -> Napi::Value { return toJsTensor(env, t); });
}

}  // namespace ipclip::binding
