// One HTTP(S) connection to an OpenAI-compatible endpoint, and the classification of what went
// wrong when a request fails (for retries and for error messages).
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "runner/prompt.h"

namespace httplib {
class Client;
}

namespace evalctl::runner {

struct EndpointUrl {
  std::string scheme_host_port;  // "http://127.0.0.1:8000"
  std::string path;              // "/v1/chat/completions" (with the query, if any)
  // For messages: scheme://host:port/path, without user info or query (they may hold secrets).
  std::string display;
};

// Parses the endpoint URL. A URL without a route ("http://host:8000" or ".../v1") gets the
// route of `type` appended (/v1/chat/completions or /v1/completions).
absl::StatusOr<EndpointUrl> ParseEndpointUrl(absl::string_view url, EndpointType type);

// `text` with every URL in it reduced to scheme://host:port/path (no user info, no query, no
// fragment: they may hold credentials), for records such as results.yml's command line.
std::string RedactUrls(absl::string_view text);

// The endpoint type a URL's route implies, if it implies one.
std::optional<EndpointType> EndpointTypeFromUrl(absl::string_view url);

enum class FailureKind {
  kNone,
  kConnection,   // refused, unreachable, DNS, TLS handshake
  kTimeout,      // no complete response within the request timeout
  kServerError,  // HTTP 5xx
  kRateLimited,  // HTTP 429 (and 408)
  kClientError,  // other HTTP 4xx: the request or the URL is wrong
  kNotFound,     // HTTP 404: wrong route (or unknown model)
  kBadResponse,  // 2xx that is not an OpenAI response (not JSON, no choices)
  kCanceled,     // Cancel() was called
};
const char* FailureKindName(FailureKind kind);
// Whether another attempt may succeed: connection errors, timeouts, 5xx and 429.
bool IsRetryable(FailureKind kind);

struct PostResult {
  FailureKind failure = FailureKind::kNone;
  int http_status = 0;
  std::string body;
  // Seconds the server asked us to wait (Retry-After), if it did.
  std::optional<double> retry_after_s;
  // What happened, for a log line or an error (names neither the URL nor any key).
  std::string detail;
  absl::Duration elapsed;
};

struct ClientOptions {
  absl::Duration connect_timeout = absl::Seconds(10);
  absl::Duration request_timeout = absl::Seconds(120);
  // Sent as "Authorization: Bearer <key>" when not empty. Never logged.
  std::string api_key;
};

class EndpointClient {
 public:
  EndpointClient(const EndpointUrl& url, const ClientOptions& options);
  ~EndpointClient();
  EndpointClient(const EndpointClient&) = delete;
  EndpointClient& operator=(const EndpointClient&) = delete;

  // POSTs a JSON body; 2xx comes back as kNone with the body, anything else classified.
  // Does not parse the body.
  PostResult PostJson(const std::string& body);
  // Aborts a request in flight (from another thread); later requests fail as kCanceled.
  void Cancel();

 private:
  EndpointUrl url_;
  ClientOptions options_;
  std::unique_ptr<httplib::Client> client_;
  std::atomic<bool> canceled_{false};
};

}  // namespace evalctl::runner
