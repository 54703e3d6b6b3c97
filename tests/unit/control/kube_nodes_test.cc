// What a Node means to the kube lease store: its lease, the annotations
// and condition this node writes, and the events a change implies.

#include "io/control/leases/kube_nodes.h"

#include <gtest/gtest.h>

namespace udpring::io {
namespace {

using Json = nlohmann::json;
using K = core::LeaseEvent::Kind;
const core::Ipv4Prefix kNet = *core::parse_prefix("10.244.0.0/16");

Json stock_node(const std::string& cidr, const std::string& ip) {
  return Json::parse(R"({"metadata":{"name":"n1","resourceVersion":"42",
      "creationTimestamp":"2024-05-06T07:08:09Z","annotations":{
      "flannel.alpha.coreos.com/kube-subnet-manager":"true",
      "flannel.alpha.coreos.com/backend-type":"",
      "flannel.alpha.coreos.com/backend-data":"null",
      "flannel.alpha.coreos.com/public-ip":")" + ip + R"("}},
      "spec":{"podCIDR":")" + cidr + R"(","podCIDRs":[")" + cidr + R"("]}})");
}

TEST(KubeNodes, StockUdpNodeIsALease) {
  NodeView v = view_node(stock_node("10.244.3.0/24", "192.168.1.3"), kDefaultAnnotationPrefix);
  EXPECT_EQ(v.name, "n1");
  EXPECT_EQ(v.resource_version, "42");
  EXPECT_TRUE(v.managed);
  const auto l = node_lease(v, kNet);
  ASSERT_TRUE(l);
  EXPECT_EQ(core::format_prefix(l->subnet), "10.244.3.0/24");
  EXPECT_EQ(core::format_ipv4(l->public_ip), "192.168.1.3");
  EXPECT_EQ(l->backend_type, "");
  // Known by name, ordered by creation: of two nodes with one podCIDR the
  // older one is routed (core/lease_policy.h).
  EXPECT_EQ(l->key, "n1");
  EXPECT_EQ(l->created, 1714979289);
}

TEST(KubeNodes, CreationTimestampsAreRfc3339) {
  EXPECT_EQ(parse_rfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_rfc3339("2024-05-06T07:08:09Z"), 1714979289);
  EXPECT_EQ(parse_rfc3339("2024-02-29T23:59:59Z"), 1709251199);  // a leap day
  EXPECT_EQ(parse_rfc3339("2024-05-06T07:08:09.123456Z"), 1714979289);
  EXPECT_EQ(parse_rfc3339("2024-05-06T09:08:09+02:00"), 1714979289);
  EXPECT_EQ(parse_rfc3339("2024-05-06T02:08:09-05:00"), 1714979289);
  for (const char* bad : {"", "2024-05-06", "2024-05-06T07:08:09", "2024-02-30T00:00:00Z",
                          "2024-13-01T00:00:00Z", "2024-05-06T24:00:00Z", "2024-05-06 07:08:09Z",
                          "2024-05-06T07:08:09.Z", "2024-05-06T07:08:09Zjunk", "x024-05-06T07:08:09Z",
                          "2024-05-06T07:08:09+0200"}) {
    EXPECT_FALSE(parse_rfc3339(bad)) << bad;
  }
  // A node without one (or with junk) ties at 0; the name decides.
  Json n = stock_node("10.244.3.0/24", "192.168.1.3");
  n["metadata"]["creationTimestamp"] = "yesterday";
  NodeView v = view_node(n, kDefaultAnnotationPrefix);
  EXPECT_EQ(v.created_unix, 0);
}

TEST(KubeNodes, NodesWithoutALeaseSayWhy) {
  Json unmanaged = stock_node("10.244.3.0/24", "192.168.1.3");
  unmanaged["metadata"]["annotations"].erase("flannel.alpha.coreos.com/kube-subnet-manager");
  NodeView u = view_node(unmanaged, kDefaultAnnotationPrefix);
  EXPECT_FALSE(u.managed);
  EXPECT_FALSE(node_lease(u, kNet));

  NodeView bad_ip = view_node(stock_node("10.244.3.0/24", "not-an-ip"), kDefaultAnnotationPrefix);
  EXPECT_FALSE(node_lease(bad_ip, kNet));
  EXPECT_NE(bad_ip.problem.find("public-ip \"not-an-ip\""), std::string::npos) << bad_ip.problem;

  NodeView outside = view_node(stock_node("10.9.3.0/24", "192.168.1.3"), kDefaultAnnotationPrefix);
  EXPECT_FALSE(node_lease(outside, kNet));
  EXPECT_NE(outside.problem.find("outside Network 10.244.0.0/16"), std::string::npos);

  Json no_cidr = stock_node("", "192.168.1.3");
  no_cidr["spec"] = Json::object();
  NodeView n = view_node(no_cidr, kDefaultAnnotationPrefix);
  EXPECT_FALSE(n.pod_cidr);
  EXPECT_FALSE(node_lease(n, kNet));
  EXPECT_EQ(n.problem, "no IPv4 podCIDR");

  // Not an object at all, or fields of the wrong type: no crash, no lease.
  NodeView junk = view_node(Json::parse(R"({"metadata":{"annotations":[]},"spec":{"podCIDRs":7}})"),
                            kDefaultAnnotationPrefix);
  EXPECT_FALSE(node_lease(junk, kNet));
  NodeView scalar = view_node(Json(3), kDefaultAnnotationPrefix);
  EXPECT_FALSE(node_lease(scalar, kNet));
}

