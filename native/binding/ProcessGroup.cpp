#include "binding/ProcessGroup.h"

#include <cmath>
#include <cstring>

#include "binding/addon_data.h"
#include "binding/convert.h"
#include "binding/register.h"
#include "binding/worker.h"

namespace ipclip::binding {

namespace {

// A Float64Array → a float64 CPU tensor (copied on the main thread).
torch::Tensor doublesFrom(Napi::Env env, Napi::Value v, const char* what) {
  IPCLIP_CHECK_ARG(env, v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float64_array,
                   std::string(what) + ": expected a Float64Array");
  auto a = v.As<Napi::Float64Array>();
  auto t = torch::empty({static_cast<int64_t>(a.ElementLength())}, torch::kFloat64);
  if (a.ElementLength() > 0) std::memcpy(t.data_ptr<double>(), a.Data(), a.ElementLength() * sizeof(double));
  return t;
}

Napi::Float64Array doublesTo(Napi::Env env, const torch::Tensor& t) {
  auto c = t.to(torch::kCPU, torch::kFloat64).contiguous();
  auto out = Napi::Float64Array::New(env, static_cast<size_t>(c.numel()));
  if (c.numel() > 0) std::memcpy(out.Data(), c.data_ptr<double>(), c.numel() * sizeof(double));
  return out;
}

}  // namespace

Napi::Function ProcessGroup::define(Napi::Env env) {
  return DefineClass(env, "ProcessGroup",
                     {InstanceAccessor<&ProcessGroup::rank>("rank"),
                      InstanceAccessor<&ProcessGroup::worldSize>("worldSize"),
                      InstanceAccessor<&ProcessGroup::backend>("backend"),
                      InstanceMethod<&ProcessGroup::allReduce>("allReduce"),
                      InstanceMethod<&ProcessGroup::allGather>("allGather"),
                      InstanceMethod<&ProcessGroup::broadcast>("broadcast"),
                      InstanceMethod<&ProcessGroup::barrier>("barrier"),
                      InstanceMethod<&ProcessGroup::close>("close"),
                      InstanceMethod("dispose", &ProcessGroup::dispose)});
}

ProcessGroup::ProcessGroup(const Napi::CallbackInfo& info) : BoundObject(info) {}

ProcessGroup* ProcessGroup::unwrap(Napi::Env env, Napi::Value v) {
  auto& ctor = addonData(env).processGroup;
  IPCLIP_CHECK_ARG(env, v.IsObject() && v.As<Napi::Object>().InstanceOf(ctor.Value()), "expected a ProcessGroup");
  return Unwrap(v.As<Napi::Object>());
}

// createProcessGroup({ backend, rank, worldSize, masterAddr, masterPort, timeoutMs, agentStore, attempt })
// → Promise<ProcessGroup>: the rendezvous (rank 0 serves the TCPStore and waits for every rank; with agentStore
// every rank is a client of torchrun's agent) runs on a worker thread.
Napi::Value ProcessGroup::create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IPCLIP_CHECK_ARG(env, info.Length() >= 1 && info[0].IsObject(), "createProcessGroup: expected an options object");
  auto o = info[0].As<Napi::Object>();
  DistributedOptions opts;
  opts.backend = optionString(o, "backend", "gloo");
  auto integer = [&](const char* key, double fallback, double lo, double hi) {
    double v = optionNumber(o, key, fallback);
    IPCLIP_CHECK_ARG(env, v == std::floor(v) && v >= lo && v <= hi,
                     std::string("createProcessGroup: ") + key + " must be an integer in [" + std::to_string(static_cast<int64_t>(lo)) +
                         ", " + std::to_string(static_cast<int64_t>(hi)) + "]");
    return v;
  };
  opts.worldSize = static_cast<int>(integer("worldSize", 1, 1, 65536));
  opts.rank = static_cast<int>(integer("rank", 0, 0, opts.worldSize - 1));
  opts.masterAddr = optionString(o, "masterAddr", "127.0.0.1");
  opts.masterPort = static_cast<int>(integer("masterPort", 29500, 1, 65535));
  opts.timeoutMs = static_cast<int64_t>(integer("timeoutMs", 300000, 1, 8.64e7));
  opts.agentStore = optionBool(o, "agentStore", false);
  opts.attempt = static_cast<int>(integer("attempt", 0, 0, 1e6));
  guarded(env, [&] { return requireDistributedBackend(opts.backend), 0; });  // before anything is joined
  return PromiseWorker<std::shared_ptr<GroupHandle>>::start(
      env, Napi::Object(), "ipclip.distributed.create",
      [opts]() {
        auto h = std::make_shared<GroupHandle>();
        h->group = std::make_shared<ipclip::ProcessGroup>(opts);
        return h;
      },
      [](Napi::Env env, std::shared_ptr<GroupHandle>& h) -> Napi::Value {
        return wrap(env, addonData(env).processGroup, h);
      });
}

