//! One set of checks for every source: the same invalid records, given as a data
//! file (`vakt validate --data`), imported into a database (`vakt db import`),
//! written into a database a sidecar follows (a change), and read from it whole
//! (`vakt db export`, which reads as a sidecar starts), are refused with the same
//! reason, naming the field; and a valid record is accepted by each.
//!
//! Party ids the columns' types cannot hold (not a whole number, beyond 64 bits,
//! not a UUID) are refused from a file and an import alike, and by PostgreSQL
//! itself as the row is written.
//!
//! The database's own constraints refuse most bad rows before Vakt sees them;
//! Vakt does not rely on them (a hand-made or older schema may lack some). So the
//! followed database here has its CHECK, foreign-key and employee key constraints
//! dropped, and what refuses is Vakt's checks alone.

use crate::common;
use crate::postgres::{ok, serve, status};
use common::pg::Cluster;
use common::*;
use std::path::Path;
use std::time::Duration;
use vakt::proto::Decision;

const WORLD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/world");

/// One invalid record: as a data file's contents, as rows (and the SQL that takes
/// them out again), and the reason every source must give.
struct Case {
    what: &'static str,
    file: &'static str,
    rows: &'static str,
    undo: &'static str,
    reason: &'static str,
}

const CASES: &[Case] = &[
    Case {
        what: "an id with trailing whitespace",
        file: r#"{"employees": [{"id": "ola ", "organization": "310001015", "name": "Ola", "active": true}]}"#,
        rows: "INSERT INTO vakt.employee (id, organization, name, active) VALUES ('ola ', '310001015', 'Ola', true)",
        undo: "DELETE FROM vakt.employee WHERE id = 'ola '",
        reason: "id has leading or trailing whitespace",
    },
    Case {
        what: "an unknown access package",
        file: r#"{"systemUsers": [{"id": "su-x", "reporteeOrgNo": "310001015", "userType": "standard", "accessPackages": [{"urn": "urn:altinn:accesspackage:no-such-package"}]}]}"#,
        rows: "INSERT INTO vakt.system_user (id, owner_org_number, user_type) VALUES ('su-x', '310001015', 'standard'); \
               INSERT INTO vakt.system_user_package VALUES ('su-x', 'urn:altinn:accesspackage:no-such-package')",
        undo: "DELETE FROM vakt.system_user_package WHERE system_user_id = 'su-x'; DELETE FROM vakt.system_user WHERE id = 'su-x'",
        reason: r#"accessPackages[0].urn "urn:altinn:accesspackage:no-such-package" is not a known access package"#,
    },
    Case {
        what: "a team naming a missing system user",
        file: r#"{"teams": [{"id": "team-x", "organization": "310001015", "name": "X", "systemUsers": ["ghost"], "clients": "all"}]}"#,
        rows: "INSERT INTO vakt.team (id, organization, name, all_clients) VALUES ('team-x', '310001015', 'X', true); \
               INSERT INTO vakt.team_system_user VALUES ('team-x', 'ghost')",
        undo: "DELETE FROM vakt.team_system_user WHERE team_id = 'team-x'; DELETE FROM vakt.team WHERE id = 'team-x'",
        reason: r#"systemUsers[0] "ghost" is not a known system user"#,
    },
    Case {
        what: "an id given twice",
        file: r#"{"employees": [{"id": "testola", "organization": "310001015", "name": "Ola", "active": true},
                                {"id": "testola", "organization": "310001015", "name": "Ola", "active": true}]}"#,
        rows: "INSERT INTO vakt.employee (id, organization, name, active) VALUES ('testola', '310001015', 'Ola', true), ('testola', '310001015', 'Ola', true)",
        undo: "DELETE FROM vakt.employee WHERE id = 'testola'",
        reason: r#"id "testola" is defined twice"#,
    },
    Case {
        what: "an org number with a bad check digit",
        file: r#"{"organizations": [{"orgNumber": "310001016", "name": "X"}]}"#,
        rows: "INSERT INTO vakt.organization (org_number, name) VALUES ('310001016', 'X')",
        undo: "DELETE FROM vakt.organization WHERE org_number = '310001016'",
        reason: r#"orgNumber "310001016" fails the mod-11 check digit"#,
    },
    Case {
        what: "an operational unit under an operational unit",
        file: r#"{"organizations": [{"orgNumber": "310030309", "name": "Unit of a unit", "parentOrgNumber": "310009091", "unitType": "BEDR"}]}"#,
        rows: "INSERT INTO vakt.organization VALUES ('310030309', 'Unit of a unit', '310009091', 'BEDR')",
        undo: "DELETE FROM vakt.organization WHERE org_number = '310030309'",
        reason: r#"parentOrgNumber "310009091" is itself an operational unit; units are one level deep"#,
    },
    Case {
        what: "an unknown employee kind",
        file: r#"{"employees": [{"id": "testola", "organization": "310001015", "name": "Ola", "active": true, "kind": "robot"}]}"#,
        rows: "INSERT INTO vakt.employee (id, organization, name, active, kind) VALUES ('testola', '310001015', 'Ola', true, 'robot')",
        undo: "DELETE FROM vakt.employee WHERE id = 'testola'",
        reason: r#"kind "robot" must be "person" or "automation""#,
    },
    Case {
        what: "an audit engagement for an unknown organisation",
        file: r#"{"employees": [{"id": "testola", "organization": "310001015", "name": "Ola", "active": true, "auditClients": ["310030309"]}]}"#,
        rows: "INSERT INTO vakt.employee (id, organization, name, active) VALUES ('testola', '310001015', 'Ola', true); \
               INSERT INTO vakt.employee_audit_client VALUES ('testola', '310030309')",
        undo: "DELETE FROM vakt.employee_audit_client WHERE employee_id = 'testola'; DELETE FROM vakt.employee WHERE id = 'testola'",
        reason: r#"auditClients[0] "310030309" is not a known organisation"#,
    },
    Case {
        what: "a negative party id",
        file: r#"{"organizations": [{"orgNumber": "310030309", "name": "X", "partyId": -5}]}"#,
        rows: "INSERT INTO vakt.organization (org_number, name, party_id) VALUES ('310030309', 'X', -5)",
        undo: "DELETE FROM vakt.organization WHERE org_number = '310030309'",
        reason: "partyId -5 must be greater than 0",
    },
    Case {
        what: "the nil UUID as a party UUID",
        file: r#"{"organizations": [{"orgNumber": "310030309", "name": "X", "partyUuid": "00000000-0000-0000-0000-000000000000"}]}"#,
        rows: "INSERT INTO vakt.organization (org_number, name, party_uuid) VALUES ('310030309', 'X', '00000000-0000-0000-0000-000000000000')",
        undo: "DELETE FROM vakt.organization WHERE org_number = '310030309'",
        reason: r#"partyUuid "00000000-0000-0000-0000-000000000000" is the nil UUID, which names no party"#,
    },
    Case {
        what: "a party id given to two organisations",
        file: r#"{"organizations": [{"orgNumber": "310030309", "name": "X", "partyId": 50012345},
                                    {"orgNumber": "310030317", "name": "Y", "partyId": "50012345"}]}"#,
        rows: "INSERT INTO vakt.organization (org_number, name, party_id) VALUES ('310030309', 'X', 50012345), ('310030317', 'Y', 50012345)",
        undo: "DELETE FROM vakt.organization WHERE org_number IN ('310030309', '310030317')",
        reason: "partyId 50012345 is given to two organisations, 310030309 and 310030317",
    },
    Case {
        what: "a party UUID given to two organisations",
        file: r#"{"organizations": [{"orgNumber": "310030309", "name": "X", "partyUuid": "4a06214d-b261-4695-b33a-0771a995b503"},
                                    {"orgNumber": "310030317", "name": "Y", "partyUuid": "4A06214D-B261-4695-B33A-0771A995B503"}]}"#,
        rows: "INSERT INTO vakt.organization (org_number, name, party_uuid) VALUES ('310030309', 'X', '4a06214d-b261-4695-b33a-0771a995b503'), ('310030317', 'Y', '4a06214d-b261-4695-b33a-0771a995b503')",
        undo: "DELETE FROM vakt.organization WHERE org_number IN ('310030309', '310030317')",
        reason: r#"partyUuid "4a06214d-b261-4695-b33a-0771a995b503" is given to two organisations, 310030309 and 310030317"#,
    },
    Case {
        what: "a link role that is not an Altinn role URN",
        file: r#"{"systemUsers": [{"id": "su-x", "reporteeOrgNo": "310001015", "userType": "agent", "accessPackages": [],
                                   "clients": [{"clientOrganizationNumber": "310015156", "access": [{"role": "accountant", "packages": []}]}]}]}"#,
        rows: "INSERT INTO vakt.system_user (id, owner_org_number, user_type) VALUES ('su-x', '310001015', 'agent'); \
               INSERT INTO vakt.client_link (system_user_id, client_org_number) VALUES ('su-x', '310015156'); \
               INSERT INTO vakt.client_link_role VALUES ('su-x', '310015156', 0, 'accountant')",
        undo: "DELETE FROM vakt.client_link_role WHERE system_user_id = 'su-x'; DELETE FROM vakt.client_link WHERE system_user_id = 'su-x'; \
               DELETE FROM vakt.system_user WHERE id = 'su-x'",
        reason: r#"access[0].role "accountant" is not an Altinn role URN"#,
    },
];

