#include "runner/prompt.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "runner/hashing.h"

namespace evalctl::runner {
namespace {

using json = nlohmann::json;

std::string ChoiceLines(const Item& item) {
  std::string lines;
  for (size_t i = 0; i < item.choices.size(); ++i) {
    absl::StrAppend(&lines, ChoiceLetter(static_cast<int>(i)), ". ", item.choices[i], "\n");
  }
  return lines;
}

std::string Snippet(absl::string_view body) {
  constexpr size_t kMax = 200;
  std::string out(body.substr(0, kMax));
  for (char& c : out) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  if (body.size() > kMax) out += "...";
  return out;
}

}  // namespace

absl::StatusOr<EndpointType> ParseEndpointType(absl::string_view text) {
  std::string lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (lower == "chat") return EndpointType::kChat;
  if (lower == "completions" || lower == "completion") return EndpointType::kCompletions;
  return absl::InvalidArgumentError(absl::StrCat(
      "endpoint type \"", text, "\" is not supported by evalctl-runner (chat or completions)"));
}

const char* EndpointTypeName(EndpointType type) {
  return type == EndpointType::kChat ? "chat" : "completions";
}

std::string BuildPrompt(const Item& item, Format format, EndpointType type) {
  const bool mc = format == Format::kMultipleChoice;
  if (type == EndpointType::kCompletions) {
    return absl::StrCat("Question: ", item.question, "\n", mc ? ChoiceLines(item) : "", "Answer:");
  }
  if (mc) {
    return absl::StrCat(item.question, "\n\n", ChoiceLines(item),
                        "\nReply with the letter of the correct option. Give your final answer "
                        "on the last line as \"Answer: <letter>\".");
  }
  return absl::StrCat(item.question,
                      "\n\nGive your final answer on the last line as \"Answer: <answer>\".");
}

json BuildRequestBody(const Item& item, Format format, EndpointType type,
                      const std::string& model_id, const GenerationParams& params) {
  json body = json::object();
  body["model"] = model_id;
  body["max_tokens"] = params.max_tokens;
  body["temperature"] = params.temperature;
  if (params.top_p.has_value()) body["top_p"] = *params.top_p;
  std::string prompt = BuildPrompt(item, format, type);
  if (type == EndpointType::kChat) {
    json messages = json::array();
    if (!params.system_prompt.empty()) {
      messages.push_back({{"role", "system"}, {"content", params.system_prompt}});
    }
    messages.push_back({{"role", "user"}, {"content", prompt}});
    body["messages"] = std::move(messages);
  } else {
    body["prompt"] = prompt;
    // A base model goes on to invent the next question; stop it at the end of the answer.
    body["stop"] = json::array({"\n\n", "\nQuestion:"});
  }
  return body;
}

std::string RequestKey(EndpointType type, const json& body) {
  return Sha256Hex(absl::StrCat(EndpointTypeName(type), "\n", body.dump()));
}

absl::StatusOr<CompletionText> ParseCompletionResponse(absl::string_view body, EndpointType type) {
  json parsed = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat("the response is not JSON: \"", Snippet(body), "\""));
  }
  if (!parsed.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the response is not a JSON object: \"", Snippet(body), "\""));
  }
  auto choices = parsed.find("choices");
  if (choices == parsed.end() || !choices->is_array() || choices->empty() ||
      !(*choices)[0].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the response has no \"choices\" (not an OpenAI-compatible ", EndpointTypeName(type),
        " endpoint?): \"", Snippet(body), "\""));
  }
  const json& choice = (*choices)[0];
  CompletionText out;
  if (type == EndpointType::kChat) {
    auto message = choice.find("message");
    if (message == choice.end() || !message->is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the response's choices[0] has no \"message\" (a completions endpoint answering a chat "
          "request?): \"", Snippet(body), "\""));
    }
    auto content = message->find("content");
    if (content != message->end() && content->is_string()) out.text = content->get<std::string>();
  } else {
    auto text = choice.find("text");
    if (text == choice.end() || !text->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the response's choices[0] has no \"text\" (a chat endpoint answering a completions "
          "request?): \"", Snippet(body), "\""));
    }
    out.text = text->get<std::string>();
  }
  if (auto reason = choice.find("finish_reason"); reason != choice.end() && reason->is_string()) {
    out.finish_reason = reason->get<std::string>();
  }
  if (auto usage = parsed.find("usage"); usage != parsed.end() && usage->is_object()) {
    auto count = [&](const char* name) -> int64_t {
      auto it = usage->find(name);
      return it != usage->end() && it->is_number_integer() ? it->get<int64_t>() : 0;
    };
    out.prompt_tokens = count("prompt_tokens");
    out.completion_tokens = count("completion_tokens");
  }
  return out;
}

}  // namespace evalctl::runner
