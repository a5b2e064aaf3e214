// evalctl: the command-line client. The commands live in the evalctl_cli library (app.h).
#include "clients/cli/app.h"

int main(int argc, char** argv) { return evalctl::cli::Main(argc, argv); }
