#include "api_common.hpp"

namespace somrated::api_detail {

http_response handle_page(const request_context&) {
  throw api_error(http::status::not_implemented, "not_implemented", "not built yet");
}

http_response handle_chart(const request_context&) {
  throw api_error(http::status::not_implemented, "not_implemented", "not built yet");
}

}  // namespace somrated::api_detail
