//! PostgreSQL as the shared source, against a real server these tests start
//! themselves: migrations and constraints, an exact import and export, sidecars
//! that follow every committed change (overlapping transactions included),
//! revocations that reach two sidecars within a second, a change that fails
//! Vakt's checks stopping the feed, read-your-writes, and a lost database that
//! fails closed and is caught up with.

mod common;
use common::pg::Cluster;
use common::*;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};
use vakt::proto::{Decision, StatusRequest, StatusResponse};

const WORLD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/world");

fn vakt(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "vakt failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A cluster with database `name` migrated and holding the example world.
fn with_world(pg: &Cluster, name: &str) -> String {
    let url = pg.create_db(name);
    ok(vakt(&["db", "migrate", "--database", &url]));
    ok(vakt(&["db", "import", WORLD, "--database", &url]));
    url
}

fn status(s: &Spawned) -> StatusResponse {
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

fn until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

fn serve(url: &str, extra: &[&str]) -> Spawned {
    let mut args = vec!["--data", url, "--decision-log", "off"];
    args.extend_from_slice(extra);
    Spawned::start(&args, false)
}

#[test]
fn migrations_apply_once_and_constraints_refuse_what_the_loader_refuses() {
    let pg = Cluster::start();
    let url = pg.create_db("constraints");
    let first = ok(vakt(&["db", "migrate", "--database", &url]));
    assert!(first.contains("Vakt schema at version 1"), "{first}");
    let again = ok(vakt(&["db", "migrate", "--database", &url]));
    assert!(again.contains("already up to date"), "{again}");
    let sql = |s: &str| pg.try_psql("constraints", s);
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
        let imported = ok(vakt(&[
            "db",
            "import",
            dir.to_str().unwrap(),
            "--database",
            &url,
        ]));
        assert!(imported.contains("imported"), "{imported}");
        let out = worlds.path().join(format!("out{i}"));
        ok(vakt(&[
            "db",
            "export",
            out.to_str().unwrap(),
            "--database",
            &url,
        ]));
        let from_files = snapshot_of(dir);
        let exported = snapshot_of(&out);
        assert!(
            from_files.world == exported.world,
            "{}: the exported world differs from the imported one",
            dir.display()
        );
        // And the world the sidecar reads from the database is the same too.
        let rules = vakt::snapshot::Rules::build(
            &vakt::snapshot::Sources::read(&Default::default()).unwrap(),
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

fn snapshot_of(dir: &Path) -> vakt::snapshot::Snapshot {
    vakt::snapshot::Snapshot::build(
        &vakt::snapshot::Sources::read(&vakt::snapshot::SourcePaths {
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
        pg.psql("revoke", sql);
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
            let (c, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
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
    pg.psql(
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
    pg.psql(
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
    pg.psql(
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
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'vakt'; \
         UPDATE vakt.employee SET active = false WHERE id = 'nina'",
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
    pg.psql(
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
    pg.psql("replaced", "TRUNCATE vakt.employee CASCADE");
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
    pg.psql(
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
    pg.psql(
        "wholebad",
        "DELETE FROM vakt.organization WHERE org_number = '310030309'",
    );
    until(Duration::from_secs(5), "following to resume", || {
        status(&s).sync_state == "live"
    });
    s.stop();
}
