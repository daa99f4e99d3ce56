#include "clip/transformer.h"

#include <torch/nn/functional/normalization.h>

#include <cmath>

namespace ipclip {

namespace F = torch::nn::functional;

torch::Tensor layerNorm(torch::nn::LayerNormImpl& ln, const torch::Tensor& x) {
  const auto dtype = x.scalar_type();
  if (ln.weight.scalar_type() == dtype) return ln.forward(x);
  const auto compute = at::promote_types(dtype, ln.weight.scalar_type());
  return F::layer_norm(x.to(compute), F::LayerNormFuncOptions(ln.options.normalized_shape())
                                          .weight(ln.weight.to(compute)).bias(ln.bias.to(compute))
                                          .eps(ln.options.eps()))
      .to(dtype);
}

AttentionImpl::AttentionImpl(int64_t width, int64_t heads) : heads_(heads) {
  in_proj_weight = register_parameter("in_proj_weight", torch::empty({3 * width, width}));
  in_proj_bias = register_parameter("in_proj_bias", torch::zeros({3 * width}));
  out_proj = register_module("out_proj", torch::nn::Linear(width, width));
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> AttentionImpl::project(const torch::Tensor& x) {
  const auto B = x.size(0), T = x.size(1), W = x.size(2);
  const auto d = W / heads_;
  auto qkv = linear(x, in_proj_weight, in_proj_bias, kernel, &inProjPack);    // [B,T,3W]
  auto parts = qkv.view({B, T, 3, heads_, d}).permute({2, 0, 3, 1, 4});       // [3,B,H,T,d]
  auto q = parts[0] * (1.0 / std::sqrt(static_cast<double>(d)));
  return {q, parts[1], parts[2]};
}

torch::Tensor AttentionImpl::merge(const torch::Tensor& heads) {
  const auto B = heads.size(0), T = heads.size(2);
  auto x = heads.transpose(1, 2).reshape({B, T, -1});  // [B,T,W]
  return linear(x, out_proj->weight, out_proj->bias, kernel, &outProjPack);
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const bool needsGrad = torch::GradMode::is_enabled() && x.requires_grad();
  if (!mask.defined() && !needsGrad && packedLinearAvailable() && usesOneDnn(x, in_proj_weight, kernel)) {
    // The frozen vision tower's path: both batched products in oneDNN on the qkv projection's views, the output
    // already in out_proj's layout (clip/onednn_kernels.h).
    const auto B = x.size(0), T = x.size(1), W = x.size(2), d = W / heads_;
    auto qkv = linear(x, in_proj_weight, in_proj_bias, kernel, &inProjPack);  // [B,T,3W]
    auto parts = qkv.view({B, T, 3, heads_, d}).permute({2, 0, 3, 1, 4});      // [3,B,H,T,d]
    auto heads = attentionCore(parts[0], parts[1], parts[2], 1.0 / std::sqrt(static_cast<double>(d)));
    if (heads.defined()) return linear(heads, out_proj->weight, out_proj->bias, kernel, &outProjPack);
  }
  auto [q, k, v] = project(x);
  auto scores = torch::matmul(q, k.transpose(-2, -1));  // [B,H,T,T]
  if (mask.defined()) scores = scores + mask;
  auto attn = torch::softmax(scores, -1);
  return merge(torch::matmul(attn, v));
}

MlpImpl::MlpImpl(int64_t width, Activation act) : activation(act) {
  c_fc = register_module("c_fc", torch::nn::Linear(width, 4 * width));
  c_proj = register_module("c_proj", torch::nn::Linear(4 * width, width));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  torch::Tensor h;
  if (activation == Activation::Gelu) {
    // exact (erf) GELU: Hugging Face's "gelu", open_clip's nn.GELU
    h = torch::gelu(linear(x, c_fc->weight, c_fc->bias, kernel, &fcPack));
  } else {
    // QuickGELU, as OpenAI's CLIP was trained with; fused into the product on the packed oneDNN path
    h = linear(x, c_fc->weight, c_fc->bias, kernel, &fcPack, Epilogue::QuickGelu);
  }
  return linear(h, c_proj->weight, c_proj->bias, kernel, &projPack);
}

ResidualBlockImpl::ResidualBlockImpl(int64_t width, int64_t heads, Activation activation) {
  ln_1 = register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(1e-5)));
  attn = register_module("attn", Attention(width, heads));
  ln_2 = register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(1e-5)));
  mlp = register_module("mlp", Mlp(width, activation));
}

torch::Tensor ResidualBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  auto h = x + attn->forward(layerNorm(*ln_1, x), mask);
  return feedForward(h);
}

TransformerImpl::TransformerImpl(int64_t width, int64_t layers, int64_t heads, Activation activation) {
  resblocks = register_module("resblocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i) resblocks->push_back(ResidualBlock(width, heads, activation));
}

torch::Tensor causalMask(int64_t tokens, const torch::TensorOptions& options) {
  return torch::full({tokens, tokens}, -std::numeric_limits<float>::infinity(), options).triu(1);
}

}  // namespace ipclip
