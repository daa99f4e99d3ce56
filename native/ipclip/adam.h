// Adam with weight decay added to the gradient (coupled L2), as torch.optim.Adam(weight_decay=…) computes it.
// Its own small implementation so that its state is plain named tensors: checkpoints store it and a resumed
// run continues bit for bit.
#pragma once
#include <map>
#include <string>

#include <torch/types.h>

namespace ipclip {

class Adam {
 public:
  struct Options {
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 5e-4;
  };

  // params: name → parameter (its .grad() is read at step()).
  void step(const std::map<std::string, torch::Tensor>& params, double lr, const Options& o);

  int64_t steps = 0;
  std::map<std::string, torch::Tensor> expAvg, expAvgSq;
};

}  // namespace ipclip
