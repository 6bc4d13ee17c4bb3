// A small Node.js client for a running Vakt: one allow, two denies with their
// reasons, and which system user to fetch a token for. It prints what
// `cargo run --release --example client` prints.
//
//   npm ci                                   # @grpc/grpc-js and @grpc/proto-loader
//   node client.js                           # 127.0.0.1:50051
//   node client.js 127.0.0.1:50051           # or VAKT_ADDR=127.0.0.1:50051 node client.js
//   node client.js unix:///run/vakt/vakt.sock
//
// The service definition is read from ../../proto at run time by proto-loader, so
// there is no code generation step. tests/it/client_examples.rs runs this against
// the real server.
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const REGNSKAP = 'urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet';

// grpc-js takes `host:port` or `unix:PATH`; an http:// prefix, as the Rust
// client takes, is dropped.
function target() {
  const addr = process.argv[2] || process.env.VAKT_ADDR || '127.0.0.1:50051';
  return addr.replace(/^http:\/\//, '');
}

function connect(addr) {
  const definition = protoLoader.loadSync('vakt/v1/authorization.proto', {
    includeDirs: [path.join(__dirname, '..', '..', 'proto')],
    keepCase: true, // field names as in the proto: employee_id, policy_id, ...
    enums: String, // DECISION_ALLOW rather than 1
    longs: String,
    defaults: true,
  });
  const { Authorizer } = grpc.loadPackageDefinition(definition).vakt.v1;
  return new Authorizer(addr, grpc.credentials.createInsecure());
}

// One unary call as a promise, with a deadline: an authorization check that
// cannot be answered in time is a denial for the caller, not a hang.
function call(client, method, request) {
  const deadline = new Date(Date.now() + 5000);
  return new Promise((resolve, reject) => {
    client[method](request, { deadline }, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

const DECISIONS = { DECISION_ALLOW: 'Allow', DECISION_DENY: 'Deny' };

async function main() {
  const vakt = connect(target());
  const questions = [
    ['kari', 'tk-regnskap', '310015156', 'Kari (accounting team) for client Bakeri Brød AS'],
    ['kari', 'tk-regnskap', '310020206', 'Kari for Havbris AS, whose client link was removed'],
    ['randi', 'rr-regnskap', '310021210', "Randi, Fjordfisk's auditor, as its accountant"],
  ];
  for (const [employee, systemUser, client, why] of questions) {
    const r = await call(vakt, 'Authorize', {
      employee_id: employee,
      system_user_id: systemUser,
      client_org_number: client,
      access_package: REGNSKAP,
    });
    // Anything but an explicit ALLOW is a denial.
    const decision = DECISIONS[r.decision] || r.decision;
    console.log(`${why}:\n  ${decision} (decision ${r.decision_id}, revision ${r.revision})`);
    for (const reason of r.reasons) {
      console.log(`    ${reason.policy_id}: ${reason.message}`);
    }
  }

  const r = await call(vakt, 'ResolveSystemUser', {
    employee_id: 'kari',
    client_org_number: '310019194',
    access_package: 'urn:altinn:accesspackage:sykefravaer',
  });
  console.log('System users Kari may use for Kaffebrenneriet AS with sykefravaer:');
  for (const s of r.system_users) {
    console.log(`  ${s.id} (external ref ${s.external_ref}, ${s.user_type})`);
  }
  vakt.close();
}

main().catch((err) => {
  console.error(`vakt client: ${err.message}`);
  process.exit(1);
});
