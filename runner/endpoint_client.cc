#include "runner/endpoint_client.h"

#include <httplib.h>

#include <atomic>
#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace evalctl::runner {
namespace {

std::string DefaultRoute(EndpointType type) {
  return type == EndpointType::kChat ? "/chat/completions" : "/completions";
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

std::chrono::microseconds ToChrono(absl::Duration d) {
  return std::chrono::microseconds(absl::ToInt64Microseconds(d));
}

}  // namespace

absl::StatusOr<EndpointUrl> ParseEndpointUrl(absl::string_view url, EndpointType type) {
  absl::string_view rest = absl::StripAsciiWhitespace(url);
  std::string scheme;
  if (absl::ConsumePrefix(&rest, "http://")) {
    scheme = "http";
  } else if (absl::ConsumePrefix(&rest, "https://")) {
    scheme = "https";
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "endpoint URL \"", url, "\" must start with http:// or https:// (e.g. "
        "http://127.0.0.1:8000/v1/chat/completions)"));
  }
  size_t slash = rest.find_first_of("/?");
  absl::string_view authority = rest.substr(0, slash);
  std::string path(slash == absl::string_view::npos ? "" : rest.substr(slash));
  if (size_t at = authority.rfind('@'); at != absl::string_view::npos) {
    authority.remove_prefix(at + 1);  // user info is not supported; never echo it
  }
  if (authority.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("endpoint URL has no host: \"", url, "\""));
  }
  std::string query;
  if (size_t q = path.find('?'); q != std::string::npos) {
    query = path.substr(q);
    path.resize(q);
  }
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (path.empty() || path == "/") {
    path = "/v1" + DefaultRoute(type);
  } else if (absl::EndsWith(path, "/v1")) {
    path += DefaultRoute(type);
  }
  EndpointUrl out;
  out.scheme_host_port = absl::StrCat(scheme, "://", authority);
  out.path = path + query;
  out.display = absl::StrCat(scheme, "://", authority, path);
  return out;
}

std::string RedactUrls(absl::string_view text) {
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t sep = text.find("://", pos);
    if (sep == absl::string_view::npos) break;
    size_t start = sep;
    while (start > pos && (absl::ascii_isalnum(static_cast<unsigned char>(text[start - 1])) ||
                           text[start - 1] == '+' || text[start - 1] == '-' ||
                           text[start - 1] == '.')) {
      --start;
    }
    size_t end = sep + 3;
    while (end < text.size() && !absl::ascii_isspace(static_cast<unsigned char>(text[end]))) ++end;
    absl::string_view url = text.substr(sep + 3, end - sep - 3);
    size_t authority_end = url.find_first_of("/?#");
    absl::string_view authority = url.substr(0, authority_end);
    absl::string_view rest =
        authority_end == absl::string_view::npos ? absl::string_view() : url.substr(authority_end);
    if (size_t at = authority.rfind('@'); at != absl::string_view::npos) {
      authority.remove_prefix(at + 1);
    }
    rest = rest.substr(0, rest.find_first_of("?#"));
    absl::StrAppend(&out, text.substr(pos, sep + 3 - pos), authority, rest);
    pos = end;
  }
  absl::StrAppend(&out, text.substr(pos));
  return out;
}

std::optional<EndpointType> EndpointTypeFromUrl(absl::string_view url) {
  absl::string_view path = url.substr(0, url.find('?'));
  while (absl::ConsumeSuffix(&path, "/")) {
  }
  if (absl::EndsWith(path, "/chat/completions")) return EndpointType::kChat;
  if (absl::EndsWith(path, "/completions")) return EndpointType::kCompletions;
  return std::nullopt;
}

const char* FailureKindName(FailureKind kind) {
  switch (kind) {
    case FailureKind::kNone: return "ok";
    case FailureKind::kConnection: return "connection";
    case FailureKind::kTimeout: return "timeout";
    case FailureKind::kServerError: return "server_error";
    case FailureKind::kRateLimited: return "rate_limited";
    case FailureKind::kClientError: return "client_error";
    case FailureKind::kNotFound: return "not_found";
    case FailureKind::kBadResponse: return "bad_response";
    case FailureKind::kCanceled: return "canceled";
  }
  return "unknown";
}

