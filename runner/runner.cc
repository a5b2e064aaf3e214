#include "runner/runner.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "nlohmann/json.hpp"
#include "runner/answer.h"
#include "runner/endpoint_client.h"

namespace evalctl::runner {
namespace {

using json = nlohmann::json;

struct PlannedRequest {
  std::string key;
  std::string body;
  std::string item_id;  // the first item that needs it
};

// What went wrong for good; the first one ends the run.
struct Fatal {
  int exit_code = kExitEndpoint;
  std::string message;
};

std::string Hint(FailureKind kind, int http_status, const std::string& model_id) {
  switch (kind) {
    case FailureKind::kConnection:
      return "Is the model server running, and are EVALCTL_ENDPOINT_URL / --endpoint-url right?";
    case FailureKind::kTimeout:
      return "The server accepts connections but does not answer in time; raise "
             "--request-timeout-s if it is just slow.";
    case FailureKind::kNotFound:
      return absl::StrCat(
          "The route does not exist on this server, or it does not serve model \"", model_id,
          "\": check the URL path (chat: /v1/chat/completions, completions: /v1/completions), "
          "the endpoint type and --model-id / EVALCTL_MODEL_ID.");
    case FailureKind::kClientError:
      if (http_status == 401 || http_status == 403) {
        return "The server refused the credentials: check the API key (the variable named by "
               "EVALCTL_API_KEY_NAME / --api-key-name).";
      }
      return "The server rejected the request: check the endpoint type, --model-id and the "
             "generation parameters.";
    case FailureKind::kBadResponse:
      return "This does not look like an OpenAI-compatible endpoint: check the URL and the "
             "endpoint type.";
    case FailureKind::kServerError:
    case FailureKind::kRateLimited:
      return "The server keeps failing; see its logs.";
    default:
      return "";
  }
}

std::string IsoTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

class Run {
 public:
  Run(const RunnerOptions& options, StopSignal& stop) : options_(options), stop_(stop) {}

  RunOutcome Execute();

 private:
  RunOutcome Fail(int exit_code, std::string message) {
    RunOutcome outcome;
    outcome.exit_code = exit_code;
    outcome.message = std::move(message);
    absl::MutexLock lock(&mu_);
    outcome.stats = stats_;
    return outcome;
  }
  void Worker(int index);
  // Sends one request with retries. Returns true when it was answered and recorded; false when
  // the run is stopping (requested, or this request failed for good and stopped it).
  bool Send(EndpointClient& client, const PlannedRequest& request, absl::BitGen& rng);
  void SetFatal(Fatal fatal);
  void WriteMetrics(const std::string& status, int exit_code);
  RunOutcome Finish();

  const RunnerOptions& options_;
  StopSignal& stop_;
  absl::Time start_time_ = absl::Now();

  EndpointType type_ = EndpointType::kChat;
  EndpointUrl url_;
  std::string api_key_;
  Dataset dataset_;
  std::string task_;
  std::vector<std::string> item_keys_;  // per item
  std::vector<PlannedRequest> pending_;
  std::unique_ptr<ResponseStore> store_;

  std::vector<std::unique_ptr<EndpointClient>> clients_;
  std::atomic<size_t> next_{0};
  std::atomic<int> active_{0};
  std::atomic<int64_t> in_flight_{0};

