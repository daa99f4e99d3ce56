// The style-enhancement module ("INTER", method §3), training-only. Names follow the release:
// attn_block.pre_project.{0,1,3,4,6} (Linear, BatchNorm, ReLU, Linear, BatchNorm, ReLU, Linear) and
// attn_block.post_project.0 (Linear).
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

namespace ipclip {

// BatchNorm1d that always normalises with the statistics of the rows it is given (the release's module is
// in training mode throughout). Running statistics exist only so release state loads; they are not used.
class BatchStatNormImpl : public torch::nn::Module {
 public:
  explicit BatchStatNormImpl(int64_t features);
  torch::Tensor forward(const torch::Tensor& x);  // [N,F] → [N,F]
  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;
};
TORCH_MODULE(BatchStatNorm);

class EnhancerImpl : public torch::nn::Module {
 public:
  explicit EnhancerImpl(int64_t embedDim);

  // f: [B,D] image embeddings, prototypes: [C,D] → enhanced, re-normalised [B,D]:
  //   normalise(f + post(softmax(0.1 · q(f) k(P)ᵀ) v(P)))
  torch::Tensor forward(const torch::Tensor& f, const torch::Tensor& prototypes);

  torch::nn::Sequential pre_project{nullptr};
  torch::nn::Sequential post_project{nullptr};

 private:
  // o = pre(x) [N,3D]; q, k, v are its interleaved thirds: o[:,0::3], o[:,1::3], o[:,2::3].
  std::array<torch::Tensor, 3> qkv(const torch::Tensor& x);
};
TORCH_MODULE(Enhancer);

}  // namespace ipclip
