// etcd's gateway answers as leases: a range listing and a watch stream's
// messages, as a real etcd 3.4 sends them (tests/fuzz/corpus/etcd/).

#include "io/control/leases/etcd_messages.h"

#include <gtest/gtest.h>

#include "io/control/leases/lease_store.h"

namespace udpring::io {
namespace {

using Json = nlohmann::json;
using K = core::LeaseEvent::Kind;

const std::string kWhere = "etcd test";

EtcdListing listing(const char* text, core::InputErrors* errors = nullptr) {
  return parse_listing(Json::parse(text), kWhere, errors);
}
WatchMessage watch(const char* text, core::LeaseMap& known, int64_t& next_rev) {
  return parse_watch_message(Json::parse(text), known, next_rev, kWhere, nullptr);
}

// Three keys: a lease on an etcd lease, a reservation and one that is no lease.
const char* kRange = R"({"header":{"cluster_id":"1","member_id":"2","revision":"5","raft_term":"2"},
  "kvs":[{"key":"L2NvcmVvcy5jb20vbmV0d29yay9zdWJuZXRzLzEwLjUuMzQuMC0yNA==","create_revision":"3",
          "mod_revision":"3","version":"1",
          "value":"eyJQdWJsaWNJUCI6IjE5Mi4xNjguMS4xMCIsIlB1YmxpY0lQdjYiOm51bGx9",
          "lease":"4111120380132295174"},
         {"key":"L2NvcmVvcy5jb20vbmV0d29yay9zdWJuZXRzLzEwLjUuNy4wLTI0","create_revision":"4",
          "mod_revision":"4","version":"1",
          "value":"eyJQdWJsaWNJUCI6IjE5Mi4xNjguMS43IiwiQmFja2VuZFR5cGUiOiJ1ZHAiLCJCYWNrZW5kRGF0YSI6bnVsbH0="},
         {"key":"L2NvcmVvcy5jb20vbmV0d29yay9zdWJuZXRzL2JvZ3Vz","create_revision":"5",
          "mod_revision":"5","version":"1","value":"eA=="}],"count":"3"})";

TEST(EtcdMessages, ListingKeepsTheLeasesAndTheRevision) {
  core::InputErrors errors;
  const EtcdListing l = listing(kRange, &errors);
  EXPECT_EQ(l.revision, 5);
  ASSERT_EQ(l.leases.size(), 2u);
  EXPECT_EQ(core::format_prefix(l.leases[0].subnet), "10.5.34.0/24");
  EXPECT_EQ(core::format_ipv4(l.leases[0].public_ip), "192.168.1.10");
  EXPECT_EQ(l.leases[0].store_lease, 4111120380132295174);
  EXPECT_FALSE(l.leases[0].reservation);
  EXPECT_EQ(core::format_prefix(l.leases[1].subnet), "10.5.7.0/24");
  EXPECT_EQ(l.leases[1].backend_type, "udp");
  EXPECT_TRUE(l.leases[1].reservation);
  EXPECT_EQ(l.leases[0].created, 3);
  EXPECT_EQ(l.leases[0].key, "/coreos.com/network/subnets/10.5.34.0-24");
  EXPECT_EQ(errors.get(core::InputSource::kEtcd), 1u) << "the key that is no lease";
}

TEST(EtcdMessages, WatchEventsMoveTheRevisionAndKnownLeases) {
  core::LeaseMap known;
  int64_t next_rev = 6;
  const WatchMessage created = watch(R"({"result":{"header":{"revision":"5"},"created":true}})", known, next_rev);
  EXPECT_EQ(created.kind, WatchMessage::Kind::kEvents);
  EXPECT_TRUE(created.created);
  EXPECT_TRUE(created.events.empty());

  const WatchMessage put = watch(R"({"result":{"events":[{"kv":{
      "key":"L2NvcmVvcy5jb20vbmV0d29yay9zdWJuZXRzLzEwLjUuOS4wLTI0","mod_revision":"6",
      "value":"eyJQdWJsaWNJUCI6IjE5Mi4xNjguMS45IiwiUHVibGljSVB2NiI6bnVsbH0=",
      "lease":"4111120380132295182"}}]}})", known, next_rev);
  ASSERT_EQ(put.events.size(), 1u);
  EXPECT_EQ(put.events[0].kind, K::kAdded);
  EXPECT_EQ(next_rev, 7);
  ASSERT_EQ(known.size(), 1u);

  // A DELETE carries only the key: the lease removed is the one known.
  const WatchMessage del = watch(R"({"result":{"events":[{"type":"DELETE",
      "kv":{"key":"L2NvcmVvcy5jb20vbmV0d29yay9zdWJuZXRzLzEwLjUuOS4wLTI0","mod_revision":"8"}}]}})", known, next_rev);
  ASSERT_EQ(del.events.size(), 1u);
  EXPECT_EQ(del.events[0].kind, K::kRemoved);
  EXPECT_EQ(core::format_ipv4(del.events[0].lease.public_ip), "192.168.1.9");
  EXPECT_EQ(next_rev, 9);
  EXPECT_TRUE(known.empty());
}

