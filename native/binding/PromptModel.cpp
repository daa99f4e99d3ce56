#include "binding/PromptModel.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "binding/ProcessGroup.h"
#include "binding/addon_data.h"
#include "binding/convert.h"
#include "binding/register.h"
#include "binding/worker.h"

namespace ipclip::binding {

namespace {

using TensorMap = std::map<std::string, torch::Tensor>;

Napi::Object mapToJs(Napi::Env env, const TensorMap& m) {
  auto out = Napi::Object::New(env);
  for (const auto& [k, v] : m) out.Set(k, toJsTensor(env, v));
  return out;
}

// { name: { data: Float32Array, shape } } → tensors, on the main thread.
TensorMap mapFromJs(Napi::Env env, Napi::Value v, const char* what) {
  IPCLIP_CHECK_ARG(env, v.IsObject(), std::string(what) + ": expected an object of tensors");
  auto obj = v.As<Napi::Object>();
  TensorMap out;
  auto names = obj.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); ++i) {
    std::string name = names.Get(i).As<Napi::String>().Utf8Value();
    Napi::Value t = obj.Get(name);
    IPCLIP_CHECK_ARG(env, t.IsObject(), std::string(what) + ": '" + name + "' must be { data, shape }");
    auto to = t.As<Napi::Object>();
    out[name] = floatTensorFrom(env, to.Get("data"), to.Get("shape"), name.c_str());
  }
  return out;
}


torch::Tensor labelsFrom(Napi::Env env, Napi::Value v, int64_t batch, int64_t classes, const char* what) {
  IPCLIP_CHECK_ARG(env, v.IsTypedArray(), std::string(what) + ": labels must be an Int32Array");
  auto n = static_cast<double>(v.As<Napi::TypedArray>().ElementLength());
  auto shape = Napi::Array::New(env, 1);
  shape.Set(0u, n);
  auto labels = longTensorFrom(env, v, shape, what);
  IPCLIP_CHECK_ARG(env, labels.size(0) == batch,
                   std::string(what) + ": " + std::to_string(labels.size(0)) + " labels for " + std::to_string(batch) + " images");
  if (batch > 0)
    IPCLIP_CHECK_ARG(env, labels.min().item<int64_t>() >= 0 && labels.max().item<int64_t>() < classes,
                     std::string(what) + ": labels must lie in [0, " + std::to_string(classes) + ")");
  return labels;
}

// { embeds: {data, shape [B,D]}, stats: {data, shape [L,B,2,W]} } checked against the model, on the main thread.
VisionFeatures featuresFrom(Napi::Env env, Napi::Value v, const ClipConfig& c, const std::string& what) {
  IPCLIP_CHECK_ARG(env, v.IsObject(), what + ": features must be { embeds, stats }");
  auto o = v.As<Napi::Object>();
  auto tensor = [&](const char* name) {
    Napi::Value t = o.Get(name);
    IPCLIP_CHECK_ARG(env, t.IsObject(), what + ": features." + name + " must be { data, shape }");
    auto to = t.As<Napi::Object>();
    return floatTensorFrom(env, to.Get("data"), to.Get("shape"), (what + " " + name).c_str());
  };
  VisionFeatures f{tensor("embeds"), tensor("stats")};
  const auto B = f.embeds.dim() == 2 ? f.embeds.size(0) : -1;
  IPCLIP_CHECK_ARG(env, B >= 1 && f.embeds.size(1) == c.embedDim,
                   what + ": features.embeds must have shape [B, " + std::to_string(c.embedDim) + "] with B ≥ 1");
  IPCLIP_CHECK_ARG(env, f.stats.dim() == 4 && f.stats.size(0) == c.vision.layers && f.stats.size(1) == B &&
                            f.stats.size(2) == 2 && f.stats.size(3) == c.vision.width,
                   what + ": features.stats must have shape [" + std::to_string(c.vision.layers) + ", " + std::to_string(B) +
                       ", 2, " + std::to_string(c.vision.width) + "]");
  return f;
}

// step's and stepFeatures' result: { terms, skipped, outputs? }.
Napi::Value stepResultToJs(Napi::Env env, StepResult& r) {
  auto terms = Napi::Object::New(env);
  terms.Set("loss", r.loss);
  terms.Set("ceA", r.terms.ceA);
  terms.Set("ceU", r.terms.ceU);
  terms.Set("ceSelf", r.terms.ceSelf);
  terms.Set("ceCross", r.terms.ceCross);
  terms.Set("mse", r.terms.mse);
  terms.Set("kl", r.terms.kl);
  terms.Set("entropy", r.terms.entropy);
  auto out = Napi::Object::New(env);
  out.Set("terms", terms);
  out.Set("skipped", r.skipped);
  if (!r.outputs.empty()) out.Set("outputs", mapToJs(env, r.outputs));
  return out;
}

