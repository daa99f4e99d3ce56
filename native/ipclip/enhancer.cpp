#include "ipclip/enhancer.h"

#include <torch/nn/functional/batchnorm.h>
#include <torch/nn/functional/normalization.h>
#include <torch/nn/modules/activation.h>
#include <torch/csrc/autograd/custom_function.h>

#include "ipclip/distributed.h"

namespace ipclip {

namespace F = torch::nn::functional;

namespace {

// BatchNorm's training-mode normalisation over the rows of every rank. Forward: with n the global row count,
// μ = Σx / n, σ² = Σ(x − μ)² / n (biased, as BatchNorm normalises), x̂ = (x − μ) / √(σ² + ε), y = γ x̂ + β.
// Backward: the global loss is Σ_r s_r L_r / Σ_r s_r (s_r = this rank's share); in those units the rows'
// upstream gradients are G = s·g, and the input gradient is the textbook one over all n rows,
// γ/√(σ²+ε) · (G − mean(G) − x̂ · mean(G x̂)), divided back by s into this rank's units. γ and β get this
// rank's own sums; the step's weighted all-reduce of every gradient completes them.
struct GlobalBatchNorm : torch::autograd::Function<GlobalBatchNorm> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias, ProcessGroup* group, double share, double eps) {
    const int64_t features = x.size(1);
    auto countAndSum = torch::cat({x.sum(0), torch::full({1}, static_cast<double>(x.size(0)), x.options())}).contiguous();
    group->allReduceSum(countAndSum);
    auto count = countAndSum.narrow(0, features, 1);             // [1]
    auto centred = x - countAndSum.narrow(0, 0, features) / count;  // [n,F]
    auto squares = (centred * centred).sum(0).contiguous();
    group->allReduceSum(squares);
    auto invstd = torch::rsqrt(squares / count + eps);          // [F]
    auto xhat = centred * invstd;
    ctx->save_for_backward({xhat, invstd, weight, count});
    ctx->saved_data["group"] = static_cast<int64_t>(reinterpret_cast<intptr_t>(group));
    ctx->saved_data["share"] = share;
    return xhat * weight + bias;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list gradOutputs) {
    auto saved = ctx->get_saved_variables();
    const auto &xhat = saved[0], &invstd = saved[1], &weight = saved[2], &count = saved[3];
    auto* group = reinterpret_cast<ProcessGroup*>(static_cast<intptr_t>(ctx->saved_data["group"].toInt()));
    const double share = ctx->saved_data["share"].toDouble();
    const auto& g = gradOutputs[0];  // [n,F]
    const int64_t features = g.size(1);
    auto sums = torch::cat({g.sum(0), (g * xhat).sum(0)});       // [2F]: this rank's Σg, Σg x̂
    auto weighted = (sums * share).contiguous();
    group->allReduceSum(weighted);
    auto meanG = weighted.narrow(0, 0, features) / count;        // mean of G = s·g over all rows
    auto meanGX = weighted.narrow(0, features, features) / count;
    auto gradX = weight * invstd * (g - (meanG + xhat * meanGX) / share);
    return {gradX, sums.narrow(0, features, features), sums.narrow(0, 0, features), {}, {}, {}};
  }
};

}  // namespace

BatchStatNormImpl::BatchStatNormImpl(int64_t features) {
  weight = register_parameter("weight", torch::ones({features}));
  bias = register_parameter("bias", torch::zeros({features}));
  running_mean = register_buffer("running_mean", torch::zeros({features}));
  running_var = register_buffer("running_var", torch::ones({features}));
  num_batches_tracked = register_buffer("num_batches_tracked", torch::zeros({}, torch::kInt64));
}

torch::Tensor BatchStatNormImpl::forward(const torch::Tensor& x, const RankRows& ranks) {
  if (ranks.group) return GlobalBatchNorm::apply(x, weight, bias, ranks.group, ranks.share, 1e-5);
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

std::array<torch::Tensor, 3> EnhancerImpl::qkv(const torch::Tensor& x, const RankRows& ranks) {
  // pre_project's modules in turn, its BatchNorms told where the rows come from.
  auto o = x;
  for (const auto& m : pre_project->children()) {
    if (auto* norm = m->as<BatchStatNormImpl>()) o = norm->forward(o, ranks);
    else if (auto* linear = m->as<torch::nn::LinearImpl>()) o = linear->forward(o);
    else o = m->as<torch::nn::ReLUImpl>()->forward(o);  // the only other kind the constructor puts there
  }                                                 // [N,3D]
  auto parts = o.view({o.size(0), -1, 3});          // [N,D,3]: column j·3+i → (j, i)
  return {parts.select(2, 0), parts.select(2, 1), parts.select(2, 2)};
}

torch::Tensor EnhancerImpl::forward(const torch::Tensor& f, const torch::Tensor& prototypes) {
  auto [q, unusedK, unusedV] = qkv(f, imageRows);   // [B,D]
  auto [unusedQ, k, v] = qkv(prototypes, {});       // [C,D]
  auto attn = torch::softmax(0.1 * torch::matmul(q, k.t()), -1);  // [B,C]
  auto delta = post_project->forward(torch::matmul(attn, v));     // [B,D]
  return F::normalize(f + delta, F::NormalizeFuncOptions().dim(-1));
}

}  // namespace ipclip
