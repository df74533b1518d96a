#include "api_common.hpp"

namespace somrated::api_detail {

http_response handle_grafana_health(const request_context&) {
  throw api_error(http::status::not_implemented, "not_implemented", "not built yet");
}

http_response handle_grafana_metrics(const request_context&) {
  throw api_error(http::status::not_implemented, "not_implemented", "not built yet");
}

http_response handle_grafana_payload_options(const request_context&) {
  throw api_error(http::status::not_implemented, "not_implemented", "not built yet");
}

http_response handle_grafana_query(const request_context&) {
  throw api_error(http::status::not_implemented, "not_implemented", "not built yet");
}

http_response handle_grafana_variable(const request_context&) {
  throw api_error(http::status::not_implemented, "not_implemented", "not built yet");
}

http_response handle_grafana_tag_keys(const request_context&) {
  throw api_error(http::status::not_implemented, "not_implemented", "not built yet");
}

http_response handle_grafana_tag_values(const request_context&) {
  throw api_error(http::status::not_implemented, "not_implemented", "not built yet");
}

}  // namespace somrated::api_detail
