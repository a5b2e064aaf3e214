// Message sizes on the agent stream, agreed by both ends, so that no message one side may send is
// one the other refuses (a refused message ends the stream, and the same message would be sent
// again after the reconnect, forever).
//
//   controller → agent  one Command per message; a SubmitTask holds one rendered job, at most
//                       kMaxSubmitTaskBytes (larger tasks are refused at submission, naming the
//                       task); the agent accepts up to kAgentMaxReceiveBytes.
//   agent → controller  Events messages hold at most kMaxEventsMessageBytes of events (at least
//                       one event; a single event is bounded by what the agent reads from a run
//                       directory: results.yml of at most 10,000 scores); the controller accepts up
//                       to kControllerMaxReceiveBytes.
#pragma once

#include <cstddef>

namespace evalctl::wire {

inline constexpr size_t kControllerMaxReceiveBytes = 8 << 20;
inline constexpr size_t kMaxEventsMessageBytes = 4 << 20;
inline constexpr size_t kMaxSubmitTaskBytes = 4 << 20;
inline constexpr size_t kAgentMaxReceiveBytes = 16 << 20;

static_assert(kMaxEventsMessageBytes < kControllerMaxReceiveBytes);
static_assert(kMaxSubmitTaskBytes < kAgentMaxReceiveBytes);

}  // namespace evalctl::wire