/// Party ids the database's column types cannot hold (`bigint`, `uuid`): refused
/// from a file and an import with the reason naming the field, and by PostgreSQL
/// itself as the row is written, whatever constraints were dropped.
const TYPED: &[(&str, &str, &str, &str, &str)] = &[
    (
        "a party id that is not a whole number",
        r#"{"organizations": [{"orgNumber": "310030309", "name": "X", "partyId": "5OO12345"}]}"#,
        "INSERT INTO vakt.organization (org_number, name, party_id) VALUES ('310030309', 'X', '5OO12345')",
        r#"partyId "5OO12345" must be a whole number written in digits, as Altinn writes party ids (50012345)"#,
        "invalid input syntax for type bigint",
    ),
    (
        "a party id with a fraction",
        r#"{"organizations": [{"orgNumber": "310030309", "name": "X", "partyId": 50012345.5}]}"#,
        "INSERT INTO vakt.organization (org_number, name, party_id) VALUES ('310030309', 'X', '50012345.5')",
        "partyId 50012345.5 must be a whole number written in digits",
        "invalid input syntax for type bigint",
    ),
    (
        "a party id too large for 64 bits",
        r#"{"organizations": [{"orgNumber": "310030309", "name": "X", "partyId": 9223372036854775808}]}"#,
        "INSERT INTO vakt.organization (org_number, name, party_id) VALUES ('310030309', 'X', 9223372036854775808)",
        "partyId 9223372036854775808 is too large: a party id is at most 9223372036854775807",
        "bigint out of range",
    ),
    (
        "a party UUID that is not a UUID",
        r#"{"organizations": [{"orgNumber": "310030309", "name": "X", "partyUuid": "4a06214d-b261-4695-b33a"}]}"#,
        "INSERT INTO vakt.organization (org_number, name, party_uuid) VALUES ('310030309', 'X', '4a06214d-b261-4695-b33a')",
        r#"partyUuid "4a06214d-b261-4695-b33a" is not a UUID (as Altinn writes them: 8-4-4-4-12 hex digits)"#,
        "invalid input syntax for type uuid",
    ),
];

