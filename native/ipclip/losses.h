// The loss terms of method §4, weighted by a table the caller gives (a scenario is data: lib/scenarios.ts holds
// the per-scenario, per-preset weights of method §4 and sends them with every step).
#pragma once
#include <string>

#include <torch/types.h>

namespace ipclip {

// The entropy's numerics (method §4): the paper's −Σ p log p, or the release's batch-normalised variant.
enum class Preset { Paper, Official };

Preset parsePreset(const std::string& s);  // throws ERR_INVALID_ARGUMENT

// The weight of each term: total = ceA·CE_A + ceU·min(CE_U,5) + ceSelf·min(CE_self,5) + ceCross·min(CE_cross,5)
// + mse·min(MSE,5) + entropy·H(z_U) + kl·KL + entropyA·H(z_A) + diversityA·D(z_A) + distillA·KL(q‖p_A).
// The last three act on the authorized batch alone and are read in both modes (with and without an unauthorized
// batch); they are the attack suite's unlabelled objectives (lib/ipclip/attacks): H(z_A) = mean over the batch of
// the Shannon entropy of softmax(z_A); D(z_A) = Σ_c p̄_c log p̄_c with p̄ = the batch mean of softmax(z_A) (minus
// the marginal's entropy: a positive weight pushes the batch's predictions apart, as SHOT's diversity term);
// KL(q‖p_A) = mean over the batch of Σ_c q_c (log q_c − log p_c) against given soft targets q [B,C]
// (`distillTargets`, required when distillA ≠ 0). Defaults leave every existing step unchanged.
struct LossWeights {
  double ceU = 0, ceSelf = 0, ceCross = 0, mse = 0, entropy = 0, kl = 0;
  double ceA = 1, entropyA = 0, diversityA = 0, distillA = 0;
  torch::Tensor distillTargets;  // [B,C] rows summing to 1, or undefined
  // Beyond the paper (the `paper` preset's clampPerSample option): when > 0, the CE_U term is
  // mean_b min(CE_b, ceUPerSample), each unauthorized sample bounded on its own; 0 keeps the release's
  // min(mean_b CE_b, 5). With the batch mean bounded, a batch whose other samples are far past 5 passes no gradient
  // at all, so the few unauthorized samples still classified correctly are never pushed away.
  double ceUPerSample = 0;
};

struct LossInputs {
  torch::Tensor zA, zU, zSelf, zCross;  // [B,C] logits
  torch::Tensor yA, yU;                 // [B] int64
  torch::Tensor domainA, domainU;       // [B,L,Wt]
  torch::Tensor textA, textU;           // [B,C,D] normalised text features
};

struct LossTerms {
  torch::Tensor total;                                   // scalar with graph
  double ceA = 0, ceU = 0, ceSelf = 0, ceCross = 0, mse = 0, kl = 0, entropy = 0;  // unclamped values
  // The same seven values, in that order, as one detached float64 tensor on the loss's device: computeLoss
  // leaves the doubles at 0 and fills this, so the caller reads them back with one device→host copy (setValues).
  torch::Tensor values;
  void setValues(const double* v) { ceA = v[0]; ceU = v[1]; ceSelf = v[2]; ceCross = v[3]; mse = v[4]; kl = v[5]; entropy = v[6]; }
};

// With `unauthorized` false: ceA·CE_A plus the authorized-batch terms (by default CE_A only: the unprotected
// reference), the other terms reported as 0 and the other inputs undefined; only ceA, entropyA, diversityA and
// distillA of `weights` are read then.
LossTerms computeLoss(const LossInputs& in, bool unauthorized, const LossWeights& weights, Preset preset);

}  // namespace ipclip