// A member of the wrong type anywhere the store reads is no crash (it
// would be nlohmann's type_error) but a node without a lease, named.
TEST(KubeNodes, WrongTypesAreMalformedNodesNotExceptions) {
  const std::pair<const char*, const char*> cases[] = {
      {"metadata", "metadata is not an object"},
      {"metadata/name", "metadata.name is not a string"},
      {"metadata/annotations", "metadata.annotations is not an object"},
      {"metadata/annotations/flannel.alpha.coreos.com~1public-ip", "annotation flannel.alpha.coreos.com/public-ip is not a string"},
      {"metadata/annotations/flannel.alpha.coreos.com~1kube-subnet-manager", "is not a string"},
      {"spec", "spec is not an object"},
      {"spec/podCIDR", "spec.podCIDR is not a string"},
      {"spec/podCIDRs", "spec.podCIDRs is not an array"},
      {"spec/podCIDRs/0", "spec.podCIDRs holds "},
  };
  for (const auto& [pointer, message] : cases) {
    for (const Json& wrong : {Json(5), Json::array({1}), Json("x"), Json::object()}) {
      Json n = stock_node("10.244.3.0/24", "192.168.1.3");
      const Json::json_pointer at(std::string("/") + pointer);
      if (n[at].type() == wrong.type()) continue;  // not wrong for this member
      n[at] = wrong;
      NodeView v;
      ASSERT_NO_THROW(v = view_node(n, kDefaultAnnotationPrefix)) << pointer;
      EXPECT_NE(v.malformed.find(message), std::string::npos) << pointer << ": " << v.malformed;
      EXPECT_EQ(v.problem, v.malformed);
      EXPECT_FALSE(node_lease(v, kNet)) << pointer;
      std::string note;
      EXPECT_NO_THROW(advertised_ip(n, kDefaultAnnotationPrefix, core::Be32{}, note));
      EXPECT_NO_THROW(annotation_patch(n, kDefaultAnnotationPrefix, core::Be32{}));
    }
  }
  // The condition patch reads status leniently too.
  Json n = stock_node("10.244.3.0/24", "192.168.1.3");
  for (const Json& status : {Json("x"), Json({{"conditions", "x"}}), Json({{"conditions", {1, "y"}}})}) {
    n["status"] = status;
    EXPECT_FALSE(network_available_patch(n, "now").is_null());
  }
  EXPECT_EQ(view_node(Json(3), kDefaultAnnotationPrefix).malformed,
            "the node is a number, not an object");
  EXPECT_TRUE(view_node(stock_node("10.244.3.0/24", "192.168.1.3"), kDefaultAnnotationPrefix)
                  .malformed.empty());
}

TEST(KubeNodes, DualStackTakesTheIpv4PodCidr) {
  Json n = stock_node("fd00:10:244:3::/64", "192.168.1.3");
  n["spec"]["podCIDRs"] = {"fd00:10:244:3::/64", "10.244.3.0/24"};
  NodeView v = view_node(n, kDefaultAnnotationPrefix);
  const auto l = node_lease(v, kNet);
  ASSERT_TRUE(l) << v.problem;
  EXPECT_EQ(core::format_prefix(l->subnet), "10.244.3.0/24");
}

TEST(KubeNodes, OtherPrefixesAreOtherAnnotations) {
  NodeView v = view_node(stock_node("10.244.3.0/24", "192.168.1.3"), "example.com");
  EXPECT_FALSE(v.managed);
}

