// Reading CLIP checkpoints in the three layouts people have, into OpenAI's state-dict names:
//   1. .safetensors with OpenAI names,
//   2. a Hugging Face CLIPModel directory (config.json + model.safetensors) or its model.safetensors alone,
//   3. OpenAI's TorchScript release archives (ViT-B-16.pt, …), read with libtorch's TorchScript loader.
// The layout is told apart by content, not by file name.
#pragma once
#include <map>
#include <optional>
#include <string>

#include <torch/types.h>

#include "clip/config.h"
#include "clip/model.h"

namespace ipclip {

using StateDict = std::map<std::string, torch::Tensor>;

enum class WeightsFormat { OpenAiSafetensors, HuggingFace, TorchScript };
const char* formatName(WeightsFormat f);

struct LoadedWeights {
  StateDict tensors;          // OpenAI names, source dtype, CPU
  WeightsFormat format;
  std::optional<int64_t> visionHeads, textHeads;  // from a config, when one says so
  // Each tower's MLP activation from a config (Hugging Face `hidden_act`, open_clip `quick_gelu`); QuickGELU
  // (OpenAI's) when no config says otherwise.
  std::optional<Activation> visionActivation, textActivation;
  std::string source;         // the path, for messages
};

// Reads `path` (a file or a Hugging Face directory). Throws IpclipError (ERR_FILE_NOT_FOUND, ERR_BAD_FILE,
// ERR_BAD_WEIGHTS) with a message naming the file and the problem.
LoadedWeights readClipWeights(const std::string& path);

// Every parameter and buffer of a TorchScript archive under its module path (CPU, source dtype), read with
// libtorch's TorchScript loader: the archive is trusted (nothing of it is run, but its pickles are unpickled and
// its code compiled). For `ipclip convert`. Throws ERR_BAD_FILE for anything torch::jit::load refuses.
StateDict readTorchScriptArchive(const std::string& path);

// The architecture from tensor shapes: layers counted from attention weights, patch size from the conv
// kernel, resolution from the positional table, heads = width/64 and QuickGELU unless a config said otherwise.
ClipConfig inferClipConfig(const LoadedWeights& w);

// Copies every parameter of `model` from `w` (converted to the parameter's dtype and device). Missing keys,
// wrong shapes and non-finite values are ERR_BAD_WEIGHTS; extra keys are ignored.
void assignClipWeights(ClipImpl& model, const LoadedWeights& w);

// A stable fingerprint of the weights (FNV-1a over names, shapes and a sample of values), so a checkpoint can
// say which CLIP it was trained on.
std::string fingerprintWeights(ClipImpl& model);

}  // namespace ipclip
