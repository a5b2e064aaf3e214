#include "clients/ssh/libssh_remote_host.h"

#include <fcntl.h>
#include <libssh/libssh.h>
#include <libssh/sftp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace evalctl::ssh {
namespace {

constexpr size_t kMaxOutputBytes = 16 << 20;
constexpr size_t kChunk = 32 * 1024;
// Printed by the login shell before each command (see Exec).
constexpr char kStartMarker[] = "evalctl-command-starts-8d41c7";
constexpr char kStartLine[] = "evalctl-command-starts-8d41c7\n";

struct SessionDeleter {
  void operator()(ssh_session s) const {
    if (ssh_is_connected(s)) ssh_disconnect(s);
    ssh_free(s);
  }
};
struct ChannelDeleter {
  void operator()(ssh_channel c) const {
    if (ssh_channel_is_open(c)) ssh_channel_close(c);
    ssh_channel_free(c);
  }
};
struct KeyDeleter {
  void operator()(ssh_key k) const { ssh_key_free(k); }
};
struct SftpDeleter {
  void operator()(sftp_session s) const { sftp_free(s); }
};
struct SftpFileDeleter {
  void operator()(sftp_file f) const { sftp_close(f); }
};
struct CharDeleter {
  void operator()(char* p) const { ssh_string_free_char(p); }
};
using SessionPtr = std::unique_ptr<ssh_session_struct, SessionDeleter>;
using ChannelPtr = std::unique_ptr<ssh_channel_struct, ChannelDeleter>;
using KeyPtr = std::unique_ptr<ssh_key_struct, KeyDeleter>;
using SftpPtr = std::unique_ptr<sftp_session_struct, SftpDeleter>;
using SftpFilePtr = std::unique_ptr<sftp_file_struct, SftpFileDeleter>;

// A file descriptor closed on destruction.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = other.fd_;
      other.fd_ = -1;
    }
    return *this;
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string LocalUser() {
  if (const passwd* pw = ::getpwuid(::getuid()); pw != nullptr && pw->pw_name != nullptr) {
    return pw->pw_name;
  }
  return std::to_string(::getuid());
}

std::string HomeDir() {
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') return home;
  if (const passwd* pw = ::getpwuid(::getuid()); pw != nullptr && pw->pw_dir != nullptr) {
    return pw->pw_dir;
  }
  return "";
}

// The host as known_hosts and ssh-keygen spell it: "host" on port 22, "[host]:port" otherwise.
std::string KnownHostsName(const SshOptions& o) {
  return o.port == 22 ? o.host : absl::StrCat("[", o.host, "]:", o.port);
}

std::string Tail(absl::string_view s, size_t n) {
  if (s.size() > n) s = s.substr(s.size() - n);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  return std::string(s);
}

// "ssh-ed25519 SHA256:abc..." of the server's key.
absl::StatusOr<std::string> ServerKeyDescription(ssh_session s) {
  ssh_key raw = nullptr;
  if (ssh_get_server_publickey(s, &raw) != SSH_OK) {
    return absl::InternalError(absl::StrCat("reading the server's host key: ", ssh_get_error(s)));
  }
  KeyPtr key(raw);
  unsigned char* hash = nullptr;
  size_t len = 0;
  if (ssh_get_publickey_hash(key.get(), SSH_PUBLICKEY_HASH_SHA256, &hash, &len) != SSH_OK) {
    return absl::InternalError("hashing the server's host key");
  }
  std::unique_ptr<char, CharDeleter> fp(
      ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, len));
  ssh_clean_pubkey_hash(&hash);
  const char* type = ssh_key_type_to_char(ssh_key_type(key.get()));
  return absl::StrCat(type != nullptr ? type : "unknown-type", " ",
                      fp != nullptr ? fp.get() : "(no fingerprint)");
}

