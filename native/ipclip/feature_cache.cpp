#include "ipclip/feature_cache.h"

#include "common/errors.h"
#include "ipclip/distributed.h"

namespace ipclip {

namespace {
torch::Tensor kept(const torch::Tensor& t) {
  return t.detach().to(t.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32);
}

torch::Tensor indexTensor(const std::vector<int64_t>& indices, const torch::Device& device) {
  return torch::tensor(indices, torch::kInt64).to(device);
}
}  // namespace

void FeatureCache::store(int64_t size, const std::vector<int64_t>& indices, const VisionFeatures& f) {
  torch::NoGradGuard noGrad;
  if (size < 1) fail("ERR_INVALID_ARGUMENT", "feature cache: a stream needs at least one sample");
  auto embeds = kept(f.embeds), stats = kept(f.stats);
  if (static_cast<int64_t>(indices.size()) != embeds.size(0))
    fail("ERR_INVALID_ARGUMENT", "feature cache: " + std::to_string(indices.size()) + " indices for " +
                                     std::to_string(embeds.size(0)) + " samples");
  for (auto i : indices)
    if (i < 0 || i >= size)
      fail("ERR_INVALID_ARGUMENT", "feature cache: sample index " + std::to_string(i) + " is not in [0, " +
                                       std::to_string(size) + ")");
  if (!embeds_.defined() || size != this->size() || embeds_.scalar_type() != embeds.scalar_type() ||
      embeds_.device() != embeds.device()) {
    embeds_ = torch::zeros({size, embeds.size(1)}, embeds.options());
    stats_ = torch::zeros({stats.size(0), size, stats.size(2), stats.size(3)}, stats.options());
    filled_.assign(static_cast<size_t>(size), false);
  }
  auto at = indexTensor(indices, embeds.device());
  embeds_.index_copy_(0, at, embeds);
  stats_.index_copy_(1, at, stats);
  for (auto i : indices) filled_[static_cast<size_t>(i)] = true;
}

VisionFeatures FeatureCache::gather(const std::vector<int64_t>& indices, const char* stream) const {
  for (auto i : indices)
    if (i < 0 || i >= size() || !filled_[static_cast<size_t>(i)])
      fail("ERR_INVALID_ARGUMENT", std::string("feature cache: no features for ") + stream + " sample " + std::to_string(i));
  auto at = indexTensor(indices, embeds_.device());
  return {embeds_.index_select(0, at), stats_.index_select(1, at)};
}

void FeatureCache::share(ProcessGroup& group, const char* stream) {
  torch::NoGradGuard noGrad;
  if (!embeds_.defined())
    fail("ERR_INVALID_ARGUMENT", std::string("feature cache: this rank has no ") + stream + " features to share");
  std::vector<int64_t> mine;
  for (size_t i = 0; i < filled_.size(); ++i)
    if (filled_[i]) mine.push_back(static_cast<int64_t>(i));
  const auto n = static_cast<int64_t>(mine.size());
  const auto D = embeds_.size(1), L = stats_.size(0), P = stats_.size(2), W = stats_.size(3);
  // One row per sample: its embedding, then its [L,2,W] statistics flattened; the indices travel beside them.
  auto local = gather(mine, stream);
  auto rows = torch::cat({local.embeds, local.stats.permute({1, 0, 2, 3}).reshape({n, L * P * W})}, 1);
  auto at = group.allGatherRows(torch::tensor(mine, torch::kInt64).reshape({n, 1})).reshape({-1});
  auto all = group.allGatherRows(rows.contiguous()).to(embeds_.device());
  if (all.size(0) != at.size(0)) fail("ERR_NATIVE", std::string("feature cache: the ranks' ") + stream + " shares do not match their indices");
  std::vector<int64_t> indices(at.data_ptr<int64_t>(), at.data_ptr<int64_t>() + at.numel());
  for (auto i : indices)
    if (i < 0 || i >= size())
      fail("ERR_INVALID_ARGUMENT", std::string("feature cache: a rank shared ") + stream + " sample " + std::to_string(i) +
                                       ", outside this rank's stream of " + std::to_string(size()));
  auto where = at.to(embeds_.device());
  embeds_.index_copy_(0, where, all.narrow(1, 0, D));
  stats_.index_copy_(1, where, all.narrow(1, D, L * P * W).reshape({-1, L, P, W}).permute({1, 0, 2, 3}));
  for (auto i : indices) filled_[static_cast<size_t>(i)] = true;
}

void FeatureCache::clear() {
  embeds_ = torch::Tensor();
  stats_ = torch::Tensor();
  filled_.clear();
}

int64_t FeatureCache::bytes() const {
  if (!embeds_.defined()) return 0;
  return embeds_.numel() * embeds_.element_size() + stats_.numel() * stats_.element_size();
}

}  // namespace ipclip
