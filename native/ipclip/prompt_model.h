// PromptModel: IP-CLIP's trainable state around a frozen CLIP — the IP prompt (PromptLearner, the token
// generator), the enhancement module, the two feature banks, the class prompts' frozen parts, the optimiser (Adam)
// and the float16 loss scale — and the operations on them: protected logits, bank construction, and one training
// step (method §2–4). The binding's PromptModel (native/binding) wraps one; the TS side names it the same.
// Not thread-safe: the binding serialises calls.
#pragma once
#include <map>
#include <string>

#include "clip/model.h"
#include "ipclip/adam.h"
#include "ipclip/banks.h"
#include "ipclip/distributed.h"
#include "ipclip/enhancer.h"
#include "ipclip/feature_cache.h"
#include "ipclip/loss_scale.h"
#include "ipclip/losses.h"
#include "ipclip/prompt_learner.h"
#include "ipclip/text_path.h"
#include "ipclip/vision_features.h"

namespace ipclip {

struct PromptModelOptions {
  uint64_t seed = 1;
  TextPath textPath = TextPath::Fast;
  int64_t bankSize = 5;  // K slots per class
};

struct StepOptions {
  // false: the unprotected reference's step, CE_A alone (no unauthorized batch is read; `weights` unused).
  bool unauthorized = true;
  LossWeights weights;  // the scenario's loss weights (method §4), as data
  Preset preset = Preset::Paper;  // the entropy's numerics
  double lr = 0.01;
  double weightDecay = 5e-4;
  bool update = true;          // false: loss and gradients only
  bool returnOutputs = false;  // keep zA, zU, zSelf, zCross, domainA, domainU
  bool trainEnhancer = false;
  // Copy the gradients to the host for gradients() (the binding does it; implied by update == false).
  bool keepGradients = false;
};

struct StepResult {
  LossTerms terms;
  double loss = 0;
  bool skipped = false;  // non-finite loss or gradient: no update was made
  std::map<std::string, torch::Tensor> outputs;
};

struct PromptOutput {
  torch::Tensor logits;  // [B,C] in dtype()
  torch::Tensor domain;  // [B,L,Wt]
  torch::Tensor embeds;  // [B,D] normalised image embeddings
  torch::Tensor text;    // [B,C,D] normalised text features
};

class PromptModel {
 public:
  PromptModel(Clip clip, const torch::Tensor& classIds, const PromptModelOptions& options);

  // Logits with each image's own prompts. Gradients are recorded only when autograd is on.
  PromptOutput forward(const torch::Tensor& images);
  // The frozen vision tower alone (no gradient), and the rest of forward from its output.
  VisionFeatures encodeVision(const torch::Tensor& images);
  PromptOutput forwardFromFeatures(const VisionFeatures& features);
  // One batch of bank construction with the current prompt (no gradient). Returns the logits.
  torch::Tensor bankUpdate(const torch::Tensor& images, const torch::Tensor& labels, BankRule rule);
  torch::Tensor bankUpdate(const VisionFeatures& features, const torch::Tensor& labels, BankRule rule);
  // Data-parallel bank construction (every rank of `group` calls it once per global batch): this rank's slice
  // of the batch (none: an undefined tensor) is all-gathered with the others' in rank order, and the bank takes
  // the global batch by the single-process rule. Returns this slice's logits (undefined without images).
  torch::Tensor bankUpdateGathered(const torch::Tensor& images, const torch::Tensor& labels, BankRule rule);
  void resetBanks();
  StepResult step(const torch::Tensor& imagesA, const torch::Tensor& labelsA, const torch::Tensor& imagesU,
                  const torch::Tensor& labelsU, const StepOptions& options);
  // The same step from precomputed vision features (featU is not read when options.unauthorized is false).
  StepResult step(const VisionFeatures& featA, const torch::Tensor& labelsA, const VisionFeatures& featU,
                  const torch::Tensor& labelsU, const StepOptions& options);

  // Named state in the release's names (+ bank confidences); setState validates names and shapes first.
  std::map<std::string, torch::Tensor> state();
  void setState(const std::map<std::string, torch::Tensor>& tensors);
  // Adam's state as "exp_avg.<name>" / "exp_avg_sq.<name>".
  std::map<std::string, torch::Tensor> optimizerState();
  void setOptimizerState(int64_t steps, const std::map<std::string, torch::Tensor>& tensors);

  // Data parallelism: with a group attached, every step all-reduces (averages, weighted by each rank's batch
  // size) the gradients, the loss terms and the skip decision in one call between backward and the update, so
  // every rank makes the same update. Null: a single process.
  std::shared_ptr<ProcessGroup> group;
  // Rank `root`'s parameters (prompt, enhancer) and banks on every rank of `group`, in one broadcast.
  void broadcastState(int root);

  int64_t numClasses() const { return classes_; }
  int64_t nCtx() const { return prompt_->nCtx(); }
  const ClipImpl& clip() const { return *clip_; }
  // The dtype of the prompt, enhancer, banks, losses and optimiser state: atLeastFloat32(the towers' dtype).
  torch::Dtype dtype() const { return atLeastFloat32(clip_->dtype()); }
  int64_t parameterBytes();
  // Parameters, banks and cached features: the native memory this model holds.
  int64_t bytes();

  // The last step's gradients (unscaled), on the model's device: references, not copies (each step makes new
  // gradient tensors and drops its own references to them). Released when the next step starts.
  std::map<std::string, torch::Tensor> lastGradients;
  Adam adam;
  LossScale lossScale;  // used only when the towers run in float16
  int64_t skippedSteps = 0;
  // The feature cache of each training stream (IPTrainer's featureCache): filled by cacheFeatures, read by
  // stepCached. Freed by clearFeatures.
  FeatureCache authorizedFeatures, unauthorizedFeatures;
  // Runs the vision tower on `images` and stores the features at `indices` of `stream`'s cache (`size` samples).
  void cacheFeatures(FeatureCache& stream, int64_t size, const std::vector<int64_t>& indices, const torch::Tensor& images);
  // step() on cached features: A's rows `indicesA` of the authorized cache, U's `indicesU` of the unauthorized one.
  StepResult stepCached(const std::vector<int64_t>& indicesA, const torch::Tensor& labelsA,
                        const std::vector<int64_t>& indicesU, const torch::Tensor& labelsU, const StepOptions& options);

 private:
  std::map<std::string, torch::Tensor> trainable(bool withEnhancer);
  // The step's reduction over `group`: averages the gradients in place and returns the averaged report.
  torch::Tensor reduceOverRanks(std::map<std::string, torch::Tensor>& params, const torch::Tensor& report, int64_t batch);
  torch::Tensor logitsFrom(const torch::Tensor& f, const torch::Tensor& text) const;
  StepResult stepFrom(const VisionFeatures& featA, const torch::Tensor& labelsA, const VisionFeatures& featU,
                      const torch::Tensor& labelsU, const StepOptions& options);

  Clip clip_;
  PromptLearner prompt_{nullptr};
  Enhancer enhancer_{nullptr};
  FeatureBank bankA_, bankU_;
  ClassPrompts classPrompts_;
  PromptModelOptions options_;
  int64_t classes_;
};

}  // namespace ipclip