absl::Status VerifyHostKey(ssh_session s, const SshOptions& o, const std::string& known_hosts) {
  ASSIGN_OR_RETURN(std::string key, ServerKeyDescription(s));
  const std::string name = KnownHostsName(o);
  switch (ssh_session_is_known_server(s)) {
    case SSH_KNOWN_HOSTS_OK:
      return absl::OkStatus();
    case SSH_KNOWN_HOSTS_CHANGED:
    case SSH_KNOWN_HOSTS_OTHER:
      return absl::FailedPreconditionError(absl::StrCat(
          "host key for ", name, " changed: the server offers ", key,
          ", which is not the key recorded in ", known_hosts,
          "; refusing to connect (the connection may be intercepted, or the host was "
          "reinstalled: once you have checked, remove the old key with `ssh-keygen -R '",
          name, "' -f ", known_hosts, "`)"));
    case SSH_KNOWN_HOSTS_UNKNOWN:
    case SSH_KNOWN_HOSTS_NOT_FOUND:
      if (o.host_key_policy == HostKeyPolicy::kAcceptNew) {
        if (ssh_session_update_known_hosts(s) != SSH_OK) {
          return absl::PermissionDeniedError(absl::StrCat("cannot add the host key of ", name,
                                                          " to ", known_hosts, ": ",
                                                          ssh_get_error(s)));
        }
        LOG(INFO) << "added the host key of " << name << " (" << key << ") to " << known_hosts;
        return absl::OkStatus();
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "unknown host ", name, " (its key is ", key, "): not in ", known_hosts,
          "; check the fingerprint, then add it with `ssh-keyscan -p ", o.port, " ", o.host,
          " >> ", known_hosts, "`, or pass --accept-new-host-key"));
    case SSH_KNOWN_HOSTS_ERROR:
    default:
      return absl::InternalError(
          absl::StrCat("checking the host key of ", name, " against ", known_hosts, ": ",
                       ssh_get_error(s)));
  }
}

std::string MethodNames(int methods) {
  std::vector<std::string> names;
  if (methods & SSH_AUTH_METHOD_PUBLICKEY) names.push_back("publickey");
  if (methods & SSH_AUTH_METHOD_PASSWORD) names.push_back("password");
  if (methods & SSH_AUTH_METHOD_INTERACTIVE) names.push_back("keyboard-interactive");
  if (methods & SSH_AUTH_METHOD_HOSTBASED) names.push_back("hostbased");
  if (methods & SSH_AUTH_METHOD_GSSAPI_MIC) names.push_back("gssapi-with-mic");
  return names.empty() ? "none" : absl::StrJoin(names, ", ");
}

absl::Status Authenticate(ssh_session s, const SshOptions& o) {
  const std::string target = DescribeTarget(o);
  if (ssh_userauth_none(s, nullptr) == SSH_AUTH_SUCCESS) return absl::OkStatus();
  const int methods = ssh_userauth_list(s, nullptr);
  std::vector<std::string> tried;
  int rc = SSH_AUTH_DENIED;
  if (!o.identity_file.empty()) {
    ssh_key raw = nullptr;
    if (ssh_pki_import_privkey_file(o.identity_file.c_str(), nullptr, nullptr, nullptr, &raw) !=
        SSH_OK) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot use the private key ", o.identity_file,
          ": it is missing, unreadable, not a private key, or protected by a passphrase (load "
          "such a key into ssh-agent and leave out --identity)"));
    }
    KeyPtr key(raw);
    tried.push_back(absl::StrCat("publickey with ", o.identity_file));
    if (methods & SSH_AUTH_METHOD_PUBLICKEY) rc = ssh_userauth_publickey(s, nullptr, key.get());
  } else {
    const char* sock = std::getenv("SSH_AUTH_SOCK");
    tried.push_back(absl::StrCat("publickey with ",
                                 sock != nullptr && *sock != '\0' ? "ssh-agent, then " : "",
                                 "the default keys in ~/.ssh"));
    if (methods & SSH_AUTH_METHOD_PUBLICKEY) rc = ssh_userauth_publickey_auto(s, nullptr, nullptr);
  }
  if (rc == SSH_AUTH_SUCCESS) return absl::OkStatus();
  if (rc == SSH_AUTH_ERROR) {
    return absl::UnavailableError(
        absl::StrCat("authenticating to ", target, ": ", ssh_get_error(s)));
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "authentication to ", target, " failed: tried ", absl::StrJoin(tried, "; "),
      "; the server accepts ", MethodNames(methods),
      " (is the public key in the remote user's ~/.ssh/authorized_keys?)"));
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Connects to host:port over TCP, within 10 s.
absl::StatusOr<Fd> ConnectTcp(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", host, ": ", ::gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(res, ::freeaddrinfo);
  std::string last = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (fd.get() < 0) {
      last = std::strerror(errno);
      continue;
    }
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) == 0) return fd;
    last = std::strerror(errno);
  }
  return absl::UnavailableError(absl::StrCat("cannot connect to ", host, ":", port, ": ", last));
}

