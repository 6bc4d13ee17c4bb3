// Command client is a small Go client for a running Vakt: one allow, two denies
// with their reasons, and which system user to fetch a token for. It prints what
// `cargo run --release --example client` prints. See README.md beside it to run it.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	vaktv1 "vakt/gen/vakt/v1"
)

const regnskap = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet"

func main() {
	// grpc-go takes host:port or unix:PATH; an http:// prefix, as the Rust
	// client takes, is dropped.
	addr := "127.0.0.1:50051"
	if v := os.Getenv("VAKT_ADDR"); v != "" {
		addr = v
	}
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	addr = strings.TrimPrefix(addr, "http://")
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	vakt := vaktv1.NewAuthorizerClient(conn)

	for _, q := range []struct{ employee, systemUser, client, why string }{
		{"kari", "tk-regnskap", "310015156", "Kari (accounting team) for client Bakeri Brød AS"},
		{"kari", "tk-regnskap", "310020206", "Kari for Havbris AS, whose client link was removed"},
		{"randi", "rr-regnskap", "310021210", "Randi, Fjordfisk's auditor, as its accountant"},
	} {
		// A deadline on every call: a check that cannot be answered in time is
		// a denial for the caller, not a hang.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := vakt.Authorize(ctx, &vaktv1.AuthorizeRequest{
			EmployeeId:      q.employee,
			SystemUserId:    q.systemUser,
			ClientOrgNumber: q.client,
			AccessPackage:   regnskap,
		})
		cancel()
		if err != nil {
			fail(err)
		}
		fmt.Printf("%s:\n  %s (decision %s, revision %s)\n", q.why, decision(r.GetDecision()), r.GetDecisionId(), r.GetRevision())
		for _, reason := range r.GetReasons() {
			fmt.Printf("    %s: %s\n", reason.GetPolicyId(), reason.GetMessage())
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := vakt.ResolveSystemUser(ctx, &vaktv1.ResolveSystemUserRequest{
		EmployeeId:      "kari",
		ClientOrgNumber: "310019194",
		AccessPackage:   "urn:altinn:accesspackage:sykefravaer",
	})
	if err != nil {
		fail(err)
	}
	fmt.Println("System users Kari may use for Kaffebrenneriet AS with sykefravaer:")
	for _, s := range r.GetSystemUsers() {
		fmt.Printf("  %s (external ref %s, %s)\n", s.GetId(), s.GetExternalRef(), s.GetUserType())
	}
}

// decision names the outcome; anything but an explicit ALLOW is a denial.
func decision(d vaktv1.Decision) string {
	switch d {
	case vaktv1.Decision_DECISION_ALLOW:
		return "Allow"
	case vaktv1.Decision_DECISION_DENY:
		return "Deny"
	default:
		return d.String()
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "vakt client:", err)
	os.Exit(1)
}
