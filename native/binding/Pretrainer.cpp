#include "binding/Pretrainer.h"

#include <cmath>
#include <map>

#include "binding/addon_data.h"
#include "binding/convert.h"
#include "binding/register.h"
#include "binding/worker.h"

namespace ipclip::binding {

namespace {

double nonNegative(Napi::Env env, const char* key, double v) {
  IPCLIP_CHECK_ARG(env, v >= 0, std::string("step: option '") + key + "' must be a finite number >= 0");
  return v;
}

}  // namespace

void registerPretrainer(Napi::Env env, Napi::Object exports) {
  auto ctor = Pretrainer::define(env);
  addonData(env).pretrainer = Napi::Persistent(ctor);
  exports.Set("Pretrainer", ctor);
  exports.Set("createPretrainer", Napi::Function::New(env, Pretrainer::create, "createPretrainer"));
}

Napi::Function Pretrainer::define(Napi::Env env) {
  return DefineClass(env, "Pretrainer",
                     {InstanceAccessor<&Pretrainer::config>("config"),
                      InstanceAccessor<&Pretrainer::steps>("steps"),
                      InstanceMethod<&Pretrainer::step>("step"),
                      InstanceMethod<&Pretrainer::state>("state"),
                      InstanceMethod<&Pretrainer::encodeImage>("encodeImage"),
                      InstanceMethod<&Pretrainer::encodeText>("encodeText"),
                      InstanceMethod("dispose", &Pretrainer::dispose)});
}

Pretrainer::Pretrainer(const Napi::CallbackInfo& info) : BoundObject(info) {}

Napi::Value Pretrainer::create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto config = clipConfigFromJs(env, info.Length() > 0 ? info[0] : env.Undefined(), "createPretrainer");
  // The saved model's config.json (OpenAI's keys) records no activation, so it would load back as QuickGELU.
  IPCLIP_CHECK_ARG(env, config.vision.activation == Activation::QuickGelu && config.text.activation == Activation::QuickGelu,
                   "createPretrainer: only quick_gelu towers can be pretrained");
  double seed = 0;
  std::string deviceName = "cpu";
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    IPCLIP_CHECK_ARG(env, info[1].IsObject(), "createPretrainer: options must be an object");
    auto o = info[1].As<Napi::Object>();
    if (o.Has("seed") && !o.Get("seed").IsUndefined()) {
      Napi::Value s = o.Get("seed");
      IPCLIP_CHECK_ARG(env, s.IsNumber(), "createPretrainer: seed must be an integer from 0 to 2^53-1");
      seed = s.As<Napi::Number>().DoubleValue();
      IPCLIP_CHECK_ARG(env, std::isfinite(seed) && seed >= 0 && seed == std::floor(seed) && seed <= 9007199254740991.0,
                       "createPretrainer: seed must be an integer from 0 to 2^53-1");
    }
    if (o.Has("device") && !o.Get("device").IsUndefined()) {
      IPCLIP_CHECK_ARG(env, o.Get("device").IsString(), "createPretrainer: device must be a string");
      deviceName = o.Get("device").As<Napi::String>().Utf8Value();
    }
  }
  auto device = guarded(env, [&] { return parseDevice(deviceName); });
  auto h = std::make_shared<PretrainerHandle>();
  guarded(env, [&] { h->core = std::make_unique<ClipPretrainerCore>(config, static_cast<uint64_t>(seed), device); });
  for (auto& p : h->core->model().parameters()) h->bytes += 3 * p.numel() * p.element_size();
  return wrap(env, addonData(env).pretrainer, h);
}

Napi::Value Pretrainer::config(const Napi::CallbackInfo& info) {
  return clipConfigToJs(info.Env(), handle(info.Env())->core->model().config());
}

Napi::Value Pretrainer::steps(const Napi::CallbackInfo& info) {
  auto h = handle(info.Env());
  std::lock_guard<std::mutex> lock(h->mutex);
  return Napi::Number::New(info.Env(), static_cast<double>(h->core->steps()));
}


Napi::Value Pretrainer::step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = handle(env);
  const auto& c = h->core->model().config();
  auto images = imageBatchFrom(env, info[0], info[1], c, "step");
  auto ids = tokenIdsFrom(env, info[2], info[3], c, "step");
  IPCLIP_CHECK_ARG(env, images.size(0) == ids.size(0),
                   "step: " + std::to_string(images.size(0)) + " images but " + std::to_string(ids.size(0)) + " captions");
  PretrainStepOptions o;
  if (info.Length() > 4 && !info[4].IsUndefined()) {
    IPCLIP_CHECK_ARG(env, info[4].IsObject(), "step: options must be an object");
    auto opt = info[4].As<Napi::Object>();
    o.lr = nonNegative(env, "lr", optionNumber(opt, "lr", o.lr));
    o.weightDecay = nonNegative(env, "weightDecay", optionNumber(opt, "weightDecay", o.weightDecay));
    o.gradClip = nonNegative(env, "gradClip", optionNumber(opt, "gradClip", o.gradClip));
  }
  return queue<PretrainStepResult>(
      env, "ipclip.pretrainStep", [images, ids, o](PretrainerHandle& h) { return h.core->step(images, ids, o); },
      [](Napi::Env env, PretrainStepResult& r) -> Napi::Value {
        auto out = Napi::Object::New(env);
        out.Set("loss", r.loss);
        out.Set("accuracy", r.accuracy);
        out.Set("logitScale", r.logitScale);
        return out;
      });
}

Napi::Value Pretrainer::state(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  using State = std::vector<std::pair<std::string, torch::Tensor>>;
  return queue<State>(
      env, "ipclip.pretrainState",
      [](PretrainerHandle& h) {
        State s;
        for (auto& p : h.core->model().named_parameters(true)) s.emplace_back(p.key(), hostFloat(p.value()).clone());
        return s;
      },
      [](Napi::Env env, State& s) -> Napi::Value {
        auto out = Napi::Object::New(env);
        for (auto& [name, t] : s) out.Set(name, toJsTensor(env, t));
        return out;
      });
}

Napi::Value Pretrainer::encodeImage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = handle(env);
  auto images = imageBatchFrom(env, info[0], info[1], h->core->model().config(), "encodeImage");
  return queue<torch::Tensor>(
      env, "ipclip.pretrainEncodeImage", [images](PretrainerHandle& h) { return hostFloat(h.core->encodeImage(images)); },
      [](Napi::Env env, torch::Tensor& t) -> Napi::Value { return toJsTensor(env, t); });
}

Napi::Value Pretrainer::encodeText(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = handle(env);
  auto ids = tokenIdsFrom(env, info[0], info[1], h->core->model().config(), "encodeText");
  return queue<torch::Tensor>(
      env, "ipclip.pretrainEncodeText", [ids](PretrainerHandle& h) { return hostFloat(h.core->encodeText(ids)); },
      [](Napi::Env env, torch::Tensor& t) -> Napi::Value { return toJsTensor(env, t); });
}

}  // namespace ipclip::binding