// The optional authorized-batch weights of the attack suite (losses.h): ceA (default 1), entropyA, diversityA,
// distillA (default 0), each a finite number when present.
void authorizedWeightsFrom(Napi::Env env, Napi::Object o, LossWeights& w) {
  auto read = [&](const char* key, double& into) {
    Napi::Value x = o.Get(key);
    if (x.IsUndefined()) return;
    IPCLIP_CHECK_ARG(env, x.IsNumber() && std::isfinite(x.As<Napi::Number>().DoubleValue()),
                     std::string("step: lossWeights.") + key + " must be a finite number");
    into = x.As<Napi::Number>().DoubleValue();
  };
  read("ceA", w.ceA);
  read("entropyA", w.entropyA);
  read("diversityA", w.diversityA);
  read("distillA", w.distillA);
}

// lossWeights: { ceU, ceSelf, ceCross, mse, entropy, kl } (each a finite number) and optionally the attack suite's ceA,
// entropyA, diversityA, distillA (losses.h); no other key.
LossWeights lossWeightsFrom(Napi::Env env, Napi::Value v) {
  static const char* const keys[] = {"ceU", "ceSelf", "ceCross", "mse", "entropy", "kl", "ceA", "entropyA", "diversityA", "distillA"};
  const std::string expected = "step: lossWeights must be { ceU, ceSelf, ceCross, mse, entropy, kl } of finite numbers (optionally ceA, entropyA, diversityA, distillA; with any of those the first six default to 0)";
  IPCLIP_CHECK_ARG(env, v.IsObject() && !v.IsArray(), expected);
  auto o = v.As<Napi::Object>();
  auto names = o.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); ++i) {
    const std::string name = names.Get(i).ToString().Utf8Value();
    IPCLIP_CHECK_ARG(env, std::find(std::begin(keys), std::end(keys), name) != std::end(keys),
                     expected + " (unknown key '" + name + "')");
  }
  double w[6];
  const bool needAll = !o.Has("ceA") && !o.Has("entropyA") && !o.Has("diversityA") && !o.Has("distillA");
  for (int i = 0; i < 6; ++i) {
    if (!needAll && o.Get(keys[i]).IsUndefined()) { w[i] = 0; continue; }  // attack weights: the rest default to 0
    Napi::Value x = o.Get(keys[i]);
    IPCLIP_CHECK_ARG(env, x.IsNumber() && std::isfinite(x.As<Napi::Number>().DoubleValue()),
                     expected + " ('" + keys[i] + "' is " + (x.IsUndefined() ? "missing" : "not a finite number") + ")");
    w[i] = x.As<Napi::Number>().DoubleValue();
  }
  LossWeights out{w[0], w[1], w[2], w[3], w[4], w[5]};
  authorizedWeightsFrom(env, o, out);
  return out;
}


// The options object shared by step, stepFeatures and stepCached. The scenario arrives as data: whether the step
// has an unauthorized batch at all, and its loss weights (required then).
StepOptions stepOptionsFrom(Napi::Env env, Napi::Object o) {
  StepOptions opts;
  opts.preset = guarded(env, [&] { return parsePreset(optionString(o, "preset", "paper")); });
  opts.unauthorized = optionBool(o, "unauthorized", true);
  if (opts.unauthorized || (o.Has("lossWeights") && !o.Get("lossWeights").IsUndefined()))
    opts.weights = lossWeightsFrom(env, o.Get("lossWeights"));
  if (o.Has("ceUPerSample") && !o.Get("ceUPerSample").IsUndefined()) {
    Napi::Value b = o.Get("ceUPerSample");
    const double bound = b.IsNumber() ? b.As<Napi::Number>().DoubleValue() : 0;
    IPCLIP_CHECK_ARG(env, std::isfinite(bound) && bound > 0, "step: ceUPerSample must be a positive number (the per-sample bound of CE_U)");
    opts.weights.ceUPerSample = bound;
  }
  if (o.Has("distillTargets") && !o.Get("distillTargets").IsUndefined()) {
    Napi::Value t = o.Get("distillTargets");
    IPCLIP_CHECK_ARG(env, t.IsObject(), "step: distillTargets must be { data: Float32Array, shape: [B, C] }");
    auto to = t.As<Napi::Object>();
    opts.weights.distillTargets = floatTensorFrom(env, to.Get("data"), to.Get("shape"), "distillTargets");
  }
  opts.lr = optionNumber(o, "lr", 0.01);
  opts.weightDecay = optionNumber(o, "weightDecay", 5e-4);
  opts.update = optionBool(o, "update", true);
  opts.returnOutputs = optionBool(o, "returnOutputs", false);
  opts.trainEnhancer = optionBool(o, "trainEnhancer", false);
  opts.keepGradients = optionBool(o, "keepGradients", !opts.update);
  IPCLIP_CHECK_ARG(env, opts.lr >= 0, "step: lr must be non-negative");
  return opts;
}

