// Pre-LN residual attention blocks as in OpenAI's CLIP, with parameter names matching its state dict
// (`attn.in_proj_weight`, `attn.out_proj`, `ln_1`, `mlp.c_fc`, `mlp.c_proj`, `ln_2`), so loading
// weights is a name-for-name copy.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <tuple>

#include "clip/config.h"
#include "clip/linear.h"

namespace ipclip {

// LayerNorm as open_clip's subclass computes it: a half-precision input (bf16/fp16 towers keep their LayerNorm
// parameters in fp32) is normalised in fp32 with the fp32 parameters, and the result cast back to the input's
// dtype. fp32 and fp64 inputs with parameters of their own dtype are plain LayerNorm.
torch::Tensor layerNorm(torch::nn::LayerNormImpl& ln, const torch::Tensor& x);

// Fused-qkv multi-head self-attention (nn.MultiheadAttention's parameter layout).
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t width, int64_t heads);

  // x: [B,T,W], mask: additive [T,T] or undefined → [B,T,W]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask = {});

  // x: [B,T,W] → q, k, v each [B,H,T,d]; q is already scaled by 1/sqrt(d).
  std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> project(const torch::Tensor& x);
  // heads: [B,H,T,d] → out_proj → [B,T,W]
  torch::Tensor merge(const torch::Tensor& heads);

  int64_t heads() const { return heads_; }

  LinearKernel kernel = LinearKernel::Blas;  // the engine of in_proj and out_proj (clip/linear.h)
  LinearPack inProjPack, outProjPack;        // their oneDNN-packed weights, made on first use
  torch::Tensor in_proj_weight;  // [3W, W]
  torch::Tensor in_proj_bias;    // [3W]
  torch::nn::Linear out_proj{nullptr};

 private:
  int64_t heads_;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(int64_t width, Activation activation = Activation::QuickGelu);
  torch::Tensor forward(const torch::Tensor& x);  // c_proj(act(c_fc(x))), act QuickGELU or GELU
  torch::nn::Linear c_fc{nullptr};
  torch::nn::Linear c_proj{nullptr};
  Activation activation;
  LinearKernel kernel = LinearKernel::Blas;  // the engine of c_fc and c_proj (clip/linear.h)
  LinearPack fcPack, projPack;               // their oneDNN-packed weights, made on first use
};
TORCH_MODULE(Mlp);

class ResidualBlockImpl : public torch::nn::Module {
 public:
  ResidualBlockImpl(int64_t width, int64_t heads, Activation activation = Activation::QuickGelu);
  // x: [B,T,W] → [B,T,W]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask = {});
  // The MLP half of the block, for callers that do the attention half themselves (shared-prefix text path).
  torch::Tensor feedForward(const torch::Tensor& x) { return x + mlp->forward(layerNorm(*ln_2, x)); }

  torch::nn::LayerNorm ln_1{nullptr};
  Attention attn{nullptr};
  torch::nn::LayerNorm ln_2{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(ResidualBlock);

// `transformer.resblocks.N`: the stack, kept as a module so the names match OpenAI's.
class TransformerImpl : public torch::nn::Module {
 public:
  TransformerImpl(int64_t width, int64_t layers, int64_t heads, Activation activation = Activation::QuickGelu);
  torch::nn::ModuleList resblocks{nullptr};
  ResidualBlockImpl& block(size_t i) { return *resblocks[i]->as<ResidualBlockImpl>(); }
  size_t size() const { return resblocks->size(); }
};
TORCH_MODULE(Transformer);

// An additive causal mask [T,T]: 0 on and below the diagonal, -inf above.
torch::Tensor causalMask(int64_t tokens, const torch::TensorOptions& options);

}  // namespace ipclip