bool SendAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

absl::Status ExecResult::Check(absl::string_view what) const {
  if (ok()) return absl::OkStatus();
  std::string err = Tail(stderr_data, 2000);
  if (err.empty()) err = Tail(stdout_data, 2000);
  return absl::UnknownError(
      absl::StrCat(what, " exited with status ", exit_code, err.empty() ? "" : ": ", err));
}

std::string ShellQuote(absl::string_view value) {
  return absl::StrCat("'", absl::StrReplaceAll(value, {{"'", "'\\''"}}), "'");
}

std::string DescribeTarget(const SshOptions& options) {
  return absl::StrCat(options.user.empty() ? LocalUser() : options.user, "@", options.host, ":",
                      options.port);
}

struct LibsshRemoteHost::Session {
  SessionPtr ssh;
};

LibsshRemoteHost::LibsshRemoteHost(SshOptions options, std::unique_ptr<Session> session)
    : options_(std::move(options)), session_(std::move(session)) {}

LibsshRemoteHost::~LibsshRemoteHost() = default;

absl::StatusOr<std::unique_ptr<LibsshRemoteHost>> LibsshRemoteHost::Connect(
    const SshOptions& options) {
  if (options.host.empty()) return absl::InvalidArgumentError("no SSH host given");
  if (options.port <= 0 || options.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("SSH port ", options.port, " is out of range"));
  }
  const std::string target = DescribeTarget(options);
  SessionPtr s(ssh_new());
  if (s == nullptr) return absl::ResourceExhaustedError("ssh_new failed");
  const std::string user = options.user.empty() ? LocalUser() : options.user;
  const long timeout_s = std::max<long>(1, absl::ToInt64Seconds(options.connect_timeout));
  const int port = options.port;
  const int process_config = 0;
  // Without it, small SFTP writes wait for delayed ACKs (about 40 ms per 32 KiB chunk).
  const int nodelay = 1;
  std::string known_hosts = options.known_hosts_file;
  if (known_hosts.empty()) known_hosts = absl::StrCat(HomeDir(), "/.ssh/known_hosts");
  if (ssh_options_set(s.get(), SSH_OPTIONS_HOST, options.host.c_str()) != SSH_OK ||
      ssh_options_set(s.get(), SSH_OPTIONS_PORT, &port) != SSH_OK ||
      ssh_options_set(s.get(), SSH_OPTIONS_USER, user.c_str()) != SSH_OK ||
      ssh_options_set(s.get(), SSH_OPTIONS_TIMEOUT, &timeout_s) != SSH_OK ||
      ssh_options_set(s.get(), SSH_OPTIONS_PROCESS_CONFIG, &process_config) != SSH_OK ||
      ssh_options_set(s.get(), SSH_OPTIONS_NODELAY, &nodelay) != SSH_OK ||
      ssh_options_set(s.get(), SSH_OPTIONS_KNOWNHOSTS, known_hosts.c_str()) != SSH_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat("SSH options for ", target, ": ", ssh_get_error(s.get())));
  }
  if (!options.known_hosts_file.empty() &&
      ssh_options_set(s.get(), SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null") != SSH_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat("SSH options for ", target, ": ", ssh_get_error(s.get())));
  }
  if (ssh_connect(s.get()) != SSH_OK) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", target, ": ", ssh_get_error(s.get())));
  }
  RETURN_IF_ERROR(VerifyHostKey(s.get(), options, known_hosts));
  RETURN_IF_ERROR(Authenticate(s.get(), options));
  auto session = std::make_unique<Session>();
  session->ssh = std::move(s);
  return std::unique_ptr<LibsshRemoteHost>(
      new LibsshRemoteHost(options, std::move(session)));
}

