#include "api_common.hpp"

namespace somrated::api_detail {

http_response handle_fx_latest(const request_context&) {
  throw api_error(http::status::not_implemented, "not_implemented", "not built yet");
}

http_response handle_fx_currencies(const request_context&) {
  throw api_error(http::status::not_implemented, "not_implemented", "not built yet");
}

http_response handle_fx_dated(const request_context&) {
  throw api_error(http::status::not_implemented, "not_implemented", "not built yet");
}

http_response handle_convert(const request_context&) {
  throw api_error(http::status::not_implemented, "not_implemented", "not built yet");
}

}  // namespace somrated::api_detail
