// The frozen vision tower's output for a batch: all the prompt needs, so a caller can cache it across epochs.
#pragma once
#include <torch/types.h>

namespace ipclip {

struct VisionFeatures {
  torch::Tensor embeds;  // [B,D] normalised
  torch::Tensor stats;   // [L,B,2,W] per-layer token mean/std
};

}  // namespace ipclip
