#include "somrated/exec_runner.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/core.h>

#include "excerpt.hpp"
#include "somrated/time.hpp"

namespace somrated {

namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

/// Longest run honoured; keeps the deadline arithmetic and poll's int far from overflow.
constexpr milliseconds max_timeout = std::chrono::hours(24);

/// Bytes moved per read() of the output and per write() to stdin.
constexpr std::size_t io_chunk = 64 * 1024;

/// Output read after the child has gone, at most: a pipe holds no more than
/// /proc/sys/fs/pipe-max-size (1 MiB by default), so this empties what the command left,
/// while a stray process that escaped the group and keeps writing cannot hold us.
constexpr std::size_t drain_limit = 1024 * 1024;

/// How long one poll() waits when the child's exit cannot be polled (no pidfd).
constexpr milliseconds exit_check_interval(20);

/// Bytes of output quoted in an error message.
constexpr std::size_t error_output_limit = 200;

/// The text for an errno value; thread-safe, unlike strerror.
std::string errno_text(int err) {
  return std::error_code(err, std::system_category()).message();
}

/// An owned file descriptor, closed when it goes.
class unique_fd {
 public:
  /// Owns nothing.
  unique_fd() = default;
  /// Owns fd (may be -1).
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  ~unique_fd() { reset(); }
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;

  /// The descriptor, or -1.
  int get() const noexcept { return fd_; }
  /// True when a descriptor is owned.
  explicit operator bool() const noexcept { return fd_ >= 0; }
  /// Closes the descriptor, if any.
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;  ///< The descriptor, or -1.
};

/// Both ends of a pipe.
struct pipe_ends {
  unique_fd read;   ///< Read end.
  unique_fd write;  ///< Write end.
};

/// Moves fd to a number of 3 or more, close-on-exec; returns false (fd closed) on failure.
///
/// A daemon started with 0, 1 or 2 closed gets those numbers back from pipe2, and then
/// the child's dup2 actions would overwrite one pipe end with another.
bool lift(unique_fd& fd) {
  if (fd.get() >= 3) return true;
  const int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3);
  const int err = errno;
  fd = unique_fd(moved);
  errno = err;
  return moved >= 0;
}

/// A close-on-exec pipe with both ends at 3 or above, or nullopt and error.
std::optional<pipe_ends> make_pipe(std::string& error) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    error = fmt::format("pipe: {}", errno_text(errno));
    return std::nullopt;
  }
  pipe_ends p{unique_fd(fds[0]), unique_fd(fds[1])};
  if (!lift(p.read) || !lift(p.write)) {
    error = fmt::format("pipe: {}", errno_text(errno));
    return std::nullopt;
  }
  return p;
}

/// Sets O_NONBLOCK on fd; false on failure.
bool set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

/// posix_spawn file actions, destroyed with the object.
class file_actions {
 public:
  file_actions() { ::posix_spawn_file_actions_init(&native_); }
  ~file_actions() { ::posix_spawn_file_actions_destroy(&native_); }
  file_actions(const file_actions&) = delete;
  file_actions& operator=(const file_actions&) = delete;

  /// The handle for posix_spawn.
  posix_spawn_file_actions_t* get() noexcept { return &native_; }

 private:
  posix_spawn_file_actions_t native_;  ///< Initialised in the constructor.
};

/// posix_spawn attributes, destroyed with the object.
class spawn_attributes {
 public:
  spawn_attributes() { ::posix_spawnattr_init(&native_); }
  ~spawn_attributes() { ::posix_spawnattr_destroy(&native_); }
  spawn_attributes(const spawn_attributes&) = delete;
  spawn_attributes& operator=(const spawn_attributes&) = delete;

  /// The handle for posix_spawn.
  posix_spawnattr_t* get() noexcept { return &native_; }

 private:
  posix_spawnattr_t native_;  ///< Initialised in the constructor.
};