TEST(EtcdMessages, MessagesThatEndTheStream) {
  core::LeaseMap known;
  int64_t next_rev = 2;
  const WatchMessage compacted = watch(R"({"result":{"header":{},"canceled":true,"compact_revision":"8"}})", known, next_rev);
  EXPECT_EQ(compacted.kind, WatchMessage::Kind::kCompacted);
  const WatchMessage canceled = watch(R"({"result":{"canceled":true,"cancel_reason":"permission denied"}})", known, next_rev);
  EXPECT_EQ(canceled.kind, WatchMessage::Kind::kCanceled);
  EXPECT_EQ(canceled.error, "permission denied");
  const WatchMessage error = watch(R"({"error":{"grpc_code":7,"message":"etcdserver: permission denied"}})", known, next_rev);
  EXPECT_EQ(error.kind, WatchMessage::Kind::kError);
  EXPECT_NE(error.error.find("permission denied"), std::string::npos) << error.error;
  EXPECT_EQ(next_rev, 2);
}

// Found by tests/fuzz/etcd_fuzz.cc (corpus/etcd/crash-eb5d6772...: a watch
// line that is a JSON string): a message, result, event or kv of another
// type than etcd sends threw nlohmann's type_error, which stopped the
// daemon when it came in a listing. Now such an answer is refused whole as
// malformed input (StoreInputError, retried like an outage) before
// anything is applied, and a kv that is no lease is skipped.
TEST(EtcdMessages, AnswersOfTheWrongShapeAreRefusedNotThrownThrough) {
  for (const char* text : {R"({"kvs":"x"})", R"({"header":"x","kvs":{}})",
                           R"({"header":{"revision":"5"},"kvs":{}})"}) {
    SCOPED_TRACE(text);
    EXPECT_THROW(listing(text), StoreInputError);
  }
  core::InputErrors errors;
  const EtcdListing skipped =
      listing(R"({"header":{"revision":"5"},"kvs":[1,"x",null,[],{"key":7,"value":{}}]})", &errors);
  EXPECT_TRUE(skipped.leases.empty());
  EXPECT_EQ(skipped.revision, 5);
  EXPECT_GE(errors.get(core::InputSource::kEtcd), 1u);
  for (const char* text : {R"("x")", "[]", "42", R"({"result":"x"})",
                           R"({"result":{"events":{"kv":1}}})",
                           R"({"result":{"canceled":"true","created":1,"cancel_reason":5}})",
                           R"({"result":{"events":[1,{"kv":"x","type":7},{"type":"DELETE","kv":[]}]}})"}) {
    SCOPED_TRACE(text);
    core::LeaseMap known;
    int64_t next_rev = 3;
    EXPECT_THROW(watch(text, known, next_rev), StoreInputError);
    EXPECT_EQ(next_rev, 3);
    EXPECT_TRUE(known.empty());
  }
}

// Found while fuzzing etcd answers with UBSan (corpus/etcd/revision-*): a
// float revision out of int64's range was converted (undefined), and a
// revision at INT64_MAX overflowed where the watch adds 1.
TEST(EtcdMessages, RevisionsNoEtcdReachesAreRefused) {
  for (const char* text : {R"({"header":{"revision":1e300},"kvs":[]})",
                           R"({"header":{"revision":"9223372036854775807"},"kvs":[]})",
                           R"({"header":{"revision":"-5"},"kvs":[]})"}) {
    SCOPED_TRACE(text);
    EXPECT_THROW(listing(text), StoreInputError);
  }
  EXPECT_EQ(listing(R"({"header":{"revision":12},"kvs":[]})").revision, 12);
  for (const char* text : {R"({"result":{"events":[{"kv":{"key":"eA==","mod_revision":"9223372036854775807"}}]}})",
                           R"({"result":{"events":[{"kv":{"key":"eA==","mod_revision":-1e300}}]}})"}) {
    SCOPED_TRACE(text);
    core::LeaseMap known;
    int64_t next_rev = 3;
    EXPECT_THROW(watch(text, known, next_rev), StoreInputError);
    EXPECT_EQ(next_rev, 3);
  }
}

}  // namespace
}  // namespace udpring::io
