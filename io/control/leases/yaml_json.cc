#include "io/control/leases/yaml_json.h"

#include <yaml.h>

#include <memory>

namespace udpring::io {
namespace {

using Json = nlohmann::json;

// Aliases make a small text a big tree ("billion laughs": nine levels of
// ten aliases each are a billion nodes); a kubeconfig has a few hundred.
constexpr size_t kMaxNodes = 100000;
constexpr int kMaxDepth = 64;

Json convert(yaml_document_t& doc, const yaml_node_t* node, int depth, size_t& nodes) {
  if (!node) return nullptr;
  if (depth > kMaxDepth) {
    throw YamlError("YAML nested more than " + std::to_string(kMaxDepth) + " levels deep");
  }
  if (++nodes > kMaxNodes) {
    throw YamlError("YAML of more than " + std::to_string(kMaxNodes) +
                    " nodes once its aliases are expanded");
  }
  switch (node->type) {
    case YAML_SCALAR_NODE: {
      const std::string value(reinterpret_cast<const char*>(node->data.scalar.value),
                              node->data.scalar.length);
      if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
          (value.empty() || value == "~" || value == "null" || value == "Null" || value == "NULL")) {
        return nullptr;
      }
      return value;
    }
    case YAML_SEQUENCE_NODE: {
      Json out = Json::array();
      for (yaml_node_item_t* it = node->data.sequence.items.start;
           it < node->data.sequence.items.top; ++it) {
        out.push_back(convert(doc, yaml_document_get_node(&doc, *it), depth + 1, nodes));
      }
      return out;
    }
    case YAML_MAPPING_NODE: {
      Json out = Json::object();
      for (yaml_node_pair_t* p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
           ++p) {
        const Json key = convert(doc, yaml_document_get_node(&doc, p->key), depth + 1, nodes);
        if (!key.is_string()) throw YamlError("a mapping key that is not a plain string");
        out[key.get<std::string>()] =
            convert(doc, yaml_document_get_node(&doc, p->value), depth + 1, nodes);
      }
      return out;
    }
    default:
      return nullptr;
  }
}

using ParserGuard = std::unique_ptr<yaml_parser_t, void (*)(yaml_parser_t*)>;

ParserGuard open_parser(yaml_parser_t& parser, const std::string& text) {
  if (!yaml_parser_initialize(&parser)) throw YamlError("libyaml: out of memory");
  ParserGuard guard(&parser, yaml_parser_delete);
  yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char*>(text.data()),
                               text.size());
  return guard;
}

// libyaml's loader builds a whole document before convert() sees its depth,
// and its scanner slows with every open flow level (100,000 '[' took 14 s of
// CPU): walk the events first and stop at the first level too deep. Syntax
// errors are left to the loader, which names the line.
void check_depth(const std::string& text) {
  yaml_parser_t parser;
  const ParserGuard guard = open_parser(parser, text);
  int depth = 0;
  for (;;) {
    yaml_event_t event;
    if (!yaml_parser_parse(&parser, &event)) return;
    const yaml_event_type_t type = event.type;
    yaml_event_delete(&event);
    if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) {
      if (++depth > kMaxDepth) {
        throw YamlError("YAML nested more than " + std::to_string(kMaxDepth) + " levels deep");
      }
    } else if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT) {
      --depth;
    } else if (type == YAML_STREAM_END_EVENT) {
      return;
    }
  }
}

}  // namespace

std::vector<Json> yaml_documents(const std::string& text) {
  check_depth(text);
  yaml_parser_t parser;
  const ParserGuard guard = open_parser(parser, text);
  std::vector<Json> docs;
  for (;;) {
    yaml_document_t doc;
    if (!yaml_parser_load(&parser, &doc)) {
      throw YamlError("line " + std::to_string(parser.problem_mark.line + 1) + ": " +
                      (parser.problem ? parser.problem : "not YAML"));
    }
    const std::unique_ptr<yaml_document_t, void (*)(yaml_document_t*)> doc_guard(
        &doc, yaml_document_delete);
    const yaml_node_t* root = yaml_document_get_root_node(&doc);
    if (!root) break;  // the end of the stream
    size_t nodes = 0;
    docs.push_back(convert(doc, root, 0, nodes));
  }
  return docs;
}

}  // namespace udpring::io
