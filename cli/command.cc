#include "cli/command.h"

#include <charconv>
#include <cmath>
#include <ctime>
#include <iostream>

#include "flow/flow.h"
#include "store/flow_store.h"

namespace retake::cli {

void add_db_option(CLI::App& cmd, std::string& db) {
  cmd.add_option("--db", db, "Flow database directory (default: $RETAKE_HOME/db, ~/.retake/db)")
      ->type_name("DIR");
}

void add_min_free_option(CLI::App& cmd, std::string& size) {
  cmd.add_option("--min-free-space", size,
                 "Disk space kept free on the store's filesystem; below it recording pauses "
                 "until space is freed (default 64MiB, 0: no check)")
      ->type_name("SIZE");
}

uint64_t parse_min_free(const std::string& size) {
  if (size.empty()) return store::WriterOptions{}.min_free_bytes;
  auto bytes = parse_size(size);
  if (!bytes) throw UsageError("--min-free-space: expected a size like 64MiB, got '" + size + "'");
  return *bytes;
}

std::string resolve_db(const std::string& db) {
  return db.empty() ? store::default_db_path() : db;
}

int fail(const std::string& message) {
  std::cerr << "retake: " << message << "\n";
  return kExitFailure;
}

int fail(const Status& status) { return fail(status.message()); }

namespace {
// Splits "12.5MiB" into 12.5 and "MiB".
bool split_number(std::string_view text, double& number, std::string_view& unit) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  if (i == 0) return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + i, number);
  if (ec != std::errc() || ptr != text.data() + i || !std::isfinite(number) || number < 0)
    return false;
  unit = text.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  return true;
}
}  // namespace

std::optional<uint64_t> parse_size(std::string_view text) {
  double number = 0;
  std::string_view unit;
  if (!split_number(text, number, unit)) return std::nullopt;
  double multiplier = 1;
  std::string u;
  for (char c : unit) u += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (u.empty() || u == "b") multiplier = 1;
  else if (u == "k" || u == "kb" || u == "kib") multiplier = 1024.0;
  else if (u == "m" || u == "mb" || u == "mib") multiplier = 1024.0 * 1024;
  else if (u == "g" || u == "gb" || u == "gib") multiplier = 1024.0 * 1024 * 1024;
  else return std::nullopt;
  double bytes = number * multiplier;
  if (bytes > 1e18) return std::nullopt;
  return static_cast<uint64_t>(bytes);
}

std::string flag_message(const Status& status) {
  const std::string& message = status.message();
  auto colon = message.find(": ");
  // A field name is one word of [a-z_]; anything else is a sentence, not a field.
  if (colon == std::string::npos || colon == 0) return message;
  std::string field = message.substr(0, colon);
  for (char c : field)
    if (!(c >= 'a' && c <= 'z') && c != '_') return message;
  if (field == "timeout_ms") field = "timeout";
  if (field == "rules_text") field = "rules";
  for (auto& c : field)
    if (c == '_') c = '-';
  return "--" + field + message.substr(colon);
}

std::optional<int64_t> parse_duration_ms(std::string_view text) {
  double number = 0;
  std::string_view unit;
  if (!split_number(text, number, unit)) return std::nullopt;
  double ms;
  if (unit.empty() || unit == "ms") ms = number;
  else if (unit == "s") ms = number * 1000;
  else if (unit == "m") ms = number * 60'000;
  else if (unit == "h") ms = number * 3'600'000;
  else if (unit == "us") ms = number / 1000;
  else return std::nullopt;
  if (ms > 1e15) return std::nullopt;
  return static_cast<int64_t>(ms);
}

std::string format_size(uint64_t bytes) {
  char buf[32];
  if (bytes < 1024) {
    std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(bytes));
  } else if (bytes < 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.1fk", bytes / 1024.0);
  } else if (bytes < 1024ull * 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.1fM", bytes / (1024.0 * 1024));
  } else {
    std::snprintf(buf, sizeof buf, "%.1fG", bytes / (1024.0 * 1024 * 1024));
  }
  return buf;
}

std::string format_duration_ns(int64_t ns) {
  if (ns <= 0) return "-";
  char buf[32];
  if (ns < 1'000'000) std::snprintf(buf, sizeof buf, "%.2fms", ns / 1e6);
  else if (ns < 1'000'000'000) std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(ns / 1'000'000));
  else std::snprintf(buf, sizeof buf, "%.2fs", ns / 1e9);
  return buf;
}

std::string format_time_ns(int64_t ns) {
  if (ns <= 0) return "-";
  std::time_t secs = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  localtime_r(&secs, &tm);
  char buf[48];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03d", static_cast<int>((ns / 1'000'000) % 1000));
  return buf;
}

}  // namespace retake::cli
