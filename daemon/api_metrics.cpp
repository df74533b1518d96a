#include "api_common.hpp"

namespace somrated::api_detail {

http_response handle_metrics(const request_context&) {
  throw api_error(http::status::not_implemented, "not_implemented", "not built yet");
}

}  // namespace somrated::api_detail
