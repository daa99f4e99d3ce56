// The architecture of a CLIP model, inferred from its weights (or given by a config file).
#pragma once
#include <cstdint>
#include <string>

namespace ipclip {

// The MLP nonlinearity of a tower's residual blocks. OpenAI's CLIP was trained with QuickGELU
// (x·σ(1.702x)); LAION/OpenCLIP models mostly with the exact GELU (x·Φ(x), erf form).
enum class Activation { QuickGelu, Gelu };

// "quick_gelu" / "gelu", the names Hugging Face configs use.
inline const char* activationName(Activation a) { return a == Activation::Gelu ? "gelu" : "quick_gelu"; }

struct VisionConfig {
  int64_t width = 0;      // residual width W (768 for ViT-B)
  int64_t layers = 0;     // number of residual blocks L
  int64_t heads = 0;      // attention heads (width / 64 unless a config says otherwise)
  int64_t patchSize = 0;  // conv kernel and stride
  int64_t imageSize = 0;  // input resolution (pixels, square)
  Activation activation = Activation::QuickGelu;
  int64_t tokens() const { return (imageSize / patchSize) * (imageSize / patchSize) + 1; }
};

struct TextConfig {
  int64_t width = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t contextLength = 0;
  int64_t vocabSize = 0;
  Activation activation = Activation::QuickGelu;
};

struct ClipConfig {
  int64_t embedDim = 0;   // joint embedding dimension D
  VisionConfig vision;
  TextConfig text;
};

}  // namespace ipclip
