// etcd v3 gateway answers, read as the etcd store reads them: the input
// as one answer (EtcdClient::call: a JSON object) to a range over the
// subnets (io::parse_listing) or over one key (io::first_kv, for the config
// and for a key's lease), and as a watch stream (EtcdClient::stream: one
// JSON document per line) through io::parse_watch_message until a message
// ends the stream. None of it may throw: a listing is read on the control
// thread, where an exception stops the daemon.

#include <spdlog/spdlog.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "io/control/leases/etcd_client.h"
#include "io/control/leases/etcd_messages.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace udpring;
using Json = nlohmann::json;

// A lease read from a kv; a removed one may be only a subnet (a DELETE of
// a key the watch never saw).
void check_lease(const core::Lease& l, bool from_kv = true) {
  FUZZ_CHECK(l.subnet.length <= 32);
  FUZZ_CHECK((l.subnet.network.host() & ~core::Ipv4Prefix::host_mask(l.subnet.length)) == 0);
  if (from_kv) FUZZ_CHECK(l.reservation == (l.store_lease == 0));
}

void read_answer(const std::string& text) {
  const Json doc = Json::parse(text, nullptr, false);
  if (!doc.is_object()) return;  // call() throws EtcdError for anything else
  for (const core::Lease& l : io::parse_listing(doc).leases) check_lease(l);
  if (const Json* kv = io::first_kv(doc)) {
    (void)io::EtcdClient::unb64(kv->value("value", Json()));
    (void)io::EtcdClient::int64(*kv, "lease");
  }
}

void read_watch(std::string_view stream) {
  core::LeaseMap known;
  int64_t next_rev = 1;
  while (!stream.empty()) {
    const size_t nl = stream.find('\n');
    const std::string line(stream.substr(0, nl));
    stream = nl == std::string_view::npos ? std::string_view() : stream.substr(nl + 1);
    if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
    const Json doc = Json::parse(line, nullptr, false);
    if (doc.is_discarded()) continue;
    const core::LeaseMap before = known;
    const int64_t rev = next_rev;
    const io::WatchMessage m = io::parse_watch_message(doc, known, next_rev);
    FUZZ_CHECK(next_rev >= rev);
    if (m.kind != io::WatchMessage::Kind::kEvents) {
      FUZZ_CHECK(m.events.empty() && known == before);
      return;  // the store ends the stream here
    }
    // `known` is what the events make of it, so a later DELETE finds its lease.
    core::LeaseMap replayed = before;
    for (const core::LeaseEvent& ev : m.events) {
      check_lease(ev.lease, ev.kind == core::LeaseEvent::Kind::kAdded);
      core::apply_event(replayed, ev);
    }
    FUZZ_CHECK(replayed == known);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);  // a warning per bad key would be most of the time
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  read_answer(text);
  read_watch(text);
  return 0;
}
