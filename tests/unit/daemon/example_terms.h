#pragma once
// The terms of a two-node test's node 1, for the tests of what is handed on
// under them (handover_test, fd_store_test).

#include "io/daemon/handover.h"

namespace udpring::io {

inline HandoverTerms example_terms(unsigned workers) {
  HandoverTerms t;
  t.tun_name = "flannel0";
  t.address = "10.50.1.0";
  t.mtu = 1472;
  t.network = "10.50.0.0/16";
  t.bind = "192.168.77.1:8285";
  t.workers = workers;
  t.tun_offload = true;
  t.uso = true;
  t.send_sockets = workers > 1;
  return t;
}

}  // namespace udpring::io
