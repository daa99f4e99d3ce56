// Random initialisation of a CLIP from a seed, as OpenAI's `CLIP.initialize_parameters` does it, so the
// project can pretrain its own small CLIP from scratch (native/pretrain/pretrain.h).
#pragma once
#include <cstdint>

#include "clip/model.h"

namespace ipclip {

// Overwrites every parameter of `model` with a fresh draw that depends only on `seed` (a private
// generator: the global torch seed is neither read nor changed).
//   text:   token_embedding ~ N(0, 0.02²), positional_embedding ~ N(0, 0.01²), text_projection ~ N(0, W⁻¹)
//   vision: class/positional embedding and proj ~ N(0, W⁻¹) (OpenAI's `scale * randn`), conv1 ~ U(±1/√fan_in)
//   blocks of both towers, with W the tower's width and L its depth (OpenAI's stds, applied to the vision
//   tower too so both towers start alike): attn.in_proj_weight ~ N(0, W⁻¹), attn.out_proj.weight and
//   mlp.c_proj.weight ~ N(0, W⁻¹·(2L)⁻¹), mlp.c_fc.weight ~ N(0, (2W)⁻¹); every bias 0; LayerNorm gain 1, bias 0
//   logit_scale = log(1/0.07)
void initializeClip(ClipImpl& model, uint64_t seed);

}  // namespace ipclip
