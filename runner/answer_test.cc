#include "runner/answer.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::runner {
namespace {

using ::testing::ElementsAre;

TEST(CanonicalNumberTest, Normalises) {
  EXPECT_EQ(CanonicalNumber("42"), "42");
  EXPECT_EQ(CanonicalNumber("42.0"), "42");
  EXPECT_EQ(CanonicalNumber("42.500"), "42.5");
  EXPECT_EQ(CanonicalNumber("1,000"), "1000");
  EXPECT_EQ(CanonicalNumber("12,345,678.90"), "12345678.9");
  EXPECT_EQ(CanonicalNumber("+5"), "5");
  EXPECT_EQ(CanonicalNumber("-0"), "0");
  EXPECT_EQ(CanonicalNumber("-0.00"), "0");
  EXPECT_EQ(CanonicalNumber("-17"), "-17");
  EXPECT_EQ(CanonicalNumber("\xE2\x88\x92" "17"), "-17");  // Unicode minus
  EXPECT_EQ(CanonicalNumber(".5"), "0.5");
  EXPECT_EQ(CanonicalNumber("007"), "7");
  EXPECT_EQ(CanonicalNumber(" 42 "), "42");
}

TEST(CanonicalNumberTest, RejectsNonNumbers) {
  EXPECT_EQ(CanonicalNumber(""), std::nullopt);
  EXPECT_EQ(CanonicalNumber("abc"), std::nullopt);
  EXPECT_EQ(CanonicalNumber("42 apples"), std::nullopt);
  EXPECT_EQ(CanonicalNumber("4-2"), std::nullopt);
  EXPECT_EQ(CanonicalNumber("-"), std::nullopt);
}

TEST(FindNumbersTest, FindsNumbersInText) {
  EXPECT_THAT(FindNumbers("12 + 7 = 19."), ElementsAre("12", "7", "19"));
  EXPECT_THAT(FindNumbers("12-5 is 7"), ElementsAre("12", "5", "7"));
  EXPECT_THAT(FindNumbers("It is -5, not 5.0"), ElementsAre("-5", "5"));
  EXPECT_THAT(FindNumbers("about 1,000 km or 3.14159"), ElementsAre("1000", "3.14159"));
  EXPECT_THAT(FindNumbers("model b12 says 4"), ElementsAre("4"));
  EXPECT_THAT(FindNumbers("$42 (i.e. 42%)"), ElementsAre("42", "42"));
  EXPECT_THAT(FindNumbers("list: 1, 2, 3"), ElementsAre("1", "2", "3"));
  EXPECT_THAT(FindNumbers("no numbers here"), ElementsAre());
}

TEST(NormalizeAnswerTest, FoldsCasePunctuationArticlesAndNumbers) {
  EXPECT_EQ(NormalizeAnswer("The Answer: 42.0!"), "answer 42");
  EXPECT_EQ(NormalizeAnswer("  Paris.  "), "paris");
  EXPECT_EQ(NormalizeAnswer("an Apple, a pear"), "apple pear");
  EXPECT_EQ(NormalizeAnswer("**New   York**"), "new york");
  EXPECT_EQ(NormalizeAnswer("1,000"), "1000");
  EXPECT_EQ(NormalizeAnswer("theory"), "theory");  // only whole-word articles
}

TEST(ExtractFinalAnswerTest, UsesTheLastMarker) {
  EXPECT_EQ(ExtractFinalAnswer("Answer: 42").text, "42");
  EXPECT_EQ(ExtractFinalAnswer("answer: 1\nLet me redo it.\nFinal answer: 2").text, "2");
  EXPECT_EQ(ExtractFinalAnswer("The answer is Paris.").text, "Paris.");
  EXPECT_EQ(ExtractFinalAnswer("so x = 3\n#### 3").text, "3");
  EXPECT_EQ(ExtractFinalAnswer("**Answer:**\n\n17").text, "17");
  EXPECT_EQ(ExtractFinalAnswer("We get \\boxed{\\frac{1}{2}} at the end").text, "\\frac{1}{2}");
  FinalAnswer no_marker = ExtractFinalAnswer("I think\nit is 5\n\n");
  EXPECT_FALSE(no_marker.from_marker);
  EXPECT_EQ(no_marker.text, "it is 5");
}

TEST(JudgeExactTest, Numbers) {
  EXPECT_TRUE(JudgeExact("Answer: 42", "42").correct);
  EXPECT_TRUE(JudgeExact("Answer: 42.0", "42").correct);
  EXPECT_TRUE(JudgeExact("The answer is 42.", "42.00").correct);
  EXPECT_TRUE(JudgeExact("**42**", "42").correct);
  EXPECT_TRUE(JudgeExact("Let me work this out.\nThe result is 90.\n\n**Final answer:** 90", "90").correct);
  EXPECT_TRUE(JudgeExact("12 x 7 = 84, so 84", "84").correct);
  EXPECT_TRUE(JudgeExact("Answer: 5,000 meters", "5000").correct);
  EXPECT_TRUE(JudgeExact("Answer: -33", "-33").correct);
  EXPECT_TRUE(JudgeExact("Answer: \xE2\x88\x92" "33", "-33").correct);
  EXPECT_TRUE(JudgeExact("Answer: 5 km = 5000 m", "5000").correct);
  // The marker's segment wins over numbers after it in other lines? No: the segment is the line.
  EXPECT_TRUE(JudgeExact("Answer: 7\nI hope the answer is correct.", "7").correct);

  Judgement wrong = JudgeExact("Answer: 41", "42");
  EXPECT_FALSE(wrong.correct);
  EXPECT_EQ(wrong.extracted, "41");
  Judgement none = JudgeExact("I don't know.", "42");
  EXPECT_FALSE(none.correct);
  EXPECT_EQ(none.extracted, "");
  EXPECT_FALSE(JudgeExact("Answer: 33", "-33").correct);
}

TEST(JudgeExactTest, Text) {
  EXPECT_TRUE(JudgeExact("Answer: Paris", "paris").correct);
  EXPECT_TRUE(JudgeExact("The answer is the Pacific Ocean.", "Pacific Ocean").correct);
  EXPECT_TRUE(JudgeExact("Paris", "Paris").correct);
  EXPECT_FALSE(JudgeExact("Answer: Lyon", "Paris").correct);
  EXPECT_FALSE(JudgeExact("", "Paris").correct);
}

TEST(JudgeChoiceTest, ReadsLettersInManyShapes) {
  const std::vector<std::string> choices = {"137", "290", "291", "300"};
  for (const char* response :
       {"Answer: B", "answer: (B)", "The correct option is (B).", "B", "(B)", "B.", "**B**",
        "B. 290", "B) 290", "Let me check.\nOption B gives 290.\n\nAnswer: B", "290", "Answer: 290",
        "I think it's (B)", "The answer is **B**", "<think>maybe A</think>Answer: B"}) {
    Item item;
    item.choices = choices;
    item.answer_index = 1;
    Judgement judgement = Judge(response, item, Format::kMultipleChoice, /*completions=*/false);
    EXPECT_TRUE(judgement.correct) << response;
    EXPECT_EQ(judgement.extracted, "B") << response;
  }
}

TEST(JudgeChoiceTest, WrongAndMissing) {
  const std::vector<std::string> choices = {"137", "290", "291", "300"};
  EXPECT_FALSE(JudgeChoice("Answer: C", choices, 1).correct);
  EXPECT_EQ(JudgeChoice("Answer: E", choices, 1).extracted, "E");  // out of range, still read
  EXPECT_EQ(JudgeChoice("I don't know.", choices, 1).extracted, "");
  EXPECT_EQ(JudgeChoice("Answer: Because it is so", choices, 1).extracted, "");
  // "A" as an article is not an answer.
  EXPECT_EQ(JudgeChoice("A tough one, sorry", choices, 1).extracted, "");
}

TEST(JudgeTest, CompletionsContinuationIsCut) {
  Item item;
  item.answer = "124";
  EXPECT_TRUE(Judge(" 124\n\nQuestion: What is 2 + 2?\nAnswer: 4", item, Format::kExactMatch,
                    /*completions=*/true)
                  .correct);
  Item mc;
  mc.choices = {"1", "2", "3"};
  mc.answer_index = 2;
  EXPECT_TRUE(Judge(" C\nQuestion: Which ...\nA. 1\nAnswer: A", mc, Format::kMultipleChoice,
                    /*completions=*/true)
                  .correct);
}

}  // namespace
}  // namespace evalctl::runner