std::string LibsshRemoteHost::Describe() const { return DescribeTarget(options_); }

bool LibsshRemoteHost::connected() const { return ssh_is_connected(session_->ssh.get()) != 0; }

absl::Status LibsshRemoteHost::Lost(absl::string_view what) const {
  return absl::UnavailableError(absl::StrCat(what, " on ", Describe(), ": ",
                                             ssh_get_error(session_->ssh.get())));
}

absl::StatusOr<ExecResult> LibsshRemoteHost::Exec(const std::string& command,
                                                  absl::Duration timeout) {
  ssh_session s = session_->ssh.get();
  ChannelPtr ch(ssh_channel_new(s));
  if (ch == nullptr) return Lost("opening a channel");
  if (ssh_channel_open_session(ch.get()) != SSH_OK) return Lost("opening a session channel");
  // The login shell runs `echo MARKER; command` (`echo` and `;` mean the same in sh, csh and
  // fish): the marker says its startup files are done and the command starts.
  const std::string wrapped = absl::StrCat("echo ", kStartMarker, "; ", command);
  const absl::Time sent = absl::Now();
  if (ssh_channel_request_exec(ch.get(), wrapped.c_str()) != SSH_OK) {
    return Lost("starting a command");
  }
  ssh_channel_send_eof(ch.get());
  ExecResult result;
  bool started = false;
  absl::Time deadline = sent + options_.login_timeout;
  char buf[kChunk];
  while (true) {
    int n = ssh_channel_read_timeout(ch.get(), buf, sizeof(buf), 0, 100);
    if (n == SSH_ERROR) return Lost("reading a command's output");
    if (n > 0 && result.stdout_data.size() < kMaxOutputBytes) result.stdout_data.append(buf, n);
    size_t marker = std::string::npos;
    if (!started && (marker = result.stdout_data.find(kStartLine)) != std::string::npos) {
      // What startup files printed before it is not the command's output.
      started = true;
      result.stdout_data.erase(0, marker + sizeof(kStartLine) - 1);
      const absl::Duration startup = absl::Now() - sent;
      deadline = absl::Now() + timeout;
      if (startup > absl::Seconds(5) && !slow_shell_logged_) {
        slow_shell_logged_ = true;
        LOG(WARNING) << "the login shell on " << Describe() << " took "
                     << absl::FormatDuration(absl::Trunc(startup, absl::Milliseconds(100)))
                     << " to start a command (its startup files, such as ~/.bashrc or "
                        "~/.profile); every remote command waits for it";
      }
    }
    int m = ssh_channel_read_nonblocking(ch.get(), buf, sizeof(buf), 1);
    if (m == SSH_ERROR) return Lost("reading a command's output");
    if (m > 0 && result.stderr_data.size() < kMaxOutputBytes) result.stderr_data.append(buf, m);
    if (n <= 0 && m <= 0 && ssh_channel_is_eof(ch.get())) break;
    if (absl::Now() > deadline) {
      if (!started) {
        return absl::DeadlineExceededError(absl::StrCat(
            "the login shell on ", Describe(), " did not start a command within ",
            absl::FormatDuration(options_.login_timeout),
            ": its startup files (such as ~/.bashrc or ~/.profile) are slow or wait for input; "
            "make them return early in non-interactive shells (for bash: `[[ $- == *i* ]] || "
            "return` at the top of ~/.bashrc)"));
      }
      return absl::DeadlineExceededError(
          absl::StrCat("command on ", Describe(), " did not finish within ",
                       absl::FormatDuration(timeout), ": ", command));
    }
  }
  result.exit_code = ssh_channel_get_exit_status(ch.get());
  return result;
}

