#include "controller/config/node.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::config {
namespace {

using ::testing::HasSubstr;

TEST(LoadYamlTest, KeepsMarksAndQuoting) {
  auto n = LoadYaml("a:\n  b: 1\n  c: \"1\"\n  d: ~\n  e: ???\n", "f.yaml");
  ASSERT_TRUE(n.ok()) << n.status();
  const Node* b = Lookup(*n, "a.b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->mark().ToString(), "f.yaml:2:6");
  EXPECT_FALSE(b->quoted());
  EXPECT_EQ(*b->AsInt(), 1);
  EXPECT_TRUE(Lookup(*n, "a.c")->quoted());
  EXPECT_FALSE(Lookup(*n, "a.c")->AsBool().ok());
  EXPECT_TRUE(Lookup(*n, "a.d")->IsNull());
  EXPECT_TRUE(Lookup(*n, "a.e")->IsMissing());
}

TEST(LoadYamlTest, EmptyDocumentIsEmptyMap) {
  auto n = LoadYaml("", "f.yaml");
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE(n->IsMap());
  EXPECT_EQ(n->size(), 0u);
}

TEST(LoadYamlTest, SyntaxErrorNamesFileAndLine) {
  auto n = LoadYaml("a: 1\nb: [1, 2\n", "bad.yaml");
  ASSERT_FALSE(n.ok());
  EXPECT_THAT(n.status().message(), HasSubstr("bad.yaml:"));
  EXPECT_THAT(n.status().message(), HasSubstr("invalid YAML"));
}

TEST(LoadYamlTest, DuplicateKeysAreAnError) {
  auto n = LoadYaml("a: 1\nb: 2\na: 3\n", "dup.yaml");
  ASSERT_FALSE(n.ok());
  EXPECT_THAT(n.status().message(), HasSubstr("dup.yaml:3:1: duplicate key a"));
}

TEST(LoadYamlTest, AliasBombIsRefused) {
  std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  char prev = 'a';
  for (char c = 'b'; c <= 'k'; ++c) {
    bomb += std::string(1, c) + ": &" + c + " [*" + prev + ", *" + prev + ", *" + prev + ", *" +
            prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev +
            ", *" + prev + "]\n";
    prev = c;
  }
  auto n = LoadYaml(bomb, "bomb.yaml");
  ASSERT_FALSE(n.ok());
  EXPECT_THAT(n.status().message(), HasSubstr("more than"));
}

TEST(LoadYamlTest, DeepNestingIsRefused) {
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += "[";
  for (int i = 0; i < 100; ++i) deep += "]";
  auto n = LoadYaml("a: " + deep, "deep.yaml");
  ASSERT_FALSE(n.ok());
  EXPECT_THAT(n.status().message(), ::testing::AnyOf(HasSubstr("deeper"), HasSubstr("invalid")));
}

TEST(LoadYamlTest, OversizedInputIsRefused) {
  std::string big(2 << 20, ' ');
  auto n = LoadYaml(big, "big.yaml");
  ASSERT_FALSE(n.ok());
  EXPECT_THAT(n.status().message(), HasSubstr("larger than the limit"));
}

// Strings of a config end up in protobuf string fields (the job script, the resolved config),
// which must be valid UTF-8.
TEST(LoadYamlTest, InvalidUtf8IsRefusedWithItsPlace) {
  auto n = LoadYaml("a: 1\nb: caf\xC3\xA9\ncmd: echo h\xFFi\n", "bad.yaml");
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(n.status().message(),
              HasSubstr("bad.yaml:3:12: invalid UTF-8; a YAML file must be UTF-8 (byte 0xFF)"));
  // In a key, a truncated sequence, a surrogate, an overlong form.
  for (const char* bad : {"\xFF: 1\n", "k: \"\xE2\x82\"\n", "k: m\xED\xA0\x80\n", "k: \xC0\xAF\n"}) {
    n = LoadYaml(bad, "bad.yaml");
    ASSERT_FALSE(n.ok()) << bad;
    EXPECT_THAT(n.status().message(), HasSubstr("bad.yaml:1:")) << bad;
    EXPECT_THAT(n.status().message(), HasSubstr("invalid UTF-8")) << bad;
  }
  // A surrogate written as an escape is refused by the parser.
  n = LoadYaml("k: \"\\uD800\"\n", "esc.yaml");
  ASSERT_FALSE(n.ok());
  EXPECT_THAT(n.status().message(), HasSubstr("esc.yaml:1:"));
  // Raw control characters are not YAML (yaml-cpp turned a NUL and the byte after it into
  // invalid UTF-8); as escapes they load, and ToYaml writes them so that they read back.
  n = LoadYaml(std::string("k: NGC\0_API_KEY\n", 16), "nul.yaml");
  ASSERT_FALSE(n.ok());
  EXPECT_THAT(n.status().message(), HasSubstr("nul.yaml:1:7: control character"));
  EXPECT_THAT(n.status().message(), HasSubstr("(byte 0x00)"));
  EXPECT_FALSE(LoadYaml("k: a\x1b[31m\n", "esc.yaml").ok());
  EXPECT_TRUE(LoadYaml("k: a\x7f\n", "del.yaml").ok());
  n = LoadYaml("\"k\\0\": \"a\\0_b\\x01\\x7F\\e\"\n", "escapes.yaml");
  ASSERT_TRUE(n.ok()) << n.status();
  const std::string value("a\0_b\x01\x7F\x1b", 7);
  ASSERT_NE(n->Find(std::string("k\0", 2)), nullptr);
  EXPECT_EQ(n->Find(std::string("k\0", 2))->text(), value);
  auto again = LoadYaml(ToYaml(*n), "again.yaml");
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << ToYaml(*n);
  ASSERT_NE(again->Find(std::string("k\0", 2)), nullptr);
  EXPECT_EQ(again->Find(std::string("k\0", 2))->text(), value);
  // Valid multi-byte text loads.
  n = LoadYaml("k: \"caf\xC3\xA9 \xF0\x9F\x98\x80 \\x00 \\U0010FFFF\"\n", "ok.yaml");
  ASSERT_TRUE(n.ok()) << n.status();
}

// Numbers past what int64 or double hold are errors, never wrapped or infinite.
TEST(NodeTest, AbsurdNumbers) {
  EXPECT_FALSE(Node::Scalar("99999999999999999999999").AsInt().ok());
  EXPECT_FALSE(Node::Scalar("-9223372036854775809").AsInt().ok());
  EXPECT_EQ(*Node::Scalar("9223372036854775807").AsInt(), INT64_MAX);
  EXPECT_FALSE(Node::Scalar("1e309").AsInt().ok());
  EXPECT_FALSE(Node::Scalar("1e309").AsDouble().ok());
  EXPECT_FALSE(Node::Scalar("-1e309").AsDouble().ok());
  EXPECT_FALSE(Node::Scalar("1e-400").AsDouble().ok());
  EXPECT_DOUBLE_EQ(*Node::Scalar("1.7e308").AsDouble(), 1.7e308);
}

TEST(ToYamlTest, RoundTripsAndRedactsSecrets) {
  auto n = LoadYaml("a: {b: '1', c: [x, y]}\nd: plain\n", "f.yaml");
  ASSERT_TRUE(n.ok());
  Node secret = Node::Scalar("hf_value");
  secret.set_secret(true);
  secret.add_env_source("HF_TOKEN");
  n->Set("token", secret);
  std::string text = ToYaml(*n, "<secret>");
  EXPECT_THAT(text, HasSubstr("b: \"1\""));
  EXPECT_THAT(text, HasSubstr("token: <secret> from $HF_TOKEN"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("hf_value")));
  auto again = LoadYaml(ToYaml(*n), "again.yaml");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(Lookup(*again, "a.b")->quoted());
  EXPECT_EQ(Lookup(*again, "a.c.1")->text(), "y");
}

// Found by tests/fuzz: yaml-cpp writes a key of more than 1024 bytes as an explicit key, but a
// shorter one whose escapes make it longer than YAML's 1024 characters for an implicit key was
// written as one, and the text did not read back.
TEST(ToYamlTest, LongKeysReadBack) {
  Node root = Node::Map();
  const std::vector<std::string> keys = {
      std::string(3000, 'k'),
      std::string(300, '\0'),  // 300 `\x00` escapes: 1202 characters
      std::string(250, '\0'),  // 1002 characters: may stay an implicit key
      "short"};
  for (const std::string& key : keys) root.Set(key, Node::Scalar("v" + std::to_string(key.size())));
  auto again = LoadYaml(ToYaml(root), "again.yaml");
  ASSERT_TRUE(again.ok()) << again.status();
  for (const std::string& key : keys) {
    ASSERT_NE(again->Find(key), nullptr) << key.size();
    EXPECT_EQ(again->Find(key)->text(), "v" + std::to_string(key.size()));
  }
}

TEST(NodeTest, ScalarTyping) {
  EXPECT_TRUE(*Node::Scalar("yes").AsBool());
  EXPECT_FALSE(*Node::Scalar("off").AsBool());
  EXPECT_EQ(*Node::Scalar("1_000").AsInt(), 1000);
  EXPECT_FALSE(Node::Scalar("1.5").AsInt().ok());
  EXPECT_DOUBLE_EQ(*Node::Scalar("0.95").AsDouble(), 0.95);
  EXPECT_TRUE(Node::Scalar("1e3").LooksNonString());
  EXPECT_FALSE(Node::Scalar("04:00:00").LooksNonString());
  EXPECT_FALSE(Node::Scalar("abc").AsDouble().ok());
}

}  // namespace
}  // namespace evalctl::config