// Device tensors → host float32 tensors with one device→host copy (one wait for a GPU, not one per tensor).
TensorMap hostCopies(const TensorMap& m) {
  if (m.empty()) return {};
  if (m.begin()->second.is_cpu()) {
    TensorMap out;
    for (const auto& [k, v] : m) out[k] = hostFloat(v);
    return out;
  }
  std::vector<torch::Tensor> flat;
  for (const auto& [_, v] : m) flat.push_back(v.detach().reshape({-1}).to(torch::kFloat32));
  auto all = torch::cat(flat).to(torch::kCPU);
  TensorMap out;
  int64_t at = 0;
  for (const auto& [k, v] : m) {
    out[k] = all.narrow(0, at, v.numel()).view(v.sizes());
    at += v.numel();
  }
  return out;
}

// Indices into a stream's feature cache: an Int32Array of `n` non-negative entries.
std::vector<int64_t> indicesFrom(Napi::Env env, Napi::Value v, size_t n, const std::string& what) {
  IPCLIP_CHECK_ARG(env, v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array,
                   what + ": indices must be an Int32Array");
  auto a = v.As<Napi::Int32Array>();
  IPCLIP_CHECK_ARG(env, a.ElementLength() == n,
                   what + ": " + std::to_string(a.ElementLength()) + " indices for " + std::to_string(n) + " samples");
  std::vector<int64_t> out(a.Data(), a.Data() + a.ElementLength());
  for (auto i : out) IPCLIP_CHECK_ARG(env, i >= 0, what + ": indices must be non-negative");
  return out;
}

// The checks every step makes of its paired batches (sizes n): the same size, and at least 2 samples.
void checkPaired(Napi::Env env, int64_t nA, int64_t nU, const char* name, const char* what) {
  IPCLIP_CHECK_ARG(env, nA == nU,
                   std::string(name) + ": the authorized and unauthorized batches must have the same size (samples are paired)");
  IPCLIP_CHECK_ARG(env, nA >= 2,
                   std::string(name) + ": batches need at least 2 " + what + " (the enhancement branch normalises over the batch)");
}

}  // namespace

// Queues one training step (`run` does the numerics on the worker thread), then, when the step keeps them
// (keepGradients, or update: false), copies the gradients to the host for the synchronous gradients(); and
// moves the requested outputs to the host.
template <typename Run>
Napi::Promise PromptModel::startStep(Napi::Env env, const char* name, bool keepGradients, Run run) {
  return queue<StepResult>(
      env, name,
      [run, keepGradients](PromptHandle& h) {
        std::lock_guard<std::mutex> clipLock(h.clip->mutex);
        auto r = run(*h.core);
        auto grads = keepGradients ? hostCopies(h.core->lastGradients) : TensorMap{};
        {
          std::lock_guard<std::mutex> g(h.gradMutex);
          h.gradients = std::move(grads);
          h.gradientsKept = keepGradients;
        }
        for (auto& [k, v] : r.outputs) v = hostFloat(v);
        return r;
      },
      [](Napi::Env env, StepResult& r) -> Napi::Value { return stepResultToJs(env, r); });
}

Napi::Function PromptModel::define(Napi::Env env) {
  return DefineClass(env, "PromptModel",
                     {InstanceAccessor<&PromptModel::numClasses>("numClasses"),
                      InstanceAccessor<&PromptModel::nCtx>("nCtx"),
                      InstanceAccessor<&PromptModel::dims>("dims"),
                      InstanceAccessor<&PromptModel::skippedSteps>("skippedSteps"),
                      InstanceMethod<&PromptModel::state>("state"),
                      InstanceMethod<&PromptModel::setState>("setState"),
                      InstanceMethod<&PromptModel::logits>("logits"),
                      InstanceMethod<&PromptModel::bankUpdate>("bankUpdate"),
                      InstanceMethod<&PromptModel::resetBanks>("resetBanks"),
                      InstanceMethod<&PromptModel::step>("step"),
                      InstanceMethod<&PromptModel::encodeVision>("encodeVision"),
                      InstanceMethod<&PromptModel::stepFeatures>("stepFeatures"),
                      InstanceMethod<&PromptModel::cacheFeatures>("cacheFeatures"),
                      InstanceMethod<&PromptModel::clearFeatures>("clearFeatures"),
                      InstanceMethod<&PromptModel::shareFeatures>("shareFeatures"),
                      InstanceMethod<&PromptModel::stepCached>("stepCached"),
                      InstanceMethod<&PromptModel::gradients>("gradients"),
                      InstanceMethod<&PromptModel::optimizerState>("optimizerState"),
                      InstanceMethod<&PromptModel::setOptimizerState>("setOptimizerState"),
                      InstanceMethod<&PromptModel::attachGroup>("attachGroup"),
                      InstanceMethod<&PromptModel::broadcastState>("broadcastState"),
                      InstanceMethod("dispose", &PromptModel::dispose)});
}

