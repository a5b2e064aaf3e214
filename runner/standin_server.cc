#include "runner/standin_server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "runner/hashing.h"

namespace evalctl::runner {
namespace {

using json = nlohmann::json;

// Salts that keep the per-request coins independent of each other.
constexpr uint64_t kCorrectSalt = 0x636f7272656374ULL;
constexpr uint64_t kErrorSalt = 0x6572726f72ULL;
constexpr uint64_t kHangSalt = 0x68616e67ULL;
constexpr uint64_t kLatencySalt = 0x6c6174656e6379ULL;
constexpr uint64_t kVariantSalt = 0x76617269616e74ULL;

void SetJson(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void SetError(httplib::Response& res, int status, const std::string& type,
              const std::string& message) {
  SetJson(res, status, {{"error", {{"message", message}, {"type", type}, {"code", status}}}});
}

// body[key] when it is a string, else "".
std::string StringField(const json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

int64_t CountWords(absl::string_view text) {
  int64_t count = 0;
  for (absl::string_view word : absl::StrSplit(text, absl::ByAnyChar(" \n\t"), absl::SkipEmpty())) {
    (void)word;
    ++count;
  }
  return count;
}

// Applies the request's stop sequences (a string or a list of strings).
std::string ApplyStop(std::string text, const json& stop) {
  std::vector<std::string> sequences;
  if (stop.is_string()) sequences.push_back(stop.get<std::string>());
  if (stop.is_array()) {
    for (const json& s : stop) {
      if (s.is_string() && !s.get<std::string>().empty()) sequences.push_back(s.get<std::string>());
    }
  }
  size_t cut = text.size();
  for (const std::string& s : sequences) cut = std::min(cut, text.find(s));
  text.resize(cut);
  return text;
}

// Keeps the first `max_tokens` words (a "token" here is a word). Returns whether it cut.
bool Truncate(std::string& text, int64_t max_tokens) {
  if (max_tokens <= 0) return false;
  int64_t words = 0;
  bool in_word = false;
  for (size_t i = 0; i < text.size(); ++i) {
    bool space = text[i] == ' ' || text[i] == '\n' || text[i] == '\t';
    if (!space && !in_word) {
      if (++words > max_tokens) {
        text.resize(i);
        return true;
      }
    }
    in_word = !space;
  }
  return false;
}

// cpp-httplib 0.11 listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG is compiled into
// Debian's shared library), so a burst of concurrent connects loses SYNs and waits for a 1 s
// retransmit. Listening again on the socket it created raises the backlog (Linux allows that).
void RaiseListenBacklog(int port) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    int fd = -1;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &fd)) continue;
    int listening = 0;
    socklen_t length = sizeof(listening);
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0 || !listening) {
      continue;
    }
    sockaddr_storage address{};
    length = sizeof(address);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) continue;
    int bound_port = -1;
    if (address.ss_family == AF_INET) {
      bound_port = ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
    } else if (address.ss_family == AF_INET6) {
      bound_port = ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
    }
    if (bound_port == port) ::listen(fd, SOMAXCONN);
  }
}

}  // namespace

StandinServer::StandinServer(StandinOptions options, Knowledge knowledge)
    : options_(std::move(options)),
      knowledge_(std::move(knowledge)),
      server_(std::make_unique<httplib::Server>()) {
  const size_t threads = static_cast<size_t>(std::max(1, options_.threads));
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_->set_keep_alive_max_count(100000);
  server_->set_tcp_nodelay(true);
  server_->set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request&, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        // FastAPI's shape, as vLLM answers an unknown route.
        res.set_content(
            json{{"detail", res.status == 404 ? "Not Found" : "Method Not Allowed"}}.dump(),
            "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }));
  server_->set_pre_routing_handler([this](const httplib::Request&, httplib::Response&) {
    absl::MutexLock lock(&mu_);
    ++http_requests_;
    return httplib::Server::HandlerResponse::Unhandled;
  });

  server_->Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(
        "evalctl-standin: a stand-in for an OpenAI-compatible model server, for demos and "
        "tests of evalctl. It is NOT a model: it looks up the answers of the bundled benchmark "
        "datasets and answers right with a configured probability.\n",
        "text/plain");
  });
  server_->Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (!Ready()) {
      SetJson(res, 503, {{"status", "starting"},
                         {"ready_in_s", absl::ToDoubleSeconds(ready_at_ - absl::Now())}});
      return;
    }
    SetJson(res, 200, {{"status", "ok"}});
  });
  server_->Get("/stats", [this](const httplib::Request&, httplib::Response& res) {
    SetJson(res, 200, Stats());
  });
  server_->Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    if (!Ready()) {
      SetError(res, 503, "ServiceUnavailable", "the server is starting");
      return;
    }
    SetJson(res, 200,
            {{"object", "list"},
             {"data", json::array({{{"id", options_.model_name},
                                    {"object", "model"},
                                    {"created", 0},
                                    {"owned_by", "evalctl-standin"},
                                    {"max_model_len", 4096}}})}});
  });
  server_->Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    HandleCompletion(req, res, EndpointType::kChat);
  });
  server_->Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    HandleCompletion(req, res, EndpointType::kCompletions);
  });
}

