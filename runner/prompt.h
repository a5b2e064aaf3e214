// OpenAI-compatible request bodies for dataset items, and the text of a response.
//
// Prompts (the stand-in server recognises the question inside them):
//   chat, exact:        "<question>\n\nGive your final answer on the last line as \"Answer: <answer>\"."
//   chat, mc:           "<question>\n\nA. <choice>\nB. <choice>\n...\n\nReply with the letter ... \"Answer: <letter>\"."
//   completions, exact: "Question: <question>\nAnswer:"
//   completions, mc:    "Question: <question>\nA. <choice>\n...\nAnswer:"
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "runner/dataset.h"

namespace evalctl::runner {

enum class EndpointType { kChat, kCompletions };

// "chat" / "completions" (case-insensitive); other types (vlm, embedding, ...) are an error.
absl::StatusOr<EndpointType> ParseEndpointType(absl::string_view text);
const char* EndpointTypeName(EndpointType type);

struct GenerationParams {
  int max_tokens = 512;
  double temperature = 0.0;
  std::optional<double> top_p;
  // Chat only: a system message before the question, when not empty.
  std::string system_prompt;
};

// The prompt text for `item` (chat: the user message; completions: the whole prompt).
std::string BuildPrompt(const Item& item, Format format, EndpointType type);

// The JSON body to POST. Keys are sorted (nlohmann::json objects are), so dump() is canonical.
nlohmann::json BuildRequestBody(const Item& item, Format format, EndpointType type,
                                const std::string& model_id, const GenerationParams& params);

// Cache key of a request: SHA-256 of the endpoint type and the canonical body. It does not
// include the URL, so a resumed attempt that reaches the model on another host still hits.
std::string RequestKey(EndpointType type, const nlohmann::json& body);

struct CompletionText {
  std::string text;
  std::string finish_reason;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// Reads choices[0].message.content (chat) or choices[0].text (completions). An error says what
// is wrong with the body (not JSON, no choices, ...); the caller adds the URL.
absl::StatusOr<CompletionText> ParseCompletionResponse(absl::string_view body, EndpointType type);

}  // namespace evalctl::runner
