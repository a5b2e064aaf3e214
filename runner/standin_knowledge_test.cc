#include "runner/standin_knowledge.h"

#include "gtest/gtest.h"
#include "runner/answer.h"
#include "runner/hashing.h"

namespace evalctl::runner {
namespace {

Knowledge Bundled() {
  Knowledge knowledge;
  std::vector<std::string> dirs = DatasetSearchDirs("");
  EXPECT_FALSE(dirs.empty());
  if (!dirs.empty()) {
    absl::Status status = knowledge.AddDirectory(dirs.front());
    EXPECT_TRUE(status.ok()) << status;
  }
  return knowledge;
}

TEST(HashingTest, StableAcrossRuns) {
  // Fixed values: a change here changes every cache key and every stand-in decision.
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(StableHash64("abc", 1), StableHash64("abc", 1));
  EXPECT_NE(StableHash64("abc", 1), StableHash64("abc", 2));
  double u = UnitInterval("prompt", 7);
  EXPECT_GE(u, 0.0);
  EXPECT_LT(u, 1.0);
  EXPECT_EQ(ShortHashHex("x").size(), 16u);
}

TEST(KnowledgeTest, KnowsEveryBundledItemInEveryPromptShape) {
  Knowledge knowledge = Bundled();
  EXPECT_EQ(knowledge.size(), 500u);
  std::vector<std::string> dirs = DatasetSearchDirs("");
  for (const char* name : {"arithmetic", "unit_conversion", "arithmetic_mc"}) {
    auto dataset = LoadDataset(*ResolveDatasetPath(name, dirs), std::nullopt);
    ASSERT_TRUE(dataset.ok());
    for (const Item& item : dataset->items) {
      for (EndpointType type : {EndpointType::kChat, EndpointType::kCompletions}) {
        KnownAnswer known = knowledge.Lookup(BuildPrompt(item, dataset->format, type));
        ASSERT_TRUE(known.known) << item.id;
        EXPECT_EQ(known.answer, item.answer) << item.id;
        EXPECT_EQ(known.format, dataset->format) << item.id;
      }
    }
  }
}

TEST(KnowledgeTest, ComputesArithmeticItHasNotSeen) {
  Knowledge knowledge;  // no datasets
  KnownAnswer exact = knowledge.Lookup("Question: What is 1234 × 3?\nAnswer:");
  ASSERT_TRUE(exact.known);
  EXPECT_EQ(exact.answer, "3702");
  EXPECT_EQ(knowledge.Lookup("What is 10 - 25?").answer, "-15");
  EXPECT_EQ(knowledge.Lookup("What is 84 ÷ 7?").answer, "12");
  KnownAnswer mc = knowledge.Lookup("What is 6 * 7?\nA. 41\nB. 42\nC. 43\n");
  ASSERT_TRUE(mc.known);
  EXPECT_EQ(mc.format, Format::kMultipleChoice);
  EXPECT_EQ(mc.answer, "B");
  EXPECT_FALSE(knowledge.Lookup("What is the capital of France?").known);
}

TEST(ComposeReplyTest, RightAndWrongRepliesJudgeAsSuch) {
  KnownAnswer exact{.known = true, .format = Format::kExactMatch, .answer = "-33"};
  KnownAnswer mc{.known = true,
                 .format = Format::kMultipleChoice,
                 .answer = "C",
                 .choices = {"1", "2", "3", "4"},
                 .answer_index = 2};
  Item exact_item;
  exact_item.answer = "-33";
  Item mc_item;
  mc_item.choices = mc.choices;
  mc_item.answer_index = 2;
  for (uint64_t variant = 0; variant < 2000; variant += 7) {
    uint64_t v = StableHash64("v", variant);
    for (EndpointType type : {EndpointType::kChat, EndpointType::kCompletions}) {
      bool completions = type == EndpointType::kCompletions;
      EXPECT_TRUE(Judge(ComposeReply(exact, true, type, v), exact_item, Format::kExactMatch,
                        completions).correct);
      EXPECT_FALSE(Judge(ComposeReply(exact, false, type, v), exact_item, Format::kExactMatch,
                         completions).correct);
      EXPECT_TRUE(Judge(ComposeReply(mc, true, type, v), mc_item, Format::kMultipleChoice,
                        completions).correct)
          << ComposeReply(mc, true, type, v);
      Judgement wrong = Judge(ComposeReply(mc, false, type, v), mc_item, Format::kMultipleChoice,
                              completions);
      EXPECT_FALSE(wrong.correct);
      EXPECT_FALSE(wrong.extracted.empty());
    }
  }
  EXPECT_EQ(ComposeReply(KnownAnswer{}, true, EndpointType::kChat, 0), "I don't know.");
}

}  // namespace
}  // namespace evalctl::runner
