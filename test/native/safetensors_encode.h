// Test and fuzz builds only: serialises tensors into the safetensors layout, for round trips of the reader.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "../../native/common/safetensors.h"

namespace ipclip {

// Serialises tensors (in the given order, packed back to back) and metadata into the safetensors layout,
// padding the header with spaces to a multiple of 8 bytes so the data section starts aligned.
// Throws ERR_INVALID_ARGUMENT for a view whose nbytes != numel * dtypeSize, a negative dimension, a
// duplicate or reserved ("__metadata__") name, a null data pointer with nbytes > 0, or non-UTF-8 text.
std::vector<uint8_t> encodeSafetensors(const std::vector<TensorView>& tensors,
                                       const std::map<std::string, std::string>& metadata);

}  // namespace ipclip
