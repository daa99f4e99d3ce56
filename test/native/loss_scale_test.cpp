// Unit test of the float16 dynamic loss scale (native/ipclip/loss_scale.*): GradScaler's growth and backoff rule.
// Built and run by scripts/native-tests.sh (no libtorch needed).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/errors.h"
#include "ipclip/loss_scale.h"

using ipclip::LossScale;

static int failures = 0;
#define EXPECT(cond)                                                     \
  do {                                                                   \
    if (!(cond)) {                                                       \
      std::fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                        \
    }                                                                    \
  } while (0)

static std::string codeOf(void (*f)(LossScale&), LossScale& s) {
  try {
    f(s);
  } catch (const ipclip::IpclipError& e) {
    return e.code;
  }
  return "";
}

int main() {
  {
    LossScale s;  // GradScaler's defaults: 2^16, ×2 after 2000 clean steps, ×0.5 on overflow
    EXPECT(s.scale() == 65536.0 && s.goodSteps() == 0);
    for (int i = 0; i < 1999; ++i) EXPECT(s.update(true));
    EXPECT(s.scale() == 65536.0 && s.goodSteps() == 1999);  // not yet: 1999 clean steps
    EXPECT(s.update(true));
    EXPECT(s.scale() == 131072.0 && s.goodSteps() == 0);    // the 2000th doubles it and restarts the count
    for (int i = 0; i < 2000; ++i) s.update(true);
    EXPECT(s.scale() == 262144.0);
  }
  {
    LossScale s;
    for (int i = 0; i < 1500; ++i) s.update(true);
    EXPECT(!s.update(false));                               // overflow: skip the update…
    EXPECT(s.scale() == 32768.0 && s.goodSteps() == 0);     // …halve, and count clean steps afresh
    for (int i = 0; i < 1999; ++i) s.update(true);
    EXPECT(s.scale() == 32768.0);                           // the 1500 steps before the overflow do not count
    s.update(true);
    EXPECT(s.scale() == 65536.0);
  }
  {
    LossScale::Options o;
    o.initial = 4.0;
    LossScale s(o);
    for (int i = 0; i < 5; ++i) s.update(false);
    EXPECT(s.scale() == 1.0);                               // never below minScale
  }
  {
    LossScale s;
    s.setState(1024.0, 17);                                  // a checkpoint's state, restored
    EXPECT(s.scale() == 1024.0 && s.goodSteps() == 17);
    for (int i = 0; i < 1983; ++i) s.update(true);
    EXPECT(s.scale() == 2048.0);                             // growth continues from the saved count
    EXPECT(codeOf([](LossScale& x) { x.setState(0.5, 0); }, s) == "ERR_BAD_WEIGHTS");
    EXPECT(codeOf([](LossScale& x) { x.setState(1.0 / 0.0, 0); }, s) == "ERR_BAD_WEIGHTS");
    EXPECT(codeOf([](LossScale& x) { x.setState(8.0, 2000); }, s) == "ERR_BAD_WEIGHTS");
    EXPECT(codeOf([](LossScale& x) { x.setState(8.0, -1); }, s) == "ERR_BAD_WEIGHTS");
    EXPECT(s.scale() == 2048.0);                             // a refused state changes nothing
  }
  if (failures) {
    std::fprintf(stderr, "loss_scale_test: %d failure(s)\n", failures);
    return 1;
  }
  std::puts("loss_scale_test: ok");
  return 0;
}
