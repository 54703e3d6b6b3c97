#include "io/control/leases/small_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/unique_fd.h"

namespace udpring::io {
namespace {

const char* kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

// Why `st` is not a file to read, or "" when it is.
std::string refusal(const struct stat& st, size_t max_bytes) {
  if (!S_ISREG(st.st_mode)) return std::string(kind(st.st_mode)) + ", not a regular file";
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return std::to_string(st.st_size) + " bytes, more than " + std::to_string(max_bytes);
  }
  return {};
}

}  // namespace

std::optional<SmallFile> read_small_file(const std::string& path, size_t max_bytes,
                                         Symlinks symlinks) {
  const bool follow = symlinks == Symlinks::kFollow;
  // Look before opening: opening some devices has effects of its own.
  struct stat st {};
  if (fstatat(AT_FDCWD, path.c_str(), &st, follow ? 0 : AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return std::nullopt;
    throw FileInputError("cannot read " + path + ": " + std::strerror(errno));
  }
  if (const std::string why = refusal(st, max_bytes); !why.empty()) {
    throw FileInputError(path + " is " + why);
  }
  core::UniqueFd fd(open(path.c_str(),
                         O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | (follow ? 0 : O_NOFOLLOW)));
  if (!fd) {
    if (errno == ENOENT) return std::nullopt;
    if (errno == ELOOP && !follow) throw FileInputError(path + " is a symbolic link, not a regular file");
    throw FileInputError("cannot read " + path + ": " + std::strerror(errno));
  }
  // Again on what was opened: the name may have been replaced in between.
  if (fstat(fd.get(), &st) != 0) throw FileInputError("cannot read " + path + ": " + std::strerror(errno));
  if (const std::string why = refusal(st, max_bytes); !why.empty()) {
    throw FileInputError(path + " is " + why);
  }
  SmallFile out;
  out.mtime_unix = st.st_mtime;
  // One byte more than allowed tells a file that grew since fstat.
  out.text.resize(max_bytes + 1);
  size_t got = 0;
  while (got < out.text.size()) {
    const ssize_t n = read(fd.get(), out.text.data() + got, out.text.size() - got);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      throw FileInputError("cannot read " + path + ": " + std::strerror(errno));
    }
    got += static_cast<size_t>(n);
  }
  if (got > max_bytes) throw FileInputError(path + " is more than " + std::to_string(max_bytes) + " bytes");
  out.text.resize(got);
  return out;
}

}  // namespace udpring::io
