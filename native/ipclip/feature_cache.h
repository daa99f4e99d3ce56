// The vision tower's output for every sample of one training stream, computed once and gathered per step: with
// the random crop frozen (IPTrainer's featureCache), a sample's features do not change between epochs, so the
// frozen tower runs once per sample instead of once per step, and the features never leave the native side.
#pragma once
#include <torch/types.h>

#include <vector>

#include "ipclip/vision_features.h"

namespace ipclip {

class ProcessGroup;

class FeatureCache {
 public:
  // Stores the features of batch rows k at sample indices[k] of a stream of `size` samples. The first store (or
  // one with another size) allocates the stream, in VisionFeatures' layout and the features' device; rows are
  // kept in float32 (float64 for float64 features), as the binding would hand them to JS.
  void store(int64_t size, const std::vector<int64_t>& indices, const VisionFeatures& features);
  // The features of `indices` as one batch (embeds [n,D], stats [L,n,2,W]). ERR_INVALID_ARGUMENT for an index
  // outside the stream or a sample never stored.
  VisionFeatures gather(const std::vector<int64_t>& indices, const char* stream) const;
  // Data parallelism (every rank of `group` calls it): each rank has stored its own share of the stream's samples;
  // afterwards every rank holds every sample any rank stored (the rows travel as stored, so every rank's copy has
  // the same bytes). ERR_INVALID_ARGUMENT when this rank stored nothing, or a peer's sample lies outside the stream.
  void share(ProcessGroup& group, const char* stream);
  void clear();
  int64_t size() const { return static_cast<int64_t>(filled_.size()); }
  int64_t bytes() const;

 private:
  torch::Tensor embeds_;  // [N,D]
  torch::Tensor stats_;   // [L,N,2,W]
  std::vector<bool> filled_;
};

}  // namespace ipclip
