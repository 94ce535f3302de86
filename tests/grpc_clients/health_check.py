"""One grpc.health.v1.Health/Check call with the reference Python gRPC client (grpcio).

Run by tests/grpc.rs: `python health_check.py '{"target": "127.0.0.1:PORT", "token": "..."}'`
("token" optional). Prints one JSON line: the gRPC status code's number and name, the details,
the serving status (when OK) and the response's metadata, initial and trailing, as the client
library hands them to an application.
"""

import json
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main():
    args = json.loads(sys.argv[1])
    metadata = []
    if args.get("token") is not None:
        metadata.append(("authorization", "Bearer " + args["token"]))
    with grpc.insecure_channel(args["target"]) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply, call = stub.Check.with_call(
                health_pb2.HealthCheckRequest(service=""),
                metadata=metadata,
                timeout=10,
            )
            result = {
                "code": grpc.StatusCode.OK.value[0],
                "name": "OK",
                "serving": health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status),
                "details": None,
                "metadata": pairs(call.initial_metadata()) + pairs(call.trailing_metadata()),
            }
        except grpc.RpcError as error:
            result = {
                "code": error.code().value[0],
                "name": error.code().name,
                "details": error.details(),
                "metadata": pairs(error.initial_metadata()) + pairs(error.trailing_metadata()),
            }
    print(json.dumps(result))


def pairs(metadata):
    return [[key, value] for key, value in (metadata or ())]


if __name__ == "__main__":
    main()
