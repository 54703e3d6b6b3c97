#pragma once
// Files other programs read while we replace them.

#include <sys/types.h>

#include <string>

namespace udpring::io {

/// Replaces `path` with `content` atomically (temporary file in the same
/// directory, fsync, rename), with mode `mode` whatever the umask; creates
/// missing parent directories with mode 0755. Readers see the old file or
/// the new one, never a mix. Throws std::system_error naming the path.
void write_file_atomic(const std::string& path, const std::string& content, mode_t mode);

/// The file's contents, or "" if it cannot be read.
std::string read_file_or_empty(const std::string& path);

}  // namespace udpring::io