absl::Status LibsshRemoteHost::Upload(const std::string& remote_path, int mode,
                                      const std::function<absl::Status(void* file)>& write) {
  if (remote_path.empty() || remote_path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("upload target must be an absolute path, not \"", remote_path, "\""));
  }
  ssh_session s = session_->ssh.get();
  SftpPtr sftp(sftp_new(s));
  if (sftp == nullptr) return Lost("starting SFTP");
  if (sftp_init(sftp.get()) != SSH_OK) {
    return absl::UnavailableError(absl::StrCat("SFTP on ", Describe(), ": ", ssh_get_error(s),
                                               " (is the sftp subsystem enabled in sshd?)"));
  }
  absl::BitGen gen;
  const std::string tmp = absl::StrCat(DirName(remote_path), "/.", BaseName(remote_path), ".tmp-",
                                       absl::Uniform<uint32_t>(gen));
  auto fail = [&](absl::string_view what) {
    const std::string message =
        absl::StrCat(what, " ", Describe(), ":", tmp, ": ", ssh_get_error(s));
    sftp_unlink(sftp.get(), tmp.c_str());
    return absl::UnavailableError(message);
  };
  {
    SftpFilePtr file(sftp_open(sftp.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                               static_cast<mode_t>(mode)));
    if (file == nullptr) {
      return absl::PermissionDeniedError(absl::StrCat("cannot create ", Describe(), ":", tmp,
                                                      ": ", ssh_get_error(s)));
    }
    if (absl::Status st = write(file.get()); !st.ok()) {
      file.reset();
      sftp_unlink(sftp.get(), tmp.c_str());
      return st;
    }
  }
  if (sftp_chmod(sftp.get(), tmp.c_str(), static_cast<mode_t>(mode)) != SSH_OK) {
    return fail("setting the mode of");
  }
  // SFTP version 3 (libssh 0.10 with OpenSSH) cannot rename over an existing file, and libssh
  // does not expose OpenSSH's posix-rename extension; mv(1) within one directory is a rename(2),
  // which replaces the target atomically.
  sftp.reset();
  absl::StatusOr<ExecResult> mv = Exec(
      absl::StrCat("mv -f -- ", ShellQuote(tmp), " ", ShellQuote(remote_path)), absl::Minutes(1));
  if (!mv.ok()) return mv.status();
  if (!mv->ok()) {
    (void)Exec(absl::StrCat("rm -f -- ", ShellQuote(tmp)), absl::Minutes(1));
    return Annotate(mv->Check("mv"), absl::StrCat("renaming ", tmp, " to ", remote_path));
  }
  return absl::OkStatus();
}

absl::Status LibsshRemoteHost::UploadData(absl::string_view data, const std::string& remote_path,
                                          int mode) {
  return Upload(remote_path, mode, [&](void* f) -> absl::Status {
    auto* file = static_cast<sftp_file>(f);
    while (!data.empty()) {
      const size_t n = std::min(data.size(), kChunk);
      ssize_t w = sftp_write(file, data.data(), n);
      if (w <= 0) return Lost(absl::StrCat("writing ", remote_path));
      data.remove_prefix(static_cast<size_t>(w));
    }
    return absl::OkStatus();
  });
}

absl::Status LibsshRemoteHost::UploadFile(const std::string& local_path,
                                          const std::string& remote_path, int mode) {
  std::ifstream in(local_path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read ", local_path, ": ", std::strerror(errno)));
  }
  return Upload(remote_path, mode, [&](void* f) -> absl::Status {
    auto* file = static_cast<sftp_file>(f);
    std::vector<char> buf(kChunk);
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      const std::streamsize got = in.gcount();
      const char* p = buf.data();
      size_t left = static_cast<size_t>(got);
      while (left > 0) {
        ssize_t w = sftp_write(file, p, left);
        if (w <= 0) return Lost(absl::StrCat("writing ", remote_path));
        p += w;
        left -= static_cast<size_t>(w);
      }
    }
    if (in.bad()) return absl::DataLossError(absl::StrCat("reading ", local_path));
    return absl::OkStatus();
  });
}

absl::StatusOr<int> LibsshRemoteHost::ListenForward(const std::string& address, int port) {
  int bound = 0;
  ssh_session s = session_->ssh.get();
  if (ssh_channel_listen_forward(s, address.c_str(), port, &bound) != SSH_OK) {
    return absl::UnavailableError(absl::StrCat(
        Describe(), " refused to listen on ", address, ":", port, " for a reverse forward (",
        ssh_get_error(s), "): the port may be in use there, or sshd has AllowTcpForwarding off"));
  }
  return port != 0 ? port : bound;
}

