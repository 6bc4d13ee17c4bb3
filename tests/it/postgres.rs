//! PostgreSQL as the shared source, against a real server these tests start
//! themselves: migrations and constraints, an exact import and export, sidecars
//! that follow every committed change (overlapping transactions included),
//! revocations that reach two sidecars within a second, a change that fails
//! Vakt's checks stopping the feed, read-your-writes, and a lost database that
//! fails closed and is caught up with; and no write that a sidecar reporting
//! `live` misses: writers cannot touch the feed or its triggers, and what an
//! owner does to them makes every sidecar read the world whole or stop.
//!
//! As in production, the superuser `vakt` migrates and imports, sidecars connect
//! as a member of `vakt_reader`, and the world is written as a member of
//! `vakt_writer` (see `common::pg`).

use crate::common;
use common::pg::{Cluster, OWNER, READER, WRITER};
use common::*;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};
use vakt::proto::{Decision, StatusRequest, StatusResponse};

const WORLD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/world");

pub(crate) fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "vakt failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A cluster with database `name` migrated and holding the example world, and
/// the login roles of the tests; the superuser's URL.
fn with_world(pg: &Cluster, name: &str) -> String {
    let url = pg.create_db(name);
    ok(vakt(&["db", "migrate", "--database", &url]));
    ok(vakt(&["db", "import", WORLD, "--database", &url]));
    pg.logins();
    url
}

/// `url` (the superuser's) for another login role.
pub(crate) fn as_role(url: &str, role: &str) -> String {
    url.replacen("postgres://vakt@", &format!("postgres://{role}@"), 1)
}

pub(crate) fn status(s: &Spawned) -> StatusResponse {
    s.with_client(|mut c| async move { c.status(StatusRequest {}).await.unwrap().into_inner() })
}

fn decide_at(
    s: &Spawned,
    employee: &str,
    su: &str,
    client: &str,
    package: &str,
    min_sequence: u64,
) -> vakt::proto::AuthorizeResponse {
    let mut req = request(employee, su, client, package);
    req.min_data_sequence = min_sequence;
    s.with_client(|mut c| async move { c.authorize(req).await.unwrap().into_inner() })
}

fn decide(s: &Spawned, employee: &str, su: &str, client: &str) -> vakt::proto::AuthorizeResponse {
    decide_at(s, employee, su, client, REGNSKAP, 0)
}

/// A sidecar following the database of `url`, connected as the reader role.
pub(crate) fn serve(url: &str, extra: &[&str]) -> Spawned {
    let url = as_role(url, READER);
    let mut args = vec!["--data", &url, "--decision-log", "off"];
    args.extend_from_slice(extra);
    Spawned::start(&args, false)
}

#[test]
fn migrations_apply_once_and_constraints_refuse_what_the_loader_refuses() {
    let pg = Cluster::start();
    let url = pg.create_db("constraints");
    let first = ok(vakt(&["db", "migrate", "--database", &url]));
    assert!(first.contains("Vakt schema at version 5"), "{first}");
    let again = ok(vakt(&["db", "migrate", "--database", &url]));
    assert!(again.contains("already up to date"), "{again}");
    // A second database of the same cluster migrates too: the roles are there.
    let other = pg.create_db("constraints_other");
    let second = ok(vakt(&["db", "migrate", "--database", &other]));
    assert!(second.contains("Vakt schema at version 5"), "{second}");
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT string_agg(rolname || ':' || rolcanlogin, ',' ORDER BY rolname) FROM pg_roles \
             WHERE rolname IN ('vakt_owner', 'vakt_writer', 'vakt_reader')"
        ),
        "vakt_owner:false,vakt_reader:false,vakt_writer:false"
    );
    pg.logins();
    // The constraints hold for the writer role, which can use them.
    let sql = |s: &str| pg.try_psql_as(WRITER, "constraints", s);
    sql("INSERT INTO vakt.organization (org_number, name) VALUES ('310001015', 'Tall og Kontroll AS')")
        .unwrap();
    for (bad, constraint) in [
        // mod-11 check digit
        ("INSERT INTO vakt.organization (org_number) VALUES ('310001016')", "organization_org_number_check"),
        // not nine digits
        ("INSERT INTO vakt.organization (org_number) VALUES ('31000101')", "organization_org_number_check"),
        // unknown owner
        ("INSERT INTO vakt.system_user (id, owner_org_number, user_type) VALUES ('su', '991825827', 'agent')", "system_user_owner_org_number_fkey"),
        // enum
        ("INSERT INTO vakt.system_user (id, owner_org_number, user_type) VALUES ('su', '310001015', 'robot')", "system_user_user_type_check"),
        // an id with a zero-width space
        ("INSERT INTO vakt.system_user (id, owner_org_number, user_type) VALUES (E'su\\u200b', '310001015', 'agent')", "system_user_id_check"),
        // selfDelegated on a standard system user
        ("INSERT INTO vakt.system_user (id, owner_org_number, user_type, self_delegated) VALUES ('su', '310001015', 'standard', true)", "system_user_check"),
        // an unknown access package
        ("INSERT INTO vakt.system_user (id, owner_org_number, user_type) VALUES ('su2', '310001015', 'agent'); INSERT INTO vakt.system_user_package VALUES ('su2', 'urn:altinn:accesspackage:no-such-package')", "system_user_package_package_fkey"),
        // an employee of an unknown team
        ("INSERT INTO vakt.employee (id, organization, active) VALUES ('kari', '310001015', true); INSERT INTO vakt.employee_team VALUES ('kari', 'ghost-team')", "employee_team_team_id_fkey"),
        // a role that is not an Altinn URN
        ("INSERT INTO vakt.system_user (id, owner_org_number, user_type) VALUES ('su3', '310001015', 'agent'); INSERT INTO vakt.client_link (system_user_id, client_org_number) VALUES ('su3', '310001015'); INSERT INTO vakt.client_link_role VALUES ('su3', '310001015', 0, 'accountant')", "client_link_role_role_check"),
        // party ids: positive, whole, 64 bits, each given once
        ("INSERT INTO vakt.organization (org_number, party_id) VALUES ('310015156', 0)", "organization_party_id_check"),
        ("INSERT INTO vakt.organization (org_number, party_id) VALUES ('310015156', 'x1')", "invalid input syntax for type bigint"),
        ("INSERT INTO vakt.organization (org_number, party_id) VALUES ('310015156', 9223372036854775808)", "bigint out of range"),
        ("UPDATE vakt.organization SET party_id = 51117759 WHERE org_number = '310001015'; INSERT INTO vakt.organization (org_number, party_id) VALUES ('310015156', 51117759)", "organization_party_id_key"),
        // party UUIDs: UUIDs, not nil, each given once
        ("INSERT INTO vakt.organization (org_number, party_uuid) VALUES ('310015156', 'not-a-uuid')", "invalid input syntax for type uuid"),
        ("INSERT INTO vakt.organization (org_number, party_uuid) VALUES ('310015156', '00000000-0000-0000-0000-000000000000')", "organization_party_uuid_check"),
        ("UPDATE vakt.organization SET party_uuid = '4a06214d-b261-4695-b33a-0771a995b503' WHERE org_number = '310001015'; INSERT INTO vakt.organization (org_number, party_uuid) VALUES ('310015156', '4a06214d-b261-4695-b33a-0771a995b503')", "organization_party_uuid_key"),
    ] {
        let err = sql(&format!("BEGIN; {bad}; COMMIT")).expect_err(bad);
        assert!(err.contains(constraint), "{bad}: {err}");
    }
    // Nothing of the refused statements is there.
    assert_eq!(sql("SELECT count(*) FROM vakt.system_user").unwrap(), "0");
}

