#include "io/kernel/nic_features.h"

#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstring>
#include <vector>

#include "core/unique_fd.h"

namespace udpring::io {
namespace {

bool ethtool(int fd, const std::string& ifname, void* cmd) {
  ifreq ifr{};
  if (ifname.size() >= sizeof ifr.ifr_name) return false;
  std::memcpy(ifr.ifr_name, ifname.c_str(), ifname.size() + 1);
  ifr.ifr_data = static_cast<char*>(cmd);
  return ioctl(fd, SIOCETHTOOL, &ifr) == 0;
}

}  // namespace

std::optional<bool> nic_feature_active(const std::string& ifname, std::string_view name) {
  core::UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return std::nullopt;

  // How many feature names the kernel has (the set grows between releases,
  // so bit positions are looked up by name, never hard-coded).
  std::vector<uint8_t> info_buf(sizeof(ethtool_sset_info) + sizeof(uint32_t));
  auto* info = reinterpret_cast<ethtool_sset_info*>(info_buf.data());
  info->cmd = ETHTOOL_GSSET_INFO;
  info->sset_mask = 1ull << ETH_SS_FEATURES;
  if (!ethtool(fd.get(), ifname, info) || !(info->sset_mask & (1ull << ETH_SS_FEATURES))) {
    return std::nullopt;
  }
  uint32_t count;
  std::memcpy(&count, info_buf.data() + sizeof(ethtool_sset_info), sizeof count);
  if (count == 0 || count > 4096) return std::nullopt;

  std::vector<uint8_t> names_buf(sizeof(ethtool_gstrings) + size_t{count} * ETH_GSTRING_LEN);
  auto* names = reinterpret_cast<ethtool_gstrings*>(names_buf.data());
  names->cmd = ETHTOOL_GSTRINGS;
  names->string_set = ETH_SS_FEATURES;
  names->len = count;
  if (!ethtool(fd.get(), ifname, names) || names->len != count) return std::nullopt;
  const char* table = reinterpret_cast<const char*>(names_buf.data() + sizeof(ethtool_gstrings));
  uint32_t bit = count;
  for (uint32_t i = 0; i < count; ++i) {
    const char* n = table + size_t{i} * ETH_GSTRING_LEN;
    if (std::string_view(n, strnlen(n, ETH_GSTRING_LEN)) == name) {
      bit = i;
      break;
    }
  }
  if (bit == count) return std::nullopt;

  const uint32_t blocks = (count + 31) / 32;
  std::vector<uint8_t> feat_buf(sizeof(ethtool_gfeatures) +
                                size_t{blocks} * sizeof(ethtool_get_features_block));
  auto* feats = reinterpret_cast<ethtool_gfeatures*>(feat_buf.data());
  feats->cmd = ETHTOOL_GFEATURES;
  feats->size = blocks;
  if (!ethtool(fd.get(), ifname, feats) || feats->size < blocks) return std::nullopt;
  ethtool_get_features_block block;
  std::memcpy(&block,
              feat_buf.data() + sizeof(ethtool_gfeatures) + size_t{bit / 32} * sizeof block,
              sizeof block);
  return (block.active >> (bit % 32)) & 1u;
}

}  // namespace udpring::io
