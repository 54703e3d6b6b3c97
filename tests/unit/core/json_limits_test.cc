#include "core/json_limits.h"

#include <gtest/gtest.h>

#include <string>

namespace udpring {
namespace {

using core::json_limits_exceeded;
using core::JsonLimits;

TEST(JsonLimits, DepthCountsNestedArraysAndObjects) {
  const JsonLimits two{1000, 2};
  EXPECT_FALSE(json_limits_exceeded(R"({"a":[1,2],"b":{"c":3}})", two));
  EXPECT_FALSE(json_limits_exceeded("5", JsonLimits{10, 0}));
  EXPECT_TRUE(json_limits_exceeded("[]", JsonLimits{10, 0}));
  const auto why = json_limits_exceeded(R"({"a":[{"b":1}]})", two);
  ASSERT_TRUE(why);
  EXPECT_EQ(*why, "nests arrays and objects more than 2 deep");
  // Depth is how deep they nest, not how many there are.
  std::string siblings;
  for (int i = 0; i < 1000; ++i) siblings += "[],";
  EXPECT_FALSE(json_limits_exceeded("[" + siblings + "[]]", JsonLimits{10000, 2}));
}

TEST(JsonLimits, BracketsInsideStringsDoNotCount) {
  const JsonLimits one{1000, 1};
  EXPECT_FALSE(json_limits_exceeded(R"({"k":"[[[[{{{{"})", one));
  // An escaped quote does not end the string; an escaped backslash does not escape it.
  EXPECT_FALSE(json_limits_exceeded(R"({"k":"a\"[[[["})", one));
  EXPECT_TRUE(json_limits_exceeded(R"({"k":"a\\",[[["]]]})", one));
}

TEST(JsonLimits, AHundredThousandOpenBracketsStopAtTheLimit) {
  const std::string bomb(100000, '[');
  const auto why = json_limits_exceeded(bomb, JsonLimits{1 << 20, 64});
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("more than 64 deep"), std::string::npos);
}

TEST(JsonLimits, SizeIsCheckedFirst) {
  const auto why = json_limits_exceeded(std::string(11, ' '), JsonLimits{10, 64});
  ASSERT_TRUE(why);
  EXPECT_EQ(*why, "is 11 bytes, more than 10");
  EXPECT_FALSE(json_limits_exceeded(std::string(10, ' '), JsonLimits{10, 64}));
}

TEST(Printable, EscapesControlBytesAndCuts) {
  EXPECT_EQ(core::printable("10.5.1.0-24"), "10.5.1.0-24");
  EXPECT_EQ(core::printable("a\nb\x7f\xff\\"), "a\\x0ab\\x7f\\xff\\x5c");
  EXPECT_EQ(core::printable("abcdef", 3), "abc...");
}

}  // namespace
}  // namespace udpring
