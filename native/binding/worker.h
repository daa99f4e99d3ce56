// One Napi::AsyncWorker per long operation, each holding a Promise deferred: the work runs on a libuv
// thread (Execute), the result is converted to JS on the main thread (OnOK). The receiver object passed in
// is kept alive (a persistent reference) until the work completes, so a model cannot be collected mid-call.
#pragma once
#include <napi.h>

#include <functional>
#include <string>

#include "binding/common.h"

namespace ipclip::binding {

template <typename Result>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<Result()>;
  using Resolve = std::function<Napi::Value(Napi::Env, Result&)>;

  // Queues `work` and returns the promise it settles. `receiver` (a JS object or undefined) stays alive.
  static Napi::Promise start(Napi::Env env, Napi::Object receiver, const char* name, Work work, Resolve resolve) {
    auto* w = new PromiseWorker(env, name, std::move(work), std::move(resolve));
    if (!receiver.IsEmpty()) w->keepAlive_ = Napi::Persistent(receiver);
    auto promise = w->deferred_.Promise();
    w->Queue();
    return promise;
  }

 protected:
  void Execute() override {
    try {
      result_ = work_();
    } catch (const IpclipError& e) {
      fail(e.code, e.what());
    } catch (const c10::Error& e) {
      fail("ERR_NATIVE", e.what_without_backtrace());
    } catch (const std::bad_alloc&) {
      fail("ERR_NATIVE", "out of memory");
    } catch (const std::exception& e) {
      fail("ERR_NATIVE", e.what());
    }
  }

  // Both settle the promise on the main thread. When the environment is shutting down (a worker_thread
  // terminated mid-call) every N-API call may throw; such a promise can no longer be observed, so the
  // failure is dropped instead of escaping as an uncaught C++ exception.
  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(resolve_(env, result_));
    } catch (const Napi::Error& e) {
      settleQuietly([&] { deferred_.Reject(e.Value()); });
    } catch (const std::exception& e) {
      settleQuietly([&] { deferred_.Reject(makeError(env, "ERR_NATIVE", e.what()).Value()); });
    }
  }

  void OnError(const Napi::Error&) override {
    settleQuietly([&] { deferred_.Reject(makeError(Env(), code_, message_).Value()); });
  }

  // node-addon-api's version builds an Error and a HandleScope before OnOK/OnError, either of which can throw
  // while the environment terminates; here nothing escapes.
  void OnWorkComplete(Napi::Env env, napi_status status) override {
    if (status != napi_cancelled) {
      settleQuietly([&] {
        Napi::HandleScope scope(env);
        if (failed_) OnError(Napi::Error());
        else OnOK();
      });
    }
    Destroy();
  }

 private:
  PromiseWorker(Napi::Env env, const char* name, Work work, Resolve resolve)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), resolve_(std::move(resolve)) {}

  template <typename Fn>
  static void settleQuietly(Fn&& fn) {
    try {
      fn();
    } catch (...) {
      // The environment is going away; nobody can observe this promise any more.
    }
  }

  void fail(const std::string& code, const std::string& message) {
    code_ = code;
    message_ = message;
    failed_ = true;
  }

  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference keepAlive_;  // the bound object, alive until the worker is destroyed (main thread)
  Work work_;
  Resolve resolve_;
  Result result_{};
  bool failed_ = false;
  std::string code_ = "ERR_NATIVE";
  std::string message_;
};

}  // namespace ipclip::binding
