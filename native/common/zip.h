// A minimal, torch-free reader of the zip container that `torch.save` writes (PyTorch ≥ 1.6): every entry
// stored (method 0, no compression; other entries are listed but their bytes are never read), names under one top-level folder (`<stem>/data.pkl`,
// `<stem>/data/<key>`, `<stem>/version`), sizes in the central directory (the local headers use data
// descriptors), zip64 end records present. The buffer is hostile: every offset and size is checked against
// it before an Entry exists, so an entry's bytes always lie inside the buffer, and the CRC of every stored
// entry is checked. Anything else (encryption, multi-disk archives, duplicate names) is an IpclipError
// ERR_BAD_FILE "<label>: …".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "errors.h"

namespace ipclip::zip {

struct Entry {
  std::string name;
  size_t offset;  // of the entry's data in the buffer
  size_t size;     // stored bytes (the data itself when not compressed)
  uint32_t crc32;
  bool compressed;  // another method than "stored": listed, never read (TorchScript compresses its code/)
};

class Archive {
 public:
  // Most entries accepted (a Dassl checkpoint of ViT-B has a few hundred).
  static constexpr size_t kMaxEntries = 1'000'000;

  // Parses the central directory of `data[0, size)`, which must outlive the Archive. CRCs are checked.
  static Archive parse(const uint8_t* data, size_t size, const std::string& label);

  const std::vector<Entry>& entries() const { return entries_; }
  // The entry named `name`, or nullptr.
  const Entry* find(const std::string& name) const;

 private:
  std::vector<Entry> entries_;
};

// True when `data` starts with a zip local-file header ("PK\3\4").
bool looksLikeZip(const uint8_t* data, size_t size);

// CRC-32 (IEEE 802.3, as zip uses).
uint32_t crc32(const uint8_t* data, size_t size);

}  // namespace ipclip::zip
