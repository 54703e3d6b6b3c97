// Answers of lease-store servers read with checked types: a wrong type is a
// StoreInputError naming the answer and the member, never a type_error.

#include "io/control/leases/checked_json.h"

#include <gtest/gtest.h>

namespace udpring::io {
namespace {

using Json = nlohmann::json;
const std::string kWhere = "etcd http://x:2379/v3/kv/txn";

// The message of the StoreInputError `f` throws, "" if it throws none.
template <class F>
std::string input_error(F&& f) {
  try {
    f();
    return "";
  } catch (const StoreInputError& e) {
    return e.what();
  }
}

TEST(CheckedJson, MembersOfTheRightTypeOrAbsent) {
  const Json r = Json::parse(R"({"succeeded":true,"kvs":[1],"header":{"revision":"42"},
                                 "ID":7,"name":"n","nothing":null})");
  EXPECT_TRUE(bool_member(r, "succeeded", false, kWhere));
  EXPECT_FALSE(bool_member(r, "absent", false, kWhere));
  EXPECT_FALSE(bool_member(r, "nothing", false, kWhere));  // null is absent
  EXPECT_EQ(array_member(r, "kvs", kWhere).size(), 1u);
  EXPECT_TRUE(array_member(r, "absent", kWhere).empty());
  EXPECT_EQ(int64_member(object_member(r, "header", kWhere), "revision", kWhere), 42);
  EXPECT_TRUE(object_member(r, "absent", kWhere).empty());
  EXPECT_EQ(int64_member(r, "ID", kWhere), 7);
  EXPECT_EQ(int64_member(r, "absent", kWhere, -1), -1);
  EXPECT_EQ(string_member(r, "name", kWhere), "n");
  EXPECT_EQ(string_member(r, "absent", kWhere, "PUT"), "PUT");
}

TEST(CheckedJson, WrongTypesNameTheAnswerAndTheMember) {
  const Json r = Json::parse(R"({"succeeded":"true","kvs":{"a":1},"token":5,
                                 "header":{"revision":"twelve"},"big":18446744073709551615,
                                 "f":1.5,"neg":"-3"})");
  EXPECT_EQ(input_error([&] { bool_member(r, "succeeded", false, kWhere); }),
            kWhere + ": \"succeeded\" is a string, not a boolean");
  EXPECT_EQ(input_error([&] { array_member(r, "kvs", kWhere); }),
            kWhere + ": \"kvs\" is an object, not an array");
  EXPECT_EQ(input_error([&] { string_member(r, "token", kWhere); }),
            kWhere + ": \"token\" is a number, not a string");
  const Json& header = object_member(r, "header", kWhere);
  EXPECT_EQ(input_error([&] { int64_member(header, "revision", kWhere); }),
            kWhere + ": \"revision\" \"twelve\" is not a 64-bit integer");
  EXPECT_NE(input_error([&] { int64_member(r, "big", kWhere); }).find("out of range"), std::string::npos);
  EXPECT_NE(input_error([&] { int64_member(r, "f", kWhere); }).find("not an integer"), std::string::npos);
  EXPECT_EQ(int64_member(r, "neg", kWhere), -3);
  // Not an object at all.
  EXPECT_EQ(input_error([&] { bool_member(Json::array(), "succeeded", false, kWhere); }),
            kWhere + ": an array where an object with \"succeeded\" belongs");
  EXPECT_EQ(input_error([&] { object_item(Json(3), "an event", kWhere); }),
            kWhere + ": an event is a number, not an object");
}

TEST(CheckedJson, ParseAnswerChecksLimitsFirst) {
  const core::JsonLimits limits{1 << 20, 64};
  EXPECT_EQ(parse_answer(R"({"a":[1]})", limits, kWhere)["a"][0], 1);
  EXPECT_NE(input_error([&] { parse_answer(std::string(100000, '['), limits, kWhere); })
                .find("nests arrays and objects more than 64 deep"),
            std::string::npos);
  EXPECT_NE(input_error([&] { parse_answer("{\"a\":\n", limits, kWhere); }).find("not JSON"),
            std::string::npos);
  // Quoted in errors as printable text: no forged log lines.
  EXPECT_NE(input_error([&] { parse_answer("x\nERROR fake", limits, kWhere); }).find("x\\x0aERROR"),
            std::string::npos);
}

TEST(CheckedJson, CountingTurnsTypeErrorsIntoCountedInputErrors) {
  core::InputErrors errors;
  // A type this code forgot to check: nlohmann's type_error becomes a retry.
  const std::string what = input_error([&] {
    counting_input_errors(&errors, core::InputSource::kEtcd, "etcd x", [] {
      return Json::parse(R"({"a":"b"})").at("a").get<bool>();
    });
  });
  EXPECT_NE(what.find("etcd x: malformed answer ("), std::string::npos) << what;
  EXPECT_EQ(errors.get(core::InputSource::kEtcd), 1u);
  input_error([&] {
    counting_input_errors(&errors, core::InputSource::kEtcd, "etcd x",
                          [] { throw StoreInputError("bad"); });
  });
  EXPECT_EQ(errors.get(core::InputSource::kEtcd), 2u);
  // Outages are not input errors.
  EXPECT_THROW(counting_input_errors(&errors, core::InputSource::kEtcd, "etcd x",
                                     [] { throw StoreUnavailable("down"); }),
               StoreUnavailable);
  EXPECT_EQ(errors.get(core::InputSource::kEtcd), 2u);
  EXPECT_EQ(errors.get(core::InputSource::kKube), 0u);
  EXPECT_EQ(counting_input_errors(nullptr, core::InputSource::kEtcd, "", [] { return 5; }), 5);
}

}  // namespace
}  // namespace udpring::io
