// Writes the seed inputs of the data-plane targets: real packets, built as
// the unit tests build them (tests/support/packet_builder.h and
// offload_packets.h), behind each target's input header. The seeds are
// kept in corpus/; this is how they were made:
//   build-fuzz/tests/fuzz/make_packet_seeds tests/fuzz/corpus

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "encap/vnet_hdr.h"
#include "tests/support/offload_packets.h"
#include "tests/support/packet_builder.h"

namespace {

using namespace udpring;
using Bytes = std::vector<uint8_t>;
using test::kAck;
using test::kCwr;
using test::kFin;
using test::kPsh;
using test::PacketBuilder;

std::filesystem::path g_root;

void write(const std::string& target, const std::string& name, const Bytes& b) {
  const auto dir = g_root / target;
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char*>(b.data()),
                                                    static_cast<std::streamsize>(b.size()));
}

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes be16(size_t v) { return {static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)}; }

Bytes vnet(uint8_t flags, uint8_t type, uint16_t hdr_len, uint16_t gso_size, uint16_t csum_start,
           uint16_t csum_offset) {
  const encap::VnetHdr h{flags, type, hdr_len, gso_size, csum_start, csum_offset};
  Bytes b(sizeof h);
  std::memcpy(b.data(), &h, sizeof h);
  return b;
}

// A stream of `n` TCP segments of `mss` bytes (the last `last` bytes, with PSH).
std::vector<Bytes> tcp_stream(size_t n, size_t mss, size_t last, uint8_t ttl = 64) {
  std::vector<Bytes> out;
  const Bytes data = test::random_bytes((n - 1) * mss + last, 7);
  uint32_t seq = 1000;
  for (size_t k = 0; k < n; ++k) {
    const size_t len = k + 1 == n ? last : mss;
    const Bytes part(data.begin() + static_cast<long>(k * mss),
                     data.begin() + static_cast<long>(k * mss + len));
    out.push_back(test::tcp_packet(seq, part, k + 1 == n ? kAck | kPsh : kAck, 777, 12, ttl));
    seq += static_cast<uint32_t>(len);
  }
  return out;
}

