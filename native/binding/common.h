// Shared helpers of the N-API layer: turning C++ failures into JS errors with a `code`, and argument checks.
#pragma once
#include <c10/util/Exception.h>
#include <napi.h>

#include <string>

#include "common/errors.h"

namespace ipclip::binding {

// A JS Error whose `code` property is one of lib/core/errors.ts's codes.
inline Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message) {
  auto err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

[[noreturn]] inline void throwJs(Napi::Env env, const std::string& code, const std::string& message) {
  throw makeError(env, code, message);
}

// Argument checks on the main thread: wrong input is ERR_INVALID_ARGUMENT before any work is queued.
#define IPCLIP_CHECK_ARG(env, cond, msg)                         \
  do {                                                           \
    if (!(cond)) ::ipclip::binding::throwJs(env, "ERR_INVALID_ARGUMENT", msg); \
  } while (0)

// Runs `fn` and rethrows any native failure as a JS error with a code (synchronous entry points).
template <typename Fn>
auto guarded(Napi::Env env, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const IpclipError& e) {
    throwJs(env, e.code, e.what());
  } catch (const c10::Error& e) {
    throwJs(env, "ERR_NATIVE", e.what_without_backtrace());
  } catch (const std::exception& e) {
    throwJs(env, "ERR_NATIVE", e.what());
  }
}

}  // namespace ipclip::binding