/// The valid control: an employee of a known organisation in a known team.
const VALID: Case = Case {
    what: "a valid employee",
    file: r#"{"employees": [{"id": "testola", "organization": "310001015", "name": "Ola", "active": true, "teams": ["tk-regnskap-team"]}]}"#,
    rows: "INSERT INTO vakt.employee (id, organization, name, active) VALUES ('testola', '310001015', 'Ola', true); \
           INSERT INTO vakt.employee_team VALUES ('testola', 'tk-regnskap-team')",
    undo: "DELETE FROM vakt.employee_team WHERE employee_id = 'testola'; DELETE FROM vakt.employee WHERE id = 'testola'",
    reason: "",
};

/// The example world with the case's records in a file of their own.
fn data_dir(case: &Case) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(WORLD).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.path().join("case.json"), case.file).unwrap();
    dir
}

fn p(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

/// What a command that must fail wrote (saying so when it succeeded).
fn refused(what: &str, path: &str, out: std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        return format!("{what}: {path} accepted it: {text}");
    }
    text
}

/// Drops the CHECK, foreign-key and unique constraints of the world's tables, and
/// the employees' key, so that rows reach Vakt as written.
const DROP_CONSTRAINTS: &str = "DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT conrelid::regclass::text AS t, conname FROM pg_constraint
            WHERE connamespace = 'vakt'::regnamespace
              AND (contype IN ('c', 'f', 'u') OR conname = 'employee_pkey')
              AND conrelid::regclass::text NOT LIKE 'vakt.feed%'
            ORDER BY contype = 'f' DESC, contype = 'p'
  LOOP
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.t, r.conname);
  END LOOP;