PromptModel::PromptModel(const Napi::CallbackInfo& info) : BoundObject(info) {}

// createPrompt(clip, classTokens: Int32Array, shape [C,ctx], { seed, textPath, bankSize }) — synchronous:
// building a prompt is a few small allocations and one embedding lookup.
Napi::Value PromptModel::create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto clip = ClipModel::unwrap(env, info[0])->handle(env);
  auto ids = longTensorFrom(env, info[1], info[2], "createPrompt");
  IPCLIP_CHECK_ARG(env, ids.dim() == 2, "createPrompt: class tokens must have shape [C, contextLength]");
  IPCLIP_CHECK_ARG(env, ids.size(0) >= 2, "createPrompt: IP-CLIP needs at least 2 classes");
  PromptModelOptions opts;
  if (info.Length() > 3 && info[3].IsObject()) {
    auto o = info[3].As<Napi::Object>();
    double seed = optionNumber(o, "seed", 1);
    IPCLIP_CHECK_ARG(env, seed >= 0 && seed <= 9007199254740991.0, "createPrompt: seed must be a non-negative integer");
    opts.seed = static_cast<uint64_t>(seed);
    auto path = optionString(o, "textPath", "fast");
    IPCLIP_CHECK_ARG(env, path == "fast" || path == "naive", "createPrompt: textPath must be 'fast' or 'naive'");
    opts.textPath = path == "fast" ? TextPath::Fast : TextPath::Naive;
    double k = optionNumber(o, "bankSize", 5);
    IPCLIP_CHECK_ARG(env, k >= 1 && k <= 1000 && k == static_cast<int64_t>(k), "createPrompt: bankSize must be an integer in [1,1000]");
    opts.bankSize = static_cast<int64_t>(k);
  }
  auto h = std::make_shared<PromptHandle>();
  h->clip = clip;
  guarded(env, [&] {
    std::lock_guard<std::mutex> lock(clip->mutex);
    h->core = std::make_unique<ipclip::PromptModel>(clip->model, ids, opts);
    h->bytes = h->core->bytes();
    return 0;
  });
  return wrap(env, addonData(env).promptModel, h);
}

Napi::Value PromptModel::numClasses(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(handle(info.Env())->core->numClasses()));
}

Napi::Value PromptModel::nCtx(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(handle(info.Env())->core->nCtx()));
}

Napi::Value PromptModel::dims(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const auto& c = handle(env)->core->clip().config();
  auto o = Napi::Object::New(env);
  o.Set("layers", c.vision.layers);
  o.Set("visionWidth", c.vision.width);
  o.Set("textWidth", c.text.width);
  o.Set("embedDim", c.embedDim);
  o.Set("imageSize", c.vision.imageSize);
  return o;
}

Napi::Value PromptModel::skippedSteps(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(handle(info.Env())->core->skippedSteps));
}

Napi::Value PromptModel::state(const Napi::CallbackInfo& info) {
  return queue<TensorMap>(
      info.Env(), "ipclip.prompt.state", [](PromptHandle& h) { return h.core->state(); },
      [](Napi::Env env, TensorMap& m) -> Napi::Value { return mapToJs(env, m); });
}

Napi::Value PromptModel::setState(const Napi::CallbackInfo& info) {
  handle(info.Env());
  auto tensors = mapFromJs(info.Env(), info[0], "setState");
  return queue<int>(
      info.Env(), "ipclip.prompt.setState",
      [tensors](PromptHandle& h) {
        h.core->setState(tensors);
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); });
}

