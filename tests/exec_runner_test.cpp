#include "somrated/exec_runner.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/core.h>

using somrated::exec_request;
using somrated::exec_result;
using somrated::run_command;
using namespace std::chrono_literals;

namespace {

/// A request to run argv with the given timeout.
exec_request command(std::vector<std::string> argv, std::chrono::milliseconds timeout = 20s) {
  exec_request r;
  r.argv = std::move(argv);
  r.timeout = timeout;
  return r;
}

/// A request to run script with /bin/sh -c.
exec_request shell(std::string script, std::chrono::milliseconds timeout = 20s) {
  return command({"/bin/sh", "-c", std::move(script)}, timeout);
}

/// True while pid names a process that has not yet ended.
///
/// kill(pid, 0) also succeeds for a zombie, which lingers until its parent reaps it; an
/// orphan's new parent may be a PID 1 that reaps late or never, so a zombie counts as
/// ended here.
bool running(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto close_paren = line.rfind(')');
  return close_paren == std::string::npos || line.substr(close_paren + 2, 1) != "Z";
}

/// Polls pred until it holds or 10 s pass; returns its last value.
template <class Pred>
bool eventually(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

/// The pid printed on the first line of output, or 0.
pid_t first_pid(const std::string& output) {
  return static_cast<pid_t>(std::atoi(output.substr(0, output.find('\n')).c_str()));
}

/// True when SIGPIPE is pending for this thread or the process.
bool sigpipe_pending() {
  sigset_t pending;
  sigemptyset(&pending);
  REQUIRE(sigpending(&pending) == 0);
  return sigismember(&pending, SIGPIPE) == 1;
}

/// True when this thread blocks SIGPIPE.
bool sigpipe_blocked() {
  sigset_t mask;
  sigemptyset(&mask);
  REQUIRE(pthread_sigmask(SIG_BLOCK, nullptr, &mask) == 0);
  return sigismember(&mask, SIGPIPE) == 1;
}

}  // namespace

TEST_CASE("run_command feeds stdin and collects output") {
  SUBCASE("cat echoes its stdin") {
    auto req = command({"/bin/cat"});
    req.stdin_data = "hello\nworld";
    const exec_result r = run_command(req);
    CHECK(r.error == "");
    CHECK(r.ok());
    CHECK(r.exit_code == 0);
    CHECK_FALSE(r.timed_out);
    CHECK(r.output == "hello\nworld");
  }
  SUBCASE("more than a pipe holds goes both ways without a deadlock") {
    auto req = command({"/bin/cat"});
    for (int i = 0; req.stdin_data.size() < 600 * 1024; ++i)
      req.stdin_data += fmt::format("line {}\n", i);
    req.max_output = req.stdin_data.size();
    const exec_result r = run_command(req);
    CHECK(r.ok());
    CHECK(r.output == req.stdin_data);
  }
  SUBCASE("no stdin data is an empty, closed stdin") {
    const exec_result r = run_command(command({"/bin/cat"}));
    CHECK(r.ok());
    CHECK(r.output == "");
  }
  SUBCASE("stdout and stderr share the output") {
    const exec_result r = run_command(shell("echo one; echo two >&2; echo three"));
    CHECK(r.ok());
    CHECK(r.output == "one\ntwo\nthree\n");
  }
  SUBCASE("arguments go to the program as they are, without a shell") {
    const exec_result r =
        run_command(command({"/usr/bin/printf", "%s|", "a b", "$HOME", "*", "'q'"}));
    CHECK(r.ok());
    CHECK(r.output == "a b|$HOME|*|'q'|");
  }
}

TEST_CASE("run_command passes the environment") {
  SUBCASE("an added variable") {
    auto req = shell("printf %s \"$SOMRATED_X\"");
    req.env = {{"SOMRATED_X", "hello world"}};
    const exec_result r = run_command(req);
    CHECK(r.ok());
    CHECK(r.output == "hello world");
  }
  SUBCASE("the daemon's own variables are inherited") {
    const char* path = std::getenv("PATH");
    REQUIRE(path != nullptr);
    const exec_result r = run_command(shell("printf %s \"$PATH\""));
    CHECK(r.output == path);
  }
  SUBCASE("a given variable replaces the inherited one; of repeats the last wins") {
    REQUIRE(std::getenv("PATH") != nullptr);
    auto req = command({"/usr/bin/env"});
    req.env = {{"PATH", "/first"}, {"SOMRATED_Y", "1"}, {"PATH", "/nowhere"}};
    const exec_result r = run_command(req);
    CHECK(r.ok());
    CHECK(r.output.find("\nPATH=/nowhere\n") != std::string::npos);
    CHECK(r.output.find("PATH=/first") == std::string::npos);
    CHECK(r.output.find("\nSOMRATED_Y=1\n") != std::string::npos);
    std::size_t paths = 0;
    for (auto at = r.output.find("PATH="); at != std::string::npos;
         at = r.output.find("PATH=", at + 1)) {
      if (at == 0 || r.output[at - 1] == '\n') ++paths;
    }
    CHECK(paths == 1);
  }
  SUBCASE("invalid names are refused") {
    auto req = command({"/bin/true"});
    req.env = {{"A=B", "x"}};
    CHECK(run_command(req).error == "invalid environment variable name 'A=B'");
    req.env = {{"", "x"}};
    CHECK(run_command(req).error == "invalid environment variable name ''");
  }
}

TEST_CASE("run_command reports how a command ended") {
  SUBCASE("a non-zero exit, with what the command said") {
    const exec_result r = run_command(shell("echo 'bad   input'; echo oops >&2; exit 3"));
    CHECK_FALSE(r.ok());
    CHECK(r.exit_code == 3);
    CHECK_FALSE(r.timed_out);
    CHECK(r.output == "bad   input\noops\n");
    CHECK(r.error == "exit status 3: bad input oops");
  }
  SUBCASE("a non-zero exit without output") {
    const exec_result r = run_command(command({"/bin/false"}));
    CHECK(r.exit_code == 1);
    CHECK(r.error == "exit status 1");
  }
  SUBCASE("a long message is cut") {
    const exec_result r = run_command(shell("printf '%0500d' 0; exit 2"));
    CHECK(r.error == "exit status 2: " + std::string(200, '0') + "...");
    CHECK(r.output.size() == 500);
  }
  SUBCASE("killed by a signal") {
    const exec_result r = run_command(shell("kill -9 $$"));
    CHECK(r.exit_code == -1);
    CHECK_FALSE(r.timed_out);
    CHECK(r.error == "killed by signal 9");
  }
  SUBCASE("the child starts with no signal blocked") {
    // This thread blocks SIGPIPE while it runs the command; the child must not inherit
    // that. grep is run directly: a shell would clear its mask itself.
    const exec_result r = run_command(command({"/bin/grep", "SigBlk", "/proc/self/status"}));
    CHECK(r.output == "SigBlk:\t0000000000000000\n");
  }
}

TEST_CASE("run_command kills the process group at the deadline") {
  SUBCASE("a command that outlives its timeout") {
    const auto t0 = std::chrono::steady_clock::now();
    const exec_result r = run_command(command({"/bin/sleep", "30"}, 300ms));
    CHECK(r.timed_out);
    CHECK(r.exit_code == -1);
    CHECK(r.error == "timed out after 300ms");
    CHECK(std::chrono::steady_clock::now() - t0 < 20s);
  }
  SUBCASE("whole seconds are written as such") {
    const exec_result r = run_command(command({"/bin/sleep", "30"}, 1s));
    CHECK(r.error == "timed out after 1s");
  }
  SUBCASE("a grandchild in the background dies too") {
    const exec_result r = run_command(shell("/bin/sleep 60 & echo $!; /bin/sleep 60", 2s));
    CHECK(r.timed_out);
    const pid_t grandchild = first_pid(r.output);
    REQUIRE(grandchild > 1);
    CHECK(r.error == fmt::format("timed out after 2s: {}", grandchild));
    CHECK(eventually([&] { return !running(grandchild); }));
  }
  SUBCASE("a child that exits leaving a process behind is not waited for") {
    // The background sleep holds the output pipe open; the run still ends with its parent.
    const auto t0 = std::chrono::steady_clock::now();
    const exec_result r = run_command(shell("/bin/sleep 60 & echo $!", 30s));
    const pid_t left = first_pid(r.output);
    CHECK(r.ok());
    CHECK_FALSE(r.timed_out);
    CHECK(std::chrono::steady_clock::now() - t0 < 20s);
    REQUIRE(left > 1);
    ::kill(left, SIGKILL);
  }
}

TEST_CASE("run_command refuses what it cannot run") {
  SUBCASE("a missing program") {
    const exec_result r = run_command(command({"/nonexistent/somrated-notify", "x"}));
    CHECK(r.error == "cannot run /nonexistent/somrated-notify: No such file or directory");
    CHECK(r.exit_code == -1);
    CHECK_FALSE(r.timed_out);
    CHECK(r.output == "");
  }
  SUBCASE("a file that is not executable") {
    CHECK(run_command(command({"/dev/null"})).error == "cannot run /dev/null: Permission denied");
  }
  SUBCASE("a relative program path is not searched for") {
    CHECK(run_command(command({"sh", "-c", "true"})).error ==
          "cannot run sh: not an absolute path");
    CHECK(run_command(command({"./notify"})).error == "cannot run ./notify: not an absolute path");
    CHECK(run_command(command({})).error == "no command to run");
  }
  SUBCASE("arguments with a NUL byte") {
    CHECK(run_command(command({"/bin/echo", std::string("a\0b", 3)})).error ==
          "argument 1 contains a NUL byte");
  }
  SUBCASE("a timeout that is not positive") {
    CHECK(run_command(command({"/bin/true"}, 0ms)).error == "invalid timeout of 0 ms");
  }
}

TEST_CASE("run_command caps the output and keeps draining") {
  auto req = shell("head -c 300000 /dev/zero | tr '\\0' a; echo done >&2");
  req.max_output = 1000;
  const exec_result r = run_command(req);
  // Had the rest not been drained, the child would block on a full pipe and time out.
  CHECK(r.error == "");
  CHECK(r.exit_code == 0);
  CHECK(r.output == std::string(1000, 'a'));
}

TEST_CASE("run_command survives a child that ignores its stdin") {
  REQUIRE_FALSE(sigpipe_pending());
  REQUIRE_FALSE(sigpipe_blocked());
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {"/bin/true"}, {"/bin/sh", "-c", "head -c 10 >/dev/null; echo read"}}) {
    CAPTURE(argv.back());
    auto req = command(argv);
    req.stdin_data = std::string(1024 * 1024, 'x');
    const exec_result r = run_command(req);
    CHECK(r.ok());
    CHECK(r.exit_code == 0);
    // The SIGPIPE the writes raised was consumed, and the mask is as it was.
    CHECK_FALSE(sigpipe_pending());
    CHECK_FALSE(sigpipe_blocked());
  }
}

TEST_CASE("run_command leaks no descriptor into the child") {
  // Not close-on-exec, and far from the low numbers the child's own files get.
  const int base = ::open("/dev/null", O_RDONLY);
  REQUIRE(base >= 0);
  const int leaky = ::fcntl(base, F_DUPFD, 100);
  ::close(base);
  REQUIRE(leaky >= 100);
  const exec_result r = run_command(shell("ls /proc/self/fd"));
  ::close(leaky);
  CHECK(r.ok());
  // 0, 1 and 2, and the directory ls has open to list itself.
  CHECK(r.output == "0\n1\n2\n3\n");
}
