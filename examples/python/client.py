"""A small Python client for a running Vakt: one allow, two denies with their
reasons, and which system user to fetch a token for. It prints what
`cargo run --release --example client` prints.

    pip install grpcio grpcio-tools
    python examples/python/client.py                          # 127.0.0.1:50051
    python examples/python/client.py 127.0.0.1:50051          # or VAKT_ADDR=...
    python examples/python/client.py unix:///run/vakt/vakt.sock

It generates its stubs from ../../proto with grpcio-tools into a temporary
directory when it starts; in your own system, generate them once with
`python -m grpc_tools.protoc -I proto --python_out=OUT --grpc_python_out=OUT
proto/vakt/v1/authorization.proto`. tests/it/client_examples.rs runs this against
the real server.
"""

import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

REGNSKAP = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet"
PROTO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")


def stubs(out):
    """Generates and imports authorization_pb2 and authorization_pb2_grpc."""
    # grpc_tools ships the well-known types (google/protobuf/struct.proto).
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    code = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        os.path.join(PROTO, "vakt", "v1", "authorization.proto"),
    ])
    if code != 0:
        sys.exit(f"vakt client: cannot generate stubs from {PROTO}")
    sys.path.insert(0, out)
    from vakt.v1 import authorization_pb2, authorization_pb2_grpc
    return authorization_pb2, authorization_pb2_grpc


def main():
    # grpcio takes host:port or unix:PATH; an http:// prefix, as the Rust client
    # takes, is dropped.
    addr = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("VAKT_ADDR", "127.0.0.1:50051")
    addr = addr.removeprefix("http://")
    with tempfile.TemporaryDirectory() as out:
        pb, pb_grpc = stubs(out)
        with grpc.insecure_channel(addr) as channel:
            vakt = pb_grpc.AuthorizerStub(channel)
            ask(pb, vakt)


def ask(pb, vakt):
    # A deadline on every call: a check that cannot be answered in time is a
    # denial for the caller, not a hang.
    for employee, system_user, client, why in [
        ("kari", "tk-regnskap", "310015156", "Kari (accounting team) for client Bakeri Brød AS"),
        ("kari", "tk-regnskap", "310020206", "Kari for Havbris AS, whose client link was removed"),
        ("randi", "rr-regnskap", "310021210", "Randi, Fjordfisk's auditor, as its accountant"),
    ]:
        r = vakt.Authorize(
            pb.AuthorizeRequest(
                employee_id=employee,
                system_user_id=system_user,
                client_org_number=client,
                access_package=REGNSKAP,
            ),
            timeout=5,
        )
        # Anything but an explicit ALLOW is a denial.
        decision = {pb.DECISION_ALLOW: "Allow", pb.DECISION_DENY: "Deny"}.get(
            r.decision, pb.Decision.Name(r.decision)
        )
        print(f"{why}:\n  {decision} (decision {r.decision_id}, revision {r.revision})")
        for reason in r.reasons:
            print(f"    {reason.policy_id}: {reason.message}")

    r = vakt.ResolveSystemUser(
        pb.ResolveSystemUserRequest(
            employee_id="kari",
            client_org_number="310019194",
            access_package="urn:altinn:accesspackage:sykefravaer",
        ),
        timeout=5,
    )
    print("System users Kari may use for Kaffebrenneriet AS with sykefravaer:")
    for s in r.system_users:
        print(f"  {s.id} (external ref {s.external_ref}, {s.user_type})")


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as e:
        sys.exit(f"vakt client: {e.code().name}: {e.details()}")
