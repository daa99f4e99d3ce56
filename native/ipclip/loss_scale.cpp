#include "ipclip/loss_scale.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "common/errors.h"

namespace ipclip {

namespace {
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}
}  // namespace

LossScale::LossScale(const Options& options) : options_(options), scale_(options.initial) {}

bool LossScale::update(bool finite) {
  if (!finite) {
    scale_ = std::max(options_.minScale, scale_ * options_.backoffFactor);
    goodSteps_ = 0;
    return false;
  }
  if (++goodSteps_ >= options_.growthInterval) {
    const double grown = scale_ * options_.growthFactor;
    if (std::isfinite(grown)) scale_ = grown;
    goodSteps_ = 0;
  }
  return true;
}

void LossScale::setState(double scale, int64_t goodSteps) {
  if (!std::isfinite(scale) || scale < options_.minScale)
    fail("ERR_BAD_WEIGHTS", "loss scale must be a finite number ≥ " + num(options_.minScale) + ", got " + num(scale));
  if (goodSteps < 0 || goodSteps >= options_.growthInterval)
    fail("ERR_BAD_WEIGHTS", "loss-scale step count must lie in [0, " + std::to_string(options_.growthInterval) + "), got " +
                                std::to_string(goodSteps));
  scale_ = scale;
  goodSteps_ = goodSteps;
}

}  // namespace ipclip
