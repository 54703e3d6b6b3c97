#include "io/daemon/options.h"

#include <algorithm>
#include <map>
#include <set>
#include <string_view>

#include "io/daemon/flag_table.h"

namespace udpring::io {
namespace {

struct Spelling {
  const Flag* flag;
  bool negated;  // the "--no-x" of a boolean
};

const std::map<std::string, Spelling, std::less<>>& spellings() {
  static const auto table = [] {
    std::map<std::string, Spelling, std::less<>> m;
    for (const Flag& f : flag_table()) {
      for (const std::string& s : flag_spellings(f)) m.emplace(s, Spelling{&f, s == f.negation});
    }
    return m;
  }();
  return table;
}

void apply(Options& o, const std::string& spelling, const Spelling& sp, const std::string& value) {
  if (sp.negated) {
    sp.flag->value.set(o, spelling, parse_flag_bool(spelling, value) ? "false" : "true");
  } else {
    sp.flag->value.set(o, spelling, value);
  }
}

}  // namespace

Options parse_options(int argc, const char* const* argv, const EnvLookup& env) {
  Options o;
  const auto& by_spelling = spellings();
  // A flag counts as given under any of its spellings: "--no-send-zc" on
  // the command line keeps $FLANNELD_SEND_ZC out.
  std::set<const Flag*> given;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.size() < 2 || arg[0] != '-') {
      throw UsageError("unexpected argument \"" + std::string(arg) + "\" (flags start with --)");
    }
    arg.remove_prefix(arg[1] == '-' ? 2 : 1);
    std::string name(arg);
    std::optional<std::string> value;
    if (const auto eq = arg.find('='); eq != std::string_view::npos) {
      name = std::string(arg.substr(0, eq));
      value = std::string(arg.substr(eq + 1));
    }
    const auto it = by_spelling.find(name);
    if (it == by_spelling.end()) throw UsageError("unknown flag " + flag_dashes(name) + " (see --help)");
    const Spelling& sp = it->second;
    if (!value) {
      // Go's flag package: a boolean never takes the next argument.
      if (sp.flag->value.is_bool) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        throw UsageError("flag " + flag_dashes(name) + " needs a value: " + sp.flag->value.accepts);
      }
    }
    given.insert(sp.flag);
    apply(o, name, sp, *value);
  }
  // flanneld's rule: FLANNELD_* only for flags absent from the command line,
  // and only when non-empty.
  for (const Flag& f : flag_table()) {
    if (!f.from_env || given.count(&f)) continue;
    for (const std::string& s : flag_spellings(f)) {
      const std::string var = flag_env_name(s);
      const char* v = env(var.c_str());
      if (v == nullptr || *v == '\0') continue;
      try {
        apply(o, s, by_spelling.at(s), v);
      } catch (const UsageError& e) {
        throw UsageError("from $" + var + ": " + e.what());
      }
    }
  }
  return o;
}

namespace {

constexpr size_t kHelpWidth = 96;
constexpr size_t kHelpColumn = 29;  // where the explanations start

// "--etcd-prefix=PATH", "--send-zc, --no-send-zc", "--help, -h".
std::string flag_synopsis(const Flag& f) {
  std::string out;
  for (const std::string& s : flag_spellings(f)) {
    if (!out.empty()) out += ", ";
    out += flag_dashes(s);
    if (!f.value.is_bool) out += "=" + f.metavar;
  }
  return out;
}

// The default as one sentence, or "" when saying it would add nothing: a
// switch that is off until given.
std::string default_sentence(const Flag& f) {
  const std::string& v = f.value.default_value;
  if (f.value.is_bool) {
    if (v != "true") return "";
    return "Default true; --" + f.name + "=false turns it off.";
  }
  if (v.empty() && f.default_note.empty()) return "";
  if (v.empty()) return "Default: " + f.default_note + ".";
  return "Default " + v + (f.default_note.empty() ? "" : " (" + f.default_note + ")") + ".";
}

void append_wrapped(std::string& out, std::string_view text, size_t indent, size_t first_column) {
  size_t column = first_column;
  bool line_empty = true;
  while (!text.empty()) {
    const size_t space = text.find(' ');
    const std::string_view word = text.substr(0, space);
    text = space == std::string_view::npos ? std::string_view{} : text.substr(space + 1);
    if (word.empty()) continue;
    if (!line_empty && column + 1 + word.size() > kHelpWidth) {
      out += '\n';
      out.append(indent, ' ');
      column = indent;
      line_empty = true;
    }
    if (!line_empty) {
      out += ' ';
      ++column;
    }
    out += word;
    column += word.size();
    line_empty = false;
  }
  out += '\n';
}

std::string env_note() {
  std::vector<std::string> skipped;
  for (const Flag& f : flag_table()) {
    if (f.from_env) continue;
    for (const std::string& s : flag_spellings(f)) skipped.push_back(flag_dashes(s));
  }
  std::string list;
  for (size_t i = 0; i < skipped.size(); ++i) {
    list += (i == 0 ? "" : i + 1 == skipped.size() ? " and " : ", ") + skipped[i];
  }
  return "Every flag but " + list + " can also come from FLANNELD_<NAME> (upper case, '-' and '.' "
         "as '_', e.g. FLANNELD_IP_MASQ=true), used only when the flag is not on the command line "
         "and the variable is not empty.";
}

}  // namespace