  absl::Mutex mu_;
  RunStats stats_ ABSL_GUARDED_BY(mu_);
  std::optional<Fatal> fatal_ ABSL_GUARDED_BY(mu_);
};

void Run::SetFatal(Fatal fatal) {
  bool first = false;
  {
    absl::MutexLock lock(&mu_);
    if (!fatal_.has_value()) {
      fatal_ = fatal;
      first = true;
    }
  }
  stop_.Request("a request failed for good");
  if (first) LOG(ERROR) << fatal.message;
}

bool Run::Send(EndpointClient& client, const PlannedRequest& request, absl::BitGen& rng) {
  int attempt = 0;
  while (true) {
    if (stop_.requested()) return false;
    ++attempt;
    in_flight_.fetch_add(1);
    PostResult result = client.PostJson(request.body);
    in_flight_.fetch_sub(1);
    {
      absl::MutexLock lock(&mu_);
      ++stats_.http_requests;
    }
    FailureKind failure = result.failure;
    std::string detail = result.detail;
    CompletionText completion;
    if (failure == FailureKind::kNone) {
      absl::StatusOr<CompletionText> parsed = ParseCompletionResponse(result.body, type_);
      if (parsed.ok()) {
        completion = *std::move(parsed);
      } else {
        failure = FailureKind::kBadResponse;
        detail = absl::StrCat("HTTP ", result.http_status, " but ", parsed.status().message());
      }
    }
    if (failure == FailureKind::kNone) {
      CacheEntry entry;
      entry.key = request.key;
      entry.item_id = request.item_id;
      entry.text = std::move(completion.text);
      entry.finish_reason = std::move(completion.finish_reason);
      entry.latency_ms = absl::ToDoubleMilliseconds(result.elapsed);
      entry.attempts = attempt;
      entry.prompt_tokens = completion.prompt_tokens;
      entry.completion_tokens = completion.completion_tokens;
      absl::Status status = store_->Record(entry);
      if (!status.ok()) {
        SetFatal({kExitIo, absl::StrCat("cannot record an answer: ", status.message())});
        return false;
      }
      absl::MutexLock lock(&mu_);
      ++stats_.answered;
      stats_.total_latency_ms += entry.latency_ms;
      stats_.max_latency_ms = std::max(stats_.max_latency_ms, entry.latency_ms);
      return true;
    }
    if (failure == FailureKind::kCanceled) return false;
    {
      absl::MutexLock lock(&mu_);
      ++stats_.failures[FailureKindName(failure)];
    }
    if (stop_.requested()) return false;  // failures while stopping are expected
    if (!IsRetryable(failure) || attempt > options_.max_retries) {
      std::string tries =
          attempt == 1 ? "" : absl::StrCat(" (gave up after ", attempt, " attempts)");
      SetFatal({kExitEndpoint,
                absl::StrCat("endpoint ", url_.display, ": ", detail, tries, ". ",
                             Hint(failure, result.http_status, options_.model_id))});
      return false;
    }
    absl::Duration delay = options_.retry_base;
    for (int i = 1; i < attempt && delay < options_.retry_max; ++i) delay *= 2;
    delay = std::min(delay, options_.retry_max);
    delay = delay / 2 + absl::Uniform(rng, 0.0, 1.0) * (delay / 2);  // jitter
    if (result.retry_after_s.has_value()) {
      delay = std::max(delay, std::min(absl::Seconds(*result.retry_after_s), options_.retry_max));
    }
    LOG(WARNING) << "item " << request.item_id << ": attempt " << attempt << " failed: " << detail
                 << "; retrying in " << absl::FormatDuration(absl::Trunc(delay, absl::Milliseconds(1)));
    {
      absl::MutexLock lock(&mu_);
      ++stats_.retries;
    }
    if (stop_.WaitFor(delay)) return false;
  }
}

void Run::Worker(int index) {
  absl::BitGen rng;
  EndpointClient& client = *clients_[static_cast<size_t>(index)];
  while (!stop_.requested()) {
    size_t i = next_.fetch_add(1);
    if (i >= pending_.size()) break;
    // Send() fails only when the run stops (a signal, or a failure it reported).
    if (!Send(client, pending_[i], rng)) break;
  }
  active_.fetch_sub(1);
  stop_.Poke();
}

void Run::WriteMetrics(const std::string& status, int exit_code) {
  absl::Time end = absl::Now();
  RunStats stats;
  {
    absl::MutexLock lock(&mu_);
    stats = stats_;
  }
  json failures = json::object();
  for (const auto& [kind, count] : stats.failures) failures[kind] = count;
  json metrics = {
      {"evalctl_runner",
       {{"task", task_}, {"status", status}, {"exit_code", exit_code}}},
      {"response_stats",
       {{"count", stats.http_requests},
        {"successful_count", stats.answered},
        {"cached_count", stats.cached_at_start},
        {"retry_count", stats.retries},
        {"failures", failures},
        {"avg_latency_ms", stats.answered > 0 ? stats.total_latency_ms / stats.answered : 0.0},
        {"max_latency_ms", stats.max_latency_ms}}},
      {"progress",
       {{"answered", store_ ? store_->progress() : 0}, {"total", stats.unique_requests},
        {"items", stats.items}}},
      {"timing",
       {{"start_time", IsoTime(start_time_)},
        {"end_time", IsoTime(end)},
        {"runtime_seconds", absl::ToDoubleSeconds(end - start_time_)}}},
  };
  std::string path = (std::filesystem::path(options_.results_dir) / "eval_factory_metrics.json").string();
  absl::Status written = WriteFileAtomically(path, metrics.dump(2) + "\n");
  if (!written.ok()) LOG(WARNING) << "cannot write " << path << ": " << written.message();
}

RunOutcome Run::Execute() {
  // ---- configuration
  if (options_.results_dir.empty()) {
    return Fail(kExitUsage, "no results directory: set --results-dir or EVALCTL_RESULTS_DIR");
  }
  if (options_.endpoint_url.empty()) {
    return Fail(kExitUsage, "no endpoint URL: set --endpoint-url or EVALCTL_ENDPOINT_URL");
  }
  if (options_.model_id.empty()) {
    return Fail(kExitUsage, "no model id: set --model-id or EVALCTL_MODEL_ID");
  }
  if (options_.concurrency < 1) return Fail(kExitUsage, "--concurrency must be at least 1");
  if (options_.max_retries < 0) return Fail(kExitUsage, "--max-retries must not be negative");
  if (options_.request_timeout <= absl::ZeroDuration()) {
    return Fail(kExitUsage, "--request-timeout-s must be positive");
  }
  type_ = options_.endpoint_type.value_or(
      EndpointTypeFromUrl(options_.endpoint_url).value_or(EndpointType::kChat));
  absl::StatusOr<EndpointUrl> url = ParseEndpointUrl(options_.endpoint_url, type_);
  if (!url.ok()) return Fail(kExitUsage, std::string(url.status().message()));
  url_ = *url;
  if (!options_.api_key_name.empty()) {
    const char* key = std::getenv(options_.api_key_name.c_str());
    if (key == nullptr || *key == '\0') {
      return Fail(kExitUsage, absl::StrCat("the API key variable ", options_.api_key_name,
                                           " (EVALCTL_API_KEY_NAME / --api-key-name) is not set"));
    }
    api_key_ = key;
  }
  absl::StatusOr<Dataset> dataset = LoadDataset(options_.dataset_path, options_.format);
  if (!dataset.ok()) return Fail(kExitUsage, std::string(dataset.status().message()));
  dataset_ = *std::move(dataset);
  if (options_.limit.has_value()) {
    if (*options_.limit < 1) return Fail(kExitUsage, "--limit must be at least 1");
    if (static_cast<size_t>(*options_.limit) < dataset_.items.size()) {
      dataset_.items.resize(static_cast<size_t>(*options_.limit));
    }
  }
  task_ = options_.task.empty() ? std::filesystem::path(options_.dataset_path).stem().string()
                                : options_.task;

  // ---- plan: one request per distinct body
  std::vector<std::string> unique_keys;
  std::vector<PlannedRequest> planned;
  absl::flat_hash_map<std::string, size_t> seen;
  for (const Item& item : dataset_.items) {
    json body = BuildRequestBody(item, dataset_.format, type_, options_.model_id, options_.generation);
    std::string key = RequestKey(type_, body);
    item_keys_.push_back(key);
    if (seen.emplace(key, planned.size()).second) {
      unique_keys.push_back(key);
      planned.push_back({key, body.dump(), item.id});
    }
  }

  absl::StatusOr<std::unique_ptr<ResponseStore>> store =
      ResponseStore::Open(options_.results_dir, unique_keys, options_.store);
  if (!store.ok()) return Fail(kExitIo, std::string(store.status().message()));
  store_ = *std::move(store);
  for (PlannedRequest& request : planned) {
    if (!store_->Find(request.key).has_value()) pending_.push_back(std::move(request));
  }
  {
    absl::MutexLock lock(&mu_);
    stats_.items = static_cast<int64_t>(dataset_.items.size());
    stats_.unique_requests = static_cast<int64_t>(unique_keys.size());
    stats_.cached_at_start = stats_.unique_requests - static_cast<int64_t>(pending_.size());
    LOG(INFO) << "task " << task_ << ": " << stats_.items << " items from " << dataset_.path << " ("
              << FormatName(dataset_.format) << "), " << stats_.unique_requests
              << " distinct requests, " << stats_.cached_at_start << " answered by earlier attempts, "
              << pending_.size() << " to send to " << url_.display << " ("
              << EndpointTypeName(type_) << ", model " << options_.model_id << ")";
  }

  // ---- send
  const int workers =
      static_cast<int>(std::min<size_t>(static_cast<size_t>(options_.concurrency), pending_.size()));
  ClientOptions client_options;
  client_options.connect_timeout = options_.connect_timeout;
  client_options.request_timeout = options_.request_timeout;
  client_options.api_key = api_key_;
  for (int i = 0; i < workers; ++i) {
    clients_.push_back(std::make_unique<EndpointClient>(url_, client_options));
  }
  std::vector<std::thread> threads;
  active_.store(workers);
  for (int i = 0; i < workers; ++i) threads.emplace_back([this, i] { Worker(i); });

  absl::Time next_log = absl::Now() + options_.log_interval;
  bool io_failed = false;
  while (active_.load() > 0 && !stop_.requested()) {
    stop_.WaitUntil(std::min(absl::Seconds(1), options_.store.sync_interval),
                    [this] { return active_.load() == 0; });
    absl::Status synced = store_->MaybeSync();
    if (!synced.ok() && !io_failed) {
      io_failed = true;
      SetFatal({kExitIo, std::string(synced.message())});
    }
    if (absl::Now() >= next_log) {
      next_log = absl::Now() + options_.log_interval;
      absl::MutexLock lock(&mu_);
      LOG(INFO) << "progress " << store_->progress() << "/" << stats_.unique_requests << " ("
                << stats_.answered << " new, " << stats_.retries << " retries, " << in_flight_.load()
                << " in flight)";
    }
  }
  if (active_.load() > 0) {
    absl::Duration drain = stop_.request_count() > 1 ? absl::ZeroDuration() : options_.drain_timeout;
    LOG(WARNING) << "stopping (" << stop_.reason() << "): no new requests; waiting up to "
                 << absl::FormatDuration(drain) << " for " << in_flight_.load()
                 << " request(s) in flight";
    absl::Time deadline = absl::Now() + drain;
    while (active_.load() > 0 && absl::Now() < deadline && stop_.request_count() < 2) {
      // stop_ is already requested, so WaitUntil returns at once; poll.
      absl::SleepFor(absl::Milliseconds(20));
    }
    if (active_.load() > 0) {
      LOG(WARNING) << "cutting " << in_flight_.load() << " request(s) still in flight";
      for (auto& client : clients_) client->Cancel();
    }
  }
  for (std::thread& thread : threads) thread.join();
  return Finish();
}

RunOutcome Run::Finish() {
  absl::Status flushed = store_->Flush();
  std::optional<Fatal> fatal;
  {
    absl::MutexLock lock(&mu_);
    fatal = fatal_;
    stats_.progress = store_->progress();
  }
  if (!flushed.ok() && !fatal.has_value()) {
    fatal = Fatal{kExitIo, absl::StrCat("cannot flush the cache: ", flushed.message())};
  }
  if (fatal.has_value()) {
    WriteMetrics("failed", fatal->exit_code);
    return Fail(fatal->exit_code, fatal->message);
  }
  const int64_t progress = store_->progress();
  int64_t total = 0;
  {
    absl::MutexLock lock(&mu_);
    total = stats_.unique_requests;
  }
  // A stop that comes after the last answer does not undo the run: it finishes normally.
  if (progress < total) {
    WriteMetrics("interrupted", kExitInterrupted);
    return Fail(kExitInterrupted,
                absl::StrCat("interrupted (", stop_.reason(), ") after ", progress, "/", total,
                             " requests answered; cache and progress are saved in ",
                             options_.results_dir, ": run again to continue"));
  }

  // ---- score
  int64_t correct = 0;
  int64_t no_answer = 0;
  std::string samples;
  const bool completions = type_ == EndpointType::kCompletions;
  for (size_t i = 0; i < dataset_.items.size(); ++i) {
    const Item& item = dataset_.items[i];
    std::optional<CacheEntry> entry = store_->Find(item_keys_[i]);
    if (!entry.has_value()) {
      return Fail(kExitIo, absl::StrCat("internal error: no cached answer for item ", item.id));
    }
    Judgement judgement = Judge(entry->text, item, dataset_.format, completions);
    if (judgement.correct) ++correct;
    if (judgement.extracted.empty()) ++no_answer;
    json sample = {{"id", item.id},
                   {"expected", item.answer},
                   {"extracted", judgement.extracted},
                   {"correct", judgement.correct},
                   {"response", entry->text},
                   {"finish_reason", entry->finish_reason}};
    absl::StrAppend(&samples, sample.dump(-1, ' ', false, json::error_handler_t::replace), "\n");
  }
  Score score = MakeScore(static_cast<int64_t>(dataset_.items.size()), correct, no_answer);

  RunDescription description;
  description.task = task_;
  std::vector<std::string> argv;
  for (const std::string& arg : options_.argv) argv.push_back(RedactUrls(arg));
  description.command = ShellJoin(argv);
  description.output_dir = options_.results_dir;
  description.dataset_path = dataset_.path;
  description.format = dataset_.format;
  description.num_items = static_cast<int64_t>(dataset_.items.size());
  description.limit = options_.limit;
  description.model_id = options_.model_id;
  description.endpoint_type = type_;
  description.url = url_.display;
  description.api_key_name = options_.api_key_name;
  description.generation = options_.generation;
  description.concurrency = options_.concurrency;
  description.request_timeout_s = absl::ToDoubleSeconds(options_.request_timeout);
  description.max_retries = options_.max_retries;

  std::filesystem::path dir(options_.results_dir);
  absl::Status status = WriteFileAtomically((dir / "samples.jsonl").string(), samples);
  if (status.ok()) {
    status = WriteFileAtomically((dir / "results.yml").string(), RenderResultsYaml(description, score));
  }
  if (!status.ok()) return Fail(kExitIo, std::string(status.message()));
  WriteMetrics("completed", kExitOk);

  RunOutcome outcome;
  outcome.exit_code = kExitOk;
  outcome.score = score;
  {
    absl::MutexLock lock(&mu_);
    outcome.stats = stats_;
  }
  outcome.message = absl::StrFormat(
      "task %s: accuracy %.4f (%d/%d correct, stderr %.4f, %d without an answer); %d requests "
      "sent this attempt, %d answered earlier; results in %s",
      task_, score.value, score.correct, score.count, score.stderr_value, score.no_answer,
      outcome.stats.answered, outcome.stats.cached_at_start, (dir / "results.yml").string());
  return outcome;
}

}  // namespace

RunOutcome RunEvaluation(const RunnerOptions& options, StopSignal& stop) {
  Run run(options, stop);
  return run.Execute();
}

}  // namespace evalctl::runner