/// Blocks SIGPIPE in the calling thread while it lives.
///
/// Writing to the stdin of a child that exited without reading it raises SIGPIPE, whose
/// default action would end the daemon. Blocked, the write fails with EPIPE instead and
/// the signal stays pending on this thread; on destruction it is consumed with a
/// zero-timeout sigtimedwait before the old mask returns, so it is never delivered. A
/// SIGPIPE that was already pending beforehand is not ours and is left alone. Only this
/// thread's mask changes; the child gets an empty mask from posix_spawn.
class sigpipe_guard {
 public:
  sigpipe_guard() {
    ::sigemptyset(&pipe_);
    ::sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    ::sigemptyset(&pending);
    was_pending_ = ::sigpending(&pending) == 0 && ::sigismember(&pending, SIGPIPE) == 1;
    blocked_ = ::pthread_sigmask(SIG_BLOCK, &pipe_, &old_) == 0;
  }
  ~sigpipe_guard() {
    if (!blocked_) return;
    if (!was_pending_) {
      const timespec zero{};
      while (::sigtimedwait(&pipe_, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  sigpipe_guard(const sigpipe_guard&) = delete;
  sigpipe_guard& operator=(const sigpipe_guard&) = delete;

 private:
  sigset_t pipe_;             ///< Just SIGPIPE.
  sigset_t old_;              ///< The mask to restore.
  bool was_pending_ = false;  ///< A SIGPIPE was pending before we blocked it.
  bool blocked_ = false;      ///< pthread_sigmask succeeded.
};

/// A spawned child, leader of its own process group.
///
/// Until reaped it is killed with its whole group and waited for when the object goes, so
/// no path out of run_command leaves a zombie or a runaway process behind.
class child_process {
 public:
  /// Takes charge of pid.
  explicit child_process(pid_t pid) noexcept : pid_(pid) {}
  ~child_process() {
    if (reaped_) return;
    kill_group();
    wait();
  }
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  /// The child's pid, which is also its process group id.
  pid_t pid() const noexcept { return pid_; }

  /// Sends SIGKILL to every process in the child's group.
  ///
  /// The unreaped leader keeps the group id from being reused, so this cannot hit a
  /// stranger. A process that left the group (setsid, setpgid) escapes it.
  void kill_group() const noexcept { ::kill(-pid_, SIGKILL); }

  /// Reaps the child if it has exited; true when it has.
  bool try_reap() noexcept { return reap(WNOHANG); }

  /// Waits for the child to end and reaps it.
  void wait() noexcept { reap(0); }

  /// The wait status, once reaped.
  int status() const noexcept { return status_; }

 private:
  /// waitpid with options; true once reaped.
  bool reap(int options) noexcept {
    if (reaped_) return true;
    for (;;) {
      const pid_t r = ::waitpid(pid_, &status_, options);
      if (r == pid_) return reaped_ = true;
      if (r == 0) return false;
      if (errno == EINTR) continue;
      // ECHILD: someone else reaped it (SIGCHLD set to SIG_IGN); nothing to report.
      status_ = 0;
      return reaped_ = true;
    }
  }

  pid_t pid_;            ///< Child and process group id.
  int status_ = 0;       ///< From waitpid.
  bool reaped_ = false;  ///< waitpid has returned it.
};

/// Why req cannot be run, or "" when it can.
std::string request_problem(const exec_request& req) {
  if (req.argv.empty()) return "no command to run";
  const std::string& program = req.argv[0];
  if (!program.starts_with('/'))
    return fmt::format("cannot run {}: not an absolute path", detail::excerpt(program, 200));
  for (std::size_t i = 0; i < req.argv.size(); ++i) {
    if (req.argv[i].find('\0') != std::string::npos)
      return fmt::format("argument {} contains a NUL byte", i);
  }
  for (const auto& [name, value] : req.env) {
    if (name.empty() || name.find_first_of(std::string_view("=\0", 2)) != std::string::npos)
      return fmt::format("invalid environment variable name '{}'", detail::excerpt(name, 60));
    if (value.find('\0') != std::string::npos)
      return fmt::format("environment variable {} contains a NUL byte", name);
  }
  if (req.timeout <= milliseconds::zero())
    return fmt::format("invalid timeout of {} ms", req.timeout.count());
  return {};
}

/// The name part of a "NAME=value" environment entry.
std::string_view env_name(std::string_view entry) {
  return entry.substr(0, entry.find('='));
}

/// The daemon's environment with extra added; an extra name replaces any entry of that
/// name, and of names repeated in extra the last wins.
std::vector<std::string> environment(
    const std::vector<std::pair<std::string, std::string>>& extra) {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) out.emplace_back(*e);
  for (const auto& [name, value] : extra) {
    std::erase_if(out,
                  [&name = name](const std::string& entry) { return env_name(entry) == name; });
    out.push_back(name + "=" + value);
  }
  return out;
}

/// Pointers to the strings' text, null-terminated, as argv and envp want them.
std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

/// Output as one printable line for an error message: whitespace runs become one space,
/// the ends are trimmed, and at most error_output_limit bytes are quoted.
std::string output_excerpt(std::string_view output) {
  std::string line;
  bool space = false;
  for (char c : output) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = !line.empty();
      continue;
    }
    if (space) line.push_back(' ');
    space = false;
    line.push_back(c);
  }
  return detail::excerpt(line, error_output_limit);
}

/// what, followed by ": <output excerpt>" when the command printed anything.
std::string with_output(std::string what, std::string_view output) {
  std::string quoted = output_excerpt(output);
  if (!quoted.empty()) what += ": " + quoted;
  return what;
}

/// Moves bytes between the daemon and a running child: stdin in, output out.
class child_io {
 public:
  /// Feeds stdin_data to in (closed when empty) and collects at most max_output bytes
  /// from out. Both descriptors must already be non-blocking.
  child_io(unique_fd in, unique_fd out, std::string_view stdin_data, std::size_t max_output)
      : in_(std::move(in)), out_(std::move(out)), data_(stdin_data), max_output_(max_output) {
    if (data_.empty()) in_.reset();
  }