StandinServer::~StandinServer() { Stop(); }

absl::StatusOr<int> StandinServer::Bind() {
  int port = options_.port == 0 ? server_->bind_to_any_port(options_.host)
                                : (server_->bind_to_port(options_.host, options_.port)
                                       ? options_.port
                                       : -1);
  if (port <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.host, ":",
                                               options_.port == 0 ? std::string("<any port>")
                                                                  : absl::StrCat(options_.port)));
  }
  port_ = port;
  RaiseListenBacklog(port);
  ready_at_ = absl::Now() + options_.startup_delay;
  return port;
}

void StandinServer::Serve() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    serving_ = true;
  }
  server_->listen_after_bind();
  absl::MutexLock lock(&mu_);
  serving_ = false;
}

void StandinServer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    cv_.SignalAll();
  }
  // Serve() may be between deciding to serve and listening: wait for it to listen (or to give
  // up), or stop() would find nothing to stop.
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (absl::Now() < deadline) {
    {
      absl::MutexLock lock(&mu_);
      if (!serving_) return;
    }
    if (server_->is_running()) break;
    absl::SleepFor(absl::Milliseconds(1));
  }
  server_->stop();
}

std::string StandinServer::base_url() const {
  return absl::StrCat("http://", options_.host, ":", port_);
}

bool StandinServer::Ready() const { return absl::Now() >= ready_at_; }

bool StandinServer::Sleep(absl::Duration d) const {
  absl::Time deadline = absl::Now() + d;
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    if (cv_.WaitWithDeadline(&mu_, deadline)) break;
  }
  return !stopping_;
}