std::string usage_text() {
  std::string out =
      "udpringd: an io_uring drop-in for flannel's udp backend.\n\n"
      "Usage: udpringd [flags]     (flags take one or two dashes; --name=value or --name value)\n";
  for (const FlagGroupInfo& g : flag_groups()) {
    out += "\n";
    std::string heading = std::string(g.title) + ":";
    if (!g.note.empty()) heading.append(" ").append(g.note);
    append_wrapped(out, heading, 2, 0);
    for (const Flag& f : flag_table()) {
      if (f.group != g.group) continue;
      const std::string left = "  " + flag_synopsis(f);
      out += left;
      if (left.size() + 1 < kHelpColumn) {
        out.append(kHelpColumn - left.size(), ' ');
      } else {
        out += '\n';
        out.append(kHelpColumn, ' ');
      }
      const std::string dflt = default_sentence(f);
      append_wrapped(out, f.help + (dflt.empty() ? "" : " " + dflt), kHelpColumn, kHelpColumn);
    }
  }
  out += "\n";
  append_wrapped(out, env_note(), 0, 0);
  out += "\nSignals: SIGTERM/SIGINT stop cleanly (the TUN and its route disappear, as with flanneld);\n"
         "SIGUSR1 logs one \"stats (SIGUSR1):\" line with every counter summed over the workers.\n";
  return out;
}

namespace {

// Markdown would read '|' as a cell border, '<' as HTML and '*' as
// emphasis; in code spans only the '|' needs it.
std::string md_text(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '*') out += "\\*";
    else out += c;
  }
  return out;
}

std::string md_code(std::string_view s) {
  std::string out = "`";
  for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out + "`";
}

}  // namespace

std::string flags_markdown() {
  std::string out =
      "<!-- Generated by `udpringd --help-markdown` from io/daemon/flag_table.cc; do not edit.\n"
      "     Regenerate: build/udpringd --help-markdown > docs/flags.md -->\n"
      "# udpringd flags\n\n"
      "Generated by `udpringd --help-markdown` from the flag table in `io/daemon/flag_table.cc`, "
      "which also drives parsing, `--help` and `--print-config`. After changing a flag, run "
      "`build/udpringd --help-markdown > docs/flags.md`; `options_test` fails while this file "
      "is stale.\n\n"
      "Flags take one or two dashes, `--name=value` or `--name value`; booleans are `--name` or "
      "`--name=false`. " + md_text(env_note()) + "\n";
  for (const FlagGroupInfo& g : flag_groups()) {
    out += "\n## " + std::string(g.title) + "\n\n";
    if (!g.note.empty()) out += md_text(g.note) + "\n\n";
    out += "| flag | accepts | default | environment | meaning |\n|---|---|---|---|---|\n";
    for (const Flag& f : flag_table()) {
      if (f.group != g.group) continue;
      std::string names, vars;
      for (const std::string& s : flag_spellings(f)) {
        names += (names.empty() ? "" : ", ") +
                 md_code(flag_dashes(s) + (f.value.is_bool ? "" : "=" + f.metavar));
        if (f.from_env) vars += (vars.empty() ? "" : ", ") + md_code(flag_env_name(s));
      }
      std::string dflt = f.value.default_value.empty() ? "" : md_code(f.value.default_value);
      if (!f.default_note.empty()) {
        dflt += dflt.empty() ? md_text(f.default_note) : " (" + md_text(f.default_note) + ")";
      }
      out += "| " + names + " | " + md_text(f.value.accepts) + " | " + (dflt.empty() ? "—" : dflt) +
             " | " + (vars.empty() ? "—" : vars) + " | " + md_text(f.help) + " |\n";
    }
  }
  return out;
}

BufferPlan plan_buffers(const Options& o, bool vnet, bool gro, uint32_t tun_mtu) {
  // recvmsg multishot puts io_uring_recvmsg_out (16) and the source address
  // (16) in front of every datagram, then room for the UDP_GRO cmsg (24).
  constexpr uint32_t kRecvHeaderBytes = 32;
  constexpr uint32_t kGroCmsgBytes = 32;
  auto pow2 = [](uint32_t n) {
    uint32_t v = 2048;
    while (v < n) v <<= 1;
    return v;
  };
  BufferPlan p{};
  // A TSO read is up to 64 KiB plus the vnet header; a GRO receive up to
  // 64 KiB after the recvmsg header.
  p.tun_need = vnet ? 65536 + 64 : tun_mtu;
  p.udp_need = (gro ? 65536 : tun_mtu) + kRecvHeaderBytes + kGroCmsgBytes;
  p.tun_bytes = o.buffer_size ? o.buffer_size : (vnet ? p.tun_need : pow2(p.tun_need));
  p.udp_bytes = o.buffer_size ? o.buffer_size : (gro ? p.udp_need : pow2(p.udp_need));
  // 64 KiB buffers: 64 of them is 4 MiB per ring, which a TCP stream
  // touches whole (each TSO read or GRO receive fills one). 32 to 256
  // measured alike end to end (docs/tuning.md), so memory decides. A peer
  // that sends one datagram per packet (no GSO, as stock flanneld) takes a
  // UDP buffer per packet and can run the ring dry under a few streams: the
  // datagrams then wait in the socket's buffer until the receive is
  // re-armed (counted as no_buffer, not lost).
  p.tun_count = o.buffers ? o.buffers : (vnet ? 64 : 1024);
  p.udp_count = o.buffers ? o.buffers : (gro ? 64 : 1024);
  return p;
}

unsigned default_workers(unsigned online_cpus) {
  return std::clamp(online_cpus, 1u, kDefaultMaxWorkers);
}

unsigned resolved_workers(const Options& o, unsigned online_cpus) {
  return o.workers ? o.workers : default_workers(online_cpus);
}

std::string describe_options(const Options& o, unsigned online_cpus) {
  std::string out;
  for (const Flag& f : flag_table()) {
    if (f.shown.key.empty()) continue;
    if (const auto v = f.shown.value(o, online_cpus)) out += f.shown.key + ": " + *v + "\n";
  }
  return out;
}

}  // namespace udpring::io