bool IsRetryable(FailureKind kind) {
  return kind == FailureKind::kConnection || kind == FailureKind::kTimeout ||
         kind == FailureKind::kServerError || kind == FailureKind::kRateLimited;
}

EndpointClient::EndpointClient(const EndpointUrl& url, const ClientOptions& options)
    : url_(url), options_(options), client_(std::make_unique<httplib::Client>(url.scheme_host_port)) {
  client_->set_connection_timeout(ToChrono(options_.connect_timeout));
  client_->set_read_timeout(ToChrono(options_.request_timeout));
  client_->set_write_timeout(ToChrono(options_.request_timeout));
  client_->set_keep_alive(true);
  client_->set_tcp_nodelay(true);
  client_->set_follow_location(false);
}

EndpointClient::~EndpointClient() = default;

void EndpointClient::Cancel() {
  canceled_.store(true);
  client_->stop();
}

PostResult EndpointClient::PostJson(const std::string& body) {
  PostResult result;
  if (canceled_.load()) {
    result.failure = FailureKind::kCanceled;
    result.detail = "canceled";
    return result;
  }
  httplib::Headers headers = {{"Accept", "application/json"},
                              {"User-Agent", "evalctl-runner/0.1"}};
  if (!options_.api_key.empty()) {
    headers.emplace("Authorization", absl::StrCat("Bearer ", options_.api_key));
  }
  absl::Time start = absl::Now();
  httplib::Result response = client_->Post(url_.path, headers, body, "application/json");
  result.elapsed = absl::Now() - start;
  if (canceled_.load()) {
    result.failure = FailureKind::kCanceled;
    result.detail = "canceled";
    return result;
  }
  if (!response) {
    httplib::Error error = response.error();
    switch (error) {
      case httplib::Error::Connection:
        result.failure = FailureKind::kConnection;
        result.detail = "cannot connect (connection refused or host unreachable)";
        break;
      case httplib::Error::ConnectionTimeout:
        result.failure = FailureKind::kConnection;
        result.detail = absl::StrCat("cannot connect within ",
                                     absl::FormatDuration(options_.connect_timeout));
        break;
      case httplib::Error::SSLConnection:
      case httplib::Error::SSLServerVerification:
      case httplib::Error::SSLLoadingCerts:
        result.failure = FailureKind::kConnection;
        result.detail = absl::StrCat("TLS error (", httplib::to_string(error), ")");
        break;
      case httplib::Error::Read:
        result.failure = FailureKind::kTimeout;
        result.detail =
            result.elapsed >= options_.request_timeout - absl::Milliseconds(50)
                ? absl::StrCat("no response within the request timeout of ",
                               absl::FormatDuration(options_.request_timeout))
                : "the connection closed before a complete response";
        break;
      case httplib::Error::Canceled:
        result.failure = FailureKind::kCanceled;
        result.detail = "canceled";
        break;
      default:
        result.failure = FailureKind::kConnection;
        result.detail = absl::StrCat("request failed (", httplib::to_string(error), ")");
        break;
    }
    return result;
  }
  result.http_status = response->status;
  result.body = response->body;
  if (response->status >= 200 && response->status < 300) return result;
  if (response->has_header("Retry-After")) {
    double seconds = 0;
    if (absl::SimpleAtod(response->get_header_value("Retry-After"), &seconds) && seconds >= 0) {
      result.retry_after_s = seconds;
    }
  }
  const int status = response->status;
  if (status >= 500) {
    result.failure = FailureKind::kServerError;
  } else if (status == 429 || status == 408) {
    result.failure = FailureKind::kRateLimited;
  } else if (status == 404) {
    result.failure = FailureKind::kNotFound;
  } else {
    result.failure = FailureKind::kClientError;
  }
  result.detail = absl::StrCat("HTTP ", status, ": ", Snippet(response->body));
  return result;
}

}  // namespace evalctl::runner
