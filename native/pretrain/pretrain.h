// Contrastive pretraining of a CLIP from scratch (both towers trainable): symmetric InfoNCE over a batch
// of image–caption pairs with CLIP's learnable temperature, optimised by AdamW.
#pragma once
#include <torch/optim/adamw.h>

#include <memory>

#include "clip/model.h"

namespace ipclip {

struct PretrainStepOptions {
  double lr = 5e-4;
  double weightDecay = 0.1;
  double gradClip = 0;  // max global L2 norm of the gradients; 0 = no clipping
};

struct PretrainStepResult {
  double loss = 0;      // the symmetric InfoNCE loss of the batch (before the update)
  double accuracy = 0;  // fraction of images whose best-scoring caption is one of their positives
  double logitScale = 0;  // exp(logit_scale) after the update (the multiplier of the cosine similarities)
};

// Owns a model and its optimiser state. Not thread-safe: callers serialise steps.
class ClipPretrainerCore {
 public:
  // Initialises the model from `seed` (clip/init.h) and places it on `device` in fp32.
  ClipPretrainerCore(const ClipConfig& config, uint64_t seed, torch::Device device);

  // images: [B,3,S,S] normalised floats; ids: [B,ctx] int64 token rows (SOT … EOT, zero-padded).
  // Captions that are identical token rows are all positives of each other (a batch of synthetic data
  // repeats captions), so the target of each row is uniform over its identical captions rather than
  // one-hot; with distinct captions this is CLIP's loss exactly.
  // Decoupled weight decay (AdamW) applies to matrices and the conv kernel only; biases, LayerNorm gains,
  // embeddings (token, positional, class) and the logit scale are not decayed, as is usual for transformers.
  // After the update the logit scale is clamped to [0, log 100], as in CLIP.
  PretrainStepResult step(const torch::Tensor& images, const torch::Tensor& ids, const PretrainStepOptions& o);

  // Embeddings without gradients, in eval mode, L2-normalised: [N,D].
  torch::Tensor encodeImage(const torch::Tensor& images);
  torch::Tensor encodeText(const torch::Tensor& ids);

  ClipImpl& model() { return *model_; }
  int64_t steps() const { return steps_; }

 private:
  Clip model_{nullptr};
  torch::Device device_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  int64_t steps_ = 0;
};

// Whether OpenAI parameter `name` is weight-decayed by the pretrainer (see ClipPretrainerCore::step).
bool isDecayed(const std::string& name, const torch::Tensor& p);

// Cuts token rows to the longest caption (its EOT column + 1): the causal text tower gives the same
// EOT features for any longer padding, so shorter rows only save work.
torch::Tensor trimTokenRows(const torch::Tensor& ids);

}  // namespace ipclip