#[test]
fn export_after_import_gives_the_same_world() {
    let pg = Cluster::start();
    let worlds = tempfile::tempdir().unwrap();
    // The example world, and a generated one of two accounting firms.
    let generated = worlds.path().join("generated");
    ok(vakt(&[
        "gen-world",
        "--out",
        generated.to_str().unwrap(),
        "--firms",
        "2",
        "--files",
        "2",
    ]));
    for (i, dir) in [Path::new(WORLD), &generated].into_iter().enumerate() {
        let db = format!("roundtrip{i}");
        let url = pg.create_db(&db);
        ok(vakt(&["db", "migrate", "--database", &url]));
        pg.logins();
        // Imported by an owner that is not a superuser, exported by a reader.
        let imported = ok(vakt(&[
            "db",
            "import",
            dir.to_str().unwrap(),
            "--database",
            &as_role(&url, OWNER),
        ]));
        assert!(imported.contains("imported"), "{imported}");
        let out = worlds.path().join(format!("out{i}"));
        ok(vakt(&[
            "db",
            "export",
            out.to_str().unwrap(),
            "--database",
            &as_role(&url, READER),
        ]));
        let from_files = snapshot_of(dir);
        let exported = snapshot_of(&out);
        assert!(
            from_files.world == exported.world,
            "{}: the exported world differs from the imported one",
            dir.display()
        );
        // And the world the sidecar reads from the database is the same too.
        let rules = vakt::rules::snapshot::Rules::build(
            &vakt::rules::snapshot::Sources::read(&Default::default()).unwrap(),
        )
        .unwrap();
        let (_, from_db) = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(vakt::source::postgres::PostgresSource::load(
                url.parse().unwrap(),
                rules,
            ))
            .unwrap();
        assert!(from_db.world == from_files.world);
        // Exporting again writes the same bytes.
        let again = worlds.path().join(format!("again{i}"));
        let url2 = pg.create_db(&format!("roundtrip_again{i}"));
        ok(vakt(&["db", "migrate", "--database", &url2]));
        ok(vakt(&[
            "db",
            "import",
            out.to_str().unwrap(),
            "--database",
            &url2,
        ]));
        ok(vakt(&[
            "db",
            "export",
            again.to_str().unwrap(),
            "--database",
            &url2,
        ]));
        for (_, f) in vakt::world::FILES {
            assert_eq!(
                std::fs::read(out.join(f)).unwrap(),
                std::fs::read(again.join(f)).unwrap(),
                "{f}"
            );
        }
    }
}

fn snapshot_of(dir: &Path) -> vakt::rules::snapshot::Snapshot {
    vakt::rules::snapshot::Snapshot::build(
        &vakt::rules::snapshot::Sources::read(&vakt::rules::snapshot::SourcePaths {
            data: Some(dir.to_path_buf()),
            ..Default::default()
        })
        .unwrap(),
    )
    .unwrap()
}