  /// The stdin descriptor still being fed, or -1.
  int in() const noexcept { return in_.get(); }
  /// The output descriptor still being read, or -1.
  int out() const noexcept { return out_.get(); }

  /// Writes what the pipe takes now; closes stdin when all is written or the child has
  /// stopped reading (EPIPE) or the pipe failed otherwise.
  void feed() {
    while (in_) {
      const std::size_t n = std::min(io_chunk, data_.size() - written_);
      const ssize_t w = ::write(in_.get(), data_.data() + written_, n);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno == EAGAIN) return;
      if (w < 0) {
        in_.reset();
        return;
      }
      written_ += static_cast<std::size_t>(w);
      if (written_ == data_.size()) in_.reset();
    }
  }

  /// Reads once; closes the output at end of file or on an error. Returns the bytes read.
  std::size_t collect() {
    if (!out_) return 0;
    buffer_.resize(io_chunk);
    ssize_t r;
    do {
      r = ::read(out_.get(), buffer_.data(), buffer_.size());
    } while (r < 0 && errno == EINTR);
    if (r < 0 && errno == EAGAIN) return 0;
    if (r <= 0) {
      out_.reset();
      return 0;
    }
    const auto n = static_cast<std::size_t>(r);
    output_.append(buffer_.data(), std::min(n, max_output_ - output_.size()));
    return n;
  }

  /// Reads what is buffered in the output pipe now, up to drain_limit bytes.
  void drain() {
    std::size_t total = 0;
    while (out_ && total < drain_limit) {
      const std::size_t n = collect();
      if (n == 0) return;
      total += n;
    }
  }

  /// Takes the output collected.
  std::string take_output() { return std::move(output_); }

 private:
  unique_fd in_;             ///< Write end of the child's stdin, until done.
  unique_fd out_;            ///< Read end of the child's stdout and stderr, until EOF.
  std::string_view data_;    ///< What to feed.
  std::size_t written_ = 0;  ///< Of data_.
  std::size_t max_output_;   ///< Output kept at most.
  std::string output_;       ///< Kept output.
  std::string buffer_;       ///< One read's worth.
};

