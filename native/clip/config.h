// The architecture of a CLIP model, inferred from its weights (or given by a config file).
#pragma once
#include <cstdint>
#include <string>

namespace ipclip {

struct VisionConfig {
  int64_t width = 0;      // residual width W (768 for ViT-B)
  int64_t layers = 0;     // number of residual blocks L
  int64_t heads = 0;      // attention heads (width / 64 unless a config says otherwise)
  int64_t patchSize = 0;  // conv kernel and stride
  int64_t imageSize = 0;  // input resolution (pixels, square)
  int64_t tokens() const { return (imageSize / patchSize) * (imageSize / patchSize) + 1; }
};

struct TextConfig {
  int64_t width = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t contextLength = 0;
  int64_t vocabSize = 0;
};

struct ClipConfig {
  int64_t embedDim = 0;   // joint embedding dimension D
  VisionConfig vision;
  TextConfig text;
};

}  // namespace ipclip