#[test]
fn import_refuses_bad_files_and_a_database_that_holds_a_world() {
    let pg = Cluster::start();
    let url = with_world(&pg, "refuse");
    // A second import without --replace: refused, nothing changed.
    let again = vakt(&["db", "import", WORLD, "--database", &url]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--replace"));
    // A bad file: every problem with file and line, nothing written.
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(WORLD).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let teams = dir.path().join("teams.yaml");
    let text = std::fs::read_to_string(&teams).unwrap().replacen(
        "systemUsers: [tk-regnskap]",
        "systemUsers: [tk-ghost]",
        1,
    );
    std::fs::write(&teams, text).unwrap();
    let bad = vakt(&[
        "db",
        "import",
        dir.path().to_str().unwrap(),
        "--database",
        &url,
        "--replace",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("teams.yaml:") && err.contains("\"tk-ghost\" is not a known system user"),
        "{err}"
    );
    assert_eq!(
        pg.psql(
            "refuse",
            "SELECT count(*) FROM vakt.team_system_user WHERE system_user_id = 'tk-ghost'"
        ),
        "0"
    );
    // An unmigrated database: a clear error.
    let bare = pg.create_db("bare");
    let out = vakt(&["db", "import", WORLD, "--database", &bare]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("vakt db migrate"));
    let served = vakt(&["serve", "--data", &bare, "--listen", "127.0.0.1:0"]);
    assert!(!served.status.success());
    assert!(String::from_utf8_lossy(&served.stderr).contains("vakt db migrate"));
}

/// Each kind of revocation, made by plain SQL, denies on two sidecars within a
/// second of its commit.
#[test]
fn revocations_reach_two_sidecars_within_a_second() {
    let pg = Cluster::start();
    let url = with_world(&pg, "revoke");
    // A long heartbeat: only the change feed's wake-up can be in time.
    let sidecars = [
        serve(&url, &["--poll-interval", "1h"]),
        serve(&url, &["--poll-interval", "1h"]),
    ];
    // Each revocation, and the request (employee, system user, client, package) it denies.
    type Request<'a> = (&'a str, &'a str, &'a str, &'a str);
    let revocations: [(&str, Request); 4] = [
        (
            "DELETE FROM vakt.client_link WHERE system_user_id = 'tk-regnskap' AND client_org_number = '310015156'",
            ("kari", "tk-regnskap", "310015156", REGNSKAP),
        ),
        (
            "UPDATE vakt.employee SET active = false WHERE id = 'nina'",
            ("nina", "tk-sykefravaer", "310017175", SYKEFRAVAER),
        ),
        (
            "DELETE FROM vakt.team_system_user WHERE team_id = 'tk-regnskap-team' AND system_user_id = 'tk-regnskap-syk'",
            ("kari", "tk-regnskap-syk", "310019194", REGNSKAP),
        ),
        (
            "DELETE FROM vakt.system_user WHERE id = 'rr-regnskap'",
            ("magnus", "rr-regnskap", "310021210", REGNSKAP),
        ),
    ];
    for (sql, (e, su, client, package)) in revocations {
        for s in &sidecars {
            assert_eq!(
                decide_at(s, e, su, client, package, 0).decision(),
                Decision::Allow,
                "{e} via {su} for {client} before: {sql}"
            );
        }
        pg.psql_as(WRITER, "revoke", sql);
        for s in &sidecars {
            let took = until(Duration::from_secs(1), sql, || {
                decide_at(s, e, su, client, package, 0).decision() == Decision::Deny
            });
            eprintln!("{took:?}: {sql}");
        }
    }
    for s in sidecars {
        let st = status(&s);
        assert_eq!(
            (st.sync_state.as_str(), st.data_source.as_str()),
            ("live", "postgres")
        );
        assert!(st.changes_applied >= 4);
        s.stop();
    }
}

/// Two transactions that overlap: the one that took the smaller transaction id
/// commits last. A feed that resumed after the larger id would lose it.
#[test]
fn overlapping_transactions_are_both_applied_and_read_your_writes_holds() {
    use tokio_postgres::NoTls;
    let pg = Cluster::start();
    let url = with_world(&pg, "overlap");
    let s = serve(&url, &[]);
    // The SQL side runs on its own runtime, one step at a time, because the
    // sidecar's client helpers block on theirs.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let connect = || {
        rt.block_on(async {
            let (c, conn) = tokio_postgres::connect(&as_role(&url, WRITER), NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            c
        })
    };
    let mut a = connect();
    let mut b = connect();
    let t1 = rt.block_on(a.transaction()).unwrap();
    let x1: i64 = rt.block_on(async {
        let x = t1.query_one("SELECT vakt.data_sequence()", &[]).await.unwrap().get(0);
        t1.execute("DELETE FROM vakt.client_link WHERE system_user_id = 'tk-regnskap' AND client_org_number = '310019194'", &[]).await.unwrap();
        x
    });
    let x2: i64 = rt.block_on(async {
        let t2 = b.transaction().await.unwrap();
        let x: i64 = t2
            .query_one("SELECT vakt.data_sequence()", &[])
            .await
            .unwrap()
            .get(0);
        t2.execute(
            "UPDATE vakt.employee SET active = false WHERE id = 'ola'",
            &[],
        )
        .await
        .unwrap();
        t2.commit().await.unwrap();
        x
    });
    assert!(x1 < x2, "{x1} < {x2}");
    // Read-your-writes: T2's sequence answers from a world that holds T2.
    let r = decide_at(&s, "ola", "tk-regnskap", "310015156", REGNSKAP, x2 as u64);
    assert_eq!(policy_ids(&r), ["employee-deactivated"]);
    assert!(r.data_sequence >= x2 as u64);
    // T1 has not committed: a request that needs it waits, then fails closed.
    let r = decide_at(&s, "kari", "tk-regnskap", "310015156", REGNSKAP, x1 as u64);
    assert_eq!(policy_ids(&r), ["vakt:data-stale"]);
    assert_eq!(
        decide_at(&s, "kari", "tk-regnskap", "310019194", REGNSKAP, 0).decision(),
        Decision::Allow
    );
    rt.block_on(t1.commit()).unwrap();
    let r = decide_at(&s, "kari", "tk-regnskap", "310019194", REGNSKAP, x1 as u64);
    assert_eq!(policy_ids(&r), ["client-not-linked"]);
    // Both stay applied.
    assert_eq!(
        policy_ids(&decide(&s, "ola", "tk-regnskap", "310015156")),
        ["employee-deactivated"]
    );
    assert_eq!(
        policy_ids(&decide(&s, "kari", "tk-regnskap", "310019194")),
        ["client-not-linked"]
    );
    s.stop();
}

/// A change the database accepts but Vakt's checks refuse stops the feed at it:
/// the last good world keeps serving, the status call and an ERROR name it, later
/// changes wait behind it, and --max-staleness fails everything closed.
#[test]
fn a_change_that_fails_the_checks_stops_the_feed_and_fails_closed() {
    let pg = Cluster::start();
    let url = with_world(&pg, "stopped");
    let s = serve(&url, &["--max-staleness", "2s", "--poll-interval", "100ms"]);
    // An operational unit under an operational unit: SQL cannot see it, Vakt can.
    pg.psql_as(
        WRITER,
        "stopped",
        "INSERT INTO vakt.organization VALUES ('310030309', 'Unit of a unit', '310009091', 'BEDR')",
    );
    until(Duration::from_secs(5), "the feed to stop", || {
        status(&s).sync_state == "stopped"
    });
    let st = status(&s);
    assert!(st.last_error.contains("310030309"), "{}", st.last_error);
    assert!(
        st.last_error.contains("units are one level deep"),
        "{}",
        st.last_error
    );
    // A revocation behind it is not applied yet...
    pg.psql_as(
        WRITER,
        "stopped",
        "UPDATE vakt.employee SET active = false WHERE id = 'kari'",
    );
    // ...and once the data is older than allowed, everything is denied.
    until(
        Duration::from_secs(5),
        "the stale data to fail closed",
        || policy_ids(&decide(&s, "kari", "tk-regnskap", "310019194")) == ["vakt:data-stale"],
    );
    // Fixing the bad row lets the feed through, revocation included.
    pg.psql_as(
        WRITER,
        "stopped",
        "DELETE FROM vakt.organization WHERE org_number = '310030309'",
    );
    until(Duration::from_secs(5), "the feed to resume", || {
        status(&s).sync_state == "live"
    });
    assert!(policy_ids(&decide(&s, "kari", "tk-regnskap", "310019194"))
        .contains(&"employee-deactivated"));
    assert_eq!(
        decide(&s, "kari", "tk-regnskap", "310019194").decision(),
        Decision::Deny
    );
    assert_eq!(
        decide(&s, "nina", "tk-regnskap", "310015156").decision(),
        Decision::Allow
    );
    s.stop();
}

/// The database goes away: decisions continue on the last world, the status says
/// so, stale data fails closed, and once the database is back the sidecar catches
/// up with what changed.
#[test]
fn a_lost_database_fails_closed_and_is_caught_up_with() {
    let pg = Cluster::start();
    let url = with_world(&pg, "lost");
    let s = serve(&url, &["--max-staleness", "2s", "--poll-interval", "200ms"]);
    assert_eq!(
        decide(&s, "kari", "tk-regnskap", "310015156").decision(),
        Decision::Allow
    );
    // The connection is cut (the server stays up), and a change lands at once.
    pg.psql(
        "lost",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'vakt'",
    );
    pg.psql_as(
        WRITER,
        "lost",
        "UPDATE vakt.employee SET active = false WHERE id = 'nina'",
    );
    until(Duration::from_secs(5), "the change made while away", || {
        policy_ids(&decide(&s, "nina", "tk-regnskap", "310015156"))
            .contains(&"employee-deactivated")
    });
    // The server stops.
    pg.stop();
    until(
        Duration::from_secs(5),
        "the status to say reconnecting",
        || status(&s).sync_state == "reconnecting",
    );
    assert!(!status(&s).last_error.is_empty());
    // Still deciding on the last world until it is too old, then denying.
    until(Duration::from_secs(5), "stale data to fail closed", || {
        policy_ids(&decide(&s, "kari", "tk-regnskap", "310015156")) == ["vakt:data-stale"]
    });
    pg.restart();
    pg.psql_as(
        WRITER,
        "lost",
        "UPDATE vakt.employee SET active = false WHERE id = 'kari'",
    );
    until(Duration::from_secs(15), "the sidecar to catch up", || {
        policy_ids(&decide(&s, "kari", "tk-regnskap", "310015156"))
            .contains(&"employee-deactivated")
    });
    assert_eq!(status(&s).sync_state, "live");
    assert_eq!(
        decide(&s, "ola", "tk-regnskap", "310015156").decision(),
        Decision::Allow
    );
    s.stop();
}

/// A bulk load (`vakt db import --replace`) and a TRUNCATE are read whole; the
/// import wakes the sidecar at its commit (the heartbeat here is an hour).
#[test]
fn a_replaced_world_is_read_again_whole() {
    let pg = Cluster::start();
    let url = with_world(&pg, "replaced");
    let s = serve(&url, &["--poll-interval", "1h"]);
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(WORLD).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let employees = dir.path().join("employees.yaml");
    let text = std::fs::read_to_string(&employees).unwrap();
    let changed = text.replacen(
        "    name: Kari Nordmann\n    active: true",
        "    name: Kari Nordmann\n    active: false",
        1,
    );
    assert_ne!(text, changed);
    std::fs::write(&employees, changed).unwrap();
    ok(vakt(&[
        "db",
        "import",
        dir.path().to_str().unwrap(),
        "--database",
        &url,
        "--replace",
    ]));
    until(Duration::from_secs(5), "the replaced world", || {
        policy_ids(&decide(&s, "kari", "tk-regnskap", "310015156"))
            .contains(&"employee-deactivated")
    });
    // TRUNCATE is an owner's bulk operation (writers may not).
    pg.psql_as(OWNER, "replaced", "TRUNCATE vakt.employee CASCADE");
    until(Duration::from_secs(5), "the truncated table", || {
        status(&s).employees == 0
    });
    s.stop();
}

/// A world read again whole (here after a TRUNCATE) that fails Vakt's checks
/// stops following, as a single bad change does: the connection is fine, so the
/// state is `stopped`, not `reconnecting`, and the last good world keeps serving.
#[test]
fn a_whole_read_that_fails_the_checks_stops_too() {
    let pg = Cluster::start();
    let url = with_world(&pg, "wholebad");
    let s = serve(&url, &["--poll-interval", "100ms"]);
    assert_eq!(
        decide(&s, "kari", "tk-regnskap", "310015156").decision(),
        Decision::Allow
    );
    pg.psql_as(
        OWNER,
        "wholebad",
        "BEGIN; TRUNCATE vakt.employee_audit_client; \
         INSERT INTO vakt.organization VALUES ('310030309', 'Unit of a unit', '310009091', 'BEDR'); COMMIT",
    );
    until(Duration::from_secs(5), "following to stop", || {
        status(&s).sync_state == "stopped"
    });
    let st = status(&s);
    assert!(
        st.last_error.contains("units are one level deep"),
        "{}",
        st.last_error
    );
    // Still stopped a while later: not taken for a lost connection.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status(&s).sync_state, "stopped");
    assert_eq!(
        decide(&s, "kari", "tk-regnskap", "310015156").decision(),
        Decision::Allow
    );
    // Fixed: read whole again, and live.
    pg.psql_as(
        WRITER,
        "wholebad",
        "DELETE FROM vakt.organization WHERE org_number = '310030309'",
    );
    until(Duration::from_secs(5), "following to resume", || {
        status(&s).sync_state == "live"
    });
    s.stop();
}

/// The data sequence a psql run printed last (`SELECT vakt.data_sequence()` in the
/// transaction that made the change).
fn sequence(out: &str) -> u64 {
    out.lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no data sequence in {out:?}"))
}

/// A read-your-writes request at `sequence` for the example world's
/// (employee, system user, client, package): its policy ids.
fn ids_at(s: &Spawned, who: (&str, &str, &str, &str), sequence: u64) -> Vec<String> {
    let r = decide_at(s, who.0, who.1, who.2, who.3, sequence);
    policy_ids(&r).into_iter().map(str::to_owned).collect()
}

const KARI: (&str, &str, &str, &str) = ("kari", "tk-regnskap", "310015156", REGNSKAP);
const NINA: (&str, &str, &str, &str) = ("nina", "tk-sykefravaer", "310017175", SYKEFRAVAER);

fn now(s: &Spawned, who: (&str, &str, &str, &str)) -> Vec<String> {
    ids_at(s, who, 0)
}

fn allowed(s: &Spawned, who: (&str, &str, &str, &str)) -> bool {
    decide_at(s, who.0, who.1, who.2, who.3, 0).decision() == Decision::Allow
}

/// (a) A sidecar is away; meanwhile an employee is deactivated and the change
/// feed is truncated. A writer may not truncate it; an owner may, and the sidecar
/// that comes back reads the world whole rather than resume on a feed that lost
/// the change.
#[test]
fn a_feed_truncated_while_a_sidecar_is_away_is_read_whole() {
    let pg = Cluster::start();
    let url = with_world(&pg, "truncated");
    let s = serve(&url, &["--poll-interval", "100ms"]);
    assert!(allowed(&s, KARI));
    let err = pg
        .try_psql_as(WRITER, "truncated", "TRUNCATE vakt.feed_change")
        .unwrap_err();
    assert!(
        err.contains("permission denied for table feed_change"),
        "{err}"
    );
    // The sidecar is cut off, and kept away.
    pg.psql("postgres", &format!("ALTER ROLE {READER} NOLOGIN"));
    pg.psql(
        "truncated",
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{READER}'"
        ),
    );
    until(Duration::from_secs(5), "the sidecar to be away", || {
        status(&s).sync_state == "reconnecting"
    });
    let x = sequence(&pg.psql_as(
        WRITER,
        "truncated",
        "UPDATE vakt.employee SET active = false WHERE id = 'kari'; SELECT vakt.data_sequence()",
    ));
    pg.psql_as(OWNER, "truncated", "TRUNCATE vakt.feed_change");
    // Away, it does not claim the change.
    assert_eq!(ids_at(&s, KARI, x), ["vakt:data-stale"]);
    pg.psql("postgres", &format!("ALTER ROLE {READER} LOGIN"));
    until(Duration::from_secs(15), "the deactivation", || {
        now(&s, KARI).iter().any(|p| p == "employee-deactivated")
    });
    assert_eq!(ids_at(&s, KARI, x), ["employee-deactivated"]);
    assert_eq!(status(&s).sync_state, "live");
    assert!(allowed(&s, NINA));
    s.stop();
}

/// (b) `vakt.bulk_load`, a setting any session can make, no longer silences the
/// triggers; a bulk load is `vakt db import`, which a writer may not run.
#[test]
fn a_session_setting_cannot_hide_a_write_from_the_feed() {
    let pg = Cluster::start();
    let url = with_world(&pg, "bulkflag");
    let s = serve(&url, &["--poll-interval", "100ms"]);
    assert!(allowed(&s, NINA));
    let x = sequence(&pg.psql_as(
        WRITER,
        "bulkflag",
        "BEGIN; SET LOCAL vakt.bulk_load = 'on'; \
         UPDATE vakt.employee SET active = false WHERE id = 'nina'; \
         SELECT vakt.data_sequence(); COMMIT",
    ));
    assert_eq!(ids_at(&s, NINA, x), ["employee-deactivated"]);
    until(Duration::from_secs(1), "the deactivation", || {
        !allowed(&s, NINA)
    });
    // The import, as the writer: refused before it writes anything.
    let out = vakt(&[
        "db",
        "import",
        WORLD,
        "--replace",
        "--database",
        &as_role(&url, WRITER),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("member of vakt_owner"), "{err}");
    assert_eq!(
        pg.psql_as(
            WRITER,
            "bulkflag",
            "SELECT active FROM vakt.employee WHERE id = 'nina'"
        ),
        "f"
    );
    assert_eq!(now(&s, NINA), ["employee-deactivated"]);
    s.stop();
}

/// (c) A deactivation whose change rows are deleted in its own transaction. A
/// writer may not delete them (so its transaction fails whole); an owner may, and
/// every sidecar then reads the world whole.
#[test]
fn change_rows_deleted_with_their_change_do_not_hide_it() {
    let pg = Cluster::start();
    let url = with_world(&pg, "deleted");
    let s = serve(&url, &["--poll-interval", "100ms"]);
    assert!(allowed(&s, KARI));
    let hide = "BEGIN; UPDATE vakt.employee SET active = false WHERE id = 'kari'; \
                DELETE FROM vakt.feed_change WHERE xid = pg_current_xact_id(); \
                SELECT vakt.data_sequence(); COMMIT";
    let err = pg.try_psql_as(WRITER, "deleted", hide).unwrap_err();
    assert!(
        err.contains("permission denied for table feed_change"),
        "{err}"
    );
    assert_eq!(
        pg.psql_as(
            WRITER,
            "deleted",
            "SELECT active FROM vakt.employee WHERE id = 'kari'"
        ),
        "t"
    );
    assert!(allowed(&s, KARI));
    let x = sequence(&pg.psql_as(OWNER, "deleted", hide));
    assert_eq!(ids_at(&s, KARI, x), ["employee-deactivated"]);
    until(Duration::from_secs(1), "the deactivation", || {
        !allowed(&s, KARI)
    });
    assert_eq!(status(&s).sync_state, "live");
    assert!(allowed(&s, NINA));
    s.stop();
}

/// `ALTER TABLE … DISABLE TRIGGER`: refused to a writer. An owner who disables a
/// feed trigger for one transaction makes every sidecar read the world whole; one
/// who leaves it disabled stops them (stale data then fails closed) until it is
/// enabled again.
#[test]
fn a_disabled_trigger_is_refused_to_writers_and_never_hides_a_write() {
    let pg = Cluster::start();
    let url = with_world(&pg, "disabled");
    let s = serve(&url, &["--poll-interval", "100ms", "--max-staleness", "2s"]);
    assert!(allowed(&s, KARI));
    assert!(allowed(&s, NINA));
    for sql in [
        "ALTER TABLE vakt.employee DISABLE TRIGGER feed",
        "ALTER TABLE vakt.employee DISABLE TRIGGER ALL",
    ] {
        let err = pg.try_psql_as(WRITER, "disabled", sql).unwrap_err();
        assert!(err.contains("must be owner of table employee"), "{err}");
    }
    // Off for one transaction only.
    let x = sequence(&pg.psql_as(
        OWNER,
        "disabled",
        "BEGIN; ALTER TABLE vakt.employee DISABLE TRIGGER feed; \
         UPDATE vakt.employee SET active = false WHERE id = 'kari'; \
         SELECT vakt.data_sequence(); \
         ALTER TABLE vakt.employee ENABLE ALWAYS TRIGGER feed; COMMIT",
    ));
    assert_eq!(ids_at(&s, KARI, x), ["employee-deactivated"]);
    until(Duration::from_secs(1), "the deactivation", || {
        !allowed(&s, KARI)
    });
    assert_eq!(status(&s).sync_state, "live");
    // Left off: following stops, and what is written meanwhile is not claimed.
    pg.psql_as(
        OWNER,
        "disabled",
        "ALTER TABLE vakt.employee DISABLE TRIGGER feed",
    );
    until(Duration::from_secs(5), "following to stop", || {
        status(&s).sync_state == "stopped"
    });
    let st = status(&s);
    assert!(
        st.last_error
            .contains("trigger feed on vakt.employee is disabled"),
        "{}",
        st.last_error
    );
    let y = sequence(&pg.psql_as(
        WRITER,
        "disabled",
        "UPDATE vakt.employee SET active = false WHERE id = 'nina'; SELECT vakt.data_sequence()",
    ));
    assert_eq!(ids_at(&s, NINA, y), ["vakt:data-stale"]);
    until(Duration::from_secs(5), "stale data to fail closed", || {
        now(&s, NINA) == ["vakt:data-stale"]
    });
    pg.psql_as(
        OWNER,
        "disabled",
        "ALTER TABLE vakt.employee ENABLE ALWAYS TRIGGER feed",
    );
    until(Duration::from_secs(5), "following to resume", || {
        status(&s).sync_state == "live"
    });
    assert_eq!(ids_at(&s, NINA, y), ["employee-deactivated"]);
    assert_eq!(now(&s, KARI), ["employee-deactivated"]);
    s.stop();
}

/// A database restored from a dump, under the name a sidecar follows: the
/// restored rows come without change rows the sidecar has not seen, so it must
/// notice the database itself is another (its oid) and read it whole.
#[test]
fn a_restored_database_is_read_again_whole() {
    let pg = Cluster::start();
    // The backup: a world in which kari is deactivated, made before the sidecar
    // starts (so none of its transactions are new to the sidecar).
    with_world(&pg, "backup");
    pg.psql_as(
        WRITER,
        "backup",
        "UPDATE vakt.employee SET active = false WHERE id = 'kari'",
    );
    let dump = pg.dir().join("backup.sql");
    pg.dump("backup", &dump);
    let url = with_world(&pg, "restored");
    let s = serve(&url, &["--poll-interval", "100ms"]);
    assert!(allowed(&s, KARI));
    pg.psql("postgres", "DROP DATABASE restored WITH (FORCE)");
    pg.psql("postgres", "CREATE DATABASE restored");
    pg.restore("restored", &dump);
    until(Duration::from_secs(15), "the restored world", || {
        now(&s, KARI).iter().any(|p| p == "employee-deactivated")
    });
    assert_eq!(status(&s).sync_state, "live");
    s.stop();
}

/// With the data in the database, the policy files are still read only when
/// whole: 01-employee.cedar rewritten in place, cut after its first policy and
/// held open for longer than the settle interval, never lets Per (deactivated,
/// denied only by the file's second policy) through; the cut file renamed into
/// place does.
#[test]
fn a_policy_file_being_written_is_not_applied_beside_a_database() {
    use std::io::Write;
    let pg = Cluster::start();
    let url = with_world(&pg, "policywrite");
    let policies = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "cedar") {
            std::fs::copy(&p, policies.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let s = serve(&url, &["--policies", policies.path().to_str().unwrap()]);
    let per = || decide(&s, "per", "tk-regnskap", "310015156").decision();
    assert_eq!(per(), Decision::Deny);
    let file = policies.path().join("01-employee.cedar");
    let text = std::fs::read_to_string(&file).unwrap();
    let cut = text.find("@id(\"employee-deactivated\")").unwrap();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&file)
        .unwrap();
    f.write_all(&text.as_bytes()[..cut]).unwrap();
    f.flush().unwrap();
    let pause = Instant::now();
    while pause.elapsed() < Duration::from_millis(1500) {
        assert_eq!(per(), Decision::Deny, "allowed while the file was written");
        std::thread::sleep(Duration::from_millis(10));
    }
    f.write_all(&text.as_bytes()[cut..]).unwrap();
    drop(f);
    let after = Instant::now();
    while after.elapsed() < Duration::from_millis(600) {
        assert_eq!(per(), Decision::Deny, "allowed after the file was written");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The cut file, whole and renamed into place, is read, and allows Per.
    let tmp = policies.path().join("01-employee.tmp~");
    std::fs::write(&tmp, &text[..cut]).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    until(
        Duration::from_secs(10),
        "the cut policy file to apply",
        || per() == Decision::Allow,
    );
    s.stop();
}

/// A database made before party ids (schema version 2, as an older Vakt left it,
/// with a world in it) is refused until migrated; `vakt db migrate` adds the
/// columns and keeps every row. Party ids written then are read whole (with the
/// lookup by party id and UUID), followed change by change (one moved between
/// organisations within a transaction), exported, and a change that gives one
/// organisation's party id to another, untouched one is refused naming both.
#[test]
fn a_database_made_before_party_ids_migrates_and_follows_them() {
    use sha2::{Digest, Sha256};
    let pg = Cluster::start();
    let url = pg.create_db("before_party_ids");
    let old: [(i64, &str, &str); 2] = [
        (1, "world", include_str!("../../migrations/0001_world.sql")),
        (
            2,
            "roles_and_feed_guard",
            include_str!("../../migrations/0002_roles_and_feed_guard.sql"),
        ),
    ];
    pg.psql(
        "before_party_ids",
        "CREATE SCHEMA vakt; CREATE TABLE vakt.schema_version (
           version bigint PRIMARY KEY, name text NOT NULL, sha256 text NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now())",
    );
    for (version, name, sql) in old {
        let sum = hex::encode(Sha256::digest(sql.as_bytes()));
        pg.psql("before_party_ids", sql);
        pg.psql(
            "before_party_ids",
            &format!("INSERT INTO vakt.schema_version (version, name, sha256) VALUES ({version}, '{name}', '{sum}')"),
        );
    }
    pg.psql(
        "before_party_ids",
        "INSERT INTO vakt.organization VALUES ('310001015', 'Tall og Kontroll AS', NULL, 'AS'), \
                                             ('310015156', 'Bakeri Brød AS', NULL, 'AS')",
    );
    let out = tempfile::tempdir().unwrap();
    let refused = vakt(&[
        "db",
        "export",
        out.path().to_str().unwrap(),
        "--database",
        &url,
    ]);
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && text.contains("version 2, this binary needs 5"),
        "{text}"
    );
    let migrated = vakt(&["db", "migrate", "--database", &url]);
    let said = String::from_utf8_lossy(&migrated.stderr);
    assert!(said.contains("applied migration 3 (party_ids)"), "{said}");
    assert!(ok(migrated).contains("Vakt schema at version 5"));
    assert_eq!(
        pg.psql(
            "before_party_ids",
            "SELECT string_agg(org_number || ':' || coalesce(party_id::text, '-') || ':' || coalesce(party_uuid::text, '-'), ',' ORDER BY org_number) FROM vakt.organization"
        ),
        "310001015:-:-,310015156:-:-"
    );
    ok(vakt(&[
        "db",
        "export",
        out.path().to_str().unwrap(),
        "--database",
        &url,
    ]));
    let orgs = std::fs::read_to_string(out.path().join("organizations.json")).unwrap();
    assert!(
        orgs.contains(r#"{"orgNumber":"310001015","name":"Tall og Kontroll AS","unitType":"AS"}"#),
        "{orgs}"
    );

    // The example world, with party ids written by a writer.
    ok(vakt(&[
        "db",
        "import",
        WORLD,
        "--replace",
        "--database",
        &url,
    ]));
    pg.logins();
    pg.psql_as(
        WRITER,
        "before_party_ids",
        "UPDATE vakt.organization SET party_id = 51117759, party_uuid = '4a06214d-b261-4695-b33a-0771a995b503' WHERE org_number = '310001015'; \
         UPDATE vakt.organization SET party_id = 51561401 WHERE org_number = '310015156'",
    );
    let rules = || {
        vakt::rules::snapshot::Rules::build(
            &vakt::rules::snapshot::Sources::read(&Default::default()).unwrap(),
        )
        .unwrap()
    };
    let whole = |url: &str| {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(vakt::source::postgres::PostgresSource::load(
                url.parse().unwrap(),
                rules(),
            ))
            .unwrap()
            .1
    };
    let w = whole(&url).world;
    let org_of = |id: i64| {
        w.organization_by_party_id(id)
            .map(|o| o.org_number.to_string())
    };
    assert_eq!(org_of(51117759).as_deref(), Some("310001015"));
    assert_eq!(org_of(51561401).as_deref(), Some("310015156"));
    assert_eq!(org_of(51561402), None);
    let uuid = uuid::Uuid::parse_str("4a06214d-b261-4695-b33a-0771a995b503").unwrap();
    assert_eq!(
        w.organization_by_party_uuid(uuid)
            .map(|o| o.org_number.to_string())
            .as_deref(),
        Some("310001015")
    );

    // Followed: 51561401 moves from 310015156 to 310017175 in one transaction
    // (the taker written first), read back by a read-your-writes request.
    let s = serve(&url, &["--poll-interval", "100ms"]);
    assert_eq!(status(&s).sync_state, "live");
    let moved = pg.psql_as(
        WRITER,
        "before_party_ids",
        "BEGIN; UPDATE vakt.organization SET party_id = NULL WHERE org_number = '310015156'; \
         UPDATE vakt.organization SET party_id = 51561401 WHERE org_number = '310017175'; \
         SELECT vakt.data_sequence(); COMMIT",
    );
    let seq = sequence(&moved);
    let r = decide_at(&s, KARI.0, KARI.1, KARI.2, KARI.3, seq);
    assert!(
        r.data_sequence >= seq && r.decision() == Decision::Allow,
        "{r:?}"
    );
    assert_eq!(status(&s).sync_state, "live");
    let out = tempfile::tempdir().unwrap();
    ok(vakt(&[
        "db",
        "export",
        out.path().to_str().unwrap(),
        "--database",
        &as_role(&url, READER),
    ]));
    let orgs = std::fs::read_to_string(out.path().join("organizations.json")).unwrap();
    let line = |n: &str| {
        orgs.lines()
            .find(|l| l.contains(&format!(r#""orgNumber":"{n}""#)))
            .unwrap_or_default()
    };
    assert!(
        line("310017175").contains(r#""partyId":51561401"#),
        "{orgs}"
    );
    assert!(!line("310015156").contains("partyId"), "{orgs}");
    assert!(
        orgs.contains(r#""partyId":51117759,"partyUuid":"4a06214d-b261-4695-b33a-0771a995b503""#),
        "{orgs}"
    );
    let w = whole(&url).world;
    assert_eq!(
        w.organization_by_party_id(51561401)
            .map(|o| o.org_number.to_string())
            .as_deref(),
        Some("310017175")
    );

    // Without the unique constraint, a writer gives 310001015's party id to
    // 310015156 as well: the sidecar refuses the change, naming both.
    pg.psql(
        "before_party_ids",
        "ALTER TABLE vakt.organization DROP CONSTRAINT organization_party_id_key",
    );
    until(Duration::from_secs(10), "the sidecar to be live", || {
        status(&s).sync_state == "live"
    });
    pg.psql_as(
        WRITER,
        "before_party_ids",
        "UPDATE vakt.organization SET party_id = 51117759 WHERE org_number = '310015156'",
    );
    until(Duration::from_secs(5), "following to stop", || {
        status(&s).sync_state == "stopped"
    });
    let st = status(&s);
    assert!(
        st.last_error
            .contains("partyId 51117759 is given to two organisations, 310001015 and 310015156"),
        "{}",
        st.last_error
    );
    s.stop();
}
