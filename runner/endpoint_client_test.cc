// URL handling, request bodies and response parsing (no network).
#include "runner/endpoint_client.h"

#include "gtest/gtest.h"
#include "runner/prompt.h"

namespace evalctl::runner {
namespace {

TEST(ParseEndpointUrlTest, FullRoutesAreKept) {
  auto url = ParseEndpointUrl("http://127.0.0.1:8000/v1/chat/completions", EndpointType::kChat);
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->scheme_host_port, "http://127.0.0.1:8000");
  EXPECT_EQ(url->path, "/v1/chat/completions");
  EXPECT_EQ(url->display, "http://127.0.0.1:8000/v1/chat/completions");
}

TEST(ParseEndpointUrlTest, BaseUrlsGetTheRouteOfTheType) {
  EXPECT_EQ(ParseEndpointUrl("http://h:1", EndpointType::kChat)->path, "/v1/chat/completions");
  EXPECT_EQ(ParseEndpointUrl("http://h:1/", EndpointType::kCompletions)->path, "/v1/completions");
  EXPECT_EQ(ParseEndpointUrl("https://h/v1/", EndpointType::kCompletions)->path, "/v1/completions");
  EXPECT_EQ(ParseEndpointUrl("https://h/openai/v1", EndpointType::kChat)->path,
            "/openai/v1/chat/completions");
}

TEST(ParseEndpointUrlTest, DisplayDropsUserInfoAndQuery) {
  auto url = ParseEndpointUrl("https://user:secret@h:443/v1/completions?key=s3cr3t",
                              EndpointType::kCompletions);
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->display, "https://h:443/v1/completions");
  EXPECT_EQ(url->path, "/v1/completions?key=s3cr3t");
  EXPECT_EQ(url->display.find("secret"), std::string::npos);
}

TEST(ParseEndpointUrlTest, RejectsNonHttp) {
  EXPECT_FALSE(ParseEndpointUrl("127.0.0.1:8000/v1/completions", EndpointType::kChat).ok());
  EXPECT_FALSE(ParseEndpointUrl("ftp://h/v1", EndpointType::kChat).ok());
  EXPECT_FALSE(ParseEndpointUrl("http:///v1", EndpointType::kChat).ok());
}

TEST(RedactUrlsTest, DropsCredentialsFromUrls) {
  EXPECT_EQ(RedactUrls("--endpoint-url=https://user:pw@h:8443/v1/chat/completions?key=k#x"),
            "--endpoint-url=https://h:8443/v1/chat/completions");
  EXPECT_EQ(RedactUrls("a http://h/x?y=1 and http://u@g b"), "a http://h/x and http://g b");
  EXPECT_EQ(RedactUrls("no urls here"), "no urls here");
  EXPECT_EQ(RedactUrls("http://127.0.0.1:8000/v1/completions"),
            "http://127.0.0.1:8000/v1/completions");
}

TEST(EndpointTypeFromUrlTest, FromTheRoute) {
  EXPECT_EQ(EndpointTypeFromUrl("http://h/v1/chat/completions"), EndpointType::kChat);
  EXPECT_EQ(EndpointTypeFromUrl("http://h/v1/completions/"), EndpointType::kCompletions);
  EXPECT_EQ(EndpointTypeFromUrl("http://h/v1"), std::nullopt);
  EXPECT_EQ(*ParseEndpointType("Chat"), EndpointType::kChat);
  EXPECT_FALSE(ParseEndpointType("vlm").ok());
}

TEST(RetryPolicyTest, WhatIsRetried) {
  EXPECT_TRUE(IsRetryable(FailureKind::kConnection));
  EXPECT_TRUE(IsRetryable(FailureKind::kTimeout));
  EXPECT_TRUE(IsRetryable(FailureKind::kServerError));
  EXPECT_TRUE(IsRetryable(FailureKind::kRateLimited));
  EXPECT_FALSE(IsRetryable(FailureKind::kNotFound));
  EXPECT_FALSE(IsRetryable(FailureKind::kClientError));
  EXPECT_FALSE(IsRetryable(FailureKind::kBadResponse));
  EXPECT_FALSE(IsRetryable(FailureKind::kCanceled));
}

