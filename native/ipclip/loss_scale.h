// Dynamic loss scaling for float16 towers, with torch.cuda.amp.GradScaler's rule: the loss is multiplied by
// `scale` before the backward pass and the gradients divided by it after; a step whose loss or gradients are
// not finite is skipped and halves the scale; after `growthInterval` consecutive finite steps the scale doubles.
// Plain arithmetic without libtorch, so it is unit-tested on its own (test/native/loss_scale_test.cpp).
#pragma once
#include <cstdint>

namespace ipclip {

class LossScale {
 public:
  struct Options {
    double initial = 65536.0;      // 2^16, GradScaler's init_scale
    double growthFactor = 2.0;
    double backoffFactor = 0.5;
    int64_t growthInterval = 2000;
    double minScale = 1.0;         // never below 1: the scale only ever protects small gradients
  };

  LossScale() = default;
  explicit LossScale(const Options& options);

  double scale() const { return scale_; }
  // Consecutive finite steps since the last change of the scale (GradScaler's growth tracker).
  int64_t goodSteps() const { return goodSteps_; }
  const Options& options() const { return options_; }

  // Records a step's outcome: finite → counts it and grows the scale after growthInterval of them;
  // not finite → backs the scale off and restarts the count. Returns `finite` (whether to apply the update).
  bool update(bool finite);

  // Restores a saved state. Throws IpclipError ERR_BAD_WEIGHTS for a scale that is not a finite number ≥
  // minScale or a count outside [0, growthInterval).
  void setState(double scale, int64_t goodSteps);

 private:
  Options options_;
  double scale_ = options_.initial;
  int64_t goodSteps_ = 0;
};

}  // namespace ipclip