Napi::Value PromptModel::logits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = handle(env);
  auto images = imageBatchFrom(env, info[0], info[1], h->core->clip().config(), "logits");
  bool wantDomain = false, wantEmbeds = false;
  if (info.Length() > 2 && info[2].IsObject()) {
    wantDomain = optionBool(info[2].As<Napi::Object>(), "domain", false);
    wantEmbeds = optionBool(info[2].As<Napi::Object>(), "embeds", false);
  }
  return queue<PromptOutput>(
      env, "ipclip.prompt.logits",
      [images](PromptHandle& h) {
        std::lock_guard<std::mutex> clipLock(h.clip->mutex);
        c10::InferenceMode guard;
        auto out = h.core->forward(images);
        return PromptOutput{hostFloat(out.logits), hostFloat(out.domain), hostFloat(out.embeds), {}};
      },
      [wantDomain, wantEmbeds](Napi::Env env, PromptOutput& out) -> Napi::Value {
        auto o = Napi::Object::New(env);
        o.Set("logits", toJsTensor(env, out.logits));
        if (wantDomain) o.Set("domain", toJsTensor(env, out.domain));
        if (wantEmbeds) o.Set("embeds", toJsTensor(env, out.embeds));
        return o;
      });
}

Napi::Value PromptModel::bankUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = handle(env);
  // bankUpdate(images | null, shape | null, labels, which, { gather: true }): data-parallel bank construction,
  // this rank's slice (possibly none) of a global batch; every rank of the attached group makes the call.
  if (info.Length() > 4 && info[4].IsObject() && optionBool(info[4].As<Napi::Object>(), "gather", false)) {
    torch::Tensor images, labels;
    if (!info[0].IsNull() && !info[0].IsUndefined()) {
      images = imageBatchFrom(env, info[0], info[1], h->core->clip().config(), "bankUpdate");
      labels = labelsFrom(env, info[2], images.size(0), h->core->numClasses(), "bankUpdate");
    }
    IPCLIP_CHECK_ARG(env, info[3].IsString(), "bankUpdate: which must be 'authorized' or 'unauthorized'");
    auto which = info[3].As<Napi::String>().Utf8Value();
    IPCLIP_CHECK_ARG(env, which == "authorized" || which == "unauthorized",
                     "bankUpdate: which must be 'authorized' or 'unauthorized'");
    auto rule = which == "authorized" ? BankRule::Authorized : BankRule::Unauthorized;
    return queue<torch::Tensor>(
        env, "ipclip.prompt.bankUpdate",
        [images, labels, rule](PromptHandle& h) {
          std::lock_guard<std::mutex> clipLock(h.clip->mutex);
          auto logits = h.core->bankUpdateGathered(images, labels, rule);
          return logits.defined() ? hostFloat(logits) : torch::zeros({0, h.core->numClasses()});
        },
        [](Napi::Env env, torch::Tensor& logits) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("logits", toJsTensor(env, logits));
          return o;
        });
  }
  auto images = imageBatchFrom(env, info[0], info[1], h->core->clip().config(), "bankUpdate");
  auto labels = labelsFrom(env, info[2], images.size(0), h->core->numClasses(), "bankUpdate");
  IPCLIP_CHECK_ARG(env, info.Length() > 3 && info[3].IsString(), "bankUpdate: which must be 'authorized' or 'unauthorized'");
  auto which = info[3].As<Napi::String>().Utf8Value();
  IPCLIP_CHECK_ARG(env, which == "authorized" || which == "unauthorized",
                   "bankUpdate: which must be 'authorized' or 'unauthorized'");
  auto rule = which == "authorized" ? BankRule::Authorized : BankRule::Unauthorized;
  return queue<torch::Tensor>(
      env, "ipclip.prompt.bankUpdate",
      [images, labels, rule](PromptHandle& h) {
        std::lock_guard<std::mutex> clipLock(h.clip->mutex);
        return hostFloat(h.core->bankUpdate(images, labels, rule));
      },
      [](Napi::Env env, torch::Tensor& logits) -> Napi::Value {
        auto o = Napi::Object::New(env);
        o.Set("logits", toJsTensor(env, logits));
        return o;
      });
}

Napi::Value PromptModel::resetBanks(const Napi::CallbackInfo& info) {
  return queue<int>(
      info.Env(), "ipclip.prompt.resetBanks",
      [](PromptHandle& h) {
        h.core->resetBanks();
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); });
}

