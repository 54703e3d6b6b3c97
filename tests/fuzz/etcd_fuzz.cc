// etcd v3 gateway answers, read as the etcd store reads them: the input
// as one answer (EtcdClient::call: a JSON object) to a range over the
// subnets (io::parse_listing), and as a watch stream (EtcdClient::stream:
// one JSON document per line) through io::parse_watch_message until a
// message ends the stream. Nothing but StoreUnavailable (a malformed
// answer, retried like an outage) may come out: a listing is read on the
// control thread, where any other exception stops the daemon.

#include <spdlog/spdlog.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "io/control/leases/etcd_messages.h"
#include "io/control/leases/lease_store.h"
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

const std::string kWhere = "etcd fuzz";

void read_answer(const std::string& text) {
  const Json doc = Json::parse(text, nullptr, false);
  if (!doc.is_object()) return;  // call() throws EtcdError for anything else
  core::InputErrors errors;
  const io::EtcdListing listing = io::parse_listing(doc, kWhere, &errors);
  FUZZ_CHECK(listing.revision >= 0 && listing.revision < INT64_MAX);  // the watch starts at + 1
  for (const core::Lease& l : listing.leases) check_lease(l);
}

void read_watch(std::string_view stream) {
  core::LeaseMap known;
  int64_t next_rev = 1;
  core::InputErrors errors;
  while (!stream.empty()) {
    const size_t nl = stream.find('\n');
    const std::string line(stream.substr(0, nl));
    stream = nl == std::string_view::npos ? std::string_view() : stream.substr(nl + 1);
    if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
    const Json doc = Json::parse(line, nullptr, false);
    if (doc.is_discarded()) continue;
    const core::LeaseMap before = known;
    const int64_t rev = next_rev;
    io::WatchMessage m;
    try {
      m = io::parse_watch_message(doc, known, next_rev, kWhere, &errors);
    } catch (const io::StoreUnavailable&) {
      // Refused whole: nothing may have been applied, so the watch can
      // resume at next_rev without losing an event.
      FUZZ_CHECK(known == before && next_rev == rev);
      throw;
    }
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
  try {
    read_answer(text);
  } catch (const io::StoreUnavailable&) {
  }
  try {
    read_watch(text);
  } catch (const io::StoreUnavailable&) {
  }
  return 0;
}