Bytes joined(const std::vector<Bytes>& pkts) {
  Bytes out;
  for (const Bytes& p : pkts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// The TCP checksum field holding the pseudo-header sum, as a kernel leaves
// a CHECKSUM_PARTIAL packet.
Bytes partial(Bytes p, size_t field) {
  const size_t l4 = p.size() - 20;
  uint32_t s = (p[12] << 8 | p[13]) + (p[14] << 8 | p[15]) + (p[16] << 8 | p[17]) +
               (p[18] << 8 | p[19]) + p[9] + static_cast<uint32_t>(l4);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  p[20 + field] = static_cast<uint8_t>(s >> 8);
  p[21 + field] = static_cast<uint8_t>(s);
  return p;
}

// Flags: bits 0-1 the --peer-check mode (0 off, 1 peer, 2 strict), bit 2
// a verified outer checksum; then the index of the outer source in
// fuzz::kSources (0 = 192.168.1.2, the owner of 10.5.2.0/24; 4 = a stranger).
void udp_decap() {
  const auto ping = [](const char* src, const char* dst) {
    return PacketBuilder().protocol(core::kIpProtoIcmp).src(src).dst(dst).payload_bytes(56).build();
  };
  write("udp_decap", "ping-from-peer", cat({{2, 0}, be16(0), ping("10.5.2.7", "10.5.1.7")}));
  write("udp_decap", "ping-from-peer-peer-mode", cat({{1, 0}, be16(0), ping("10.5.2.7", "10.5.1.7")}));
  write("udp_decap", "ping-from-stranger", cat({{2, 4}, be16(0), ping("10.5.2.7", "10.5.1.7")}));
  write("udp_decap", "relay-to-another-peer", cat({{2, 0}, be16(0), ping("10.5.2.7", "10.5.3.7")}));
  write("udp_decap", "relay-to-the-node", cat({{2, 0}, be16(0), ping("10.5.2.7", "192.168.1.1")}));
  write("udp_decap", "forged-source", cat({{2, 0}, be16(0), ping("10.5.3.7", "10.5.1.7")}));
  write("udp_decap", "ttl-1-no-peer-check", cat({{0, 1}, be16(0), PacketBuilder().ttl(1).build()}));
  const Bytes opts = PacketBuilder().options({7, 7, 4, 0, 0, 0, 0, 1}).frag(0x2000).build();
  write("udp_decap", "options-fragment", cat({{2, 2}, be16(0), opts}));
  const auto gro = tcp_stream(3, 1400, 1400);
  write("udp_decap", "gro-3-tcp-segments", cat({{6, 1}, be16(gro[0].size()), joined(gro)}));
  Bytes v6(40, 0);
  v6[0] = 0x60;
  write("udp_decap", "ipv6", cat({{2, 3}, be16(0), v6}));
}

void coalesce() {
  const auto tcp = tcp_stream(4, 1400, 600);
  write("coalesce", "tcp-4-segments", cat({{0, 63}, be16(tcp[0].size()), joined(tcp)}));
  write("coalesce", "tcp-verified-max-run-2", cat({{2, 1}, be16(tcp[0].size()), joined(tcp)}));
  const auto ttl2 = tcp_stream(2, 1000, 1000, 2);
  write("coalesce", "tcp-ttl-2", cat({{2, 63}, be16(ttl2[0].size()), joined(ttl2)}));
  const Bytes u = test::udp_packet(test::random_bytes(1200, 3));
  write("coalesce", "udp-3-datagrams", cat({{1, 63}, be16(u.size()), u, u, u}));
  const Bytes z = test::udp_packet(test::random_bytes(800, 4), 4000, true);
  write("coalesce", "udp-no-checksum", cat({{3, 63}, be16(z.size()), z, z}));
}

void gso_split() {
  const Bytes super = test::tcp_packet(5000, test::random_bytes(4000, 1), kAck | kPsh);
  write("gso_split", "tso-4000", cat({vnet(1, encap::kVnetGsoTcpV4, 52, 1448, 20, 16), super}));
  const Bytes fin = test::tcp_packet(1, test::random_bytes(3000, 2), kAck | kFin | kCwr, 9, 0);
  write("gso_split", "tso-fin-cwr-ecn",
        cat({vnet(1, encap::kVnetGsoTcpV4 | encap::kVnetGsoEcn, 40, 1000, 20, 16), fin}));
  const Bytes udp = test::udp_packet(test::random_bytes(3000, 3));
  write("gso_split", "uso-3000", cat({vnet(1, encap::kVnetGsoUdpL4, 28, 1200, 20, 6), udp}));
  const Bytes ttl1 = test::tcp_packet(1, test::random_bytes(2000, 4), kAck, 1, 12, 1);
  write("gso_split", "tso-ttl-1", cat({vnet(1, encap::kVnetGsoTcpV4, 52, 1000, 20, 16), ttl1}));
  write("gso_split", "tso-too-many-segments",
        cat({vnet(1, encap::kVnetGsoTcpV4, 52, 10, 20, 16), super}));
}

void udp_encap() {
  const auto rec = [](const Bytes& p) { return cat({be16(p.size()), p}); };
  const Bytes to_peer = PacketBuilder().dst("10.5.2.3").payload_bytes(1000).build();
  const Bytes no_route = PacketBuilder().dst("10.5.9.1").build();
  const Bytes host_route = PacketBuilder().dst("10.5.200.7").build();
  write("udp_encap", "routes-misses-ttl",
        cat({{0}, rec(to_peer), rec(no_route), rec(PacketBuilder().dst("10.5.3.1").ttl(1).build()),
             rec(host_route), rec({0x45, 0, 0})}));
  const Bytes shorter = PacketBuilder().dst("10.5.2.9").payload_bytes(400).build();
  write("udp_encap", "gso-train",
        cat({{2}, rec(to_peer), rec(to_peer), rec(to_peer), rec(shorter), rec(to_peer)}));
  const Bytes none = vnet(0, 0, 0, 0, 0, 0);
  const Bytes tcp = partial(test::tcp_packet(1, test::random_bytes(500, 5)), 16);
  Bytes to_peer_tcp = tcp;
  to_peer_tcp[16] = 10, to_peer_tcp[17] = 5, to_peer_tcp[18] = 2, to_peer_tcp[19] = 3;
  core::ipv4_set_header_checksum(to_peer_tcp.data());
  write("udp_encap", "vnet-partial-checksum",
        cat({{3}, rec(cat({vnet(1, 0, 0, 0, 20, 16), partial(to_peer_tcp, 16)})),
             rec(cat({none, to_peer})), rec(cat({vnet(1, 0, 0, 0, 20, 6),
                                                 partial(test::udp_packet(test::random_bytes(100, 6)), 6)}))}));
}

void icmp() {
  write("icmp", "udp", cat({{0}, PacketBuilder().dst("10.5.9.1").build()}));
  write("icmp", "echo-request",
        cat({{0}, PacketBuilder().protocol(core::kIpProtoIcmp).payload({8, 0, 0, 0, 0, 1, 0, 1}).build()}));
  write("icmp", "icmp-error",
        cat({{0}, PacketBuilder().protocol(core::kIpProtoIcmp).payload({3, 1, 0, 0, 0, 0, 0, 0}).build()}));
  write("icmp", "options-short-payload",
        cat({{0}, PacketBuilder().options({1, 1, 1, 0}).payload({1, 2, 3}).build()}));
  write("icmp", "non-first-fragment", cat({{0}, PacketBuilder().frag(0x0010).build()}));
  write("icmp", "multicast", cat({{0}, PacketBuilder().dst("224.0.0.5").build()}));
  write("icmp", "tso-super-packet",
        cat({{1}, test::tcp_packet(5000, test::random_bytes(3000, 8), kAck)}));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR (tests/fuzz/corpus)\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  udp_decap();
  coalesce();
  gso_split();
  udp_encap();
  icmp();
  return 0;
}
