#include "io/daemon/fd_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <vector>

#include "io/control/systemd_notify.h"

namespace udpring::io {
namespace {

constexpr const char* kPrefix = "udpring-";
constexpr const char* kTermsName = "udpring-terms";
constexpr int kListenFdsStart = 3;  // SD_LISTEN_FDS_START
constexpr size_t kMaxTerms = 4096;

std::string flag(bool b) { return b ? "1" : "0"; }

std::string name_of(const char* kind, size_t worker) {
  return std::string(kPrefix) + kind + "-" + std::to_string(worker);
}

bool store(const std::string& name, int fd, std::string& why) {
  const int fds[1] = {fd};
  return notify_systemd("FDSTORE=1\nFDNAME=" + name, fds, why);
}

// The terms line, and what the kernel granted, in a memfd: systemd keeps
// descriptors, not text.
core::UniqueFd terms_file(const std::string& text, std::string& why) {
  core::UniqueFd fd(memfd_create("udpring-terms", MFD_CLOEXEC));
  if (!fd || write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    why = std::string("writing the terms to a memfd: ") + std::strerror(errno);
    return {};
  }
  return fd;
}

std::vector<std::string> split_colons(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t colon; (colon = s.find(':', start)) != std::string::npos; start = colon + 1) {
    out.push_back(s.substr(start, colon - start));
  }
  out.push_back(s.substr(start));
  return out;
}

std::string read_terms(int fd) {
  std::array<char, kMaxTerms> buf{};
  const ssize_t n = pread(fd, buf.data(), buf.size(), 0);
  if (n < 0) {
    throw std::runtime_error(std::string("reading ") + kTermsName + ": " + std::strerror(errno));
  }
  return std::string(buf.data(), static_cast<size_t>(n));
}

core::UniqueFd take(std::map<std::string, core::UniqueFd>& fds, const std::string& name) {
  const auto it = fds.find(name);
  if (it == fds.end()) return {};
  core::UniqueFd fd = std::move(it->second);
  fds.erase(it);
  return fd;
}

}  // namespace

bool store_data_path(DataPath path, const std::string& terms, std::string& why) {
  // What the kernel granted under keys of their own: the terms say what
  // was asked for ("uso" among them), which a refusal may have cut short.
  const std::string text = terms + " granted-vnet=" + flag(path.vnet) +
                           " granted-uso=" + flag(path.uso) + " steered=" + flag(path.steered) +
                           " stopped=" + std::to_string(path.stopped_ns);
  const core::UniqueFd terms_fd = terms_file(text, why);
  if (!terms_fd) return false;
  // The queues and sockets first, the terms last: a store without terms
  // is one the next daemon ignores, never one it half takes.
  for (size_t i = 0; i < path.tun.size(); ++i) {
    if (!store(name_of("tun", i), path.tun[i].get(), why)) return false;
    if (!store(name_of("udp", i), path.udp[i].get(), why)) return false;
    const bool has_send = i < path.send.size() && path.send[i];
    if (has_send && !store(name_of("send", i), path.send[i].get(), why)) return false;
  }
  return store(kTermsName, terms_fd.get(), why);
}

std::optional<StoredDataPath> take_stored_data_path() {
  const char* pid = std::getenv("LISTEN_PID");
  const char* count = std::getenv("LISTEN_FDS");
  const char* names = std::getenv("LISTEN_FDNAMES");
  if (pid == nullptr || count == nullptr || names == nullptr) return std::nullopt;
  if (std::strtol(pid, nullptr, 10) != getpid()) return std::nullopt;  // meant for another process
  const long n = std::strtol(count, nullptr, 10);
  const std::vector<std::string> listed = split_colons(names);
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  if (n <= 0 || n > 1024 || listed.size() != static_cast<size_t>(n)) return std::nullopt;

  // Ours by name, each marked close-on-exec (iptables runs as a child);
  // another name's descriptor is left as it is.
  std::map<std::string, core::UniqueFd> fds;
  for (long i = 0; i < n; ++i) {
    if (listed[static_cast<size_t>(i)].rfind(kPrefix, 0) != 0) continue;
    const int fd = kListenFdsStart + static_cast<int>(i);
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    fds[listed[static_cast<size_t>(i)]] = core::UniqueFd(fd);
  }
  if (fds.empty()) return std::nullopt;
  // Whatever comes of it, systemd keeps no copy: a device nobody keeps must
  // go with the daemon that holds it.
  std::string why;
  for (const auto& [name, fd] : fds) {
    (void)notify_systemd("FDSTOREREMOVE=1\nFDNAME=" + name, {}, why);
  }
  const core::UniqueFd terms_fd = take(fds, kTermsName);
  if (!terms_fd) throw std::runtime_error(std::string("the fd store holds no ") + kTermsName);
  StoredDataPath s;
  s.terms = read_terms(terms_fd.get());
  DataPath& p = s.path;
  p.vnet = terms_value(s.terms, "granted-vnet") == "1";
  p.uso = terms_value(s.terms, "granted-uso") == "1";
  p.steered = terms_value(s.terms, "steered") == "1";
  p.stopped_ns = std::strtoll(terms_value(s.terms, "stopped").c_str(), nullptr, 10);
  const unsigned long workers = std::strtoul(terms_value(s.terms, "workers").c_str(), nullptr, 10);
  if (workers == 0 || workers > 1024) {
    throw std::runtime_error(std::string(kTermsName) + " names no worker count: \"" + s.terms +
                             "\"");
  }
  for (size_t i = 0; i < workers; ++i) {
    p.tun.push_back(take(fds, name_of("tun", i)));
    p.udp.push_back(take(fds, name_of("udp", i)));
    p.send.push_back(take(fds, name_of("send", i)));
    if (!p.tun.back() || !p.udp.back()) {
      throw std::runtime_error("the fd store holds no " + name_of(p.tun.back() ? "udp" : "tun", i) +
                               " of the " + std::to_string(workers) + " worker(s) " + kTermsName +
                               " names");
    }
  }
  return s;
}

}  // namespace udpring::io
