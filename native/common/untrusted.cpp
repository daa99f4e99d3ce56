#include "untrusted.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "errors.h"

namespace ipclip {

std::vector<uint8_t> readUntrustedFile(const std::string& path, const char* kind) {
  // O_NONBLOCK: opening a FIFO must not hang waiting for a writer; it is rejected below as not regular.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT || e == ENOTDIR) fail("ERR_FILE_NOT_FOUND", path + ": no such file");
    fail("ERR_BAD_FILE", path + ": cannot open: " + std::strerror(e));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};

  struct stat st {};
  if (::fstat(fd, &st) != 0) fail("ERR_BAD_FILE", path + ": cannot stat: " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) fail("ERR_BAD_FILE", path + ": is a directory, not " + kind);
  if (!S_ISREG(st.st_mode)) fail("ERR_BAD_FILE", path + ": not a regular file");

  std::vector<uint8_t> bytes;
  try {
    bytes.resize(static_cast<size_t>(st.st_size));
  } catch (const std::exception&) {  // bad_alloc, or length_error beyond max_size()
    fail("ERR_BAD_FILE", path + ": file of " + std::to_string(st.st_size) + " bytes does not fit in memory");
  }
  size_t got = 0;
  while (got < bytes.size()) {
    ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("ERR_BAD_FILE", path + ": read failed: " + std::strerror(errno));
    if (n == 0) break;  // the file shrank since fstat: the caller validates what is there
    got += static_cast<size_t>(n);
  }
  bytes.resize(got);
  return bytes;
}

std::string shownText(std::string_view s) {
  const size_t limit = 100;
  const bool cut = s.size() > limit;
  if (cut) {
    size_t end = limit;
    while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
    s = s.substr(0, end);
  }
  std::string out = "'";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7F) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xF];
    } else {
      out += ch;
    }
  }
  out += cut ? "...'" : "'";
  return out;
}

}  // namespace ipclip
