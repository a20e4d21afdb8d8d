#include "interop/json_reader.h"

#include <algorithm>
#include <cmath>
#include <new>

namespace retake::interop::detail {

namespace {

// Counts what the parsed document takes and refuses to go past a limit. Single-threaded: one
// parse owns it.
class BoundedResource final : public json::memory_resource {
 public:
  explicit BoundedResource(uint64_t limit) : limit_(limit) {}

 private:
  void* do_allocate(std::size_t n, std::size_t align) override {
    if (n > limit_ - used_) throw std::bad_alloc();
    void* p = ::operator new(n, std::align_val_t(align));
    used_ += n;
    return p;
  }
  void do_deallocate(void* p, std::size_t n, std::size_t align) override {
    // Unsized: Boost 1.81's monotonic_resource hands back a block with a smaller size than it
    // asked for (found by ASan), so the size is only a hint here.
    ::operator delete(p, std::align_val_t(align));
    used_ -= std::min<uint64_t>(n, used_);
  }
  bool do_is_equal(const json::memory_resource& other) const noexcept override {
    return this == &other;
  }

  uint64_t limit_;
  uint64_t used_ = 0;
};

}  // namespace

Result<json::value> parse_import_json(std::string_view bytes, const ImportOptions& options) {
  if (bytes.size() > options.max_input_bytes)
    return Status(Errc::resource_exhausted, "input of " + std::to_string(bytes.size()) +
                                                " bytes exceeds the limit of " +
                                                std::to_string(options.max_input_bytes));
  if (bytes.starts_with("\xEF\xBB\xBF")) bytes.remove_prefix(3);
  return parse_json(bytes, options.max_depth, options.max_json_memory);
}

Result<json::value> parse_json(std::string_view bytes, size_t max_depth, uint64_t max_memory) {
  if (max_memory == 0) max_memory = (uint64_t{64} << 20) + 8 * uint64_t{bytes.size()};
  json::parse_options opt;
  opt.max_depth = max_depth;
  opt.allow_invalid_utf8 = true;
  json::stream_parser parser(json::storage_ptr(), opt);
  // The document is read once and dropped whole: an arena makes building and freeing it cheap
  // (allocation dominated the import profile). The value keeps the arena alive.
  auto bounded = json::make_shared_resource<BoundedResource>(max_memory);
  parser.reset(json::make_shared_resource<json::monotonic_resource>(4096, bounded));
  boost::system::error_code ec;
  size_t consumed = 0;
  try {
    consumed = parser.write_some(bytes.data(), bytes.size(), ec);
  } catch (const std::bad_alloc&) {
    return Result<json::value>(Errc::resource_exhausted,
                               "the JSON document needs more than " + std::to_string(max_memory) +
                                   " bytes of memory once parsed (limit)");
  }
  if (!ec && consumed < bytes.size()) {
    // write_some stops after a complete value: anything but whitespace after it is garbage.
    auto rest = bytes.substr(consumed);
    auto first = rest.find_first_not_of(" \t\r\n");
    if (first != std::string_view::npos) {
      consumed += first;
      ec = json::error::extra_data;
    }
  }
  if (!ec) parser.finish(ec);
  if (ec) {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < consumed && i < bytes.size(); ++i) {
      if (bytes[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    std::string reason = ec.message();
    if (ec == json::error::too_deep)
      reason = "nesting deeper than " + std::to_string(max_depth) + " levels";
    return Result<json::value>(Errc::parse_error, "JSON syntax error at byte " +
                                                      std::to_string(consumed) + " (line " +
                                                      std::to_string(line) + ", column " +
                                                      std::to_string(col) + "): " + reason);
  }
  return parser.release();
}

const json::object& JsonAt::object() const {
  if (!value_->is_object()) fail("expected an object");
  return value_->get_object();
}

const json::array& JsonAt::array() const {
  if (!value_->is_array()) fail("expected an array");
  return value_->get_array();
}

std::string_view JsonAt::string() const {
  if (!value_->is_string()) fail("expected a string");
  const auto& s = value_->get_string();
  return {s.data(), s.size()};
}

double JsonAt::number() const {
  if (value_->is_double()) return value_->get_double();
  if (value_->is_int64()) return static_cast<double>(value_->get_int64());
  if (value_->is_uint64()) return static_cast<double>(value_->get_uint64());
  fail("expected a number");
}

int64_t JsonAt::integer() const {
  if (value_->is_int64()) return value_->get_int64();
  if (value_->is_uint64()) {
    if (value_->get_uint64() > static_cast<uint64_t>(INT64_MAX)) fail("integer out of range");
    return static_cast<int64_t>(value_->get_uint64());
  }
  if (value_->is_double()) {
    double d = value_->get_double();
    // Some writers emit 200.0; accept whole numbers inside the exact range of a double.
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15)
      return static_cast<int64_t>(d);
    fail("expected an integer");
  }
  fail("expected an integer");
}

bool JsonAt::boolean() const {
  if (!value_->is_bool()) fail("expected true or false");
  return value_->get_bool();
}

JsonAt JsonAt::get(std::string_view key) const {
  auto found = find(key);
  if (!found) throw BadInput(path_ + "." + std::string(key), "missing");
  return *found;
}

std::optional<JsonAt> JsonAt::find(std::string_view key) const {
  const auto& obj = object();
  auto it = obj.find(key);
  if (it == obj.end() || it->value().is_null()) return std::nullopt;
  return JsonAt(it->value(), path_.empty() ? std::string(key) : path_ + "." + std::string(key));
}

JsonAt JsonAt::at(size_t index) const {
  const auto& arr = array();
  if (index >= arr.size()) fail("index " + std::to_string(index) + " out of range");
  return JsonAt(arr[index], path_ + "[" + std::to_string(index) + "]");
}

std::string JsonAt::string_or(std::string_view key, std::string_view fallback) const {
  auto f = find(key);
  return std::string(f ? f->string() : fallback);
}
double JsonAt::number_or(std::string_view key, double fallback) const {
  auto f = find(key);
  return f ? f->number() : fallback;
}
int64_t JsonAt::integer_or(std::string_view key, int64_t fallback) const {
  auto f = find(key);
  return f ? f->integer() : fallback;
}
bool JsonAt::boolean_or(std::string_view key, bool fallback) const {
  auto f = find(key);
  return f ? f->boolean() : fallback;
}

std::string read_bytes(const JsonAt& at) {
  if (at.value().is_string()) return std::string(at.string());
  if (at.value().is_object()) {
    auto b64 = at.get("base64");
    auto decoded = base64_decode(b64.string());
    if (!decoded) b64.fail("invalid base64");
    return std::move(*decoded);
  }
  at.fail("expected a string or {\"base64\": ...}");
}

json::value bytes_value(std::string_view bytes) {
  if (valid_utf8(bytes)) return json::string(bytes);
  return json::object{{"base64", base64_encode(bytes)}};
}

}  // namespace retake::interop::detail
