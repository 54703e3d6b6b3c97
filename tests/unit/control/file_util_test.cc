#include "io/control/file_util.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

namespace udpring {
namespace {

TEST(WriteFileAtomic, CreatesParentsReplacesAndSetsMode) {
  char tmpl[] = "/tmp/udpring-file-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string path = dir + "/run/flannel/subnet.env";
  const mode_t old_mask = umask(077);  // must not matter
  io::write_file_atomic(path, "A=1\n", 0644);
  io::write_file_atomic(path, "B=2\n", 0644);
  umask(old_mask);
  EXPECT_EQ(io::read_file_or_empty(path), "B=2\n");
  struct stat st{};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  ASSERT_EQ(stat((dir + "/run/flannel").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  // No temporary files are left behind.
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/run/flannel")) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1u);
  EXPECT_THROW(io::write_file_atomic("/proc/udpring-cannot/x", "", 0644), std::system_error);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace udpring
