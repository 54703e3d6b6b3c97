#pragma once
// Size and nesting limits for JSON from outside the daemon (etcd answers,
// lease files, the Kubernetes API, net-conf), checked on the text before
// anything parses it. nlohmann's parser and destructor are iterative, but
// dump(), operator== and copies recurse once per level, so a 100,000-deep
// "[[[[..." in an answer would overflow the stack the first time one of
// them touches it; and a size cap keeps a hostile answer from taking the
// memory of a DOM many times its size.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace udpring::core {

struct JsonLimits {
  size_t max_bytes;  // the whole text
  size_t max_depth;  // arrays and objects inside one another; a scalar is depth 0
};

/// Why `text` is beyond `limits` ("is 5242880 bytes, more than 1048576",
/// "nests arrays and objects more than 32 deep"), or nullopt when it is
/// within them. One pass over the bytes; brackets inside strings do not
/// count. Nothing else is validated: the parser does that.
std::optional<std::string> json_limits_exceeded(std::string_view text, const JsonLimits& limits);

/// At most `max` bytes of `text` with control bytes and non-ASCII written as
/// \xNN, and "..." when cut: for putting what an outside party sent (etcd
/// keys, file names, answers) in a log line or an error without letting it
/// forge lines or flood the log.
std::string printable(std::string_view text, size_t max = 200);

}  // namespace udpring::core