Napi::Value ProcessGroup::rank(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), handle(info.Env())->group->rank());
}

Napi::Value ProcessGroup::worldSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), handle(info.Env())->group->worldSize());
}

Napi::Value ProcessGroup::backend(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), handle(info.Env())->group->options().backend);
}

// allReduce(values: Float64Array) → Promise<Float64Array>: the element-wise sum over ranks.
Napi::Value ProcessGroup::allReduce(const Napi::CallbackInfo& info) {
  auto t = doublesFrom(info.Env(), info[0], "allReduce");
  return queue<torch::Tensor>(
      info.Env(), "ipclip.distributed.allReduce",
      [t](GroupHandle& h) {
        torch::Tensor x = t;
        h.group->allReduceSum(x);
        return x;
      },
      [](Napi::Env env, torch::Tensor& t) -> Napi::Value { return doublesTo(env, t); });
}

// allGather(values: Float64Array, the same length on every rank) → Promise<Float64Array[]> in rank order.
Napi::Value ProcessGroup::allGather(const Napi::CallbackInfo& info) {
  auto t = doublesFrom(info.Env(), info[0], "allGather");
  IPCLIP_CHECK_ARG(info.Env(), t.numel() > 0, "allGather: the array must not be empty");
  return queue<std::vector<torch::Tensor>>(
      info.Env(), "ipclip.distributed.allGather", [t](GroupHandle& h) { return h.group->allGather(t); },
      [](Napi::Env env, std::vector<torch::Tensor>& parts) -> Napi::Value {
        auto out = Napi::Array::New(env, parts.size());
        for (size_t i = 0; i < parts.size(); ++i) out.Set(static_cast<uint32_t>(i), doublesTo(env, parts[i]));
        return out;
      });
}

// broadcast(values: Float64Array, root) → Promise<Float64Array>: rank root's values (same length everywhere).
Napi::Value ProcessGroup::broadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto t = doublesFrom(env, info[0], "broadcast");
  IPCLIP_CHECK_ARG(env, info.Length() > 1 && info[1].IsNumber(), "broadcast: expected (values, root)");
  const int root = info[1].As<Napi::Number>().Int32Value();
  return queue<torch::Tensor>(
      env, "ipclip.distributed.broadcast",
      [t, root](GroupHandle& h) {
        torch::Tensor x = t;
        h.group->broadcast(x, root);
        return x;
      },
      [](Napi::Env env, torch::Tensor& t) -> Napi::Value { return doublesTo(env, t); });
}

Napi::Value ProcessGroup::barrier(const Napi::CallbackInfo& info) {
  return queue<int>(
      info.Env(), "ipclip.distributed.barrier",
      [](GroupHandle& h) {
        h.group->barrier();
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); });
}

// close() → Promise<void>: leaves the job (its store and connections); later collectives fail.
Napi::Value ProcessGroup::close(const Napi::CallbackInfo& info) {
  return queue<int>(
      info.Env(), "ipclip.distributed.close",
      [](GroupHandle& h) {
        h.group->close();
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); });
}

void registerDistributed(Napi::Env env, Napi::Object exports) {
  auto ctor = ProcessGroup::define(env);
  addonData(env).processGroup = Napi::Persistent(ctor);
  exports.Set("ProcessGroup", ctor);
  exports.Set("createProcessGroup", Napi::Function::New(env, ProcessGroup::create, "createProcessGroup"));
  auto backends = Napi::Array::New(env);
  uint32_t n = 0;
  for (const char* b : {"gloo", "nccl"})
    if (distributedBackendAvailable(b)) backends.Set(n++, Napi::String::New(env, b));
  exports.Set("distributedBackends", backends);
}

}  // namespace ipclip::binding
