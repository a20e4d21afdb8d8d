#include "flow/read_file.h"

#include <fstream>

namespace retake {

Result<std::string> read_small_file(const std::string& path, size_t max_bytes,
                                    std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status(Errc::not_found, std::string(what) + " " + path + " cannot be opened");
  std::string text;
  text.resize(max_bytes);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (!in.eof())
    return Status(Errc::resource_exhausted, std::string(what) + " " + path + " is larger than " +
                                                std::to_string(max_bytes >> 20) + " MiB");
  return text;
}

}  // namespace retake