Napi::Value PromptModel::step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = handle(env);
  const auto& c = h->core->clip().config();
  const auto C = h->core->numClasses();
  IPCLIP_CHECK_ARG(env, info.Length() >= 7 && info[6].IsObject(), "step: expected (imagesA, shapeA, labelsA, imagesU, shapeU, labelsU, options)");
  auto opts = stepOptionsFrom(env, info[6].As<Napi::Object>());
  auto imagesA = imageBatchFrom(env, info[0], info[1], c, "step (authorized)");
  auto labelsA = labelsFrom(env, info[2], imagesA.size(0), C, "step (authorized)");
  torch::Tensor imagesU, labelsU;
  if (opts.unauthorized) {
    imagesU = imageBatchFrom(env, info[3], info[4], c, "step (unauthorized)");
    labelsU = labelsFrom(env, info[5], imagesU.size(0), C, "step (unauthorized)");
    checkPaired(env, imagesA.size(0), imagesU.size(0), "step", "images");
  }
  return startStep(env, "ipclip.prompt.step", opts.keepGradients, [=](ipclip::PromptModel& core) {
    return core.step(imagesA, labelsA, imagesU, labelsU, opts);
  });
}

Napi::Value PromptModel::encodeVision(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = handle(env);
  auto images = imageBatchFrom(env, info[0], info[1], h->core->clip().config(), "encodeVision");
  return queue<VisionFeatures>(
      env, "ipclip.prompt.encodeVision",
      [images](PromptHandle& h) {
        std::lock_guard<std::mutex> clipLock(h.clip->mutex);
        c10::InferenceMode guard;
        auto f = h.core->encodeVision(images);
        return VisionFeatures{hostFloat(f.embeds), hostFloat(f.stats)};
      },
      [](Napi::Env env, VisionFeatures& f) -> Napi::Value {
        auto o = Napi::Object::New(env);
        o.Set("embeds", toJsTensor(env, f.embeds));
        o.Set("stats", toJsTensor(env, f.stats));
        return o;
      });
}

// stepFeatures(featA, labelsA, featU, labelsU, options): step() from encodeVision's output.
Napi::Value PromptModel::stepFeatures(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = handle(env);
  const auto& c = h->core->clip().config();
  const auto C = h->core->numClasses();
  IPCLIP_CHECK_ARG(env, info.Length() >= 5 && info[4].IsObject(), "stepFeatures: expected (featA, labelsA, featU, labelsU, options)");
  auto opts = stepOptionsFrom(env, info[4].As<Napi::Object>());
  auto featA = featuresFrom(env, info[0], c, "stepFeatures (authorized)");
  auto labelsA = labelsFrom(env, info[1], featA.embeds.size(0), C, "stepFeatures (authorized)");
  VisionFeatures featU;
  torch::Tensor labelsU;
  if (opts.unauthorized) {
    featU = featuresFrom(env, info[2], c, "stepFeatures (unauthorized)");
    labelsU = labelsFrom(env, info[3], featU.embeds.size(0), C, "stepFeatures (unauthorized)");
    checkPaired(env, featA.embeds.size(0), featU.embeds.size(0), "stepFeatures", "samples");
  }
  return startStep(env, "ipclip.prompt.stepFeatures", opts.keepGradients, [=](ipclip::PromptModel& core) {
    return core.step(featA, labelsA, featU, labelsU, opts);
  });
}

// cacheFeatures(stream, size, indices, images, shape): runs the frozen vision tower on the batch and keeps its
// features in `stream`'s cache ('authorized' | 'unauthorized', `size` samples) at the samples `indices`.
Napi::Value PromptModel::cacheFeatures(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = handle(env);
  IPCLIP_CHECK_ARG(env, info.Length() >= 5 && info[0].IsString() && info[1].IsNumber(),
                   "cacheFeatures: expected (stream, size, indices, images, shape)");
  const auto stream = info[0].As<Napi::String>().Utf8Value();
  IPCLIP_CHECK_ARG(env, stream == "authorized" || stream == "unauthorized",
                   "cacheFeatures: stream must be 'authorized' or 'unauthorized'");
  const double size = info[1].As<Napi::Number>().DoubleValue();
  IPCLIP_CHECK_ARG(env, size >= 1 && size <= 1e9 && size == static_cast<double>(static_cast<int64_t>(size)),
                   "cacheFeatures: size must be a positive integer");
  auto images = imageBatchFrom(env, info[3], info[4], h->core->clip().config(), "cacheFeatures");
  auto indices = indicesFrom(env, info[2], static_cast<size_t>(images.size(0)), "cacheFeatures");
  for (auto i : indices)
    IPCLIP_CHECK_ARG(env, i < static_cast<int64_t>(size),
                     "cacheFeatures: index " + std::to_string(i) + " is not in [0, " + std::to_string(static_cast<int64_t>(size)) + ")");
  const bool authorized = stream == "authorized";
  return queue<std::shared_ptr<PromptHandle>>(
      env, "ipclip.prompt.cacheFeatures",
      [h, authorized, size, indices, images](PromptHandle& s) {
        std::lock_guard<std::mutex> clipLock(s.clip->mutex);
        auto& core = *s.core;
        core.cacheFeatures(authorized ? core.authorizedFeatures : core.unauthorizedFeatures, static_cast<int64_t>(size),
                           indices, images);
        s.bytes = core.bytes();
        return h;
      },
      [](Napi::Env env, std::shared_ptr<PromptHandle>& s) -> Napi::Value {
        reportMemory(env, *s);
        return env.Undefined();
      });
}

