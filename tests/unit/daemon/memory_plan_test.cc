// The memory the workers may take at peak, and the start-up warning when
// that is more than the daemon's limit.

#include "io/daemon/memory_plan.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "io/daemon/options.h"

namespace udpring::io {
namespace {

// The worker options udpringd builds from its default flags when the
// kernel grants TUN offload and UDP GRO (the 64 KiB buffers).
WorkerOptions default_offload_worker() {
  const char* argv[] = {"udpringd"};
  const Options o = parse_options(1, argv, [](const char*) -> const char* { return nullptr; });
  const BufferPlan p = plan_buffers(o, true, true, 1472);
  WorkerOptions w = sized_worker_options(o, p, true);
  EXPECT_EQ(w.tun_buffers, 64u);
  EXPECT_EQ(w.udp_buf_bytes, 65600u);
  EXPECT_TRUE(w.tun_offload);
  return w;
}

constexpr size_t kMiB = size_t{1} << 20;

TEST(MemoryPlan, DefaultWorkersFitTheTypicalLimitOnAnyNode) {
  const WorkerOptions w = default_offload_worker();
  const size_t arenas = size_t{w.tun_buffers} * w.tun_buf_bytes + size_t{w.udp_buffers} * w.udp_buf_bytes;
  const MemoryPlan one = plan_memory(w, 1);
  // The arenas and the tables beside them, and no more than the issue's
  // 16 MiB per worker.
  EXPECT_GT(one.per_worker, arenas);
  EXPECT_LE(one.per_worker, 16 * kMiB);
  EXPECT_EQ(one.total, kBaseBytes + one.per_worker);
  // What a 64-core node gets by default.
  const MemoryPlan big = plan_memory(w, default_workers(64));
  EXPECT_LE(big.total, kTypicalLimitBytes);
  EXPECT_EQ(memory_warning(big, w, std::nullopt), "");
}

TEST(MemoryPlan, MoreThanTheLimitIsAWarningThatNamesTheFlags) {
  const WorkerOptions w = default_offload_worker();
  const MemoryPlan eight = plan_memory(w, 8);
  const std::string warn = memory_warning(eight, w, std::nullopt);
  EXPECT_NE(warn.find("--workers (8)"), std::string::npos) << warn;
  EXPECT_NE(warn.find("--buffers (64 per TUN ring, 64 per UDP ring"), std::string::npos) << warn;
  EXPECT_NE(warn.find("64.0 MiB, about what a DaemonSet"), std::string::npos) << warn;
  // A cgroup limit replaces the typical one, both ways.
  const MemoryPlan two = plan_memory(w, 2);
  const std::string tight = memory_warning(two, w, 20 * kMiB);
  EXPECT_NE(tight.find("this cgroup's memory.max of 20.0 MiB"), std::string::npos) << tight;
  EXPECT_EQ(memory_warning(eight, w, 1024 * kMiB), "");
}

TEST(MemoryPlan, ReadsTheCgroupV2Limit) {
  char tmpl[] = "/tmp/udpring-cgroup-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::filesystem::path root(tmpl);
  std::filesystem::create_directories(root / "kubepods" / "pod1");
  std::ofstream(root / "kubepods" / "pod1" / "memory.max") << "52428800\n";
  std::ofstream(root / "memory.max") << "max\n";
  EXPECT_EQ(cgroup_memory_limit("0::/kubepods/pod1\n", root), 52428800u);
  // Inside a cgroup namespace the container's own cgroup is "/".
  EXPECT_EQ(cgroup_memory_limit("0::/\n", root), std::nullopt);  // "max": no limit
  std::ofstream(root / "memory.max") << "104857600\n";
  EXPECT_EQ(cgroup_memory_limit("0::/\n", root), 104857600u);
  // cgroup v1 only, a missing file, a path that climbs out, or garbage: none.
  EXPECT_EQ(cgroup_memory_limit("4:memory:/kubepods\n", root), std::nullopt);
  EXPECT_EQ(cgroup_memory_limit("0::/gone\n", root), std::nullopt);
  EXPECT_EQ(cgroup_memory_limit("0::/../etc\n", root), std::nullopt);
  std::ofstream(root / "kubepods" / "pod1" / "memory.max") << "lots\n";
  EXPECT_EQ(cgroup_memory_limit("0::/kubepods/pod1\n", root), std::nullopt);
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace udpring::io
