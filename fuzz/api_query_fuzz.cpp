// libFuzzer target: the API's target and query-string handling on an in-memory store.
//
// The input is the request target ("/api/v1/history?currency=USD&from=…"); a store with a
// few rates is built once, so every route reads real rows.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "somrated/api.hpp"
#include "somrated/config.hpp"
#include "somrated/decimal.hpp"
#include "somrated/observation.hpp"
#include "somrated/source_board.hpp"
#include "somrated/store.hpp"

namespace {

/// Two configured sources with a few stored rates, and an api over them.
struct fixture {
  somrated::store db{":memory:", somrated::store::mode::read_write};
  somrated::source_board board;
  std::shared_ptr<const somrated::config> cfg = make_config();
  somrated::api api{cfg, board};

  fixture() {
    using namespace std::chrono_literals;
    const somrated::timestamp t0{std::chrono::sys_days{std::chrono::year{2025} / 6 / 10}};
    for (int i = 0; i < 48; ++i) {
      std::vector<somrated::rate_quote> q{
          {"USD", *somrated::decimal::parse(i % 2 == 0 ? "87.45" : "87.50")},
          {"EUR", *somrated::decimal::parse("99.56")}};
      db.record("24kg", t0 + i * 1h, q, std::nullopt, 0.25);
      db.record("nbkr", t0 + i * 1h, q, std::chrono::floor<std::chrono::days>(t0 + i * 1h), 0.25);
    }
  }

  /// 24kg every 10 minutes, nbkr every hour.
  static std::shared_ptr<const somrated::config> make_config() {
    using namespace std::chrono_literals;
    auto c = std::make_shared<somrated::config>();
    somrated::source_config kg;
    kg.name = "24kg";
    kg.kind = "24kg";
    kg.url = "https://24.kg/english/";
    kg.interval = 10min;
    somrated::source_config nbkr;
    nbkr.name = "nbkr";
    nbkr.kind = "nbkr";
    nbkr.url = "https://www.nbkr.kg/XML/daily.xml";
    nbkr.interval = 1h;
    c->sources = {kg, nbkr};
    return c;
  }
};

}  // namespace

/// One input: a GET request target. Beast rejects targets with bytes it cannot send, so
/// those are skipped the way the transport's parser would refuse them.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static fixture f;
  const std::string_view target(reinterpret_cast<const char*>(data), size);
  for (char ch : target) {
    if (static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f) return -1;
  }
  somrated::http_request req{somrated::http::verb::get, target, 11};
  req.set(somrated::http::field::host, "127.0.0.1");
  if (auto early = f.api.handle_without_store(req)) return 0;
  (void)f.api.handle(req, f.db);
  return 0;
}
