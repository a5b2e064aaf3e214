// The `evalctl` command line: parses arguments with CLI11, resolves the global settings
// (--controller, --token, TLS files, --timeout), runs one command from commands.h and turns its
// outcome into one line on stderr and an exit code (commands.h: kExitOk, kExitError, kExitUsage,
// kExitTasksFailed).
//
//   int main(int argc, char** argv) { return evalctl::cli::Main(argc, argv); }
//
//   // tests: the same, on string streams
//   std::ostringstream out, err;
//   int code = RunApp({"evalctl", "--controller", addr, "status", "3f2a"}, {out, err});
//
// Reads the process environment (EVALCTL_CONTROLLER, EVALCTL_TOKEN, HOME, XDG_CONFIG_HOME).
// Never throws. Thread-compatible.
#pragma once

#include <string>
#include <vector>

#include "clients/cli/commands.h"

namespace evalctl::cli {

int RunApp(const std::vector<std::string>& args, const Io& io);

// RunApp on std::cout/std::cerr, with the terminal's width when stdout is a terminal.
int Main(int argc, char** argv);

}  // namespace evalctl::cli
