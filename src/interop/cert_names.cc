// Subject and issuer names from an X.509 certificate (RFC 5280 section 4.1), read with a
// minimal DER walker. Only definite-length encodings are valid DER, which keeps this small.
#include <cstdio>

#include "interop/codec.h"

namespace retake::interop::detail {

namespace {

struct Tlv {
  uint8_t tag = 0;
  std::string_view value;
};

// Reads one TLV at the start of `in` and advances past it.
std::optional<Tlv> read_tlv(std::string_view& in) {
  if (in.size() < 2) return std::nullopt;
  Tlv t;
  t.tag = static_cast<uint8_t>(in[0]);
  if ((t.tag & 0x1f) == 0x1f) return std::nullopt;  // high tag numbers: not in certificates
  size_t len = static_cast<uint8_t>(in[1]);
  size_t header = 2;
  if (len & 0x80) {
    size_t n = len & 0x7f;
    if (n == 0 || n > 4 || in.size() < 2 + n) return std::nullopt;
    len = 0;
    for (size_t i = 0; i < n; ++i) len = (len << 8) | static_cast<uint8_t>(in[2 + i]);
    header += n;
  }
  if (len > in.size() - header) return std::nullopt;
  t.value = in.substr(header, len);
  in.remove_prefix(header + len);
  return t;
}

std::string oid_text(std::string_view oid) {
  if (oid.empty()) return {};
  std::string out = std::to_string(static_cast<uint8_t>(oid[0]) / 40) + "." +
                    std::to_string(static_cast<uint8_t>(oid[0]) % 40);
  uint64_t v = 0;
  for (size_t i = 1; i < oid.size(); ++i) {
    auto b = static_cast<uint8_t>(oid[i]);
    v = (v << 7) | (b & 0x7f);
    if (!(b & 0x80)) {
      out += "." + std::to_string(v);
      v = 0;
    }
    if (v > (uint64_t{1} << 56)) return {};
  }
  return out;
}

std::string attribute_name(const std::string& oid) {
  if (oid == "2.5.4.3") return "CN";
  if (oid == "2.5.4.6") return "C";
  if (oid == "2.5.4.7") return "L";
  if (oid == "2.5.4.8") return "ST";
  if (oid == "2.5.4.9") return "STREET";
  if (oid == "2.5.4.10") return "O";
  if (oid == "2.5.4.11") return "OU";
  if (oid == "0.9.2342.19200300.100.1.25") return "DC";
  if (oid == "0.9.2342.19200300.100.1.1") return "UID";
  if (oid == "1.2.840.113549.1.9.1") return "emailAddress";
  return oid;
}

// RFC 4514 escaping of an attribute value.
std::string escape_value(std::string_view v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    bool special = c == ',' || c == '+' || c == '"' || c == '\\' || c == '<' || c == '>' ||
                   c == ';' || (i == 0 && (c == '#' || c == ' ')) ||
                   (i + 1 == v.size() && c == ' ');
    if (special) out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%02X", static_cast<unsigned char>(c));
      out += '\\';
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

// Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF AttributeTypeAndValue). RFC 4514
// writes the RDNs last to first.
std::optional<std::string> name_text(std::string_view name) {
  std::vector<std::string> rdns;
  while (!name.empty()) {
    auto set = read_tlv(name);
    if (!set || set->tag != 0x31) return std::nullopt;
    std::string rdn;
    auto atvs = set->value;
    while (!atvs.empty()) {
      auto atv = read_tlv(atvs);
      if (!atv || atv->tag != 0x30) return std::nullopt;
      auto inner = atv->value;
      auto oid = read_tlv(inner);
      auto value = read_tlv(inner);
      if (!oid || oid->tag != 0x06 || !value) return std::nullopt;
      if (!rdn.empty()) rdn += '+';
      rdn += attribute_name(oid_text(oid->value)) + "=" + escape_value(value->value);
    }
    rdns.push_back(std::move(rdn));
    if (rdns.size() > 64) return std::nullopt;
  }
  std::string out;
  for (auto it = rdns.rbegin(); it != rdns.rend(); ++it) {
    if (!out.empty()) out += ',';
    out += *it;
  }
  return out;
}

}  // namespace

std::optional<CertNames> certificate_names(std::string_view in) {
  std::string der;
  constexpr std::string_view kBegin = "-----BEGIN CERTIFICATE-----";
  constexpr std::string_view kEnd = "-----END CERTIFICATE-----";
  if (auto b = in.find(kBegin); b != std::string_view::npos) {
    auto body = in.substr(b + kBegin.size());
    auto e = body.find(kEnd);
    if (e == std::string_view::npos) return std::nullopt;
    auto decoded = base64_decode(body.substr(0, e));
    if (!decoded) return std::nullopt;
    der = std::move(*decoded);
  } else {
    der = std::string(in);
  }
  std::string_view p = der;
  auto cert = read_tlv(p);
  if (!cert || cert->tag != 0x30) return std::nullopt;
  auto c = cert->value;
  auto tbs = read_tlv(c);
  if (!tbs || tbs->tag != 0x30) return std::nullopt;
  auto t = tbs->value;
  auto first = read_tlv(t);
  if (!first) return std::nullopt;
  if (first->tag == 0xa0) first = read_tlv(t);  // [0] version, then serialNumber
  if (!first || first->tag != 0x02) return std::nullopt;
  auto sig = read_tlv(t);
  auto issuer = read_tlv(t);
  auto validity = read_tlv(t);
  auto subject = read_tlv(t);
  if (!sig || !issuer || !validity || !subject || issuer->tag != 0x30 || subject->tag != 0x30)
    return std::nullopt;
  auto issuer_text = name_text(issuer->value);
  auto subject_text = name_text(subject->value);
  if (!issuer_text || !subject_text) return std::nullopt;
  return CertNames{*subject_text, *issuer_text};
}

}  // namespace retake::interop::detail
