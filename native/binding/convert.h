// Conversions between JS values and tensors. All of these run on the main thread: inputs are copied into
// tensors before work is queued (the JS buffers may be collected or changed while the worker runs).
#pragma once
#include <napi.h>
#include <torch/types.h>

#include <string>
#include <vector>

#include "clip/config.h"

namespace ipclip::binding {

std::vector<int64_t> toShape(Napi::Env env, Napi::Value v, const char* what);

// Float32Array | Float64Array + shape → float32 | float64 CPU tensor (copied). Checks the element count.
torch::Tensor floatTensorFrom(Napi::Env env, Napi::Value data, Napi::Value shape, const char* what);
// Float32Array + shape → a [B,3,S,S] image batch at the model's input size (ERR_EMPTY_INPUT when B = 0).
torch::Tensor imageBatchFrom(Napi::Env env, Napi::Value data, Napi::Value shape, const ClipConfig& c, const char* what);
// Int32Array | BigInt64Array + shape → int64 CPU tensor (copied).
torch::Tensor longTensorFrom(Napi::Env env, Napi::Value data, Napi::Value shape, const char* what);
// Int32Array | BigInt64Array + shape → a [N,ctx] batch of token ids for the text tower: 2 ≤ ctx ≤ its context
// length, ids in [0, vocabSize) (ERR_EMPTY_INPUT when N = 0).
torch::Tensor tokenIdsFrom(Napi::Env env, Napi::Value data, Napi::Value shape, const ClipConfig& c, const char* what);

// A float tensor (any device or dtype) → { data: Float32Array, shape: number[] } (copied); float64 tensors
// → { data: Float64Array, shape }.
Napi::Object toJsTensor(Napi::Env env, const torch::Tensor& t);
// A CPU float32 (float64 for float64 input) contiguous tensor ready for toJsTensor (call inside Execute so the copy happens off-thread).
torch::Tensor hostFloat(const torch::Tensor& t);

// "cpu" | "cuda" | "cuda:N" → device, checking CUDA is available (ERR_DEVICE otherwise).
torch::Device parseDevice(const std::string& s);
// "float32" | "float16" | "bfloat16" | "float64" (CPU only) → dtype, checking the device supports it (ERR_DEVICE otherwise).
torch::Dtype parseDtype(const std::string& s, const torch::Device& device);
std::string dtypeName(torch::Dtype d);

// Optional fields of an options object: the fallback when absent or undefined, ERR_INVALID_ARGUMENT when present
// with the wrong type (numbers must also be finite).
std::string optionString(Napi::Object o, const char* key, const std::string& fallback);
double optionNumber(Napi::Object o, const char* key, double fallback);
bool optionBool(Napi::Object o, const char* key, bool fallback);

// {embedDim, vision: {width, layers, heads, patchSize, imageSize}, text: {width, layers, heads, contextLength,
// vocabSize}} ↔ ClipConfig. Parsing checks every field's range and the divisibility rules.
ClipConfig clipConfigFromJs(Napi::Env env, Napi::Value v, const char* where);
Napi::Object clipConfigToJs(Napi::Env env, const ClipConfig& c);

}  // namespace ipclip::binding