void StandinServer::HandleCompletion(const httplib::Request& req, httplib::Response& res,
                                     EndpointType type) {
  const char* route = type == EndpointType::kChat ? "/v1/chat/completions" : "/v1/completions";
  {
    absl::MutexLock lock(&mu_);
    ++completion_requests_;
  }
  auto reject = [&](int status, const std::string& error_type, const std::string& message) {
    {
      absl::MutexLock lock(&mu_);
      if (status == 503) {
        ++rejected_starting_;
      } else {
        ++rejected_other_;
      }
    }
    SetError(res, status, error_type, message);
  };
  if (!Ready()) {
    reject(503, "ServiceUnavailable", "the server is starting");
    return;
  }
  if (!options_.api_key.empty() &&
      req.get_header_value("Authorization") != absl::StrCat("Bearer ", options_.api_key)) {
    reject(401, "AuthenticationError", "missing or wrong API key");
    return;
  }
  json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object()) {
    reject(400, "BadRequestError", "the request body is not a JSON object");
    return;
  }
  std::string model = StringField(body, "model");
  if (options_.strict_model && model != options_.model_name) {
    reject(404, "NotFoundError", absl::StrCat("The model `", model, "` does not exist."));
    return;
  }
  if (body.contains("stream") && body["stream"].is_boolean() && body["stream"].get<bool>()) {
    reject(400, "BadRequestError", "evalctl-standin does not support streaming");
    return;
  }
  // The prompt: the messages' text (chat) or the prompt string(s) (completions).
  std::vector<std::string> prompts;
  std::string lookup_text;
  if (type == EndpointType::kChat) {
    const json* messages = body.contains("messages") ? &body["messages"] : nullptr;
    if (messages == nullptr || !messages->is_array() || messages->empty()) {
      reject(400, "BadRequestError", "\"messages\" must be a non-empty array");
      return;
    }
    for (const json& message : *messages) {
      if (!message.is_object()) continue;
      const json& content = message.contains("content") ? message["content"] : json();
      if (content.is_string()) {
        // The last user message is what is asked.
        if (StringField(message, "role") == "user") lookup_text = content.get<std::string>();
      } else if (content.is_array()) {  // [{"type": "text", "text": ...}]
        std::string text;
        for (const json& part : content) {
          if (StringField(part, "type") == "text") {
            absl::StrAppend(&text, StringField(part, "text"));
          }
        }
        if (StringField(message, "role") == "user") lookup_text = text;
      }
    }
    prompts.push_back(messages->dump(-1, ' ', false, json::error_handler_t::replace));
  } else {
    const json prompt = body.contains("prompt") ? body["prompt"] : json();
    if (prompt.is_string()) {
      prompts.push_back(prompt.get<std::string>());
    } else if (prompt.is_array() && !prompt.empty()) {
      for (const json& p : prompt) {
        if (!p.is_string()) {
          reject(400, "BadRequestError", "\"prompt\" must be a string or a list of strings");
          return;
        }
        prompts.push_back(p.get<std::string>());
      }
    } else {
      reject(400, "BadRequestError", "\"prompt\" must be a string or a list of strings");
      return;
    }
  }

  // Per-prompt identity: the route and the prompt. The n-th receipt of the same prompt decides
  // the injected faults, so a retry gets a fresh (but reproducible) coin.
  std::string prompt_key = ShortHashHex(absl::StrCat(route, "\n", absl::StrJoin(prompts, "\x1f")));
  int64_t receipt = 0;
  {
    absl::MutexLock lock(&mu_);
    receipt = ++per_prompt_[prompt_key].received;
  }
  const std::string coin = absl::StrCat(prompt_key, "#", receipt);
  if (options_.error_rate > 0 && UnitInterval(coin, options_.seed ^ kErrorSalt) < options_.error_rate) {
    {
      absl::MutexLock lock(&mu_);
      ++errors_injected_;
    }
    SetError(res, 500, "InternalServerError",
             "injected error (evalctl-standin --error-rate), try again");
    return;
  }
  if (options_.hang_rate > 0 && UnitInterval(coin, options_.seed ^ kHangSalt) < options_.hang_rate) {
    {
      absl::MutexLock lock(&mu_);
      ++hangs_injected_;
    }
    Sleep(options_.hang);
    SetError(res, 504, "Timeout", "injected hang (evalctl-standin --hang-rate)");
    return;
  }
  absl::Duration latency = options_.latency;
  if (options_.jitter > absl::ZeroDuration()) {
    double u = UnitInterval(coin, options_.seed ^ kLatencySalt);
    latency += (2 * u - 1) * options_.jitter;
  }
  if (latency > absl::ZeroDuration() && !Sleep(latency)) {
    SetError(res, 503, "ServiceUnavailable", "the server is shutting down");
    return;
  }

  const int64_t max_tokens = body.contains("max_tokens") && body["max_tokens"].is_number_integer()
                                 ? body["max_tokens"].get<int64_t>()
                                 : 0;
  const json stop = body.contains("stop") ? body["stop"] : json();
  json choices = json::array();
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t correct_count = 0;
  int64_t unknown_count = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string& identity = prompts[i];
    const std::string& asked = type == EndpointType::kChat ? lookup_text : prompts[i];
    KnownAnswer known = knowledge_.Lookup(asked);
    bool correct = UnitInterval(identity, options_.seed ^ kCorrectSalt) < options_.accuracy;
    uint64_t variant = StableHash64(identity, options_.seed ^ kVariantSalt);
    std::string text = ApplyStop(ComposeReply(known, correct, type, variant), stop);
    std::string finish_reason = Truncate(text, max_tokens) ? "length" : "stop";
    if (!known.known) ++unknown_count;
    if (known.known && correct) ++correct_count;
    prompt_tokens += CountWords(asked);
    completion_tokens += CountWords(text);
    if (options_.log_requests) {
      LOG(INFO) << route << " prompt=" << prompt_key << " source=" << (known.known ? known.source : "unknown")
                << " correct=" << (known.known && correct) << " reply=" << json(text).dump();
    }
    if (type == EndpointType::kChat) {
      choices.push_back({{"index", i},
                         {"message", {{"role", "assistant"}, {"content", text}}},
                         {"finish_reason", finish_reason}});
    } else {
      choices.push_back(
          {{"index", i}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", finish_reason}});
    }
  }
  {
    absl::MutexLock lock(&mu_);
    ++answered_;
    ++per_prompt_[prompt_key].answered;
    answered_correct_ += correct_count;
    answered_unknown_ += unknown_count;
  }
  SetJson(res, 200,
          {{"id", absl::StrCat(type == EndpointType::kChat ? "chatcmpl-" : "cmpl-", prompt_key)},
           {"object", type == EndpointType::kChat ? "chat.completion" : "text_completion"},
           {"created", absl::ToUnixSeconds(absl::Now())},
           {"model", model.empty() ? options_.model_name : model},
           {"choices", choices},
           {"usage",
            {{"prompt_tokens", prompt_tokens},
             {"completion_tokens", completion_tokens},
             {"total_tokens", prompt_tokens + completion_tokens}}}});
}

json StandinServer::Stats() const {
  absl::MutexLock lock(&mu_);
  json per_prompt = json::object();
  int64_t duplicate_answers = 0;
  int64_t max_answers = 0;
  for (const auto& [key, count] : per_prompt_) {
    per_prompt[key] = {{"received", count.received}, {"answered", count.answered}};
    duplicate_answers += std::max<int64_t>(0, count.answered - 1);
    max_answers = std::max(max_answers, count.answered);
  }
  return {{"model", options_.model_name},
          {"note", "evalctl-standin is a stand-in for demos and tests, not a model"},
          {"ready", Ready()},
          {"http_requests", http_requests_},
          {"completion_requests", completion_requests_},
          {"answered", answered_},
          {"answered_correct", answered_correct_},
          {"answered_unknown", answered_unknown_},
          {"errors_injected", errors_injected_},
          {"hangs_injected", hangs_injected_},
          {"rejected_starting", rejected_starting_},
          {"rejected_other", rejected_other_},
          {"unique_prompts", static_cast<int64_t>(per_prompt_.size())},
          {"duplicate_answers", duplicate_answers},
          {"max_answers_per_prompt", max_answers},
          {"per_prompt", per_prompt}};
}

}  // namespace evalctl::runner
