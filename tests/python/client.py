"""A Vakt client in Python, from stubs generated from proto/ with grpcio-tools.

Run by tests/it/python_client.rs: python client.py STUBS_DIR HOST:PORT. It asks a
running sidecar (the built-in example world) for an allow, a deny with its reason,
a batch, and a system-user resolution, and a request with a bad field; it exits
non-zero at the first answer that is not what the example world gives.
"""

import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from google.protobuf import struct_pb2  # noqa: E402
from vakt.v1 import authorization_pb2 as pb  # noqa: E402
from vakt.v1 import authorization_pb2_grpc as rpc  # noqa: E402

REGNSKAP = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet"
SYKEFRAVAER = "urn:altinn:accesspackage:sykefravaer"


def check(what, cond, got):
    if not cond:
        sys.exit(f"{what}: got {got}")


def main():
    channel = grpc.insecure_channel(sys.argv[2])
    stub = rpc.AuthorizerStub(channel)

    allow = stub.Authorize(
        pb.AuthorizeRequest(
            employee_id="kari",
            system_user_id="tk-regnskap",
            client_org_number="310015156",
            access_package=REGNSKAP,
        ),
        timeout=10,
    )
    check("allow", allow.decision == pb.DECISION_ALLOW, allow)
    check("allow reason", [r.policy_id for r in allow.reasons] == ["use-system-user"], allow)
    check("decision id", len(allow.decision_id) == 36, allow)

    # Havbris AS: its client link was removed.
    ctx = struct_pb2.Struct()
    ctx.update({"mfa": True})
    deny = stub.Authorize(
        pb.AuthorizeRequest(
            employee_id="kari",
            system_user_id="tk-regnskap",
            client_org_number="310020206",
            access_package=REGNSKAP,
            context=ctx,
        ),
        timeout=10,
    )
    check("deny", deny.decision == pb.DECISION_DENY, deny)
    check("deny reason", [r.policy_id for r in deny.reasons] == ["client-not-linked"], deny)

    batch = stub.AuthorizeBatch(
        pb.AuthorizeBatchRequest(
            requests=[
                pb.AuthorizeRequest(
                    employee_id="kari",
                    system_user_id="tk-regnskap",
                    client_org_number=org,
                    access_package=REGNSKAP,
                )
                for org in ["310015156", "310020206"]
            ]
        ),
        timeout=10,
    )
    check(
        "batch",
        [r.decision for r in batch.responses] == [pb.DECISION_ALLOW, pb.DECISION_DENY],
        batch,
    )

    resolved = stub.ResolveSystemUser(
        pb.ResolveSystemUserRequest(
            employee_id="kari", client_org_number="310019194", access_package=SYKEFRAVAER
        ),
        timeout=10,
    )
    check("resolve", [s.id for s in resolved.system_users] == ["tk-regnskap-syk"], resolved)

    try:
        stub.Authorize(
            pb.AuthorizeRequest(
                employee_id="kari",
                system_user_id="tk-regnskap",
                client_org_number="12345",
                access_package=REGNSKAP,
            ),
            timeout=10,
        )
        sys.exit("a malformed org number was answered")
    except grpc.RpcError as e:
        check("bad field", e.code() == grpc.StatusCode.INVALID_ARGUMENT, e)
        check("bad field named", "client_org_number" in e.details(), e.details())

    print("ok")


main()
