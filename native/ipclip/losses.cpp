#include "ipclip/losses.h"

#include <torch/nn/functional/loss.h>
#include <torch/nn/functional/normalization.h>

#include "common/errors.h"

namespace ipclip {

namespace F = torch::nn::functional;

Preset parsePreset(const std::string& s) {
  if (s == "paper") return Preset::Paper;
  if (s == "official") return Preset::Official;
  fail("ERR_INVALID_ARGUMENT", "unknown preset '" + s + "' (paper, official)");
}

namespace {

// min(x, 5): above 5 the term is the constant 5 and passes no gradient.
torch::Tensor clamp5(const torch::Tensor& x) { return x.clamp_max(5.0); }

torch::Tensor entropyPaper(const torch::Tensor& z) {
  auto logp = torch::log_softmax(z, -1);
  return -(logp.exp() * logp).sum(-1).mean();
}

// The release's variant: softmax columns L2-normalised along the batch axis, then −Σ p log(p + 1e-8).
torch::Tensor entropyOfficial(const torch::Tensor& z) {
  auto p = F::normalize(torch::softmax(z, -1), F::NormalizeFuncOptions().dim(0));
  return -(p * torch::log(p + 1e-8)).sum(-1).mean();
}

// The authorized-batch terms (see LossWeights), added only when weighted, so default steps are bit for bit as before.
torch::Tensor authorizedTerms(const torch::Tensor& zA, const LossWeights& w) {
  torch::Tensor total;
  auto add = [&](const torch::Tensor& t) { total = total.defined() ? total + t : t; };
  auto logp = torch::log_softmax(zA, -1);
  if (w.entropyA != 0) add(w.entropyA * -(logp.exp() * logp).sum(-1).mean());
  if (w.diversityA != 0) {
    auto mean = logp.exp().mean(0);
    add(w.diversityA * (mean * torch::log(mean.clamp_min(1e-12))).sum());
  }
  if (w.distillA != 0) {
    if (!w.distillTargets.defined() || w.distillTargets.dim() != 2 || w.distillTargets.size(0) != zA.size(0) ||
        w.distillTargets.size(1) != zA.size(1))
      fail("ERR_INVALID_ARGUMENT", "step: distillA needs distillTargets of shape [" + std::to_string(zA.size(0)) + ", " +
                                       std::to_string(zA.size(1)) + "] (the batch's soft targets)");
    auto q = w.distillTargets.to(zA.options());
    add(w.distillA * (q * (torch::log(q.clamp_min(1e-12)) - logp)).sum(-1).mean());
  }
  return total;
}

}  // namespace

LossTerms computeLoss(const LossInputs& in, bool unauthorized, const LossWeights& w, Preset preset) {
  LossTerms out;
  auto ceA = F::cross_entropy(in.zA, in.yA);
  auto extra = authorizedTerms(in.zA, w);
  auto weightedA = w.ceA == 1 ? ceA : w.ceA * ceA;
  if (extra.defined()) weightedA = weightedA + extra;
  if (!unauthorized) {
    out.total = weightedA;
    auto zero = torch::zeros({6}, ceA.options().dtype(torch::kFloat64));
    out.values = torch::cat({ceA.detach().to(torch::kFloat64).reshape({1}), zero});
    return out;
  }
  // Per sample only when CE_U is bounded per sample (LossWeights::ceUPerSample); its mean is then the reported CE_U.
  auto ceUPerSample = w.ceUPerSample > 0
                          ? F::cross_entropy(in.zU, in.yU, F::CrossEntropyFuncOptions().reduction(torch::kNone))
                          : torch::Tensor();
  auto ceU = ceUPerSample.defined() ? ceUPerSample.mean() : F::cross_entropy(in.zU, in.yU);
  auto ceSelf = F::cross_entropy(in.zSelf, in.yA);
  auto ceCross = F::cross_entropy(in.zCross, in.yA);
  auto mse = (in.domainA - in.domainU).pow(2).mean();
  // KL over the class axis of the normalised text features, for each embedding coordinate, / B. A sum of
  // B·C·D tiny near-cancelling terms: accumulated in float64 so the fast and naive text paths agree closely.
  auto logpA = torch::log_softmax(in.textA.to(torch::kFloat64), 1);
  auto logpU = torch::log_softmax(in.textU.to(torch::kFloat64), 1);
  auto kl = ((logpU.exp() * (logpU - logpA)).sum() / static_cast<double>(in.textA.size(0))).to(in.textA.scalar_type());
  auto ent = preset == Preset::Official ? entropyOfficial(in.zU) : entropyPaper(in.zU);

  auto boundedCeU = ceUPerSample.defined() ? ceUPerSample.clamp_max(w.ceUPerSample).mean() : clamp5(ceU);
  out.total = weightedA + w.ceU * boundedCeU + w.ceSelf * clamp5(ceSelf) + w.ceCross * clamp5(ceCross) +
              w.mse * clamp5(mse) + w.entropy * ent + w.kl * kl;
  // No .item() here: on a GPU each would wait for the device. The caller copies `values` once.
  std::vector<torch::Tensor> values;
  for (const auto* t : {&ceA, &ceU, &ceSelf, &ceCross, &mse, &kl, &ent}) values.push_back(t->detach().to(torch::kFloat64));
  out.values = torch::stack(values);
  return out;
}

}  // namespace ipclip
