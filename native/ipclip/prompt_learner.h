// The trainable IP prompt (method §2): domain (style) tokens and image (content) tokens built from each
// image's per-layer vision statistics. Parameter names are the release's, so state can be exchanged with it:
// domain_tokens.linear1.{l}, domain_tokens.linear2.{l}, image_tokens.linear.{l}, image_tokens.lin.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>

namespace ipclip {

// d_l = W2_l (W1_l s_l + b1_l) + b2_l, s_l = (μ_l + σ_l)/2 — no activation between the two layers.
class DomainTokensImpl : public torch::nn::Module {
 public:
  DomainTokensImpl(int64_t layers, int64_t visionWidth, int64_t textWidth, int64_t hidden = 256);
  // stats: [L,B,2,W] fp32 → [B,L,Wt]
  torch::Tensor forward(const torch::Tensor& stats);
  torch::nn::ModuleList linear1{nullptr}, linear2{nullptr};
};
TORCH_MODULE(DomainTokens);

// v_l = U_l μ_l + c_l, then v = Σ_l a_l v_l + a_0 (one Linear(L→1) over the layer axis).
class ImageTokensImpl : public torch::nn::Module {
 public:
  ImageTokensImpl(int64_t layers, int64_t visionWidth, int64_t textWidth);
  // stats: [L,B,2,W] fp32 → [B,Wt]
  torch::Tensor forward(const torch::Tensor& stats);
  torch::nn::ModuleList linear{nullptr};
  torch::nn::Linear lin{nullptr};
};
TORCH_MODULE(ImageTokens);

class PromptLearnerImpl : public torch::nn::Module {
 public:
  PromptLearnerImpl(int64_t layers, int64_t visionWidth, int64_t textWidth);

  struct Output {
    torch::Tensor context;  // [B, nCtx, Wt] = [d_1..d_L, d_1..d_L, v, v, v, v]
    torch::Tensor domain;   // [B, L, Wt]
  };
  Output forward(const torch::Tensor& stats);
  int64_t nCtx() const { return 2 * layers_ + 4; }

  DomainTokens domain_tokens{nullptr};
  ImageTokens image_tokens{nullptr};

 private:
  int64_t layers_;
};
TORCH_MODULE(PromptLearner);

// PyTorch's default Linear initialisation (kaiming-uniform weights, uniform biases, bound 1/sqrt(fan_in)),
// drawn from a generator seeded with `seed`, so the same seed gives the same parameters on every machine.
void seededLinearInit(torch::nn::Module& module, uint64_t seed);

}  // namespace ipclip
