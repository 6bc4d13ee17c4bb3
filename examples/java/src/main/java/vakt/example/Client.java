// A small Java client for a running Vakt: one allow, two denies with their
// reasons, and which system user to fetch a token for. It prints what
// `cargo run --release --example client` prints. See examples/java/README.md to run it.
package vakt.example;

import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import java.util.concurrent.TimeUnit;
import vakt.v1.AuthorizeRequest;
import vakt.v1.AuthorizeResponse;
import vakt.v1.AuthorizerGrpc;
import vakt.v1.Decision;
import vakt.v1.Reason;
import vakt.v1.ResolveSystemUserRequest;
import vakt.v1.ResolveSystemUserResponse;
import vakt.v1.SystemUserChoice;

public final class Client {
    private static final String REGNSKAP =
            "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet";

    public static void main(String[] args) throws InterruptedException {
        // grpc-java takes host:port or unix:PATH; an http:// prefix, as the Rust
        // client takes, is dropped.
        String addr = args.length > 0 ? args[0] : System.getenv().getOrDefault("VAKT_ADDR", "127.0.0.1:50051");
        addr = addr.replaceFirst("^http://", "");
        ManagedChannel channel = Grpc.newChannelBuilder(addr, InsecureChannelCredentials.create()).build();
        try {
            ask(AuthorizerGrpc.newBlockingStub(channel));
        } catch (StatusRuntimeException e) {
            System.err.println("vakt client: " + e.getStatus());
            System.exit(1);
        } finally {
            channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
    }

    private static void ask(AuthorizerGrpc.AuthorizerBlockingStub vakt) {
        String[][] questions = {
            {"kari", "tk-regnskap", "310015156", "Kari (accounting team) for client Bakeri Brød AS"},
            {"kari", "tk-regnskap", "310020206", "Kari for Havbris AS, whose client link was removed"},
            {"randi", "rr-regnskap", "310021210", "Randi, Fjordfisk's auditor, as its accountant"},
        };
        for (String[] q : questions) {
            // A deadline on every call: a check that cannot be answered in time
            // is a denial for the caller, not a hang.
            AuthorizeResponse r = vakt.withDeadlineAfter(5, TimeUnit.SECONDS)
                    .authorize(AuthorizeRequest.newBuilder()
                            .setEmployeeId(q[0])
                            .setSystemUserId(q[1])
                            .setClientOrgNumber(q[2])
                            .setAccessPackage(REGNSKAP)
                            .build());
            System.out.printf("%s:%n  %s (decision %s, revision %s)%n",
                    q[3], decision(r.getDecision()), r.getDecisionId(), r.getRevision());
            for (Reason reason : r.getReasonsList()) {
                System.out.printf("    %s: %s%n", reason.getPolicyId(), reason.getMessage());
            }
        }

        ResolveSystemUserResponse r = vakt.withDeadlineAfter(5, TimeUnit.SECONDS)
                .resolveSystemUser(ResolveSystemUserRequest.newBuilder()
                        .setEmployeeId("kari")
                        .setClientOrgNumber("310019194")
                        .setAccessPackage("urn:altinn:accesspackage:sykefravaer")
                        .build());
        System.out.println("System users Kari may use for Kaffebrenneriet AS with sykefravaer:");
        for (SystemUserChoice s : r.getSystemUsersList()) {
            System.out.printf("  %s (external ref %s, %s)%n", s.getId(), s.getExternalRef(), s.getUserType());
        }
    }

    // Anything but an explicit ALLOW is a denial.
    private static String decision(Decision d) {
        switch (d) {
            case DECISION_ALLOW:
                return "Allow";
            case DECISION_DENY:
                return "Deny";
            default:
                return d.name();
        }
    }
}