/// Spawns req's program with stdin from stdin_read and output into output_write, in a
/// new process group, with no other descriptor and default signal dispositions; the
/// pid, or nullopt and error.
std::optional<pid_t> spawn(const exec_request& req, int stdin_read, int output_write,
                           std::string& error) {
  file_actions actions;
  spawn_attributes attributes;
  sigset_t no_signals;
  sigset_t all_signals;
  ::sigemptyset(&no_signals);
  ::sigfillset(&all_signals);
  // The child starts with an empty signal mask and every signal at its default action,
  // whatever this thread blocks (SIGPIPE, here) or the daemon ignores. Descriptors 3 and
  // up are closed in the child, close-on-exec or not, so nothing of the daemon leaks.
  int rc = ::posix_spawn_file_actions_adddup2(actions.get(), stdin_read, 0);
  if (rc == 0) rc = ::posix_spawn_file_actions_adddup2(actions.get(), output_write, 1);
  if (rc == 0) rc = ::posix_spawn_file_actions_adddup2(actions.get(), output_write, 2);
  if (rc == 0) rc = ::posix_spawn_file_actions_addclosefrom_np(actions.get(), 3);
  if (rc == 0)
    rc = ::posix_spawnattr_setflags(
        attributes.get(), POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  if (rc == 0) rc = ::posix_spawnattr_setpgroup(attributes.get(), 0);
  if (rc == 0) rc = ::posix_spawnattr_setsigmask(attributes.get(), &no_signals);
  if (rc == 0) rc = ::posix_spawnattr_setsigdefault(attributes.get(), &all_signals);
  if (rc != 0) {
    error = fmt::format("cannot run {}: {}", detail::excerpt(req.argv[0], 200), errno_text(rc));
    return std::nullopt;
  }

  std::vector<std::string> args = req.argv;
  std::vector<std::string> env = environment(req.env);
  std::vector<char*> argv = c_strings(args);
  std::vector<char*> envp = c_strings(env);
  pid_t pid = -1;
  rc = ::posix_spawn(&pid, argv[0], actions.get(), attributes.get(), argv.data(), envp.data());
  if (rc != 0) {
    error = fmt::format("cannot run {}: {}", detail::excerpt(req.argv[0], 200), errno_text(rc));
    return std::nullopt;
  }
  return pid;
}

/// A descriptor that becomes readable when pid exits, or -1 (kernels before 5.3).
///
/// glibc 2.36 has pidfd_open, but its <sys/pidfd.h> lacks the extern "C" wrapper that
/// C++ needs, so the system call is made directly. The descriptor is close-on-exec.
int pidfd_open(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

/// Milliseconds from now to deadline for poll(), rounded up; 0 once it has passed.
int poll_wait(steady_clock::time_point deadline) {
  const auto left = std::chrono::ceil<milliseconds>(deadline - steady_clock::now());
  return static_cast<int>(std::clamp<milliseconds::rep>(left.count(), 0, INT_MAX));
}

}  // namespace

// The loop waits in poll() on three things: the child's stdin becoming writable, its
// output becoming readable, and the child itself exiting (a pidfd; where the kernel has
// none, poll wakes every exit_check_interval to ask waitpid). The run ends when the child
// exits, not when its output closes: a background process it left behind may hold the
// pipe open indefinitely. What is in the pipe then is drained and the rest is not waited
// for. Those left-behind processes are not killed after a normal exit; at the deadline
// the whole group is.
exec_result run_command(const exec_request& req) {
  exec_result result;
  if (std::string problem = request_problem(req); !problem.empty()) {
    result.error = std::move(problem);
    return result;
  }
  const milliseconds timeout = std::min(req.timeout, max_timeout);
  const auto deadline = steady_clock::now() + timeout;

  std::string error;
  auto in = make_pipe(error);
  if (!in) {
    result.error = std::move(error);
    return result;
  }
  auto out = make_pipe(error);
  if (!out) {
    result.error = std::move(error);
    return result;
  }
  if (!set_nonblocking(in->write.get()) || !set_nonblocking(out->read.get())) {
    result.error = fmt::format("pipe: {}", errno_text(errno));
    return result;
  }

  sigpipe_guard guard;
  const auto pid = spawn(req, in->read.get(), out->write.get(), error);
  if (!pid) {
    result.error = std::move(error);
    return result;
  }
  child_process child(*pid);
  in->read.reset();
  out->write.reset();
  const unique_fd exit_fd(pidfd_open(child.pid()));
  child_io io(std::move(in->write), std::move(out->read), req.stdin_data, req.max_output);

  bool exited = false;
  while (!exited) {
    int wait_ms = poll_wait(deadline);
    if (wait_ms == 0) break;
    pollfd fds[3];
    nfds_t count = 0;
    if (exit_fd) fds[count++] = {exit_fd.get(), POLLIN, 0};
    if (io.in() >= 0) fds[count++] = {io.in(), POLLOUT, 0};
    if (io.out() >= 0) fds[count++] = {io.out(), POLLIN, 0};
    if (!exit_fd) wait_ms = std::min(wait_ms, static_cast<int>(exit_check_interval.count()));
    const int ready = ::poll(fds, count, wait_ms);
    if (ready < 0 && errno != EINTR) {
      result.error = fmt::format("poll: {}", errno_text(errno));
      return result;  // child's destructor kills and reaps the group
    }
    for (nfds_t i = 0; ready > 0 && i < count; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == io.in()) {
        io.feed();
      } else if (fds[i].fd == io.out()) {
        io.collect();
      }
    }
    exited = child.try_reap();
  }

  if (!exited) {
    child.kill_group();
    child.wait();
    // Exiting on its own just before the kill still counts as exiting.
    result.timed_out = !WIFEXITED(child.status());
  }
  io.drain();
  result.output = io.take_output();

  const int status = child.status();
  if (result.timed_out) {
    result.error =
        with_output(fmt::format("timed out after {}", format_duration(timeout)), result.output);
  } else if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
    if (result.exit_code != 0)
      result.error = with_output(fmt::format("exit status {}", result.exit_code), result.output);
  } else if (WIFSIGNALED(status)) {
    result.error = with_output(fmt::format("killed by signal {}", WTERMSIG(status)), result.output);
  } else {
    result.error = with_output(fmt::format("ended with wait status {}", status), result.output);
  }
  return result;
}

}  // namespace somrated
