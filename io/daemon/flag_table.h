#pragma once
// The one description of udpringd's flags. Parsing, --help, --print-config
// and docs/flags.md are all generated from flag_table(), so a flag cannot be
// accepted without being documented, or documented with a stale default.

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/daemon/options.h"

namespace udpring::io {

enum class FlagGroup { kLeases, kInterface, kMasquerade, kDataPlane, kTuning, kOther, kCompat };

struct FlagGroupInfo {
  FlagGroup group;
  std::string_view title;  // a --help heading and a docs/flags.md section
  std::string_view note;   // "" = none
};

/// The groups in the order --help and docs/flags.md show them.
const std::vector<FlagGroupInfo>& flag_groups();

/// What a flag accepts and how a given value lands in Options.
struct FlagValue {
  bool is_bool = false;       // "--x" alone means "--x=true"
  std::string accepts{};        // "a whole number from 1 to 1439"; errors say "expected <accepts>"
  // `spelling` is the name as given (an alias, say), so errors quote what
  // the user typed. Throws UsageError.
  std::function<void(Options&, const std::string& spelling, const std::string& value)> set{};
  std::string default_value{};  // Options{}'s value as one would write it; "" = none
};

/// A flag's line in --print-config.
struct FlagShown {
  std::string key{};  // "" = the flag has no line of its own
  // nullopt leaves the line out, for settings the chosen mode does not use.
  std::function<std::optional<std::string>(const Options&, unsigned online_cpus)> value{};
};

struct Flag {
  FlagGroup group = FlagGroup::kOther;
  std::string name{};                  // without dashes
  std::vector<std::string> aliases{};  // other spellings with the same meaning
  std::string negation{};              // booleans: a spelling that sets the opposite, "no-x"
  std::string metavar{};               // value flags: what --help shows after '='
  FlagValue value{};
  std::string default_note{};          // why the default is what it is, or what 0 means
  std::string help{};
  FlagShown shown{};
  bool from_env = true;                // also read from FLANNELD_<NAME>
};

/// Every flag, in --help order.
const std::vector<Flag>& flag_table();

/// Every accepted spelling of `f`: name, aliases, then negation.
std::vector<std::string> flag_spellings(const Flag& f);

/// flanneld's variable for a spelling: FLANNELD_ + upper case, '-' and '.'
/// as '_'.
std::string flag_env_name(std::string_view spelling);

/// Go's strconv.ParseBool, as flanneld's booleans take it. Throws
/// UsageError naming `spelling`.
bool parse_flag_bool(const std::string& spelling, const std::string& value);

/// How --help and the docs write a spelling: "-v" for one letter, as Go's
/// flag package prints it, else "--name".
std::string flag_dashes(std::string_view spelling);

}  // namespace udpring::io