absl::Status LibsshRemoteHost::ServeForwards(const std::string& target_host, int target_port,
                                             const std::atomic<bool>& stop) {
  ssh_session s = session_->ssh.get();
  // One forwarded connection: an SSH channel and the TCP connection to the target.
  struct Pipe {
    ChannelPtr channel;
    Fd fd;
    bool remote_eof = false;  // the channel sent EOF; the socket's write side is shut down
    bool local_eof = false;   // the socket reached EOF; the channel got our EOF
    bool broken = false;
  };
  std::vector<Pipe> pipes;
  // Unacknowledged bytes (the keepalives below) end a connection whose peer vanished within a
  // minute, instead of after TCP's retransmission timeout of many minutes.
  const unsigned int user_timeout_ms = 60000;
  ::setsockopt(ssh_get_fd(s), IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms,
               sizeof(user_timeout_ms));
  absl::Time last_accept = absl::InfinitePast();
  absl::Time last_keepalive = absl::Now();
  std::vector<char> buf(kChunk);
  while (!stop.load()) {
    if (!ssh_is_connected(s)) return Lost("connection lost");
    std::vector<pollfd> fds;
    fds.push_back({ssh_get_fd(s), POLLIN, 0});
    for (const Pipe& p : pipes) fds.push_back({p.local_eof ? -1 : p.fd.get(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), 50) < 0 && errno != EINTR) {
      return absl::InternalError(absl::StrCat("poll: ", std::strerror(errno)));
    }
    const absl::Time now = absl::Now();
    // A channel-open request may already sit in libssh's queue after a read below, so accept is
    // also tried now and then without new bytes on the socket.
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0 ||
        now - last_accept > absl::Milliseconds(250)) {
      last_accept = now;
      while (true) {
        int dest_port = 0;
        ChannelPtr ch(ssh_channel_open_forward_port(s, 0, &dest_port, nullptr, nullptr));
        if (ch == nullptr) break;
        absl::StatusOr<Fd> fd = ConnectTcp(target_host, target_port);
        if (!fd.ok()) {
          LOG(WARNING) << "reverse forward from " << Describe() << ": " << fd.status().message();
          continue;  // the channel closes: the remote client sees its connection end
        }
        pipes.push_back({std::move(ch), *std::move(fd)});
      }
      if (!ssh_is_connected(s)) return Lost("connection lost");
    }
    for (size_t i = 0; i < pipes.size(); ++i) {
      Pipe& p = pipes[i];
      // Channel → socket.
      while (!p.broken && !p.remote_eof) {
        int n = ssh_channel_read_nonblocking(p.channel.get(), buf.data(), buf.size(), 0);
        if (n > 0) {
          if (!SendAll(p.fd.get(), buf.data(), static_cast<size_t>(n))) p.broken = true;
          continue;
        }
        if (n == SSH_ERROR) {
          p.broken = true;
        } else if (ssh_channel_is_eof(p.channel.get()) || ssh_channel_is_closed(p.channel.get())) {
          p.remote_eof = true;
          ::shutdown(p.fd.get(), SHUT_WR);
        }
        break;
      }
      // Socket → channel.
      const short revents = fds[i + 1].revents;
      if (!p.broken && !p.local_eof && (revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        ssize_t n = ::recv(p.fd.get(), buf.data(), buf.size(), MSG_DONTWAIT);
        if (n > 0) {
          if (ssh_channel_write(p.channel.get(), buf.data(), static_cast<uint32_t>(n)) !=
              static_cast<int>(n)) {
            p.broken = true;
          }
        } else if (n == 0) {
          p.local_eof = true;
          ssh_channel_send_eof(p.channel.get());
        } else if (errno != EAGAIN && errno != EINTR) {
          p.broken = true;
        }
      }
    }
    std::erase_if(pipes, [](const Pipe& p) {
      return p.broken || (p.remote_eof && p.local_eof) || ssh_channel_is_closed(p.channel.get());
    });
    if (now - last_keepalive > absl::Seconds(10)) {
      last_keepalive = now;
      if (ssh_send_ignore(s, "") != SSH_OK) return Lost("keepalive failed");
    }
  }
  return absl::OkStatus();
}

}  // namespace evalctl::ssh
