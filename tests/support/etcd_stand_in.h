#pragma once
// The etcd v3 JSON gateway stand-in (tests/support/etcd_stand_in.py) run in
// a test namespace on ip:2379: it answers what udpringd asks as etcd does,
// except for the answers a test queues, which may be anything (the wrong
// JSON types, 100,000 '[', a line that never ends, no answer at all).

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/support/netns.h"

namespace udpring::test {

class EtcdStandIn {
 public:
  EtcdStandIn(const Netns& ns, std::string ip, std::string dir);
  ~EtcdStandIn();
  EtcdStandIn(const EtcdStandIn&) = delete;
  EtcdStandIn& operator=(const EtcdStandIn&) = delete;

  std::string endpoint() const { return "http://" + ip_ + ":2379"; }

  /// Queues answers: each rule {"path", "key"?, "client"?, "after"?,
  /// "answers": [{"body": TEXT, "status"?} | {"hang": SECONDS}]}.
  void add_rules(const nlohmann::json& rules) const;
  /// An answer of `body` (any text) for `path` to `client`, once.
  static nlohmann::json rule(const std::string& path, const std::string& body,
                             const std::string& client, const std::string& key = "");
  /// Writes key = value (no etcd lease), as etcdctl put would.
  void put(const std::string& key, const std::string& value) const;
  /// kvs added, as they are, to every listing of the subnets.
  void set_raw_kvs(const nlohmann::json& kvs) const;
  /// {"served": queued answers given, "pending": still queued,
  /// "held": {path: calls held now}}.
  nlohmann::json stats() const;
  /// Waits until a call to `path` is being held; false after `ms`.
  bool wait_held(const std::string& path, int ms) const;
  /// Waits until every queued answer has been given; false after `ms`.
  bool wait_drained(int ms) const;

  std::string log() const;

 private:
  nlohmann::json call(const std::string& method, const std::string& path,
                      const nlohmann::json& body = nullptr) const;

  const Netns& ns_;
  std::string ip_;
  std::string dir_;
  std::unique_ptr<Process> proc_;
  mutable int calls_ = 0;
};

}  // namespace udpring::test