TEST(KubeNodes, AnnotationPatchHasOnlyWhatDiffers) {
  const core::Be32 ip = *core::parse_ipv4("192.168.1.3");
  EXPECT_TRUE(annotation_patch(stock_node("10.244.3.0/24", "192.168.1.3"), kDefaultAnnotationPrefix, ip)
                  .is_null());
  const Json fresh = Json::parse(R"({"metadata":{"name":"n1"}})");
  const Json all = annotation_patch(fresh, kDefaultAnnotationPrefix, ip);
  EXPECT_EQ(all, Json::parse(R"({"metadata":{"annotations":{
      "flannel.alpha.coreos.com/kube-subnet-manager":"true",
      "flannel.alpha.coreos.com/backend-type":"",
      "flannel.alpha.coreos.com/backend-data":"null",
      "flannel.alpha.coreos.com/public-ip":"192.168.1.3"}}})"));
  const Json moved = annotation_patch(stock_node("10.244.3.0/24", "192.168.1.9"),
                                      kDefaultAnnotationPrefix, ip);
  EXPECT_EQ(moved, Json::parse(
                       R"({"metadata":{"annotations":{"flannel.alpha.coreos.com/public-ip":"192.168.1.3"}}})"));
}

TEST(KubeNodes, AdvertisedIpHonoursOverwriteThenNodePublicIp) {
  const core::Be32 detected = *core::parse_ipv4("192.168.1.3");
  Json n = stock_node("10.244.3.0/24", "192.168.1.3");
  std::string note;
  EXPECT_EQ(advertised_ip(n, kDefaultAnnotationPrefix, detected, note), detected);
  EXPECT_TRUE(note.empty());
  n["metadata"]["annotations"]["flannel.alpha.coreos.com/node-public-ip"] = "203.0.113.7";
  EXPECT_EQ(core::format_ipv4(advertised_ip(n, kDefaultAnnotationPrefix, detected, note)), "203.0.113.7");
  EXPECT_NE(note.find("node-public-ip"), std::string::npos);
  n["metadata"]["annotations"]["flannel.alpha.coreos.com/public-ip-overwrite"] = "198.51.100.1";
  EXPECT_EQ(core::format_ipv4(advertised_ip(n, kDefaultAnnotationPrefix, detected, note)), "198.51.100.1");
  n["metadata"]["annotations"]["flannel.alpha.coreos.com/public-ip-overwrite"] = "bogus";
  EXPECT_EQ(core::format_ipv4(advertised_ip(n, kDefaultAnnotationPrefix, detected, note)), "203.0.113.7");
  EXPECT_NE(note.find("from annotation"), std::string::npos) << note;
}

TEST(KubeNodes, NetworkAvailablePatchOnlyWhenNeeded) {
  Json n = Json::parse(R"({"status":{"conditions":[{"type":"Ready","status":"True"}]}})");
  const Json p = network_available_patch(n, "2026-12-01T00:00:00Z");
  ASSERT_FALSE(p.is_null());
  const Json& c = p["status"]["conditions"][0];
  EXPECT_EQ(c["type"], "NetworkUnavailable");
  EXPECT_EQ(c["status"], "False");
  EXPECT_EQ(c["reason"], "FlannelIsUp");
  EXPECT_EQ(c["message"], "Flannel is running on this node");
  EXPECT_EQ(p["status"]["conditions"].size(), 1u);  // Ready is left to the merge
  n["status"]["conditions"].push_back(c);
  EXPECT_TRUE(network_available_patch(n, "2026-12-01T00:00:01Z").is_null());
}

TEST(KubeNodes, NodeChangeEvents) {
  core::Lease a;
  a.subnet = *core::parse_prefix("10.244.3.0/24");
  a.public_ip = *core::parse_ipv4("192.168.1.3");
  core::Lease same = a;
  core::Lease new_ip = a;
  new_ip.public_ip = *core::parse_ipv4("192.168.1.4");
  core::Lease moved = a;
  moved.subnet = *core::parse_prefix("10.244.9.0/24");
  EXPECT_TRUE(node_change(std::nullopt, std::nullopt).empty());
  EXPECT_TRUE(node_change(a, same).empty());
  auto ev = node_change(std::nullopt, a);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, K::kAdded);
  ev = node_change(a, std::nullopt);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, K::kRemoved);
  ev = node_change(a, new_ip);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, K::kAdded);
  EXPECT_EQ(ev[0].lease.public_ip, new_ip.public_ip);
  ev = node_change(a, moved);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].kind, K::kRemoved);
  EXPECT_EQ(ev[0].lease.subnet, a.subnet);
  EXPECT_EQ(ev[1].kind, K::kAdded);
  EXPECT_EQ(ev[1].lease.subnet, moved.subnet);
}

}  // namespace
}  // namespace udpring::io