// clearFeatures(): frees both streams' cached features.
Napi::Value PromptModel::clearFeatures(const Napi::CallbackInfo& info) {
  auto h = handle(info.Env());
  return queue<std::shared_ptr<PromptHandle>>(
      info.Env(), "ipclip.prompt.clearFeatures",
      [h](PromptHandle& s) {
        s.core->authorizedFeatures.clear();
        s.core->unauthorizedFeatures.clear();
        s.bytes = s.core->bytes();
        return h;
      },
      [](Napi::Env env, std::shared_ptr<PromptHandle>& s) -> Napi::Value {
        reportMemory(env, *s);
        return env.Undefined();
      });
}

// shareFeatures(stream) → Promise<void>: data parallelism, every rank of the attached group calls it once its
// share of `stream` is cached; afterwards every rank's cache holds every rank's samples (two all-gathers).
Napi::Value PromptModel::shareFeatures(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = handle(env);
  IPCLIP_CHECK_ARG(env, info.Length() >= 1 && info[0].IsString(), "shareFeatures: expected (stream)");
  const auto stream = info[0].As<Napi::String>().Utf8Value();
  IPCLIP_CHECK_ARG(env, stream == "authorized" || stream == "unauthorized",
                   "shareFeatures: stream must be 'authorized' or 'unauthorized'");
  const bool authorized = stream == "authorized";
  return queue<std::shared_ptr<PromptHandle>>(
      env, "ipclip.prompt.shareFeatures",
      [h, authorized](PromptHandle& s) {
        auto& core = *s.core;
        if (!core.group) fail("ERR_INVALID_ARGUMENT", "shareFeatures needs an attached process group");
        (authorized ? core.authorizedFeatures : core.unauthorizedFeatures)
            .share(*core.group, authorized ? "authorized" : "unauthorized");
        s.bytes = core.bytes();
        return h;
      },
      [](Napi::Env env, std::shared_ptr<PromptHandle>& s) -> Napi::Value {
        reportMemory(env, *s);
        return env.Undefined();
      });
}

// stepCached(indicesA, labelsA, indicesU, labelsU, options): step() on cached features, gathered native-side
// (A from the authorized cache, U from the unauthorized one; indicesU and labelsU unread without `unauthorized`).
Napi::Value PromptModel::stepCached(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = handle(env);
  const auto C = h->core->numClasses();
  IPCLIP_CHECK_ARG(env, info.Length() >= 5 && info[4].IsObject(), "stepCached: expected (indicesA, labelsA, indicesU, labelsU, options)");
  auto opts = stepOptionsFrom(env, info[4].As<Napi::Object>());
  IPCLIP_CHECK_ARG(env, info[0].IsTypedArray(), "stepCached (authorized): indices must be an Int32Array");
  const auto nA = info[0].As<Napi::TypedArray>().ElementLength();
  if (nA == 0) throwJs(env, "ERR_EMPTY_INPUT", "stepCached (authorized): the batch is empty");
  auto indicesA = indicesFrom(env, info[0], nA, "stepCached (authorized)");
  auto labelsA = labelsFrom(env, info[1], static_cast<int64_t>(nA), C, "stepCached (authorized)");
  std::vector<int64_t> indicesU;
  torch::Tensor labelsU;
  if (opts.unauthorized) {
    IPCLIP_CHECK_ARG(env, info[2].IsTypedArray(), "stepCached (unauthorized): indices must be an Int32Array");
    const auto nU = info[2].As<Napi::TypedArray>().ElementLength();
    indicesU = indicesFrom(env, info[2], nU, "stepCached (unauthorized)");
    labelsU = labelsFrom(env, info[3], static_cast<int64_t>(nU), C, "stepCached (unauthorized)");
    checkPaired(env, static_cast<int64_t>(nA), static_cast<int64_t>(nU), "stepCached", "samples");
  }
  return startStep(env, "ipclip.prompt.stepCached", opts.keepGradients, [=](ipclip::PromptModel& core) {
    return core.stepCached(indicesA, labelsA, indicesU, labelsU, opts);
  });
}

