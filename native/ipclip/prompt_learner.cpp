#include "ipclip/prompt_learner.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

namespace ipclip {

DomainTokensImpl::DomainTokensImpl(int64_t layers, int64_t visionWidth, int64_t textWidth, int64_t hidden) {
  linear1 = register_module("linear1", torch::nn::ModuleList());
  linear2 = register_module("linear2", torch::nn::ModuleList());
  for (int64_t l = 0; l < layers; ++l) {
    linear1->push_back(torch::nn::Linear(visionWidth, hidden));
    linear2->push_back(torch::nn::Linear(hidden, textWidth));
  }
}

torch::Tensor DomainTokensImpl::forward(const torch::Tensor& stats) {
  std::vector<torch::Tensor> tokens;
  for (size_t l = 0; l < linear1->size(); ++l) {
    auto s = (stats[l].select(1, 0) + stats[l].select(1, 1)) / 2;  // [B,W]
    auto h = linear1[l]->as<torch::nn::LinearImpl>()->forward(s);
    tokens.push_back(linear2[l]->as<torch::nn::LinearImpl>()->forward(h));  // [B,Wt]
  }
  return torch::stack(tokens, 1);  // [B,L,Wt]
}

ImageTokensImpl::ImageTokensImpl(int64_t layers, int64_t visionWidth, int64_t textWidth) {
  linear = register_module("linear", torch::nn::ModuleList());
  for (int64_t l = 0; l < layers; ++l) linear->push_back(torch::nn::Linear(visionWidth, textWidth));
  lin = register_module("lin", torch::nn::Linear(layers, 1));
}

torch::Tensor ImageTokensImpl::forward(const torch::Tensor& stats) {
  std::vector<torch::Tensor> perLayer;
  for (size_t l = 0; l < linear->size(); ++l)
    perLayer.push_back(linear[l]->as<torch::nn::LinearImpl>()->forward(stats[l].select(1, 0)));  // [B,Wt]
  auto v = torch::stack(perLayer, 2);   // [B,Wt,L]
  return lin->forward(v).squeeze(2);    // [B,Wt]
}

PromptLearnerImpl::PromptLearnerImpl(int64_t layers, int64_t visionWidth, int64_t textWidth) : layers_(layers) {
  domain_tokens = register_module("domain_tokens", DomainTokens(layers, visionWidth, textWidth));
  image_tokens = register_module("image_tokens", ImageTokens(layers, visionWidth, textWidth));
}

PromptLearnerImpl::Output PromptLearnerImpl::forward(const torch::Tensor& stats) {
  auto d = domain_tokens->forward(stats);               // [B,L,Wt]
  auto v = image_tokens->forward(stats).unsqueeze(1);   // [B,1,Wt]
  auto context = torch::cat({d, d, v.expand({-1, 4, -1})}, 1);  // [B,2L+4,Wt]
  return {context, d};
}

void seededLinearInit(torch::nn::Module& module, uint64_t seed) {
  torch::NoGradGuard noGrad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& m : module.modules(/*include_self=*/true)) {
    auto* linear = m->as<torch::nn::LinearImpl>();
    if (!linear) continue;
    const double bound = 1.0 / std::sqrt(static_cast<double>(linear->weight.size(1)));
    // Drawn on the CPU in fp32 and copied, so CUDA and CPU runs start from the same numbers.
    auto w = torch::empty(linear->weight.sizes(), torch::kFloat32).uniform_(-bound, bound, gen);
    linear->weight.copy_(w);
    if (linear->bias.defined()) linear->bias.copy_(torch::empty(linear->bias.sizes(), torch::kFloat32).uniform_(-bound, bound, gen));
  }
}

}  // namespace ipclip
