// One base for the bound classes that own native state (ClipModel, PromptModel, Pretrainer): the handle, its
// disposal, V8's external-memory accounting and the queuing of work that keeps both the JS object and the native
// state alive while it runs — written once.
//
// Lifetime: the JS object holds a shared_ptr to its State; every queued computation holds another. dispose() (or
// collection) drops the object's reference under a mutex and tells V8 the memory is gone: later calls throw
// ERR_DISPOSED, a computation already running finishes on its own reference (correctly: nothing is freed under
// it), and the memory goes when the last reference does. dispose() twice is harmless.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "binding/common.h"
#include "binding/worker.h"

namespace ipclip::binding {

template <typename Derived, typename State>
class BoundObject;

// What a bound object owns natively. `mutex` serialises the computations on it.
struct NativeState {
  std::mutex mutex;
  // The native memory it owns, as last measured (any thread); V8 is told on the main thread (reportMemory).
  std::atomic<int64_t> bytes{0};
  virtual ~NativeState() = default;

 private:
  template <typename, typename>
  friend class BoundObject;
  int64_t reported_ = 0;   // main thread only: what V8 was last told
  bool released_ = false;  // main thread only: disposed or collected; nothing more is reported
};

// Derived: the ObjectWrap class, with `static constexpr const char* kWhat` naming it in ERR_DISPOSED messages.
template <typename Derived, typename State>
class BoundObject : public Napi::ObjectWrap<Derived> {
 public:
  explicit BoundObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Derived>(info) {}

  void Finalize(Napi::Env env) override { release(env); }

  // The native state, or a JS ERR_DISPOSED error. Other bound classes use it too (a prompt holds its CLIP's).
  std::shared_ptr<State> handle(Napi::Env env) {
    std::lock_guard<std::mutex> lock(handleMutex_);
    if (!state_) throwJs(env, "ERR_DISPOSED", std::string("this ") + Derived::kWhat + " has been disposed");
    return state_;
  }

  // A new instance of the class `ctor` owning `state`, whose memory is reported to V8.
  static Napi::Object wrap(Napi::Env env, Napi::FunctionReference& ctor, std::shared_ptr<State> state) {
    auto obj = ctor.New({});
    BoundObject* self = Derived::Unwrap(obj);
    {
      std::lock_guard<std::mutex> lock(self->handleMutex_);
      self->state_ = state;
    }
    reportMemory(env, *state);
    return obj;
  }

  // Brings V8's external memory in line with state.bytes (main thread; after work that changed it). Nothing
  // once the owner is disposed: its memory was given back then.
  static void reportMemory(Napi::Env env, NativeState& s) {
    if (s.released_) return;
    const int64_t now = s.bytes.load();
    if (now != s.reported_) {
      Napi::MemoryManagement::AdjustExternalMemory(env, now - s.reported_);
      s.reported_ = now;
    }
  }

 protected:
  // The bound dispose().
  Napi::Value dispose(const Napi::CallbackInfo& info) {
    release(info.Env());
    return info.Env().Undefined();
  }

  // Queues work(State&) on a libuv thread under the state's mutex and returns the promise that resolve (main
  // thread) settles. The JS object and the native state stay alive until then, whatever dispose() does.
  template <typename Result, typename Work, typename Resolve>
  Napi::Promise queue(Napi::Env env, const char* name, Work work, Resolve resolve) {
    auto s = handle(env);
    return PromiseWorker<Result>::start(
        env, this->Value(), name,
        [s, work = std::move(work)]() -> Result {
          std::lock_guard<std::mutex> lock(s->mutex);
          return work(*s);
        },
        std::move(resolve));
  }

 private:
  void release(Napi::Env env) {
    std::shared_ptr<State> s;
    {
      std::lock_guard<std::mutex> lock(handleMutex_);
      s = std::move(state_);
    }
    if (!s || s->released_) return;
    if (s->reported_ != 0) Napi::MemoryManagement::AdjustExternalMemory(env, -s->reported_);
    s->reported_ = 0;
    s->released_ = true;
  }

  std::mutex handleMutex_;
  std::shared_ptr<State> state_;
};

}  // namespace ipclip::binding