Item McItem() {
  Item item;
  item.id = "q1";
  item.question = "Which of the following equals 2 + 2?";
  item.choices = {"3", "4"};
  item.answer = "B";
  item.answer_index = 1;
  return item;
}

TEST(BuildRequestBodyTest, ChatAndCompletions) {
  GenerationParams params;
  params.max_tokens = 64;
  params.system_prompt = "Be brief.";
  nlohmann::json chat = BuildRequestBody(McItem(), Format::kMultipleChoice, EndpointType::kChat,
                                         "m", params);
  EXPECT_EQ(chat["model"], "m");
  EXPECT_EQ(chat["max_tokens"], 64);
  ASSERT_EQ(chat["messages"].size(), 2u);
  EXPECT_EQ(chat["messages"][0]["role"], "system");
  std::string user = chat["messages"][1]["content"];
  EXPECT_NE(user.find("Which of the following equals 2 + 2?\n\nA. 3\nB. 4\n"), std::string::npos);
  EXPECT_FALSE(chat.contains("top_p"));

  nlohmann::json completions = BuildRequestBody(McItem(), Format::kMultipleChoice,
                                                EndpointType::kCompletions, "m", {});
  EXPECT_EQ(completions["prompt"],
            "Question: Which of the following equals 2 + 2?\nA. 3\nB. 4\nAnswer:");
  EXPECT_TRUE(completions["stop"].is_array());
}

TEST(RequestKeyTest, StableAndSensitiveToWhatIsSent) {
  nlohmann::json body = BuildRequestBody(McItem(), Format::kMultipleChoice, EndpointType::kChat,
                                         "m", {});
  std::string key = RequestKey(EndpointType::kChat, body);
  EXPECT_EQ(key.size(), 64u);
  EXPECT_EQ(key, RequestKey(EndpointType::kChat, nlohmann::json::parse(body.dump())));
  nlohmann::json other_model = body;
  other_model["model"] = "n";
  EXPECT_NE(key, RequestKey(EndpointType::kChat, other_model));
  EXPECT_NE(key, RequestKey(EndpointType::kCompletions, body));
}

TEST(ParseCompletionResponseTest, ReadsTextAndUsage) {
  auto chat = ParseCompletionResponse(
      R"({"choices":[{"index":0,"message":{"role":"assistant","content":"Answer: B"},)"
      R"("finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2}})",
      EndpointType::kChat);
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(chat->text, "Answer: B");
  EXPECT_EQ(chat->finish_reason, "stop");
  EXPECT_EQ(chat->prompt_tokens, 12);
  auto completion = ParseCompletionResponse(
      R"({"choices":[{"text":" 42","finish_reason":null}],"usage":{"prompt_tokens":null}})",
      EndpointType::kCompletions);
  ASSERT_TRUE(completion.ok()) << completion.status();
  EXPECT_EQ(completion->text, " 42");
  EXPECT_EQ(completion->prompt_tokens, 0);
  // A null content (e.g. a refusal or tool call) is an empty answer, not an error.
  EXPECT_TRUE(ParseCompletionResponse(R"({"choices":[{"message":{"content":null}}]})",
                                      EndpointType::kChat)
                  .ok());
}

TEST(ParseCompletionResponseTest, SaysWhatIsWrong) {
  auto html = ParseCompletionResponse("<html><body>Welcome to nginx!</body></html>",
                                      EndpointType::kChat);
  EXPECT_FALSE(html.ok());
  EXPECT_NE(html.status().message().find("not JSON"), std::string::npos);
  EXPECT_NE(html.status().message().find("Welcome to nginx"), std::string::npos);
  auto no_choices = ParseCompletionResponse(R"({"object":"list","data":[]})", EndpointType::kChat);
  EXPECT_NE(no_choices.status().message().find("no \"choices\""), std::string::npos);
  auto wrong_type = ParseCompletionResponse(R"({"choices":[{"text":"x"}]})", EndpointType::kChat);
  EXPECT_NE(wrong_type.status().message().find("completions endpoint answering a chat request"),
            std::string::npos);
  EXPECT_FALSE(ParseCompletionResponse("[1,2]", EndpointType::kCompletions).ok());
}

}  // namespace
}  // namespace evalctl::runner
