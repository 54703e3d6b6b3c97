// Reading input files that may be anything: FIFOs, symlinks to devices,
// huge files. None may block the reader or be read whole.

#include "io/control/leases/small_file.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

namespace udpring::io {
namespace {

class SmallFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/udpring-small-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // The FileInputError message for `path`, or "" if it was read.
  static std::string refusal(const std::string& path, size_t max, Symlinks s) {
    try {
      read_small_file(path, max, s);
      return "";
    } catch (const FileInputError& e) {
      return e.what();
    }
  }

  std::string dir_;
};

TEST_F(SmallFileTest, ReadsARegularFileAndItsMtime) {
  const std::string path = dir_ + "/lease";
  std::ofstream(path) << R"({"PublicIP":"192.168.1.1"})";
  const timespec times[2] = {{1000, 0}, {1000, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  const auto f = read_small_file(path, 4096, Symlinks::kRefuse);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->text, R"({"PublicIP":"192.168.1.1"})");
  EXPECT_EQ(f->mtime_unix, 1000);
  EXPECT_FALSE(read_small_file(dir_ + "/absent", 4096, Symlinks::kRefuse));
}

TEST_F(SmallFileTest, AFifoIsRefusedWithoutBlocking) {
  const std::string path = dir_ + "/fifo";
  ASSERT_EQ(mkfifo(path.c_str(), 0644), 0);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(refusal(path, 4096, Symlinks::kFollow), path + " is a FIFO, not a regular file");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(500));
}

TEST_F(SmallFileTest, ASymlinkToDevZeroIsRefused) {
  const std::string path = dir_ + "/zero";
  ASSERT_EQ(symlink("/dev/zero", path.c_str()), 0);
  EXPECT_EQ(refusal(path, 4096, Symlinks::kRefuse), path + " is a symbolic link, not a regular file");
  // Followed, it is a device: refused all the same, and not read.
  EXPECT_EQ(refusal(path, 4096, Symlinks::kFollow), path + " is a character device, not a regular file");
}

TEST_F(SmallFileTest, SymlinksToRegularFilesAreFollowedOnlyWhenAsked) {
  // A ConfigMap mount: net-conf.json -> ..data/net-conf.json.
  std::filesystem::create_directory(dir_ + "/..data");
  std::ofstream(dir_ + "/..data/net-conf.json") << "{}";
  ASSERT_EQ(symlink("..data/net-conf.json", (dir_ + "/net-conf.json").c_str()), 0);
  const auto f = read_small_file(dir_ + "/net-conf.json", 4096, Symlinks::kFollow);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->text, "{}");
  EXPECT_NE(refusal(dir_ + "/net-conf.json", 4096, Symlinks::kRefuse), "");
}

TEST_F(SmallFileTest, ABigFileIsRefusedUnread) {
  const std::string path = dir_ + "/big";
  std::ofstream(path) << std::string(4097, 'x');
  EXPECT_EQ(refusal(path, 4096, Symlinks::kRefuse), path + " is 4097 bytes, more than 4096");
  // A sparse 10 GB file costs the reader nothing either.
  const std::string sparse = dir_ + "/sparse";
  std::ofstream(sparse).close();
  ASSERT_EQ(truncate(sparse.c_str(), off_t{10} << 30), 0);
  EXPECT_NE(refusal(sparse, 4096, Symlinks::kRefuse).find("more than 4096"), std::string::npos);
  std::ofstream(dir_ + "/exact") << std::string(4096, 'x');
  EXPECT_EQ(read_small_file(dir_ + "/exact", 4096, Symlinks::kRefuse)->text.size(), 4096u);
}

TEST_F(SmallFileTest, ADirectoryIsRefused) {
  EXPECT_EQ(refusal(dir_, 4096, Symlinks::kFollow), dir_ + " is a directory, not a regular file");
}

}  // namespace
}  // namespace udpring::io
