#include "io/kernel/tun_device.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <system_error>

namespace udpring::io {

core::UniqueFd open_tun_queue(const std::string& name, bool vnet_hdr) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    throw std::system_error(EINVAL, std::generic_category(),
                            "TUN name \"" + name + "\" must be 1-15 characters");
  }
  core::UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    std::string hint;
    // Each names what to change where it is changed: the pod spec for the
    // kube-flannel DaemonSet, whose udp backend crash-loops on exactly this.
    if (err == ENOENT) {
      hint = " (no TUN device here: in a container, mount the host's /dev/net/tun; in a pod "
             "spec, a hostPath volume with path /dev/net/tun and type CharDevice in volumes "
             "plus a volumeMounts entry at /dev/net/tun, or securityContext.privileged: true)";
    } else if (err == EPERM) {
      hint = " (the container runtime's device list does not allow the TUN device, c 10:200: "
             "allow it, or set securityContext.privileged: true in the pod spec)";
    } else if (err == EACCES) {
      hint = " (no read/write access to /dev/net/tun: run udpringd as root)";
    }
    throw std::system_error(err, std::generic_category(), "open /dev/net/tun" + hint);
  }
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE | (vnet_hdr ? IFF_VNET_HDR : 0);
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) {
    const int err = errno;
    std::string hint;
    if (err == EPERM) {
      hint = " (needs CAP_NET_ADMIN: run as root, or in a pod spec add NET_ADMIN to "
             "securityContext.capabilities.add)";
    }
    if (err == EINVAL || err == EBUSY) {
      hint = " (a device of that name exists without IFF_MULTI_QUEUE or is not a TUN; is "
             "another flanneld running?)";
    }
    throw std::system_error(err, std::generic_category(), "TUNSETIFF " + name + hint);
  }
  return fd;
}

// Not in Debian 12's kernel headers (6.1); values from include/uapi/linux/if_tun.h.
constexpr unsigned kTunFUso4 = 0x20;
constexpr unsigned kTunFUso6 = 0x40;

TunOffload enable_tun_offload(int fd, bool want_uso) {
  TunOffload r;
  // TSO6 is not asked for: the overlay carries IPv4 only (IPv6 is off on the
  // TUN), so no IPv6 super-packet could reach us. USO6 comes along because
  // the kernel takes USO only as the pair USO4|USO6.
  if (want_uso && ::ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | kTunFUso4 | kTunFUso6) == 0) {
    r.ok = r.uso = true;
    return r;
  }
  if (::ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4) == 0) {
    r.ok = true;
    return r;
  }
  r.error = std::string("TUNSETOFFLOAD TUN_F_CSUM|TUN_F_TSO4: ") + std::strerror(errno);
  return r;
}

int disable_tun_offload(int fd) { return ::ioctl(fd, TUNSETOFFLOAD, 0u) < 0 ? errno : 0; }

int set_tun_persist(int fd, bool on) {
  return ::ioctl(fd, TUNSETPERSIST, on ? 1ul : 0ul) < 0 ? errno : 0;
}

int detach_tun_steering(int fd) {
  int none = -1;
  return ::ioctl(fd, TUNSETSTEERINGEBPF, &none) < 0 ? errno : 0;
}

std::vector<std::string> tune_tun_sysctls(const std::string& name) {
  std::vector<std::string> failures;
  const std::pair<const char*, const char*> settings[] = {
      {"/proc/sys/net/ipv4/conf/", "/accept_local"},
      {"/proc/sys/net/ipv6/conf/", "/disable_ipv6"},
  };
  for (const auto& [dir, leaf] : settings) {
    const std::string path = std::string(dir) + name + leaf;
    std::ofstream f(path);
    f << "1\n";
    f.flush();
    if (!f) failures.push_back("cannot write 1 to " + path);
  }
  return failures;
}

}  // namespace udpring::io
