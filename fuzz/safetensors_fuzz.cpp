// libFuzzer harness for the safetensors reader. Any input must either parse or raise IpclipError; anything
// else (a sanitizer report, another exception, an abort) is a bug. Inputs that parse are also checked
// against an oracle: every view is read end to end (ASan catches a view outside the buffer), and
// re-encoding the parsed file must give back the same tensors and metadata.
#include <cstdint>
#include <cstring>
#include <vector>

#include "../native/common/safetensors.h"
#include "../test/native/safetensors_encode.h"

using namespace ipclip;

static void require(bool ok) {
  if (!ok) __builtin_trap();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    SafetensorsFile f = SafetensorsFile::fromBytes(std::vector<uint8_t>(data, data + size), "fuzz");
    unsigned sum = 0;
    for (const TensorView& t : f.tensors()) {
      for (size_t i = 0; i < t.nbytes; ++i) sum += t.data[i];
      require(f.find(t.name) == &t);
    }
    (void)sum;

    // Encoding what parsed must not throw, and must parse back to the same content.
    SafetensorsFile g = SafetensorsFile::fromBytes(encodeSafetensors(f.tensors(), f.metadata()), "fuzz-reencoded");
    require(g.metadata() == f.metadata() && g.tensors().size() == f.tensors().size());
    for (size_t i = 0; i < f.tensors().size(); ++i) {
      const TensorView& a = f.tensors()[i];
      const TensorView& b = g.tensors()[i];
      require(a.name == b.name && a.dtype == b.dtype && a.shape == b.shape && a.nbytes == b.nbytes);
      require(a.nbytes == 0 || std::memcmp(a.data, b.data, a.nbytes) == 0);
    }
  } catch (const IpclipError&) {
    // Rejected cleanly: the expected outcome for most inputs.
  }
  return 0;
}
