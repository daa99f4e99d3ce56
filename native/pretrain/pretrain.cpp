#include "pretrain/pretrain.h"

#include <torch/nn/utils/clip_grad.h>

#include <cmath>

#include "clip/init.h"
#include "common/errors.h"

namespace ipclip {

bool isDecayed(const std::string& name, const torch::Tensor& p) {
  if (p.dim() < 2) return false;  // biases, LayerNorm parameters, class embedding, logit scale
  auto endsWith = [&](const char* s) {
    const std::string suffix(s);
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return !(endsWith("embedding") || endsWith("embedding.weight"));
}

torch::Tensor trimTokenRows(const torch::Tensor& ids) {
  const auto last = ids.argmax(-1).max().item<int64_t>();
  return ids.slice(1, 0, last + 1);
}

ClipPretrainerCore::ClipPretrainerCore(const ClipConfig& config, uint64_t seed, torch::Device device)
    : device_(device) {
  model_ = Clip(config);
  initializeClip(*model_, seed);
  model_->to(device, torch::kFloat32);
  std::vector<torch::Tensor> decay, plain;
  for (auto& p : model_->named_parameters(true)) (isDecayed(p.key(), p.value()) ? decay : plain).push_back(p.value());
  auto opts = torch::optim::AdamWOptions(5e-4).betas({0.9, 0.98}).eps(1e-6);  // CLIP's betas and eps
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(opts));
  groups.emplace_back(plain, std::make_unique<torch::optim::AdamWOptions>(opts));
  optimizer_ = std::make_unique<torch::optim::AdamW>(std::move(groups), opts);
}

PretrainStepResult ClipPretrainerCore::step(const torch::Tensor& imagesIn, const torch::Tensor& idsIn,
                                            const PretrainStepOptions& o) {
  // The options' ranges are the binding's check; the pixels' finiteness is this one's.
  if (!torch::isfinite(imagesIn).all().item<bool>()) fail("ERR_NON_FINITE", "step: images contain NaN or Inf");
  auto& groups = optimizer_->param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    auto& go = static_cast<torch::optim::AdamWOptions&>(groups[g].options());
    go.lr(o.lr);
    go.weight_decay(g == 0 ? o.weightDecay : 0.0);
  }

  model_->train();
  auto images = imagesIn.to(device_, torch::kFloat32);
  auto ids = trimTokenRows(idsIn).to(device_);
  const auto B = images.size(0);

  auto img = model_->encodeImage(images).embeds;
  auto txt = model_->encodeText(ids);
  img = img / img.norm(2, -1, true);
  txt = txt / txt.norm(2, -1, true);
  auto logits = model_->logit_scale.exp() * torch::matmul(img, txt.t());  // [B,B] image × caption

  // Positives: identical caption rows. The matrix is symmetric, so both directions share the targets.
  auto same = (ids.unsqueeze(1) == ids.unsqueeze(0)).all(-1).to(torch::kFloat32);  // [B,B]
  auto targets = same / same.sum(1, true);
  auto lossImg = -(targets * torch::log_softmax(logits, 1)).sum(1).mean();
  auto lossTxt = -(targets * torch::log_softmax(logits.t(), 1)).sum(1).mean();
  auto loss = (lossImg + lossTxt) / 2;

  optimizer_->zero_grad();
  loss.backward();
  if (!std::isfinite(loss.item<double>()))
    fail("ERR_NON_FINITE", "pretraining loss became non-finite (try a lower learning rate)");
  if (o.gradClip > 0) torch::nn::utils::clip_grad_norm_(model_->parameters(), o.gradClip);
  optimizer_->step();
  {
    torch::NoGradGuard noGrad;
    model_->logit_scale.clamp_(0.0, std::log(100.0));
  }
  ++steps_;

  PretrainStepResult r;
  r.loss = loss.item<double>();
  {
    torch::NoGradGuard noGrad;
    auto best = logits.argmax(1);
    auto hit = same.gather(1, best.unsqueeze(1)).squeeze(1);
    r.accuracy = hit.sum().item<double>() / static_cast<double>(B);
    r.logitScale = model_->logit_scale.exp().item<double>();
  }
  return r;
}

torch::Tensor ClipPretrainerCore::encodeImage(const torch::Tensor& images) {
  if (!torch::isfinite(images).all().item<bool>()) fail("ERR_NON_FINITE", "encodeImage: images contain NaN or Inf");
  model_->eval();
  c10::InferenceMode guard;
  auto e = model_->encodeImage(images.to(device_, torch::kFloat32)).embeds;
  return e / e.norm(2, -1, true);
}

torch::Tensor ClipPretrainerCore::encodeText(const torch::Tensor& ids) {
  model_->eval();
  c10::InferenceMode guard;
  auto e = model_->encodeText(ids.to(device_));
  return e / e.norm(2, -1, true);
}

}  // namespace ipclip
