// The controller's gRPC layer: thin callback-API handlers over ControllerCore, one file per
// service (eval_service, agent_service, admin_service) and the authenticators (auth).
//
// Each handler authenticates the caller, hands the work to a worker pool (no disk I/O on gRPC
// threads), and converts absl::Status to grpc::Status in one place (ToGrpcStatus). Streams
// (WatchInvocation, StreamLogs, the agents' Connect) are reactors with one write in flight.
#pragma once

#include "controller/service/admin_service.h"
#include "controller/service/agent_service.h"
#include "controller/service/auth.h"
#include "controller/service/eval_service.h"
