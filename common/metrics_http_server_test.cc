#include "common/metrics_http_server.h"

#include <atomic>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace evalctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Pair;

TEST(ParseListenAddressTest, AcceptsHostPortAndDefaultsToLoopback) {
  EXPECT_THAT(*ParseListenAddress("0.0.0.0:9470"), Pair("0.0.0.0", 9470));
  EXPECT_THAT(*ParseListenAddress(":9470"), Pair("127.0.0.1", 9470));
  EXPECT_THAT(*ParseListenAddress("9470"), Pair("127.0.0.1", 9470));
  EXPECT_THAT(*ParseListenAddress("[::1]:0"), Pair("::1", 0));
  EXPECT_FALSE(ParseListenAddress("::1:9470").ok());
  EXPECT_FALSE(ParseListenAddress("localhost:http").ok());
  EXPECT_FALSE(ParseListenAddress("localhost:70000").ok());
}

TEST(MetricsHttpServerTest, ServesTheRegistryAndRoutes) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto& counter = prometheus::BuildCounter()
                      .Name("evalctl_test_things_total")
                      .Help("Things.")
                      .Register(*registry)
                      .Add({});
  std::atomic<int> scrapes{0};
  auto server = MetricsHttpServer::Start({.listen = "127.0.0.1:0",
                                          .registry = registry,
                                          .before_scrape = [&] { counter.Increment(++scrapes); },
                                          .routes = {{"/healthz", [] {
                                                        return HttpResponse{503, "not connected\n"};
                                                      }}}});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);

  httplib::Client client("127.0.0.1", (*server)->port());
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_THAT(metrics->get_header_value("Content-Type"), HasSubstr("version=0.0.4"));
  EXPECT_THAT(metrics->body, HasSubstr("# TYPE evalctl_test_things_total counter"));
  EXPECT_THAT(metrics->body, HasSubstr("evalctl_test_things_total 1"));

  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  EXPECT_EQ(health->body, "not connected\n");

  auto missing = client.Get("/nothing");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

TEST(MetricsHttpServerTest, ReportsAnAddressInUse) {
  auto first = MetricsHttpServer::Start({.listen = "127.0.0.1:0"});
  ASSERT_TRUE(first.ok()) << first.status();
  auto second =
      MetricsHttpServer::Start({.listen = "127.0.0.1:" + std::to_string((*first)->port())});
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), HasSubstr("cannot serve metrics on 127.0.0.1:"));
}

}  // namespace
}  // namespace evalctl
