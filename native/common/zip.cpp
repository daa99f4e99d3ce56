#include "zip.h"

#include <map>

namespace ipclip::zip {

namespace {

uint64_t le(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50;
constexpr uint32_t kEnd64Sig = 0x06064b50, kLocator64Sig = 0x07064b50;

}  // namespace

uint32_t crc32(const uint8_t* data, size_t size) {
  static const auto table = [] {
    std::vector<uint32_t> t(256);
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) c = table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

bool looksLikeZip(const uint8_t* data, size_t size) { return size >= 4 && le(data, 4) == kLocalSig; }

const Entry* Archive::find(const std::string& name) const {
  for (const auto& e : entries_) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

Archive Archive::parse(const uint8_t* data, size_t size, const std::string& label) {
  auto bad = [&label](const std::string& problem) { fail("ERR_BAD_FILE", label + ": " + problem); };
  // `n` bytes at `off` lie inside the buffer (no arithmetic that can wrap).
  auto inside = [size](uint64_t off, uint64_t n) { return off <= size && n <= size - off; };

  // End of central directory: 22 bytes plus a comment that must reach exactly the end of the file.
  if (size < 22) bad("too short for a zip archive (" + std::to_string(size) + " bytes)");
  size_t end = SIZE_MAX;
  const size_t lowest = size - 22 > 65535 ? size - 22 - 65535 : 0;
  for (size_t p = size - 22 + 1; p-- > lowest;) {
    if (le(data + p, 4) == kEndSig && p + 22 + le(data + p + 20, 2) == size) {
      end = p;
      break;
    }
  }
  if (end == SIZE_MAX) bad("no zip end-of-central-directory record (truncated or not a torch.save archive)");
  const uint8_t* e = data + end;
  if (le(e + 4, 2) != 0 || le(e + 6, 2) != 0) bad("multi-disk zip archives are not supported");
  uint64_t count = le(e + 10, 2), cdSize = le(e + 12, 4), cdOffset = le(e + 16, 4);
  if (count == 0xFFFF || cdSize == 0xFFFFFFFF || cdOffset == 0xFFFFFFFF) {
    // zip64: the locator sits just before the end record and points at the zip64 end record.
    if (end < 20 || le(data + end - 20, 4) != kLocator64Sig) bad("zip64 archive without a zip64 locator");
    const uint64_t rec = le(data + end - 20 + 8, 8);
    if (!inside(rec, 56) || rec + 56 > end - 20 || le(data + rec, 4) != kEnd64Sig) bad("zip64 end record out of place");
    if (le(data + rec + 16, 4) != 0 || le(data + rec + 20, 4) != 0) bad("multi-disk zip archives are not supported");
    count = le(data + rec + 32, 8);
    cdSize = le(data + rec + 40, 8);
    cdOffset = le(data + rec + 48, 8);
  }
  if (!inside(cdOffset, cdSize) || cdOffset + cdSize > end) bad("central directory runs outside the archive");
  if (count > kMaxEntries) bad(std::to_string(count) + " entries (at most " + std::to_string(kMaxEntries) + ")");
  if (count > cdSize / 46) bad("central directory too small for " + std::to_string(count) + " entries");

  Archive a;
  a.entries_.reserve(static_cast<size_t>(count));
  std::map<std::string, size_t> names;
  uint64_t pos = cdOffset;
  const uint64_t cdEnd = cdOffset + cdSize;
  for (uint64_t i = 0; i < count; ++i) {
    if (pos > cdEnd || cdEnd - pos < 46 || le(data + pos, 4) != kCentralSig) {
      bad("central directory entry " + std::to_string(i) + " is malformed");
    }
    const uint8_t* c = data + pos;
    const uint64_t flags = le(c + 8, 2), method = le(c + 10, 2);
    const auto crc = static_cast<uint32_t>(le(c + 16, 4));
    uint64_t compSize = le(c + 20, 4), rawSize = le(c + 24, 4);
    const uint64_t nameLen = le(c + 28, 2), extraLen = le(c + 30, 2), commentLen = le(c + 32, 2);
    uint64_t local = le(c + 42, 4);
    if (cdEnd - pos - 46 < nameLen + extraLen + commentLen) bad("central directory entry " + std::to_string(i) + " runs past the directory");
    std::string name(reinterpret_cast<const char*>(c + 46), nameLen);
    const std::string what = "entry " + std::to_string(i) + " ('" + name.substr(0, 100) + "')";
    // zip64 extra field: 8-byte values for exactly the saturated 4-byte fields, in this order.
    const uint8_t* x = c + 46 + nameLen;
    for (uint64_t xp = 0; xp + 4 <= extraLen;) {
      const uint64_t id = le(x + xp, 2), len = le(x + xp + 2, 2);
      if (xp + 4 + len > extraLen) bad(what + ": malformed extra field");
      if (id == 0x0001) {
        uint64_t q = xp + 4;
        for (uint64_t* field : {&rawSize, &compSize, &local}) {
          if (*field != 0xFFFFFFFF) continue;
          if (q + 8 > xp + 4 + len) bad(what + ": truncated zip64 extra field");
          *field = le(x + q, 8);
          q += 8;
        }
      }
      xp += 4 + len;
    }
    if (flags & 1) bad(what + " is encrypted");
    const bool compressed = method != 0;
    if (!compressed && compSize != rawSize) bad(what + ": stored size " + std::to_string(compSize) + " differs from its size " + std::to_string(rawSize));
    if (!inside(local, 30) || le(data + local, 4) != kLocalSig) bad(what + ": no local header at offset " + std::to_string(local));
    const uint64_t lName = le(data + local + 26, 2), lExtra = le(data + local + 28, 2);
    const uint64_t dataOff = local + 30 + lName + lExtra;
    if (!inside(local + 30, lName) || std::string(reinterpret_cast<const char*>(data + local + 30), lName) != name) {
      bad(what + ": local header names another file");
    }
    if (!inside(dataOff, compSize) || dataOff + compSize > cdOffset) bad(what + ": data runs outside the archive");
    if (!compressed && crc32(data + dataOff, static_cast<size_t>(compSize)) != crc) bad(what + ": CRC mismatch (corrupt file)");
    if (!names.emplace(name, a.entries_.size()).second) bad("entry name '" + name.substr(0, 100) + "' appears twice");
    a.entries_.push_back({std::move(name), static_cast<size_t>(dataOff), static_cast<size_t>(compSize), crc, compressed});
    pos += 46 + nameLen + extraLen + commentLen;
  }
  return a;
}

}  // namespace ipclip::zip
