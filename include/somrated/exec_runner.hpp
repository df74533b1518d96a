#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace somrated {

/// A command to run.
struct exec_request {
  std::vector<std::string> argv;  ///< argv[0] is the program (absolute path, no PATH search).
  std::vector<std::pair<std::string, std::string>>
      env;                 ///< Added to (or replacing in) the daemon's environment.
  std::string stdin_data;  ///< Written to the child's stdin, then closed.
  std::chrono::milliseconds timeout{
      std::chrono::seconds(10)};  ///< Then the process group is killed.
  std::size_t max_output =
      64 * 1024;  ///< stdout+stderr kept at most; the rest is drained and dropped.
};

/// How a command ended.
struct exec_result {
  int exit_code = -1;      ///< Exit status, or -1 when killed, signalled or never started.
  bool timed_out = false;  ///< Killed at the deadline.
  std::string output;      ///< stdout and stderr, interleaved, capped.
  std::string error;       ///< Empty when the command exited 0; else what happened
                           ///< ("exit status 3: <output excerpt>", "timed out after 10s",
                           ///< "killed by signal 9", "cannot run /x: No such file or directory").

  /// True when the command ran and exited 0.
  bool ok() const noexcept { return error.empty(); }
};

/// Runs a command in its own process group with posix_spawn, feeds stdin, collects
/// output, and waits at most timeout. Blocking: call it off the network thread.
exec_result run_command(const exec_request& req);

}  // namespace somrated