END $$";

/// Whether the sidecar stops following within 5 s (a refused change stops it
/// at its next poll, 100 ms on).
fn stops(s: &Spawned) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if status(s).sync_state == "stopped" {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn the_same_record_is_refused_alike_from_a_file_an_import_and_a_database() {
    let pg = Cluster::start();
    // The followed database: the example world, its constraints dropped.
    let url = pg.create_db("followed");
    ok(vakt(&["db", "migrate", "--database", &url]));
    pg.psql("followed", DROP_CONSTRAINTS);
    ok(vakt(&["db", "import", WORLD, "--database", &url]));
    // The import target: an empty, migrated database.
    let imports = pg.create_db("imports");
    ok(vakt(&["db", "migrate", "--database", &imports]));
    pg.logins();
    let s = serve(&url, &["--poll-interval", "100ms"]);
    assert_eq!(status(&s).sync_state, "live");

    let mut failures = Vec::new();
    for case in CASES {
        let mut check = |path: &str, text: &str| {
            if !text.contains(case.reason) {
                failures.push(format!(
                    "{}: {path} did not give {:?}:\n{text}",
                    case.what, case.reason
                ));
            }
        };
        // (a) a data file.
        let dir = data_dir(case);
        let text = refused(
            case.what,
            "vakt validate",
            vakt(&["validate", "--data", p(dir.path())]),
        );
        check("vakt validate", &text);
        // (b) an import: refused, and nothing written.
        let text = refused(
            case.what,
            "vakt db import",
            vakt(&["db", "import", p(dir.path()), "--database", &imports]),
        );
        check("vakt db import", &text);
        assert_eq!(
            pg.psql("imports", "SELECT count(*) FROM vakt.organization"),
            "0"
        );
        // (c) a change to the followed database: the sidecar stops at it.
        pg.psql("followed", case.rows);
        if stops(&s) {
            check("a change", &status(&s).last_error);
        } else {
            check("a change", "applied");
        }
        // (d) the database read whole, as a sidecar starts.
        let out = tempfile::tempdir().unwrap();
        let text = refused(
            case.what,
            "vakt db export",
            vakt(&["db", "export", p(out.path()), "--database", &url]),
        );
        check("a whole read", &text);
        // Taken out again: the sidecar follows on.
        pg.psql("followed", case.undo);
        until(Duration::from_secs(10), "the feed to resume", || {
            status(&s).sync_state == "live"
        });
    }
    // What the columns' types cannot hold: the same reason from a file and an
    // import, and no row for a change or a whole read to see.
    for &(what, file, row, reason, db_error) in TYPED {
        let case = Case {
            what,
            file,
            rows: row,
            undo: "",
            reason,
        };
        let dir = data_dir(&case);
        for (path, out) in [
            (
                "vakt validate",
                vakt(&["validate", "--data", p(dir.path())]),
            ),
            (
                "vakt db import",
                vakt(&["db", "import", p(dir.path()), "--database", &imports]),
            ),
        ] {
            let text = refused(what, path, out);
            if !text.contains(reason) {
                failures.push(format!("{what}: {path} did not give {reason:?}:\n{text}"));
            }
        }
        match pg.try_psql("followed", row) {
            Ok(_) => failures.push(format!("{what}: the database took {row}")),
            Err(e) if !e.contains(db_error) => failures.push(format!(
                "{what}: the database did not say {db_error:?}: {e}"
            )),
            Err(_) => {}
        }
        assert_eq!(status(&s).sync_state, "live", "{what}");
    }
    assert_eq!(
        pg.psql("imports", "SELECT count(*) FROM vakt.organization"),
        "0"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // The valid record is accepted by every path.
    let dir = data_dir(&VALID);
    let out = ok(vakt(&["validate", "--data", p(dir.path())]));
    assert!(out.contains("ok:"), "{out}");
    ok(vakt(&[
        "db",
        "import",
        p(dir.path()),
        "--database",
        &imports,
    ]));
    assert_eq!(
        pg.psql(
            "imports",
            "SELECT id FROM vakt.employee WHERE id = 'testola'"
        ),
        "testola"
    );
    let known = |s: &Spawned| {
        let r = s.with_client(|mut c| async move {
            c.authorize(request("testola", "tk-regnskap", "310015156", REGNSKAP))
                .await
                .unwrap()
                .into_inner()
        });
        !policy_ids(&r).contains(&"employee-unknown")
    };
    assert!(!known(&s), "testola is not in the world yet");
    pg.psql("followed", VALID.rows);
    until(Duration::from_secs(10), "the valid change to apply", || {
        known(&s)
    });
    assert_eq!(status(&s).sync_state, "live");
    let out = tempfile::tempdir().unwrap();
    ok(vakt(&["db", "export", p(out.path()), "--database", &url]));
    let employees = std::fs::read_to_string(out.path().join("employees.json")).unwrap();
    assert!(employees.contains(r#""id":"testola""#), "{employees}");
    s.stop();
}

/// A link entry without a role (its relationship unknown, as `vakt altinn sync`
/// writes it) is a valid record from every source: a data file, an import, a
/// change to a followed database (a NULL role), and a whole read; it keeps its
/// packages, and is exported without a role. Rule 8 then finds no auditor basis
/// in it: the auditor allowed through the link with its role is denied.
#[test]
fn a_link_entry_without_a_role_loads_from_a_file_an_import_and_a_database() {
    const ROLE_LESS: Case = Case {
        what: "a link entry without a role",
        file: r#"{"systemUsers": [{"id": "su-x", "reporteeOrgNo": "310003034", "userType": "agent",
                                   "accessPackages": [{"urn": "urn:altinn:accesspackage:ansvarlig-revisor"}],
                                   "clients": [{"clientOrganizationNumber": "310015156",
                                                "access": [{"packages": ["urn:altinn:accesspackage:ansvarlig-revisor"]}]}]}]}"#,
        rows: "",
        undo: "",
        reason: "",
    };
    let dir = data_dir(&ROLE_LESS);
    let out = ok(vakt(&["validate", "--data", p(dir.path())]));
    assert!(out.contains("ok:"), "{out}");
    let pg = Cluster::start();
    let url = pg.create_db("roleless");
    ok(vakt(&["db", "migrate", "--database", &url]));
    ok(vakt(&["db", "import", p(dir.path()), "--database", &url]));
    assert_eq!(
        pg.psql(
            "roleless",
            "SELECT coalesce(role, 'NULL') FROM vakt.client_link_role WHERE system_user_id = 'su-x'"
        ),
        "NULL"
    );
    // A whole read: the entry keeps its packages and is written without a role.
    let exported = |what: &str| {
        let out = tempfile::tempdir().unwrap();
        ok(vakt(&["db", "export", p(out.path()), "--database", &url]));
        let text = std::fs::read_to_string(out.path().join("system-users.json")).unwrap();
        let users: serde_json::Value = serde_json::from_str(&text).unwrap();
        users
            .as_array()
            .or_else(|| users["systemUsers"].as_array())
            .unwrap()
            .iter()
            .find(|u| u["id"] == what)
            .cloned()
            .unwrap_or_else(|| panic!("{what} not exported: {text}"))
    };
    let su = exported("su-x");
    let entry = &su["clients"][0]["access"][0];
    assert!(entry.get("role").is_none(), "{entry}");
    assert_eq!(
        entry["packages"][0], "urn:altinn:accesspackage:ansvarlig-revisor",
        "{entry}"
    );
    // A change to a followed database: the auditor's link loses its role (the
    // same request allowed before), and the sidecar applies it and denies by rule 8.
    pg.logins();
    let s = serve(&url, &["--poll-interval", "100ms"]);
    assert_eq!(status(&s).sync_state, "live");
    let ask = |s: &Spawned| {
        s.with_client(|mut c| async move {
            c.authorize(request(
                "randi",
                "rr-revisjon",
                "310022225",
                "urn:altinn:accesspackage:ansvarlig-revisor",
            ))
            .await
            .unwrap()
            .into_inner()
        })
    };
    assert_eq!(ask(&s).decision(), Decision::Allow);
    pg.psql(
        "roleless",
        "UPDATE vakt.client_link_role SET role = NULL \
          WHERE system_user_id = 'rr-revisjon' AND client_org_number = '310022225'",
    );
    until(
        Duration::from_secs(10),
        "the role-less link to apply",
        || policy_ids(&ask(&s)) == ["auditor-separation-of-duties"],
    );
    assert_eq!(status(&s).sync_state, "live");
    let rr = exported("rr-revisjon");
    let link = rr["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clientOrganizationNumber"] == "310022225")
        .unwrap();
    assert!(link["access"][0].get("role").is_none(), "{link}");
    s.stop();
}
