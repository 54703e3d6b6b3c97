// YAML documents as JSON values (libyaml), as kubeconfigs need them.

#include "io/control/leases/yaml_json.h"

#include <gtest/gtest.h>

namespace udpring::io {
namespace {

using Json = nlohmann::json;

TEST(YamlJson, MapsSequencesAndScalarsAsStrings) {
  const auto docs = yaml_documents(
      "a: 1\nb: [x, \"y\"]\nc: {d: true}\ne:\nf: ~\ng: \"\"\nh: 'null'\n");
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0], Json::parse(R"({"a":"1","b":["x","y"],"c":{"d":"true"},"e":null,"f":null,
                                    "g":"","h":"null"})"));
}

TEST(YamlJson, EveryDocumentAndAliases) {
  const auto docs = yaml_documents("---\nbase: &b {k: v}\nuse: *b\n---\n- one\n...\n---\nlast: 1\n");
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0]["use"], Json::parse(R"({"k":"v"})"));
  EXPECT_EQ(docs[1], Json::parse(R"(["one"])"));
  EXPECT_EQ(docs[2]["last"], "1");
  EXPECT_TRUE(yaml_documents("").empty());
}

TEST(YamlJson, BadYamlNamesTheLine) {
  try {
    yaml_documents("a: 1\nb: [unclosed\nc: 2\n");
    FAIL() << "no error";
  } catch (const YamlError& e) {
    EXPECT_NE(std::string(e.what()).find("line "), std::string::npos) << e.what();
  }
  EXPECT_THROW(yaml_documents("? [a, b]\n: c\n"), YamlError);  // a key that is no string
}

// A kubeconfig is the daemon's input too: neither an alias bomb nor deep
// nesting may take its memory or its stack.
TEST(YamlJson, AliasBombsAndDeepNestingAreErrors) {
  std::string bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 9; ++i) {  // 10^9 nodes once expanded
    const std::string n = std::to_string(i);
    bomb.append("a").append(n).append(": &a").append(n).append(" [");
    for (int j = 0; j < 10; ++j) bomb.append(j ? ", *a" : "*a").append(std::to_string(i - 1));
    bomb.append("]\n");
  }
  try {
    yaml_documents(bomb);
    FAIL() << "no error";
  } catch (const YamlError& e) {
    EXPECT_NE(std::string(e.what()).find("more than 100000 nodes"), std::string::npos) << e.what();
  }
  try {
    yaml_documents(std::string(100000, '['));  // refused at level 65, before libyaml reads on
    FAIL() << "no error";
  } catch (const YamlError& e) {
    EXPECT_NE(std::string(e.what()).find("more than 64 levels"), std::string::npos) << e.what();
  }
  try {
    yaml_documents(std::string(100, '[') + std::string(100, ']'));
    FAIL() << "no error";
  } catch (const YamlError& e) {
    EXPECT_NE(std::string(e.what()).find("more than 64 levels"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace udpring::io
