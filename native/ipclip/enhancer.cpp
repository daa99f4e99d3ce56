#include "ipclip/enhancer.h"

#include <torch/nn/functional/batchnorm.h>
#include <torch/nn/functional/normalization.h>
#include <torch/nn/modules/activation.h>

namespace ipclip {

namespace F = torch::nn::functional;

BatchStatNormImpl::BatchStatNormImpl(int64_t features) {
  weight = register_parameter("weight", torch::ones({features}));
  bias = register_parameter("bias", torch::zeros({features}));
  running_mean = register_buffer("running_mean", torch::zeros({features}));
  running_var = register_buffer("running_var", torch::ones({features}));
  num_batches_tracked = register_buffer("num_batches_tracked", torch::zeros({}, torch::kInt64));
}

torch::Tensor BatchStatNormImpl::forward(const torch::Tensor& x) {
  // No running statistics passed: batch statistics normalise, and nothing is updated.
  return torch::batch_norm(x, weight, bias, {}, {}, /*training=*/true, /*momentum=*/0.1, /*eps=*/1e-5,
                           /*cudnn_enabled=*/false);
}

EnhancerImpl::EnhancerImpl(int64_t embedDim) {
  const int64_t h = std::max<int64_t>(1, embedDim / 8);
  pre_project = register_module("pre_project", torch::nn::Sequential(
      torch::nn::Linear(embedDim, h), BatchStatNorm(h), torch::nn::ReLU(),
      torch::nn::Linear(h, h), BatchStatNorm(h), torch::nn::ReLU(),
      torch::nn::Linear(h, 3 * embedDim)));
  post_project = register_module("post_project", torch::nn::Sequential(torch::nn::Linear(embedDim, embedDim)));
}

std::array<torch::Tensor, 3> EnhancerImpl::qkv(const torch::Tensor& x) {
  auto o = pre_project->forward(x);                 // [N,3D]
  auto parts = o.view({o.size(0), -1, 3});          // [N,D,3]: column j·3+i → (j, i)
  return {parts.select(2, 0), parts.select(2, 1), parts.select(2, 2)};
}

torch::Tensor EnhancerImpl::forward(const torch::Tensor& f, const torch::Tensor& prototypes) {
  auto [q, unusedK, unusedV] = qkv(f);              // [B,D]
  auto [unusedQ, k, v] = qkv(prototypes);           // [C,D]
  auto attn = torch::softmax(0.1 * torch::matmul(q, k.t()), -1);  // [B,C]
  auto delta = post_project->forward(torch::matmul(attn, v));     // [B,D]
  return F::normalize(f + delta, F::NormalizeFuncOptions().dim(-1));
}

}  // namespace ipclip
