#pragma once

// Private RAII helpers over libxml2, shared by the 24.kg and NBKR extractors.

#include <libxml/globals.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace somrated::libxml {

/// Frees a document returned by one of libxml2's read functions.
struct doc_deleter {
  /// Releases the whole tree.
  void operator()(xmlDoc* doc) const noexcept { xmlFreeDoc(doc); }
};

/// Owns a parsed XML or HTML document.
using doc_ptr = std::unique_ptr<xmlDoc, doc_deleter>;

/// Frees a parser context.
struct parser_ctxt_deleter {
  /// Releases the context and whatever input it still holds.
  void operator()(xmlParserCtxt* ctxt) const noexcept { xmlFreeParserCtxt(ctxt); }
};

/// Owns a parser context, kept so that the parse error can be read after a failure.
using parser_ctxt_ptr = std::unique_ptr<xmlParserCtxt, parser_ctxt_deleter>;

/// Initialises libxml2 once per process before the first parse.
///
/// xmlInitParser() is documented as not reentrant and must run before threads parse
/// concurrently; a function-local static makes the first call race-free and later calls
/// free. The library is never cleaned up: xmlCleanupParser() at run time would pull state
/// out from under any other thread still parsing.
inline void ensure_initialized() {
  static const bool initialized = [] {
    xmlInitParser();
    return true;
  }();
  static_cast<void>(initialized);
}

/// Views a libxml2 UTF-8 string; nullptr reads as empty.
inline std::string_view view(const xmlChar* text) noexcept {
  return text == nullptr ? std::string_view{}
                         : std::string_view{reinterpret_cast<const char*>(text)};
}

/// Silences libxml2's error output on the calling thread for its lifetime.
///
/// XML_PARSE_NOERROR only mutes the parser's own callbacks: encoding-conversion and I/O
/// errors ("input conversion failed", "encoder error") still go to the generic handler,
/// which prints to stderr. A daemon must not let a fetched page write to its log
/// unfiltered, so the handlers are swapped for no-ops and restored afterwards. In a
/// threaded libxml2 build both handlers are per-thread, so other threads are unaffected.
/// Parse errors are still recorded in the parser context's lastError.
class quiet_errors {
 public:
  /// Installs the no-op handlers and remembers the current ones.
  quiet_errors() noexcept
      : generic_(xmlGenericError),
        generic_ctx_(xmlGenericErrorContext),
        structured_(xmlStructuredError),
        structured_ctx_(xmlStructuredErrorContext) {
    xmlSetGenericErrorFunc(nullptr, &ignore_generic);
    xmlSetStructuredErrorFunc(nullptr, &ignore_structured);
  }

  /// Puts the previous handlers back.
  ~quiet_errors() {
    xmlSetGenericErrorFunc(generic_ctx_, generic_);
    xmlSetStructuredErrorFunc(structured_ctx_, structured_);
  }

  quiet_errors(const quiet_errors&) = delete;
  quiet_errors& operator=(const quiet_errors&) = delete;

 private:
  /// Drops a printf-style message.
  static void ignore_generic(void*, const char*, ...) {}
  /// Drops a structured error.
  static void ignore_structured(void*, xmlErrorPtr) {}

  xmlGenericErrorFunc generic_;
  void* generic_ctx_;
  xmlStructuredErrorFunc structured_;
  void* structured_ctx_;
};

}  // namespace somrated::libxml