Napi::Value PromptModel::gradients(const Napi::CallbackInfo& info) {
  auto h = handle(info.Env());
  std::lock_guard<std::mutex> g(h->gradMutex);  // held only while copying a small snapshot
  if (!h->gradientsKept)
    throwJs(info.Env(), "ERR_INVALID_ARGUMENT",
            "gradients(): the last step did not keep its gradients; run it with keepGradients: true (or update: false)");
  return mapToJs(info.Env(), h->gradients);
}

Napi::Value PromptModel::optimizerState(const Napi::CallbackInfo& info) {
  struct Out { int64_t steps; TensorMap tensors; double scale; int64_t goodSteps; };
  return queue<Out>(
      info.Env(), "ipclip.prompt.optimizerState",
      [](PromptHandle& h) {
        const auto& ls = h.core->lossScale;
        return Out{h.core->adam.steps, h.core->optimizerState(), ls.scale(), ls.goodSteps()};
      },
      [](Napi::Env env, Out& out) -> Napi::Value {
        auto o = Napi::Object::New(env);
        o.Set("step", static_cast<double>(out.steps));
        o.Set("tensors", mapToJs(env, out.tensors));
        auto ls = Napi::Object::New(env);
        ls.Set("scale", out.scale);
        ls.Set("goodSteps", static_cast<double>(out.goodSteps));
        o.Set("lossScale", ls);
        return o;
      });
}

Napi::Value PromptModel::setOptimizerState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  handle(env);
  IPCLIP_CHECK_ARG(env, info.Length() >= 1 && info[0].IsObject(), "setOptimizerState: expected { step, tensors }");
  auto o = info[0].As<Napi::Object>();
  double steps = optionNumber(o, "step", 0);
  IPCLIP_CHECK_ARG(env, steps >= 0 && steps == static_cast<int64_t>(steps), "setOptimizerState: step must be a non-negative integer");
  auto tensors = mapFromJs(env, o.Get("tensors"), "setOptimizerState");
  // Optional { scale, goodSteps }: the float16 loss scale (absent: left as it is).
  std::optional<std::pair<double, int64_t>> lossScale;
  if (o.Has("lossScale") && !o.Get("lossScale").IsUndefined()) {
    IPCLIP_CHECK_ARG(env, o.Get("lossScale").IsObject(), "setOptimizerState: lossScale must be { scale, goodSteps }");
    auto ls = o.Get("lossScale").As<Napi::Object>();
    double scale = optionNumber(ls, "scale", 65536.0), good = optionNumber(ls, "goodSteps", 0);
    IPCLIP_CHECK_ARG(env, good == static_cast<int64_t>(good), "setOptimizerState: lossScale.goodSteps must be an integer");
    lossScale = std::pair{scale, static_cast<int64_t>(good)};
  }
  return queue<int>(
      env, "ipclip.prompt.setOptimizerState",
      [steps, tensors, lossScale](PromptHandle& h) {
        // The loss scale first: it validates without side effects, so a bad value changes nothing.
        LossScale restored = h.core->lossScale;
        if (lossScale) restored.setState(lossScale->first, lossScale->second);
        h.core->setOptimizerState(static_cast<int64_t>(steps), tensors);
        h.core->lossScale = restored;
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); });
}

// attachGroup(group | null) → Promise<void>: later steps all-reduce over `group` (null: a single process again).
Napi::Value PromptModel::attachGroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  handle(env);
  std::shared_ptr<ipclip::ProcessGroup> group;
  if (info.Length() > 0 && !info[0].IsNull() && !info[0].IsUndefined())
    group = ProcessGroup::unwrap(env, info[0])->handle(env)->group;
  return queue<int>(
      env, "ipclip.prompt.attachGroup",
      [group](PromptHandle& h) {
        h.core->group = group;
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); });
}

// broadcastState(root) → Promise<void>: rank root's prompt, enhancer and banks on every rank (a collective).
Napi::Value PromptModel::broadcastState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  handle(env);
  IPCLIP_CHECK_ARG(env, info.Length() > 0 && info[0].IsNumber(), "broadcastState: expected (root)");
  const int root = info[0].As<Napi::Number>().Int32Value();
  return queue<int>(
      env, "ipclip.prompt.broadcastState",
      [root](PromptHandle& h) {
        h.core->broadcastState(root);
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); });
}

void registerPrompt(Napi::Env env, Napi::Object exports) {
  auto ctor = PromptModel::define(env);
  addonData(env).promptModel = Napi::Persistent(ctor);
  exports.Set("PromptModel", ctor);
  exports.Set("createPrompt", Napi::Function::New(env, PromptModel::create, "createPrompt"));
}

}  // namespace ipclip::binding
