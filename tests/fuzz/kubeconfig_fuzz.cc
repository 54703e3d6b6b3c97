// A kubeconfig (--kubeconfig-file) through io::parse_kubeconfig, and the
// YAML under it through io::yaml_documents (libyaml). What cannot be used
// must be a KubeAccessError naming the file (a YamlError from the YAML
// alone); what parses must be an access the client can use as it is.

#include <cstdint>
#include <string>

#include "io/control/leases/kube_access.h"
#include "io/control/leases/yaml_json.h"
#include "tests/fuzz/fuzz_check.h"

using namespace udpring;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    (void)io::yaml_documents(text);
  } catch (const io::YamlError&) {
  }
  const std::string path = "/etc/kubernetes/flannel.conf";
  io::KubeAccess a;
  try {
    a = io::parse_kubeconfig(path, text);
  } catch (const io::KubeAccessError& e) {
    FUZZ_CHECK(std::string(e.what()).rfind(path + ": ", 0) == 0);
    return 0;
  }
  FUZZ_CHECK(a.server.empty() || a.server.back() != '/');
  FUZZ_CHECK(a.source.find(path) != std::string::npos);
  // A client certificate comes with its key, and the other way round.
  FUZZ_CHECK((a.tls.cert_pem.empty() && a.tls.cert_file.empty()) ==
             (a.tls.key_pem.empty() && a.tls.key_file.empty()));
  // Files are absolute or next to the kubeconfig.
  for (const std::string* f : {&a.tls.ca_file, &a.tls.cert_file, &a.tls.key_file, &a.token_file}) {
    FUZZ_CHECK(f->empty() || f->front() == '/');
  }
  return 0;
}
