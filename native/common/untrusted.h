// Helpers for files that are hostile input (weights, checkpoints): reading one whole, and quoting text taken
// from it in error messages. Torch-free, shared by the safetensors and torch.save readers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ipclip {

// The whole regular file at `path`. `kind` names the expected format in messages ("a safetensors file").
// ERR_FILE_NOT_FOUND when it does not exist; ERR_BAD_FILE for a directory, FIFO, device, or a read error.
// A FIFO never blocks the caller (opened non-blocking, then refused as not regular).
std::vector<uint8_t> readUntrustedFile(const std::string& path, const char* kind);

// `s` quoted for an error message: control bytes as \xNN, cut at 100 bytes on a UTF-8 character boundary, so a
// hostile name can neither flood a log nor inject terminal escapes.
std::string shownText(std::string_view s);

}  // namespace ipclip
