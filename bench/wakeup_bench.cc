// What one wake-up of a sleeping thread costs on this machine, without
// udpring's data path: the floor under every crossing of a worker that
// sleeps between packets (docs/performance.md, "Where a round trip goes").
//
// Two threads play ping-pong through a pair of eventfds: each writes the
// other's and waits for its own, so an iteration is one round trip with two
// wake-ups in it. The waits are those a worker uses:
//
//  - BM_WakeRoundTrip/io_uring: a read armed on the eventfd in a ring set up
//    as the workers' are (io::Ring: SINGLE_ISSUER|DEFER_TASKRUN), waited for
//    with io_uring_submit_and_wait, the thread asleep in between.
//  - .../io_uring_spin: the same ring, polled with
//    io_uring_submit_and_get_events until the completion is there, as
//    --busy-poll does; no thread ever sleeps.
//  - .../read: a blocking read(2) on the eventfd, the plain kernel wake-up.
//
// The second part of the name places the two threads: free leaves them to
// the scheduler, two_cpus pins them to CPUs 0 and 1 (a wake-up must rouse an
// idle CPU: on a VM that idles with HLT, an IPI and a VM exit and entry),
// one_cpu pins both to CPU 0 (the wake-up is a context switch on a CPU
// already awake).
//
// Counters: per_handoff is the wall time of a round trip halved (a hand-off
// is one wake-up, or with spinning the poll that sees the write);
// cpu_us_per_handoff is both threads' CPU (getrusage of the process, so run
// nothing else in it) per hand-off: with spinning, both threads spin all the
// time, so it is twice per_handoff. The pinned variants need 2 CPUs.

#include <benchmark/benchmark.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <thread>

#include "core/unique_fd.h"
#include "io/dataplane/ring.h"

namespace {

using udpring::core::UniqueFd;
using udpring::io::Ring;

enum class Wait { kIoUring, kIoUringSpin, kRead };
enum class Placement { kFree, kTwoCpus, kOneCpu };

bool pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

double process_cpu_us() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const auto us = [](const timeval& t) { return double(t.tv_sec) * 1e6 + double(t.tv_usec); };
  return us(ru.ru_utime) + us(ru.ru_stime);
}

// One side of the ping-pong: waits for `in` to be written, however `wait`
// says, and writes `out`.
class Side {
 public:
  Side(int in, int out, Wait wait) : in_(in), out_(out), wait_(wait) {
    if (wait_ != Wait::kRead) {
      ring_.emplace(8, 16);
      arm();
    }
  }

  void signal() const { (void)eventfd_write(out_, 1); }

  /// Until `in` was written once.
  void await() {
    if (wait_ == Wait::kRead) {
      eventfd_t v;
      (void)eventfd_read(in_, &v);
      return;
    }
    io_uring* r = ring_->get();
    io_uring_cqe* cqe = nullptr;
    if (wait_ == Wait::kIoUring) {
      io_uring_submit_and_wait(r, 1);
    } else {
      while (io_uring_cq_ready(r) == 0) io_uring_submit_and_get_events(r);
    }
    while (io_uring_peek_cqe(r, &cqe) == 0) io_uring_cqe_seen(r, cqe);
    arm();
  }

 private:
  void arm() {
    io_uring_sqe* sqe = ring_->sqe();
    io_uring_prep_read(sqe, in_, &value_, sizeof value_, 0);
  }

  int in_;
  int out_;
  Wait wait_;
  std::optional<Ring> ring_;  // created on the thread that waits on it
  uint64_t value_ = 0;
};

void BM_WakeRoundTrip(benchmark::State& state, Wait wait, Placement placement) {
  const UniqueFd ping(eventfd(0, EFD_CLOEXEC)), pong(eventfd(0, EFD_CLOEXEC));
  if (!ping || !pong) {
    state.SkipWithError("eventfd failed");
    return;
  }
  if (placement != Placement::kFree && std::thread::hardware_concurrency() < 2) {
    state.SkipWithError("needs 2 CPUs");
    return;
  }
  if (placement != Placement::kFree && !pin(0)) {
    state.SkipWithError("cannot pin to CPU 0");
    return;
  }
  std::atomic<bool> stop{false};
  std::atomic<bool> ready{false};
  std::thread echo([&] {
    if (placement != Placement::kFree) pin(placement == Placement::kTwoCpus ? 1 : 0);
    Side side(ping.get(), pong.get(), wait);
    ready.store(true);
    for (;;) {
      side.await();
      if (stop.load(std::memory_order_relaxed)) break;
      side.signal();
    }
  });
  while (!ready.load()) std::this_thread::yield();
  Side side(pong.get(), ping.get(), wait);
  const double cpu0 = process_cpu_us();
  for (auto _ : state) {
    side.signal();
    side.await();
  }
  const double cpu = process_cpu_us() - cpu0;
  stop.store(true);
  side.signal();
  echo.join();
  if (placement != Placement::kFree) {
    cpu_set_t all;
    CPU_ZERO(&all);
    for (unsigned c = 0; c < std::thread::hardware_concurrency(); ++c) CPU_SET(c, &all);
    pthread_setaffinity_np(pthread_self(), sizeof all, &all);
  }
  const double handoffs = 2.0 * double(state.iterations());
  // Seconds per hand-off, which the report scales to us.
  state.counters["per_handoff"] =
      benchmark::Counter(handoffs, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["cpu_us_per_handoff"] = cpu / handoffs;
}

#define WAKE_BENCH(name, wait, placement)                                          \
  BENCHMARK_CAPTURE(BM_WakeRoundTrip, name, Wait::wait, Placement::placement) \
      ->UseRealTime()                                                             \
      ->MinTime(0.5)

WAKE_BENCH(io_uring/free, kIoUring, kFree);
WAKE_BENCH(io_uring/two_cpus, kIoUring, kTwoCpus);
WAKE_BENCH(io_uring/one_cpu, kIoUring, kOneCpu);
// Spinning on one CPU would only wait for the scheduler's time slice.
WAKE_BENCH(io_uring_spin/free, kIoUringSpin, kFree);
WAKE_BENCH(io_uring_spin/two_cpus, kIoUringSpin, kTwoCpus);
WAKE_BENCH(read/free, kRead, kFree);
WAKE_BENCH(read/two_cpus, kRead, kTwoCpus);
WAKE_BENCH(read/one_cpu, kRead, kOneCpu);

}  // namespace

BENCHMARK_MAIN();
