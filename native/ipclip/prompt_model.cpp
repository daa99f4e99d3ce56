#include "ipclip/prompt_model.h"

#include <torch/nn/functional/normalization.h>

#include "common/errors.h"

namespace ipclip {

namespace F = torch::nn::functional;

namespace {
torch::Tensor normalize(const torch::Tensor& x) { return F::normalize(x, F::NormalizeFuncOptions().dim(-1)); }

bool allFinite(const torch::Tensor& t) { return torch::isfinite(t).all().item<bool>(); }

std::string shapeStr(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}
}  // namespace

PromptModel::PromptModel(Clip clip, const torch::Tensor& classIds, const PromptModelOptions& options)
    : clip_(std::move(clip)),
      bankA_(classIds.size(0), options.bankSize, clip_->config().embedDim, atLeastFloat32(clip_->dtype())),
      bankU_(classIds.size(0), options.bankSize, clip_->config().embedDim, atLeastFloat32(clip_->dtype())),
      options_(options),
      classes_(classIds.size(0)) {
  const auto& c = clip_->config();
  prompt_ = PromptLearner(c.vision.layers, c.vision.width, c.text.width);
  enhancer_ = Enhancer(c.embedDim);
  // Seeded on the CPU in fp32, then moved: the same seed gives the same parameters everywhere. The prompt, the
  // enhancer, the banks and Adam's moments run in at least fp32 (float64 with float64 towers).
  seededLinearInit(*prompt_, options.seed);
  seededLinearInit(*enhancer_, options.seed ^ 0x9e3779b97f4a7c15ULL);
  prompt_->to(clip_->device(), dtype());
  enhancer_->to(clip_->device(), dtype());
  for (auto& p : enhancer_->parameters()) p.set_requires_grad(false);
  classPrompts_ = makeClassPrompts(*clip_, classIds, prompt_->nCtx());
}

int64_t PromptModel::parameterBytes() {
  int64_t n = 0;
  for (auto& p : prompt_->parameters()) n += p.numel() * p.element_size();
  for (auto& p : enhancer_->parameters()) n += p.numel() * p.element_size();
  return n + bankA_.feats.numel() * bankA_.feats.element_size() * 2;
}

int64_t PromptModel::bytes() { return parameterBytes() + authorizedFeatures.bytes() + unauthorizedFeatures.bytes(); }

void PromptModel::cacheFeatures(FeatureCache& stream, int64_t size, const std::vector<int64_t>& indices,
                                const torch::Tensor& images) {
  stream.store(size, indices, encodeVision(images));
}

StepResult PromptModel::stepCached(const std::vector<int64_t>& indicesA, const torch::Tensor& labelsA,
                                   const std::vector<int64_t>& indicesU, const torch::Tensor& labelsU,
                                   const StepOptions& o) {
  auto featA = authorizedFeatures.gather(indicesA, "authorized");
  return step(featA, labelsA, o.unauthorized ? unauthorizedFeatures.gather(indicesU, "unauthorized") : VisionFeatures{},
              labelsU, o);
}

torch::Tensor PromptModel::logitsFrom(const torch::Tensor& f, const torch::Tensor& text) const {
  // z_{b,c} = exp(logit_scale) · ⟨f_b, t_{b,c}⟩
  auto scale = clip_->logit_scale.detach().to(dtype()).exp();
  return scale * torch::matmul(text, f.unsqueeze(-1)).squeeze(-1);  // [B,C]
}

VisionFeatures PromptModel::encodeVision(const torch::Tensor& images) {
  torch::NoGradGuard frozen;  // CLIP is frozen: its forward records nothing
  VisionRequest request;
  request.stats = true;
  auto vision = clip_->encodeImage(images.to(clip_->device()), request);
  return {normalize(vision.embeds.to(dtype())), vision.stats};
}

PromptOutput PromptModel::forwardFromFeatures(const VisionFeatures& features) {
  const auto dev = clip_->device();
  PromptOutput out;
  out.embeds = features.embeds.to(dev, dtype());
  auto prompt = prompt_->forward(features.stats.to(dev, dtype()));
  out.domain = prompt.domain;
  out.text = normalize(encodeClassPrompts(*clip_, classPrompts_, prompt.context, options_.textPath));
  out.logits = logitsFrom(out.embeds, out.text);
  return out;
}

PromptOutput PromptModel::forward(const torch::Tensor& images) { return forwardFromFeatures(encodeVision(images)); }

torch::Tensor PromptModel::bankUpdate(const VisionFeatures& features, const torch::Tensor& labels, BankRule rule) {
  torch::NoGradGuard noGrad;
  auto out = forwardFromFeatures(features);
  (rule == BankRule::Authorized ? bankA_ : bankU_).update(out.embeds, out.logits, labels, rule);
  return out.logits;
}

torch::Tensor PromptModel::bankUpdate(const torch::Tensor& images, const torch::Tensor& labels, BankRule rule) {
  torch::NoGradGuard noGrad;
  return bankUpdate(encodeVision(images), labels, rule);
}

void PromptModel::resetBanks() {
  bankA_.reset();
  bankU_.reset();
}

std::map<std::string, torch::Tensor> PromptModel::trainable(bool withEnhancer) {
  std::map<std::string, torch::Tensor> out;
  for (auto& p : prompt_->named_parameters(true)) out.emplace(p.key(), p.value());
  if (withEnhancer)
    for (auto& p : enhancer_->named_parameters(true)) out.emplace("attn_block." + p.key(), p.value());
  return out;
}

StepResult PromptModel::step(const torch::Tensor& imagesA, const torch::Tensor& labelsA, const torch::Tensor& imagesU,
                        const torch::Tensor& labelsU, const StepOptions& o) {
  if (!allFinite(imagesA) || (o.unauthorized && !allFinite(imagesU)))
    fail("ERR_NON_FINITE", "the training batch contains NaN or Inf pixels; nothing was updated");
  auto featA = encodeVision(imagesA);
  // Features that overflow from finite pixels are not refused here: the step reports them as skipped.
  return stepFrom(featA, labelsA, o.unauthorized ? encodeVision(imagesU) : VisionFeatures{}, labelsU, o);
}

StepResult PromptModel::step(const VisionFeatures& featA, const torch::Tensor& labelsA, const VisionFeatures& featU,
                        const torch::Tensor& labelsU, const StepOptions& o) {
  auto finite = [](const VisionFeatures& f) { return allFinite(f.embeds) && allFinite(f.stats); };
  if (!finite(featA) || (o.unauthorized && !finite(featU)))
    fail("ERR_NON_FINITE", "the training features contain NaN or Inf; nothing was updated");
  return stepFrom(featA, labelsA, featU, labelsU, o);
}

StepResult PromptModel::stepFrom(const VisionFeatures& featA, const torch::Tensor& labelsA, const VisionFeatures& featU,
                            const torch::Tensor& labelsU, const StepOptions& o) {
  for (auto& p : enhancer_->parameters()) p.set_requires_grad(o.trainEnhancer);
  auto params = trainable(o.trainEnhancer);
  for (auto& [_, p] : params) p.mutable_grad() = torch::Tensor();
  lastGradients.clear();

  const auto dev = clip_->device();
  LossInputs in;
  in.yA = labelsA.to(dev);
  auto A = forwardFromFeatures(featA);
  in.zA = A.logits;
  StepResult result;
  if (o.unauthorized) {
    in.yU = labelsU.to(dev);
    auto U = forwardFromFeatures(featU);
    in.zU = U.logits;
    in.domainA = A.domain;
    in.domainU = U.domain;
    in.textA = A.text;
    in.textU = U.text;
    // Style enhancement: A's embeddings towards A's own prototypes (self) and U's prototypes (cross).
    const auto& protoA = bankA_.prototypesOn(dev);
    const auto& protoU = bankU_.prototypesOn(dev);
    // Over ranks, the enhancement branch's BatchNorm normalises A's rows with the global batch's statistics.
    enhancer_->imageRows = {group.get(), static_cast<double>(labelsA.size(0))};
    auto selfEnh = enhancer_->forward(A.embeds, protoA);
    auto crossEnh = enhancer_->forward(A.embeds, protoU);
    in.zSelf = logitsFrom(selfEnh, A.text);
    in.zCross = logitsFrom(crossEnh, U.text);
    if (o.returnOutputs) {
      result.outputs = {{"zA", in.zA.detach()}, {"zU", in.zU.detach()}, {"zSelf", in.zSelf.detach()},
                        {"zCross", in.zCross.detach()}, {"domainA", in.domainA.detach()},
                        {"domainU", in.domainU.detach()}};
    }
  } else if (o.returnOutputs) {
    result.outputs = {{"zA", in.zA.detach()}, {"domainA", A.domain.detach()}};
  }

  result.terms = computeLoss(in, o.unauthorized, o.weights, o.preset);
  // Half-precision towers: scale the loss so small gradients survive fp16, unscale before the update.
  const bool scaled = clip_->dtype() == torch::kFloat16;
  const double scale = scaled ? lossScale.scale() : 1.0;
  const auto total = result.terms.total;
  // Backward even when the loss is not finite: the step is then skipped on the fused check below, and the
  // host is asked one question per step instead of one per tensor (each .item() waits for a GPU).
  (scaled ? total * scale : total).backward();
  enhancer_->imageRows = {};
  std::vector<torch::Tensor> finite{torch::isfinite(total.detach()).reshape({1})};
  for (auto& [name, p] : params) {
    if (!p.grad().defined()) continue;
    if (scaled) p.mutable_grad().div_(scale);
    finite.push_back(torch::isfinite(p.grad()).all().reshape({1}));
    lastGradients[name] = p.grad().detach();
  }
  // One device→host copy: the total, the seven terms, and whether the loss and every gradient are finite.
  auto report = torch::cat({total.detach().to(torch::kFloat64).reshape({1}), result.terms.values.to(torch::kFloat64),
                            torch::cat(finite).all().to(torch::kFloat64).reshape({1})})
                    .to(torch::kCPU)
                    .contiguous();
  if (group) report = reduceOverRanks(params, report, labelsA.size(0));
  const double* values = report.data_ptr<double>();
  result.loss = values[0];
  result.terms.setValues(values + 1);
  result.skipped = values[8] == 0;
  if (scaled) lossScale.update(!result.skipped);  // halve on overflow, grow after 2000 clean steps
  if (result.skipped) ++skippedSteps;
  if (o.update && !result.skipped) {
    Adam::Options ao;
    ao.weightDecay = o.weightDecay;
    adam.step(params, o.lr, ao);
  }
  for (auto& [_, p] : params) p.mutable_grad() = torch::Tensor();
  result.terms.total = torch::Tensor();
  result.terms.values = torch::Tensor();
  return result;
}

torch::Tensor PromptModel::reduceOverRanks(std::map<std::string, torch::Tensor>& params, const torch::Tensor& report,
                                           int64_t batch) {
  torch::NoGradGuard noGrad;
  // One flat buffer, one all-reduce: each gradient × this rank's batch size, then [batch, batch × (total, 7
  // terms), non-finite flag]. Divided by Σ batch it is the gradient (and the terms) of the global batch for
  // every loss that is a mean over samples; the flag's sum says whether any rank saw a non-finite value.
  const double n = static_cast<double>(batch);
  std::vector<torch::Tensor> parts;
  std::vector<std::string> names;
  int64_t gradElements = 0;
  for (auto& [name, p] : params) {
    if (!p.grad().defined()) continue;
    parts.push_back(p.grad().detach().reshape({-1}) * n);
    names.push_back(name);
    gradElements += p.grad().numel();
  }
  const auto dev = clip_->device();
  auto tail = torch::cat({torch::full({1}, n, torch::kFloat64), report.narrow(0, 0, 8) * n,
                          (1.0 - report.narrow(0, 8, 1))});
  parts.push_back(tail.to(dev, dtype()));
  auto flat = torch::cat(parts).contiguous();
  group->allReduceSum(flat);
  auto sums = flat.narrow(0, gradElements, 10).to(torch::kCPU, torch::kFloat64);
  const double total = sums[0].item<double>();
  auto grads = flat.narrow(0, 0, gradElements).div_(total);
  int64_t at = 0;
  for (const auto& name : names) {
    auto& p = params.at(name);
    p.mutable_grad().copy_(grads.narrow(0, at, p.grad().numel()).view_as(p.grad()));
    at += p.grad().numel();
    lastGradients[name] = p.grad().detach();
  }
  const bool finite = sums[9].item<double>() == 0 && allFinite(grads);
  auto out = torch::cat({sums.narrow(0, 1, 8) / total, torch::full({1}, finite ? 1.0 : 0.0, torch::kFloat64)});
  return out.contiguous();
}

void PromptModel::broadcastState(int root) {
  if (!group) fail("ERR_INVALID_ARGUMENT", "broadcastState: no process group is attached");
  torch::NoGradGuard noGrad;
  std::vector<torch::Tensor> targets;
  for (auto& [_, p] : trainable(true)) targets.push_back(p);
  for (auto* t : {&bankA_.feats, &bankA_.conf, &bankU_.feats, &bankU_.conf}) targets.push_back(*t);
  std::vector<torch::Tensor> flat;
  for (auto& t : targets) flat.push_back(t.detach().reshape({-1}).to(torch::kCPU, torch::kFloat64));
  auto all = torch::cat(flat).contiguous();
  group->broadcast(all, root);
  int64_t at = 0;
  for (auto& t : targets) {
    t.copy_(all.narrow(0, at, t.numel()).view(t.sizes()));
    at += t.numel();
  }
  bankA_.invalidate();
  bankU_.invalidate();
}

torch::Tensor PromptModel::bankUpdateGathered(const torch::Tensor& images, const torch::Tensor& labels, BankRule rule) {
  if (!group) fail("ERR_INVALID_ARGUMENT", "bankUpdate: gather needs an attached process group");
  torch::NoGradGuard noGrad;
  const auto D = clip_->config().embedDim;
  torch::Tensor logits;
  torch::Tensor rows = torch::zeros({0, D + classes_ + 1}, torch::TensorOptions().dtype(torch::kFloat64));
  if (images.defined() && images.size(0) > 0) {
    auto out = forwardFromFeatures(encodeVision(images));
    logits = out.logits;
    rows = torch::cat({out.embeds.to(torch::kCPU, torch::kFloat64), out.logits.to(torch::kCPU, torch::kFloat64),
                       labels.to(torch::kCPU, torch::kFloat64).reshape({-1, 1})},
                      1);
  }
  auto all = group->allGatherRows(rows.contiguous());
  if (all.size(0) > 0) {
    (rule == BankRule::Authorized ? bankA_ : bankU_)
        .update(all.narrow(1, 0, D).to(dtype()), all.narrow(1, D, classes_).to(dtype()),
                all.narrow(1, D + classes_, 1).reshape({-1}).to(torch::kLong), rule);
  }
  return logits;
}

std::map<std::string, torch::Tensor> PromptModel::state() {
  torch::NoGradGuard noGrad;
  std::map<std::string, torch::Tensor> out;
  for (auto& p : prompt_->named_parameters(true)) out[p.key()] = p.value().detach().to(torch::kCPU).clone();
  for (auto& p : enhancer_->named_parameters(true)) out["attn_block." + p.key()] = p.value().detach().to(torch::kCPU).clone();
  out["source_feat_bank"] = bankA_.feats.clone();
  out["target_feat_bank"] = bankU_.feats.clone();
  out["source_feat_conf"] = bankA_.conf.clone();
  out["target_feat_conf"] = bankU_.conf.clone();
  return out;
}

void PromptModel::setState(const std::map<std::string, torch::Tensor>& tensors) {
  torch::NoGradGuard noGrad;
  std::map<std::string, torch::Tensor> targets;
  for (auto& p : prompt_->named_parameters(true)) targets[p.key()] = p.value();
  for (auto& p : enhancer_->named_parameters(true)) targets["attn_block." + p.key()] = p.value();
  targets["source_feat_bank"] = bankA_.feats;
  targets["target_feat_bank"] = bankU_.feats;
  targets["source_feat_conf"] = bankA_.conf;
  targets["target_feat_conf"] = bankU_.conf;
  auto ignored = [](const std::string& name) {
    // The release's unused parameters and BatchNorm running statistics (batch statistics always apply).
    return name.rfind("style_mapping_tokens.", 0) == 0 || name == "attn_block.logit_scale" ||
           name.find("running_mean") != std::string::npos || name.find("running_var") != std::string::npos ||
           name.find("num_batches_tracked") != std::string::npos;
  };
  // Validate everything before copying anything: a bad file changes nothing.
  for (const auto& [name, t] : tensors) {
    if (ignored(name)) continue;
    auto it = targets.find(name);
    if (it == targets.end()) fail("ERR_BAD_WEIGHTS", "unknown prompt tensor '" + name + "'");
    if (t.sizes() != it->second.sizes())
      fail("ERR_BAD_WEIGHTS", "prompt tensor '" + name + "' has shape " + shapeStr(t.sizes()) + ", expected " +
                                  shapeStr(it->second.sizes()) + " (another CLIP size or class count?)");
    if (!allFinite(t)) fail("ERR_NON_FINITE", "prompt tensor '" + name + "' contains NaN or Inf");
  }
  for (const auto& [name, t] : tensors) {
    if (ignored(name)) continue;
    targets[name].copy_(t.to(targets[name].options()));
  }
  bankA_.invalidate();
  bankU_.invalidate();
  // A bank imported without confidences (the release stores none): filled slots count as fully confident.
  if (!tensors.count("source_feat_conf") && tensors.count("source_feat_bank"))
    bankA_.conf.copy_((bankA_.feats.abs().sum(1) > 0).to(bankA_.conf.scalar_type()));
  if (!tensors.count("target_feat_conf") && tensors.count("target_feat_bank"))
    bankU_.conf.copy_((bankU_.feats.abs().sum(1) > 0).to(bankU_.conf.scalar_type()));
}

std::map<std::string, torch::Tensor> PromptModel::optimizerState() {
  std::map<std::string, torch::Tensor> out;
  for (auto& [k, v] : adam.expAvg) out["exp_avg." + k] = v.to(torch::kCPU).clone();
  for (auto& [k, v] : adam.expAvgSq) out["exp_avg_sq." + k] = v.to(torch::kCPU).clone();
  return out;
}

void PromptModel::setOptimizerState(int64_t steps, const std::map<std::string, torch::Tensor>& tensors) {
  auto params = trainable(true);
  std::map<std::string, torch::Tensor> m, v;
  for (const auto& [name, t] : tensors) {
    std::string param;
    bool first = name.rfind("exp_avg.", 0) == 0;
    if (first) param = name.substr(8);
    else if (name.rfind("exp_avg_sq.", 0) == 0) param = name.substr(11);
    else fail("ERR_BAD_WEIGHTS", "unknown optimiser tensor '" + name + "'");
    auto it = params.find(param);
    if (it == params.end() || it->second.sizes() != t.sizes())
      fail("ERR_BAD_WEIGHTS", "optimiser tensor '" + name + "' does not match a parameter of this prompt");
    (first ? m : v)[param] = t.to(it->second.options()).clone();
  }
  adam.steps = steps;
  adam.expAvg = std::move(m);
  adam.expAvgSq = std::move(v);
}

}  // namespace ipclip
