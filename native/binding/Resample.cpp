// resizeBicubic(data, width, height, outWidth, outHeight): PIL-exact resampling of an 8-bit RGB image
// (native/common/resample.h) on a libuv worker thread; the promise resolves to a new Buffer. The worker reads
// the caller's pixels in place (a copy of a 12 MP photo would cost the event loop as much as the resize): the
// array is kept alive until the work is done, and must not be changed or transferred meanwhile (as with
// sharp's raw input).
#include <algorithm>
#include <cmath>
#include <memory>
#include <thread>
#include <vector>

#include "binding/register.h"
#include "binding/worker.h"
#include "common/resample.h"

namespace ipclip::binding {

namespace {

// Below this many input samples one thread does it (thread start-up would cost more than it saves).
constexpr int64_t kParallelSamples = int64_t{1} << 22;
constexpr int kMaxThreads = 4;

Napi::Value resizeBicubic(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IPCLIP_CHECK_ARG(env, (info.Length() == 5 || info.Length() == 6) && info[0].IsTypedArray() && info[1].IsNumber() &&
                            info[2].IsNumber() && info[3].IsNumber() && info[4].IsNumber() &&
                            (info.Length() == 5 || info[5].IsUndefined() || info[5].IsNumber()),
                   "resizeBicubic: expected (data: Uint8Array, width, height, outWidth, outHeight, threads?)");
  auto arr = info[0].As<Napi::TypedArray>();
  IPCLIP_CHECK_ARG(env, arr.TypedArrayType() == napi_uint8_array, "resizeBicubic: data must be a Uint8Array");
  auto integer = [&](int i) {
    double v = info[i].As<Napi::Number>().DoubleValue();
    IPCLIP_CHECK_ARG(env, std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9e15,
                     "resizeBicubic: sizes must be integers");
    return static_cast<int64_t>(v);
  };
  const int64_t w = integer(1), h = integer(2), ow = integer(3), oh = integer(4);
  auto data = arr.As<Napi::Uint8Array>();
  const std::string why = image::checkResizeArgs(w, h, 3, data.ByteLength(), ow, oh);
  IPCLIP_CHECK_ARG(env, why.empty(), "resizeBicubic: " + why);
  const uint8_t* pixels = data.Data();
  // Threads: given (1–64), else up to kMaxThreads for large images (the result does not depend on it).
  int threads = w * h * 3 >= kParallelSamples
                    ? std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, kMaxThreads)
                    : 1;
  if (info.Length() == 6 && info[5].IsNumber()) {
    const int64_t n = integer(5);
    IPCLIP_CHECK_ARG(env, n >= 1 && n <= 64, "resizeBicubic: threads must be 1 to 64");
    threads = static_cast<int>(n);
  }
  using Out = std::shared_ptr<std::vector<uint8_t>>;
  return PromiseWorker<Out>::start(
      env, data, "ipclip.resizeBicubic",
      [pixels, w, h, ow, oh, threads]() {
        return std::make_shared<std::vector<uint8_t>>(image::resizeBicubic(pixels, w, h, 3, ow, oh, threads));
      },
      [](Napi::Env env, Out& out) -> Napi::Value {
        return Napi::Buffer<uint8_t>::Copy(env, out->data(), out->size());
      });
}

}  // namespace

void registerResample(Napi::Env env, Napi::Object exports) {
  exports.Set("resizeBicubic", Napi::Function::New(env, resizeBicubic, "resizeBicubic"));
}

}  // namespace ipclip::binding
