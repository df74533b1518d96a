#include "somrated/response_cache.hpp"

#include <chrono>
#include <string>

#include <doctest/doctest.h>

using namespace std::chrono_literals;
namespace http = boost::beast::http;
using somrated::cache_version;
using somrated::http_response;
using somrated::response_cache;

namespace {

/// A 200 answer with body.
http_response answer(std::string body) {
  http_response res{http::status::ok, 11};
  res.set(http::field::content_type, "application/json; charset=utf-8");
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

}  // namespace

TEST_CASE("response cache serves an answer only while its version stands and it is young") {
  response_cache cache(4, 1024, 1s);
  const auto t = response_cache::clock::now();
  const cache_version v1{7, 0};
  cache.store("/api/v1/latest", v1, t, "/r", answer(R"({"rate":87.45})"));

  auto hit = cache.find("/api/v1/latest", 11, v1, t + 500ms);
  REQUIRE(hit);
  CHECK(hit->first.body() == R"({"rate":87.45})");
  CHECK(hit->second == "/r");
  CHECK(hit->first[http::field::content_type] == "application/json; charset=utf-8");

  CHECK_FALSE(cache.find("/api/v1/latest?pretty", 11, v1, t));  // another key
  CHECK_FALSE(cache.find("/api/v1/latest", 10, v1, t));         // another HTTP version
  CHECK_FALSE(cache.find("/api/v1/latest", 11, {8, 0}, t));     // a write since
  CHECK_FALSE(cache.find("/api/v1/latest", 11, {7, 1}, t));     // a reload since
  CHECK_FALSE(cache.find("/api/v1/latest", 11, v1, t + 1s));    // too old
  CHECK_FALSE(cache.find("/api/v1/latest", 11, v1, t - 1ms));   // the clock went back

  cache.clear();
  CHECK_FALSE(cache.find("/api/v1/latest", 11, v1, t));
}

TEST_CASE("response cache is bounded in entries and body size") {
  response_cache cache(2, 16, 10s);
  const auto t = response_cache::clock::now();
  cache.store("a", {}, t, "/r", answer("1"));
  cache.store("b", {}, t + 1ms, "/r", answer("2"));
  cache.store("c", {}, t + 2ms, "/r", answer("3"));  // replaces the oldest, "a"
  CHECK_FALSE(cache.find("a", 11, {}, t + 3ms));
  CHECK(cache.find("b", 11, {}, t + 3ms)->first.body() == "2");
  CHECK(cache.find("c", 11, {}, t + 3ms)->first.body() == "3");

  cache.store("big", {}, t, "/r", answer(std::string(17, 'x')));
  CHECK_FALSE(cache.find("big", 11, {}, t));
  CHECK(cache.find("b", 11, {}, t + 3ms));  // nothing was evicted for it
}

TEST_CASE("response cache keeps the newer of two answers to one key") {
  response_cache cache(4, 1024, 10s);
  const auto t = response_cache::clock::now();
  cache.store("k", {2, 0}, t + 5ms, "/r", answer("new"));
  cache.store("k", {1, 0}, t, "/r", answer("old"));  // a slower reader that started earlier
  CHECK(cache.find("k", 11, {2, 0}, t + 6ms)->first.body() == "new");
  cache.store("k", {3, 0}, t + 10ms, "/r", answer("newer"));
  CHECK(cache.find("k", 11, {3, 0}, t + 11ms)->first.body() == "newer");
}
