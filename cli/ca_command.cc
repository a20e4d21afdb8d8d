// `retake ca ...`: the certificate authority retake signs intercepted hosts' certificates with.
#include <fstream>
#include <iostream>

#include "cli/command.h"
#include "net/tls/certificate_authority.h"

namespace retake::cli {

namespace {

struct CaArgs {
  bool der = false;
  std::string output;
};

Result<tls::CertificateAuthority> load_ca() {
  auto dir = tls::default_ca_dir();
  if (!dir) return dir.status();
  return tls::CertificateAuthority::load_or_create(*dir);
}

int run_export(const CaArgs& args) {
  auto ca = load_ca();
  if (!ca) return fail(ca.status());
  const std::string& bytes = args.der ? ca->certificate_der() : ca->certificate_pem();
  if (args.output.empty() || args.output == "-") {
    std::cout.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return std::cout ? kExitOk : kExitFailure;
  }
  std::ofstream out(args.output, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return fail("cannot write " + args.output);
  std::cerr << "retake: wrote the CA certificate (" << (args.der ? "DER" : "PEM") << ") to "
            << args.output << "\n";
  return kExitOk;
}

int run_path() {
  auto ca = load_ca();
  if (!ca) return fail(ca.status());
  std::cout << ca->certificate_path().string() << "\n";
  std::cerr << "retake: key " << ca->key_path().string() << " (keep it private)\n"
            << "retake: " << ca->subject() << "  SHA-256 " << ca->sha256_fingerprint() << "\n";
  return kExitOk;
}

}  // namespace

void add_ca_command(CLI::App& app, Action& action) {
  auto* ca = app.add_subcommand("ca", "The certificate authority for HTTPS interception "
                                      "($RETAKE_HOME/ca, created on first use)");
  ca->require_subcommand(1);
  auto args = std::make_shared<CaArgs>();
  auto* exp = ca->add_subcommand("export", "Print the CA certificate (PEM, or DER with --der)");
  exp->add_flag("--der", args->der, "DER instead of PEM (Android, Windows)");
  exp->add_option("-o,--output", args->output, "Write to FILE instead of standard output")
      ->type_name("FILE");
  exp->callback([args, &action] { action = [args] { return run_export(*args); }; });
  auto* path = ca->add_subcommand("path", "Print where the CA certificate is");
  path->callback([&action] { action = [] { return run_path(); }; });
}

}  // namespace retake::cli
