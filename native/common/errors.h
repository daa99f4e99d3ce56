// The one exception type the native core throws for bad input. It carries the same stable `code` strings
// as lib/core/errors.ts (ERR_FILE_NOT_FOUND, ERR_BAD_FILE, ERR_INVALID_ARGUMENT, ...) so the binding can turn it
// into a JS IpclipError without guessing.
#pragma once

#include <stdexcept>
#include <string>

namespace ipclip {

struct IpclipError : std::runtime_error {
  std::string code;
  IpclipError(std::string code_, const std::string& message) : std::runtime_error(message), code(std::move(code_)) {}
};

// File-reading errors are ordinary IpclipErrors; the alias keeps the name the reader's API was specified with.
using FileError = IpclipError;

// Throws IpclipError(code, msg). Use it for every input the caller (or a file) got wrong.
[[noreturn]] inline void fail(const char* code, std::string msg) { throw IpclipError(code, msg); }

}  // namespace ipclip
