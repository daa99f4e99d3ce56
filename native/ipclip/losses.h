// The loss terms of method §4 and their per-scenario, per-preset weights.
#pragma once
#include <string>

#include <torch/types.h>

namespace ipclip {

enum class Scenario { TargetSpecified, Ownership, TargetFree, Authorization, Reference };
enum class Preset { Paper, Official };

Scenario parseScenario(const std::string& s);  // throws ERR_INVALID_ARGUMENT
Preset parsePreset(const std::string& s);

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

// Reference: CE_A only (the unprotected baseline); the other inputs may be undefined.
LossTerms computeLoss(const LossInputs& in, Scenario scenario, Preset preset);

}  // namespace ipclip
