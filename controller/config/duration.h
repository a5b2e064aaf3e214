// Slurm time durations (`--time`, `execution.walltime`, `execution.max_walltime`, sacct Elapsed):
// text ⇄ seconds.
//
//   ASSIGN_OR_RETURN(int64_t limit, ParseSlurmDuration(walltime_text));   // "04:00:00" → 14400
//   std::string time_arg = FormatSlurmDuration(limit);                     // 14400 → "04:00:00"
//
// Accepted forms (the same as sbatch --time): `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`.
// Fields are decimal digits only; leading zeros are fine and never mean octal (`08` is eight).
// The leading field is unbounded (`90` is 90 minutes, `120:00:00` is 120 hours, as NEL's
// max_walltime default uses), except that hours after a day count must be 0-23; every later field
// (minutes, seconds) must be 0-59. The same parser reads sacct's Elapsed column (`MM:SS`,
// `HH:MM:SS`, `D-HH:MM:SS`).
//
// "No limit": Slurm also accepts `UNLIMITED`, `INFINITE` and `-1` for a time limit. They have no
// length in seconds, so ParseSlurmDuration rejects them with an error that says so;
// callers where "no limit" makes sense (a walltime passed on to sbatch, a resume budget) check
// IsUnlimitedSlurmDuration first and handle it explicitly. Note that sbatch also reads
// `--time=0` as "no limit"; ParseSlurmDuration returns 0 for it and leaves that rule to callers.
//
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace evalctl::config {

// Seconds in `text`. INVALID_ARGUMENT, with a message that quotes the text and lists the accepted
// formats, for anything else: empty text, signs, spaces, units (`2h`), more or fewer fields,
// a field out of range (`01:61:00`), the "no limit" spellings, or a total beyond int64 seconds.
absl::StatusOr<int64_t> ParseSlurmDuration(absl::string_view text);

// True for Slurm's spellings of "no time limit": `UNLIMITED` and `INFINITE` (any case), `-1`.
bool IsUnlimitedSlurmDuration(absl::string_view text);

// `HH:MM:SS` below one day, `D-HH:MM:SS` from one day on (hours are then 0-23); both forms are
// valid sbatch --time values and ParseSlurmDuration reads them back exactly. Negative input is a
// caller bug and formats as `00:00:00`.
std::string FormatSlurmDuration(int64_t seconds);

}  // namespace evalctl::config
