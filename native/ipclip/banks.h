// The two feature banks of method §3: K slots per class, each a normalised image embedding with the
// confidence (max softmax probability) it entered with. Unfilled slots are zero vectors with confidence 0.
#pragma once
#include <torch/types.h>

namespace ipclip {

enum class BankRule {
  Authorized,    // enters only if prediction == true label; slot class = true label
  Unauthorized,  // every sample; slot class = predicted label
};

class FeatureBank {
 public:
  // dtype: fp32, or fp64 for float64 towers (the prompt's dtype).
  FeatureBank(int64_t classes, int64_t slots, int64_t dim, torch::Dtype dtype = torch::kFloat32);

  // feats: [B,D] normalised embeddings, logits: [B,C], labels: [B]. Samples are taken in batch order;
  // each replaces the least confident slot of its class if its confidence is higher.
  void update(const torch::Tensor& feats, const torch::Tensor& logits, const torch::Tensor& labels, BankRule rule);
  void reset();

  // [C,D]: mean over each class's K slots, zeros included, not re-normalised.
  torch::Tensor prototypes() const;
  // The same on `device`, computed once per change of the bank (the training step reads it every step).
  const torch::Tensor& prototypesOn(const torch::Device& device);
  // Call after writing `feats` directly (restoring a state): the cached prototypes are stale.
  void invalidate() { cached_ = torch::Tensor(); }

  torch::Tensor feats;  // [C·K, D] fp32 (fp64), CPU
  torch::Tensor conf;   // [C·K] same dtype, CPU
  int64_t classes, slots;

 private:
  torch::Tensor cached_;  // prototypes() on the device of the last prototypesOn, or undefined
};

}  // namespace ipclip
