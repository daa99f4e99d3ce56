// The style-enhancement module ("INTER", method §3), training-only. Names follow the release:
// attn_block.pre_project.{0,1,3,4,6} (Linear, BatchNorm, ReLU, Linear, BatchNorm, ReLU, Linear) and
// attn_block.post_project.0 (Linear).
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

namespace ipclip {

class ProcessGroup;

// The rows of one global batch, spread over the ranks of a data-parallel job. `share` is this rank's weight
// in the global loss average: its batch size (the step averages gradients weighted by it, PromptModel::
// reduceOverRanks), so a backward here works in the same units as every other gradient of the step.
struct RankRows {
  ProcessGroup* group = nullptr;  // null: a single process, the rows are the whole batch
  double share = 1.0;
};

// BatchNorm1d that always normalises with the statistics of the rows it is given (the release's module is
// in training mode throughout). Running statistics exist only so release state loads; they are not used.
// With `ranks.group` the statistics are those of the global batch (every rank's rows): two all-reduces in
// the forward (count and sum, then the squared deviations) and one in the backward, so N ranks × b rows
// normalise, and differentiate, as one process with N·b rows.
class BatchStatNormImpl : public torch::nn::Module {
 public:
  explicit BatchStatNormImpl(int64_t features);
  torch::Tensor forward(const torch::Tensor& x, const RankRows& ranks = {});  // [N,F] → [N,F]
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

  // Where the rows of `f` come from: set by the training step of a data-parallel job for its duration (the
  // image rows are this rank's slice of the global batch; the prototypes are the same on every rank and are
  // normalised locally, which is already the global statistic).
  RankRows imageRows;

 private:
  // o = pre(x) [N,3D]; q, k, v are its interleaved thirds: o[:,0::3], o[:,1::3], o[:,2::3].
  std::array<torch::Tensor, 3> qkv(const torch::Tensor& x, const RankRows& ranks);
};
TORCH_MODULE(Enhancer);

}  // namespace ipclip
