// Per-image class prompts through the frozen text tower (method §2): prompt (b,c) is
// [SOT, context_b (nCtx tokens), suffix_c (class name, ".", EOT, padding)]. Two implementations with
// identical results: `naive` (the release's: B·C full-length sequences, one image at a time) and `fast`,
// which uses the spec's exactness facts:
//   - the mask is causal, so positions 0..nCtx (shared by the C prompts of one image) are computed once
//     per image; the class suffixes attend to that cached prefix's keys/values, layer by layer;
//   - nothing after EOT reaches the EOT row, so suffixes are cut after the last EOT of the C classes;
//   - all images and classes go through in one batched call.
#pragma once
#include <torch/types.h>

#include "clip/model.h"

namespace ipclip {

enum class TextPath { Fast, Naive };

struct ClassPrompts {
  torch::Tensor sot;     // [1,Wt] token embedding of SOT (frozen)
  torch::Tensor suffix;  // [C, ctx-1-nCtx, Wt] frozen token embeddings after the context slots
  torch::Tensor eot;     // [C] int64: EOT position in the full sequence
  int64_t maxEot = 0;    // eot.max(), read once here rather than from the device every step
  int64_t nCtx = 0;
};

// Builds the frozen parts of the class prompts from their token ids [C,ctx] (on the model's device/dtype).
ClassPrompts makeClassPrompts(ClipImpl& clip, const torch::Tensor& ids, int64_t nCtx);

// context: [B,nCtx,Wt] (gradients flow into it) → text features [B,C,D] (not normalised), in fp32.
torch::Tensor encodeClassPrompts(ClipImpl& clip, const ClassPrompts& prompts, const torch::Tensor& context,
                                 TextPath path);

}  // namespace ipclip
