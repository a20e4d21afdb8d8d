// retake::Status and retake::Result<T>: the project's one way to report an expected failure.
//
// Part of src/flow, the root module: no I/O, no third-party types. Every module may use it.
// Unexpected I/O failure throws and is caught once per connection or task; everything a caller
// is expected to handle (bad input, a missing session, a full queue) is a Status.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace retake {

// The project's error codes. Each value says what went wrong, not where.
enum class Errc {
  ok = 0,
  invalid_argument,   // a caller-supplied value is malformed or out of range
  not_found,          // the named flow, session, run or file does not exist
  already_exists,     // the thing to create exists already (a port in use, a session)
  failed_precondition,// the operation does not fit the current state (store read-only, ...)
  corruption,         // stored bytes do not decode; the store or file is damaged
  version_mismatch,   // the store was written by a newer schema than we understand
  io_error,           // the disk or the OS refused (full disk, permissions, ...)
  unavailable,        // a peer could not be reached or went away
  timeout,            // a deadline passed
  resource_exhausted, // a bound was hit (queue full, too many connections, body too large)
  parse_error,        // input text (a filter, a rules file, an import file) does not parse
  cancelled,          // the operation was stopped on request
  internal,           // a bug: an invariant did not hold
};

// A short lowercase name for the code, stable for JSON output and logs.
const char* errc_name(Errc code) noexcept;

// An outcome with no value: ok, or a code with a human-readable message.
// The message names the problem for a person ("store at /x was written by schema 3; this
// retake understands up to 1").
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Errc code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok_status() { return {}; }

  bool ok() const noexcept { return code_ == Errc::ok; }
  explicit operator bool() const noexcept { return ok(); }
  Errc code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }
  // "<code name>: <message>", or "ok".
  std::string to_string() const;

 private:
  Errc code_ = Errc::ok;
  std::string message_;
};

// A value or a failed Status. Access value() only after checking ok().
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).ok()); }
  Result(Errc code, std::string message) : v_(Status(code, std::move(message))) {}

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  // The failure; ok_status() when this holds a value.
  Status status() const { return ok() ? Status() : std::get<1>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace retake
