#pragma once
// Reading a file whose contents come from outside the daemon (net-conf,
// lease files, subnet.env, a kubeconfig, a service-account token) without
// letting the file decide how long the read takes or how much it takes:
// only a regular file, opened O_NONBLOCK (a FIFO does not block the open),
// checked with fstat before the first byte is read (a FIFO or a device is
// refused, not read), and at most a given number of bytes (a symlink to
// /dev/zero or a 10 GB file is refused, not read into memory).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace udpring::io {

/// The file cannot be input: not a regular file, a symbolic link where none
/// is followed, larger than allowed, or unreadable. what() names the path.
class FileInputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Symlinks {
  kFollow,  // files given by flags: ConfigMap and projected-token mounts are symlinks
  kRefuse,  // entries of a directory the daemon manages (O_NOFOLLOW)
};

struct SmallFile {
  std::string text;
  int64_t mtime_unix = 0;  // of the file read (fstat of the open descriptor)
};

/// Regular file `path` of at most `max_bytes`; nullopt if it does not exist.
/// Throws FileInputError for anything else (the message names the path and
/// what it is: "a FIFO", "a symbolic link", "70000 bytes, more than 65536").
std::optional<SmallFile> read_small_file(const std::string& path, size_t max_bytes,
                                         Symlinks symlinks);

}  // namespace udpring::io
