// A Vakt client in Node with @grpc/grpc-js at its default settings, the proto
// loaded at run time by @grpc/proto-loader.
//
// Run by tests/it/socket_clients.rs: node client.js PROTO_DIR TARGET, where TARGET is
// HOST:PORT or unix:///path/to/vakt.sock. It asks a running sidecar (the built-in
// example world) for an allow, a deny with its reason, and a request with a bad
// field, and exits non-zero at the first answer that is not what that world gives.
"use strict";

const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [protoDir, target] = process.argv.slice(2);
const REGNSKAP = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet";

const definition = protoLoader.loadSync(path.join(protoDir, "vakt/v1/authorization.proto"), {
  includeDirs: [protoDir],
  keepCase: true,
  enums: String,
  defaults: true,
});
const vakt = grpc.loadPackageDefinition(definition).vakt.v1;
const client = new vakt.Authorizer(target, grpc.credentials.createInsecure());

function authorize(request) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + 10000);
    client.Authorize(request, { deadline }, (err, answer) => (err ? reject(err) : resolve(answer)));
  });
}

function check(what, cond, got) {
  if (!cond) {
    console.error(`${what}: got ${JSON.stringify(got)}`);
    process.exit(1);
  }
}

async function main() {
  const allow = await authorize({
    employee_id: "kari",
    system_user_id: "tk-regnskap",
    client_org_number: "310015156",
    access_package: REGNSKAP,
  });
  check("allow", allow.decision === "DECISION_ALLOW", allow);
  check("allow reason", allow.reasons.map((r) => r.policy_id).join() === "use-system-user", allow);

  // Havbris AS: its client link was removed.
  const deny = await authorize({
    employee_id: "kari",
    system_user_id: "tk-regnskap",
    client_org_number: "310020206",
    access_package: REGNSKAP,
  });
  check("deny", deny.decision === "DECISION_DENY", deny);
  check("deny reason", deny.reasons.map((r) => r.policy_id).join() === "client-not-linked", deny);

  try {
    await authorize({
      employee_id: "kari",
      system_user_id: "tk-regnskap",
      client_org_number: "12345",
      access_package: REGNSKAP,
    });
    check("bad field", false, "an answer");
  } catch (e) {
    check("bad field", e.code === grpc.status.INVALID_ARGUMENT, e.message);
    check("bad field named", e.details.includes("client_org_number"), e.details);
  }
  console.log("ok");
  client.close();
}

main().catch((e) => {
  console.error(`call failed: ${e.message}`);
  process.exit(1);
});
