#include "io/control/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <system_error>

#include "core/unique_fd.h"

namespace udpring::io {
namespace {

void make_parents(const std::string& path) {
  for (size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1)) {
    const std::string dir = path.substr(0, slash);
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      throw std::system_error(errno, std::generic_category(), "mkdir " + dir);
    }
  }
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& content, mode_t mode) {
  make_parents(path);
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string tmp = dir + "/." + base + ".XXXXXX";
  core::UniqueFd fd(mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd) throw std::system_error(errno, std::generic_category(), "create temporary file for " + path);
  auto fail = [&](const char* what) {
    const int err = errno;
    unlink(tmp.c_str());
    throw std::system_error(err, std::generic_category(), std::string(what) + " " + path);
  };
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    done += static_cast<size_t>(n);
  }
  if (fchmod(fd.get(), mode) != 0) fail("chmod");
  if (fsync(fd.get()) != 0) fail("fsync");
  fd.reset();
  if (rename(tmp.c_str(), path.c_str()) != 0) fail("rename into");
}

std::string read_file_or_empty(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace udpring::io
