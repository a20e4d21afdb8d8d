#include "diff/report.h"

#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <fstream>
#include <vector>

using namespace retake;
using namespace retake::diff;
namespace json = boost::json;

namespace {

flow::Response resp(std::string ct, std::string body, int status = 200) {
  flow::Response r;
  r.status = status;
  r.headers.add("Content-Type", ct);
  r.headers.add("X-Version", status == 200 ? "1" : "2");
  r.body.data = std::move(body);
  return r;
}

flow::Flow make_flow(uint64_t id, std::string path, flow::Response r) {
  flow::Flow f;
  f.id = id;
  f.request.method = "GET";
  f.request.path = std::move(path);
  f.response = std::move(r);
  return f;
}

// A batch with an identical pair, a JSON difference, a hostile text body and odd bytes.
BatchResult sample_result() {
  CompareOptions o;
  o.ignore = {"$.never"};
  auto c = Comparator::create(o);
  REQUIRE(c.ok());
  Batch batch;
  auto add = [&](uint64_t id, std::string path, flow::Response a, flow::Response b) {
    auto fa = make_flow(id, path, std::move(a));
    auto fb = make_flow(id + 1000, path, std::move(b));
    batch.add(fa, fb, c->compare(fa, fb));
  };
  add(1, "/users/1", resp("application/json", R"({"a":1})"),
      resp("application/json", R"({"a":1})"));
  add(2, "/users/2", resp("application/json", R"({"name":"ann","items":[{"ts":1},{"ts":2}]})"),
      resp("application/json", R"({"name":"bob","items":[{"ts":1},{"ts":3}]})"));
  add(3, "/page?q=<x>", resp("text/html", "<p>hi</p>\n<script>alert(1)</script>\n"),
      resp("text/html", "<p>hi</p>\n<script>alert(2)</script>\n\x01\xff & \"q\"\n", 500));
  return batch.finish(nullptr, c->unused_rules());
}

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (auto p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

// A small XML well-formedness check: balanced tags, quoted attributes, no raw '<' or bare '&'
// in text, only the five predefined entities.
bool well_formed_xml(const std::string& x, std::vector<std::string>& opened_order,
                     std::string& error) {
  std::vector<std::string> stack;
  size_t i = 0;
  if (x.rfind("<?xml", 0) == 0) i = x.find("?>") + 2;
  while (i < x.size()) {
    char c = x[i];
    if (c == '<') {
      size_t end = x.find('>', i);
      if (end == std::string::npos) return error = "unclosed tag", false;
      std::string tag = x.substr(i + 1, end - i - 1);
      if (tag.empty()) return error = "empty tag", false;
      if (tag[0] == '/') {
        std::string name = tag.substr(1);
        if (stack.empty() || stack.back() != name) return error = "mismatched </" + name + ">", false;
        stack.pop_back();
      } else {
        bool self_closing = tag.back() == '/';
        std::string name = tag.substr(0, tag.find_first_of(" /"));
        // attributes: name="value" with no '<' inside values
        size_t q = 0;
        while ((q = tag.find('=', q)) != std::string::npos) {
          if (q + 1 >= tag.size() || tag[q + 1] != '"') return error = "unquoted attribute", false;
          size_t close = tag.find('"', q + 2);
          if (close == std::string::npos) return error = "unterminated attribute", false;
          if (tag.substr(q + 2, close - q - 2).find('<') != std::string::npos)
            return error = "'<' in attribute", false;
          q = close + 1;
        }
        if (!self_closing) {
          stack.push_back(name);
          opened_order.push_back(name);
        }
      }
      i = end + 1;
    } else if (c == '&') {
      size_t semi = x.find(';', i);
      std::string ent = semi == std::string::npos ? "" : x.substr(i, semi - i + 1);
      if (ent != "&amp;" && ent != "&lt;" && ent != "&gt;" && ent != "&quot;" && ent != "&apos;")
        return error = "bad entity at " + std::to_string(i), false;
      i = semi + 1;
    } else {
      if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\r' && c != '\t')
        return error = "control character", false;
      ++i;
    }
  }
  if (!stack.empty()) return error = "unclosed <" + stack.back() + ">", false;
  return true;
}

}  // namespace

TEST_CASE("the JSON report parses back with every count and difference") {
  auto r = sample_result();
  auto text = render_json(r);
  std::error_code ec;
  auto v = json::parse(text, ec);
  REQUIRE_MESSAGE(!ec, ec.message());
  auto& o = v.as_object();
  CHECK(o.at("compared").to_number<int>() == 3);
  CHECK(o.at("identical").to_number<int>() == 1);
  CHECK(o.at("different").to_number<int>() == 2);
  CHECK(o.at("exit_code").to_number<int>() == 1);
  auto& eps = o.at("endpoints").as_array();
  REQUIRE(eps.size() == 2);
  CHECK(eps[0].at("endpoint") == "GET /page");
  CHECK(eps[1].at("endpoint") == "GET /users/{id}");
  CHECK(eps[1].at("compared").to_number<int>() == 2);
  auto& pairs = o.at("differing").as_array();
  REQUIRE(pairs.size() == 2);
  CHECK(pairs[0].at("flow_a").to_number<int>() == 2);
  CHECK(pairs[0].at("flow_b").to_number<int>() == 1002);
  auto& ds = pairs[0].at("differences").as_array();
  REQUIRE(ds.size() == 2);
  CHECK(ds[0].at("kind") == "value_changed");
  CHECK(ds[0].at("path") == "$.name");
  CHECK(ds[0].at("value_a") == "\"ann\"");
  CHECK(ds[1].at("path") == "$.items[1].ts");
  CHECK(ds[1].at("pattern") == "$.items[*].ts");
  CHECK(o.at("unused_rules").as_array().size() == 1);
  CHECK(o.at("unused_rules").at(0) == "$.never");
}

TEST_CASE("the JUnit report is well-formed with one testcase per endpoint") {
  auto r = sample_result();
  auto xml = render_junit(r);
  std::vector<std::string> order;
  std::string error;
  CHECK_MESSAGE(well_formed_xml(xml, order, error), error);
  REQUIRE(order.size() >= 3);
  CHECK(order[0] == "testsuites");
  CHECK(order[1] == "testsuite");
  CHECK(count(xml, "<testcase ") == 2);
  CHECK(count(xml, "<failure ") == 2);
  CHECK(xml.find("name=\"GET /users/{id}\"") != std::string::npos);
  CHECK(xml.find("failures=\"2\"") != std::string::npos);
  CHECK(xml.find("$.never") != std::string::npos);  // unused rule noted
  CHECK(xml.find("&lt;script&gt;") != std::string::npos);
  CHECK(xml.find("\x01") == std::string::npos);

  Batch clean;
  clean.add("GET /a", 1, 2, Comparison{});
  auto ok_xml = render_junit(clean.finish());
  CHECK(well_formed_xml(ok_xml, order, error));
  CHECK(count(ok_xml, "<failure") == 0);
}

TEST_CASE("the HTML report is self-contained, escaped and has stable hooks") {
  auto r = sample_result();
  auto html = render_html(r);
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(html.find("id=\"summary\"") != std::string::npos);
  CHECK(html.find("id=\"differences\"") != std::string::npos);
  CHECK(html.find("id=\"unused-rules\"") != std::string::npos);
  CHECK(count(html, "class=\"endpoint\"") == 2);
  CHECK(count(html, "<article class=\"pair\"") == 2);
  CHECK(count(html, "class=\"difference\"") == r.unexplained_differences());
  CHECK(html.find("data-path=\"$.items[1].ts\"") != std::string::npos);
  // The differing JSON value is highlighted on both sides of the side-by-side view.
  CHECK(count(html, "<span class=\"hl\" data-path=\"$.name\">") == 2);
  CHECK(html.find("class=\"side side-a\"") != std::string::npos);
  // The body's <script> shows as text: the only script element is the report's own.
  CHECK(count(html, "<script>") == 1);
  CHECK(html.find("&lt;script&gt;alert(1)&lt;/script&gt;") != std::string::npos);
  CHECK(html.find("/page?q=&lt;x&gt;") != std::string::npos);
  // No network fetches: no external resources at all.
  CHECK(html.find("src=") == std::string::npos);
  CHECK(html.find("href=") == std::string::npos);
  CHECK(html.find("@import") == std::string::npos);
  CHECK(html.find("\xff") == std::string::npos);  // invalid UTF-8 repaired
  // Optional: leave the report where a person or a browser test can look at it.
  if (const char* out = std::getenv("RETAKE_DIFF_HTML_OUT")) std::ofstream(out) << html;
}

TEST_CASE("the text report lists endpoints and differences, colored only on request") {
  auto r = sample_result();
  auto plain = render_text(r);
  CHECK(plain.find("3 compared, 1 identical, 0 noise-suppressed, 2 different") != std::string::npos);
  CHECK(plain.find("GET /users/{id}") != std::string::npos);
  CHECK(plain.find("value_changed $.name: \"ann\" -> \"bob\"") != std::string::npos);
  CHECK(plain.find("status_changed status: 200 -> 500") != std::string::npos);
  CHECK(plain.find("$.never") != std::string::npos);
  CHECK(plain.find('\x1b') == std::string::npos);
  TextReportOptions color;
  color.color = true;
  CHECK(render_text(r, color).find("\x1b[31m") != std::string::npos);
}
