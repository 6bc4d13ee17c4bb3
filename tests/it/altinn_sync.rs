//! `vakt altinn sync` (the binary) against the Altinn stand-in and the
//! Maskinporten stand-in: the world written as files renamed into `--data` with
//! the manifest, deletion as absence, changed packages, a failure on page 3 of 5
//! and an outage changing nothing, the mass-removal guard and its confirmation,
//! `--dry-run`, a client added and removed reaching a serving sidecar within one
//! sync interval, and PostgreSQL as the target.

use crate::common;
use common::altinn::{
    client, party, Altinn as AltinnStandIn, SystemUserFixture, AUTHORIZED_PARTIES_SCOPE,
    CLIENT_DELEGATIONS_SCOPE,
};
use common::maskinporten::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SYSTEM: &str = "310000000_vakt";
const REGNSKAP: &str = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet";
const SYK: &str = "urn:altinn:accesspackage:sykefravaer";
const ACCOUNTANT: &str = "urn:altinn:external-role:ccr:regnskapsforer";
/// The accounting firm that owns the agent.
const FIRM: &str = "310001015";
const FIRM_UUID: &str = "7b0c3a52-0000-4000-8000-000000000001";
const AGENT: &str = "a9e0c3a5-0000-4000-8000-0000000000a1";
const STANDARD: &str = "a9e0c3a5-0000-4000-8000-0000000000b1";
const ADMIN: &str = "a9e0c3a5-0000-4000-8000-0000000000c1";
/// Clients of the firm (valid org numbers).
const CLIENTS: [&str; 5] = [
    "310015156",
    "310017175",
    "310019194",
    "310020206",
    "310003034",
];

struct Env {
    _dir: tempfile::TempDir,
    mp: StandIn,
    altinn: AltinnStandIn,
    config: PathBuf,
    data: PathBuf,
}

fn client_uuid(i: usize) -> String {
    format!("c1e00000-0000-4000-8000-{:012}", i + 1)
}

/// An authorized party with a party id of its own (the stand-in's default may
/// collide between parties, and each party id names one organisation).
fn party_n(uuid: &str, org: &str, n: i64, packages: &[&str]) -> Value {
    let mut p = party(uuid, org, &format!("Org {org}"), packages, &[]);
    p["partyId"] = Value::from(50_000_000 + n);
    p
}

/// The stand-ins with the vendor's system, an agent of the firm with the
/// first `clients` clients (from `authorizedparties`), and a standard system
/// user; the config file and a data directory holding the vendor's own team
/// and employee.
async fn env(clients: usize) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start().await;
    mp.register_client(
        CLIENT_ID,
        VENDOR_ORG,
        ClientKey::Jwk(Box::new(key(1).jwk(CLIENT_KID))),
        &[AUTHORIZED_PARTIES_SCOPE, CLIENT_DELEGATIONS_SCOPE],
    );
    let altinn = AltinnStandIn::start(&mp).await;
    altinn.add_system(SYSTEM, VENDOR_ORG);
    for (id, t, r) in [(AGENT, "agent", "agent"), (STANDARD, "standard", "own")] {
        altinn.add_system_user(
            &mp,
            SystemUserFixture {
                id: id.into(),
                system_id: SYSTEM.into(),
                org: FIRM.into(),
                external_ref: Some(r.into()),
                user_type: t.into(),
            },
        );
    }
    set_clients(&altinn, clients, &[REGNSKAP]);
    altinn.set_authorized_parties(STANDARD, vec![party_n(FIRM_UUID, FIRM, 0, &[SYK])]);
    let key_file = write_private(dir.path(), "client.key", &key(1).pkcs8_pem);
    let config = dir.path().join("vakt.toml");
    std::fs::write(
        &config,
        format!(
            "[maskinporten]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nkey_file = \"{}\"\nkid = \"{CLIENT_KID}\"\nconnect_timeout = \"2s\"\nrequest_timeout = \"5s\"\n\n[altinn]\nbase_url = \"{}\"\n\n[altinn.sync]\nsystems = [\"{SYSTEM}\"]\nmax_removal_share = 0.2\n",
            mp.issuer,
            key_file.display(),
            altinn.base
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // The vendor's own records: a team granted both system users by Altinn's
    // ids, and its employee.
    std::fs::write(
        data.join("vendor.yaml"),
        format!(
            "teams:\n  - id: regnskap\n    organization: \"{FIRM}\"\n    systemUsers: [\"{AGENT}\", \"{STANDARD}\"]\n    clients: all\nemployees:\n  - id: kari\n    organization: \"{FIRM}\"\n    active: true\n    teams: [regnskap]\n"
        ),
    )
    .unwrap();
    Env {
        _dir: dir,
        mp,
        altinn,
        config,
        data,
    }
}

/// The agent's authorized parties: the first `n` clients with `packages`.
fn set_clients(altinn: &AltinnStandIn, n: usize, packages: &[&str]) {
    altinn.set_authorized_parties(
        AGENT,
        CLIENTS[..n]
            .iter()
            .enumerate()
            .map(|(i, c)| party_n(&client_uuid(i), c, 1 + i as i64, packages))
            .collect(),
    );
}

/// Runs `vakt altinn sync` with `args` (off the runtime the stand-ins serve on).
async fn sync(e: &Env, args: &[&str]) -> std::process::Output {
    let mut all: Vec<String> = vec![
        "altinn".into(),
        "sync".into(),
        "--config".into(),
        e.config.display().to_string(),
    ];
    if !args.contains(&"--database") {
        all.extend(["--data".into(), e.data.display().to_string()]);
    }
    all.extend(args.iter().map(|s| (*s).to_owned()));
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        common::vakt(&refs)
    })
    .await
    .unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file in the data directory with its content.
fn contents(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

fn system_users(data: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(data.join("altinn-system-users.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["systemUsers"].as_array().unwrap().clone()
}

fn user<'a>(users: &'a [Value], id: &str) -> Option<&'a Value> {
    users.iter().find(|u| u["id"] == id)
}

fn linked(users: &[Value]) -> Vec<String> {
    user(users, AGENT).unwrap()["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["clientOrganizationNumber"].as_str().unwrap().to_owned())
        .collect()
}

/// `vakt validate` over the directory with the manifest, as a sidecar reads it.
fn validates(data: &Path) {
    let manifest = data.join("SHA256SUMS");
    let out = common::vakt(&[
        "validate",
        "--data",
        data.to_str().unwrap(),
        "--data-manifest",
        manifest.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test]
async fn sync_writes_the_world_and_sees_deletions_and_package_changes() {
    let e = env(3).await;
    // An auditor of the first client in the same team.
    std::fs::write(
        e.data.join("auditor.yaml"),
        format!(
            "employees:\n  - id: revi\n    organization: \"{FIRM}\"\n    active: true\n    teams: [regnskap]\n    auditClients: [\"{}\"]\n",
            CLIENTS[0]
        ),
    )
    .unwrap();
    let out = sync(&e, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("altinn sync done"),
        "{}",
        stderr(&out)
    );
    // The link's role is unknown: the accountant may act, the auditor may not
    // (rule 8 sees no auditor basis: fail-closed).
    let manifest = e.data.join("SHA256SUMS");
    let check = |employee: &str| {
        let out = common::vakt(&[
            "check",
            "--data",
            e.data.to_str().unwrap(),
            "--data-manifest",
            manifest.to_str().unwrap(),
            "--employee",
            employee,
            "--system-user",
            AGENT,
            "--client",
            CLIENTS[0],
            "--package",
            REGNSKAP,
        ]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, shown) = check("kari");
    assert_eq!(code, Some(0), "{shown}");
    let (code, shown) = check("revi");
    assert_eq!(code, Some(1), "{shown}");
    assert!(shown.contains("auditor-separation-of-duties"), "{shown}");
    assert!(stderr(&out).contains("links_added=3"), "{}", stderr(&out));
    validates(&e.data);
    let manifest = std::fs::read_to_string(e.data.join("SHA256SUMS")).unwrap();
    assert!(manifest.contains("# synced_at "), "{manifest}");
    for f in [
        "vendor.yaml",
        "auditor.yaml",
        "altinn-system-users.json",
        "altinn-organizations.json",
    ] {
        assert!(manifest.contains(&format!("  {f}\n")), "{manifest}");
    }
    let users = system_users(&e.data);
    assert_eq!(linked(&users), &CLIENTS[..3]);
    let agent = user(&users, AGENT).unwrap();
    // authorizedparties names no role: the link carries its packages and no
    // role at all (none invented), so never an auditor basis.
    let entry = &agent["clients"][0]["access"][0];
    assert!(entry.get("role").is_none(), "{entry}");
    assert_eq!(agent["clients"][0]["access"][0]["packages"][0], REGNSKAP);
    assert_eq!(agent["userType"], "agent");
    let standard = user(&users, STANDARD).unwrap();
    assert_eq!(standard["accessPackages"][0]["urn"], SYK);
    // The vendor's own file is untouched.
    assert!(std::fs::read_to_string(e.data.join("vendor.yaml"))
        .unwrap()
        .contains("kari"));

    // Packages changed in Altinn: the links carry the new ones.
    set_clients(&e.altinn, 3, &[REGNSKAP, SYK]);
    let out = sync(&e, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("packages_added=4"),
        "{}",
        stderr(&out)
    );
    let users = system_users(&e.data);
    let packages = &user(&users, AGENT).unwrap()["clients"][2]["access"][0]["packages"];
    assert_eq!(packages, &serde_json::json!([REGNSKAP, SYK]));

    // A system user deleted in Altinn is absent from the read, so removed
    // (one of two system users is more than 20 %: confirmed).
    e.altinn.delete_system_user(STANDARD);
    let out = sync(&e, &[]).await;
    assert!(!out.status.success(), "the guard counts system users too");
    let out = sync(&e, &["--confirm-removals"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("system_users_removed=1"),
        "{}",
        stderr(&out)
    );
    let users = system_users(&e.data);
    // Kept as deleted: the vendor's team still names it by Altinn's id, and
    // rule 2 denies a deleted system user.
    assert_eq!(user(&users, STANDARD).unwrap()["isDeleted"], true);
    assert_eq!(user(&users, AGENT).unwrap()["isDeleted"], false);
    validates(&e.data);
    // The next sync sees no change.
    let out = sync(&e, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("system_users_removed=0"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_failure_on_page_3_of_5_and_an_outage_change_nothing() {
    let e = env(2).await;
    // 228 more: 230 system users, five pages.
    e.altinn.add_system_users(&e.mp, SYSTEM, 7000, 228);
    let out = sync(&e, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(system_users(&e.data).len(), 230);
    let before = contents(&e.data);
    e.altinn.fail_page(Some((3, 500)));
    let pages = e.altinn.list_pages();
    let out = sync(&e, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Altinn could not be read whole"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("page 3"), "{}", stderr(&out));
    assert_eq!(e.altinn.list_pages() - pages, 3, "stopped at page 3");
    assert_eq!(contents(&e.data), before, "nothing written");
    // Altinn down altogether: the same.
    e.altinn.fail_page(None);
    e.altinn.set_mode(Mode::Unavailable);
    let out = sync(&e, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(contents(&e.data), before, "nothing written");
    // Up again, with a system another vendor owns configured too: Altinn
    // refuses the vendor's token for it (403), and nothing is written either.
    e.altinn.set_mode(Mode::Up);
    e.altinn.add_system("310007072_other", "310007072");
    let text = std::fs::read_to_string(&e.config).unwrap();
    std::fs::write(
        &e.config,
        text.replace(
            &format!("systems = [\"{SYSTEM}\"]"),
            &format!("systems = [\"{SYSTEM}\", \"310007072_other\"]"),
        ),
    )
    .unwrap();
    let out = sync(&e, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
    assert_eq!(contents(&e.data), before, "nothing written");
}

#[tokio::test]
async fn the_guard_refuses_mass_removals_until_confirmed_and_dry_run_writes_nothing() {
    let e = env(5).await;
    let out = sync(&e, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let before = contents(&e.data);
    // Two of five links gone at once: 40 % > 20 %.
    set_clients(&e.altinn, 3, &[REGNSKAP]);
    let out = sync(&e, &["--dry-run"]).await;
    assert!(out.status.success() || out.status.code() == Some(1));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        printed.contains(&format!("- link {AGENT} -> {}\n", CLIENTS[3])),
        "{printed}"
    );
    assert_eq!(contents(&e.data), before, "a dry run writes nothing");
    let out = sync(&e, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("ERROR"), "{err}");
    assert!(err.contains("too many removals"), "{err}");
    assert!(err.contains("--confirm-removals"), "{err}");
    assert_eq!(contents(&e.data), before, "refused: nothing written");
    let out = sync(&e, &["--confirm-removals"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(linked(&system_users(&e.data)), &CLIENTS[..3]);
    // A dry run of a sync that adds prints it and still writes nothing.
    set_clients(&e.altinn, 4, &[REGNSKAP]);
    let before = contents(&e.data);
    let out = sync(&e, &["--dry-run"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        printed.contains(&format!("+ link {AGENT} -> {}\n", CLIENTS[3])),
        "{printed}"
    );
    assert_eq!(contents(&e.data), before);
}

#[tokio::test]
async fn the_client_list_of_a_client_administrator_carries_roles() {
    let e = env(0).await;
    e.altinn.add_system_user(
        &e.mp,
        SystemUserFixture {
            id: ADMIN.into(),
            system_id: SYSTEM.into(),
            org: FIRM.into(),
            external_ref: Some("klientadmin".into()),
            user_type: "standard".into(),
        },
    );
    // The administrator's own parties name the firm, and so its party UUID.
    e.altinn.set_authorized_parties(
        ADMIN,
        vec![party_n(
            FIRM_UUID,
            FIRM,
            0,
            &["urn:altinn:accesspackage:klientadministrator"],
        )],
    );
    e.altinn.add_client_admin(FIRM_UUID, ADMIN);
    let clients = (0..2)
        .map(|i| {
            let mut c = client(
                &client_uuid(i),
                CLIENTS[i],
                "Klient AS",
                ACCOUNTANT,
                &[REGNSKAP],
            );
            c["client"]["partyid"] = Value::from(51_000_001 + i as i64);
            c
        })
        .collect();
    e.altinn.set_clients(FIRM_UUID, AGENT, clients);
    let text = std::fs::read_to_string(&e.config).unwrap();
    std::fs::write(
        &e.config,
        format!("{text}client_admins = {{ \"{FIRM}\" = \"{ADMIN}\" }}\n"),
    )
    .unwrap();
    let out = sync(&e, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let users = system_users(&e.data);
    assert_eq!(linked(&users), &CLIENTS[..2]);
    let access = &user(&users, AGENT).unwrap()["clients"][0]["access"][0];
    assert_eq!(access["role"], ACCOUNTANT);
    assert_eq!(access["packages"][0], REGNSKAP);
    validates(&e.data);
}

#[tokio::test]
async fn bad_settings_are_reported_at_once_with_their_lines() {
    let e = env(0).await;
    std::fs::write(
        &e.config,
        "[altinn]\nbase_url = \"ftp://example\"\n\n[altinn.sync]\nsystems = []\nmax_removal_share = 3\ncolour = \"blue\"\n",
    )
    .unwrap();
    let out = sync(&e, &[]).await;
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    let file = e.config.display().to_string();
    for want in [
        format!("{file}:2: altinn.base_url"),
        format!("{file}:5: altinn.sync.systems"),
        format!("{file}:6: altinn.sync.max_removal_share"),
        format!("{file}:7: altinn.sync.colour"),
        "maskinporten: is required".to_owned(),
    ] {
        assert!(err.contains(&want), "{want} in {err}");
    }
    assert!(contents(&e.data).len() == 1, "nothing written");
}

/// A free port on loopback (bound, then let go).
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn metrics(addr: &str) -> String {
    common::get(addr, "/metrics").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_added_and_removed_reaches_a_serving_sidecar_within_one_interval() {
    use vakt::proto::Decision;
    let e = env(1).await;
    let out = sync(&e, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest = e.data.join("SHA256SUMS");
    let server = {
        let (d, m) = (e.data.clone(), manifest.clone());
        tokio::task::spawn_blocking(move || {
            common::Spawned::start(
                &[
                    "--data",
                    d.to_str().unwrap(),
                    "--data-manifest",
                    m.to_str().unwrap(),
                ],
                false,
            )
        })
        .await
        .unwrap()
    };
    let server = std::sync::Arc::new(server);
    let ask = |client: &'static str| {
        let s = server.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                s.with_client(|mut c| async move {
                    c.authorize(common::request("kari", AGENT, client, REGNSKAP))
                        .await
                        .unwrap()
                        .into_inner()
                        .decision()
                })
            })
            .await
            .unwrap()
        }
    };
    assert_eq!(ask(CLIENTS[0]).await, Decision::Allow);
    assert_eq!(ask(CLIENTS[1]).await, Decision::Deny);
    // The sync every second, with its metrics; one of two links may go at once.
    let text = std::fs::read_to_string(&e.config).unwrap();
    std::fs::write(&e.config, text.replace("0.2", "0.5")).unwrap();
    let metrics_addr = free_addr();
    let mut syncer = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args([
            "altinn",
            "sync",
            "--config",
            e.config.to_str().unwrap(),
            "--data",
            e.data.to_str().unwrap(),
            "--every",
            "1s",
            "--metrics-listen",
            &metrics_addr,
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Added in Altinn: allowed within one interval (and the sidecar's settle).
    set_clients(&e.altinn, 2, &[REGNSKAP]);
    let mut decided = Decision::Deny;
    for _ in 0..100 {
        decided = ask(CLIENTS[1]).await;
        if decided == Decision::Allow {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        decided,
        Decision::Allow,
        "the added client reached the sidecar"
    );
    // Removed in Altinn: denied within one interval.
    set_clients(&e.altinn, 1, &[REGNSKAP]);
    for _ in 0..100 {
        decided = ask(CLIENTS[1]).await;
        if decided == Decision::Deny {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        decided,
        Decision::Deny,
        "the removed client reached the sidecar"
    );
    // An outage: the syncs fail and count it, the last good data serves on.
    let m = metrics(&metrics_addr);
    let last = common::sample(&m, "vakt_altinn_sync_last_success_timestamp_seconds").unwrap();
    assert!(last > 0.0, "{m}");
    e.altinn.set_mode(Mode::Unavailable);
    let a = metrics_addr.clone();
    tokio::task::spawn_blocking(move || {
        common::until(Duration::from_secs(10), "a failed sync counted", || {
            common::sample(
                &metrics(&a),
                "vakt_altinn_sync_failures_total{stage=\"read\"}",
            )
            .unwrap_or(0.0)
                >= 1.0
        })
    })
    .await
    .unwrap();
    let m = metrics(&metrics_addr);
    assert!(
        m.contains("vakt_altinn_sync_changes_total{kind=\"link_added\"}"),
        "{m}"
    );
    assert!(m.contains("vakt_altinn_sync_duration_seconds"), "{m}");
    assert_eq!(ask(CLIENTS[0]).await, Decision::Allow, "last good kept");
    let _ = syncer.kill();
    let _ = syncer.wait();
}

#[tokio::test]
async fn postgresql_is_written_in_one_transaction_with_the_stamp() {
    let pg = tokio::task::spawn_blocking(common::pg::Cluster::start)
        .await
        .unwrap();
    let url = pg.create_db("sync");
    let db = "sync";
    let e = env(2).await;
    let d = e.data.display().to_string();
    let u = url.clone();
    let prep = tokio::task::spawn_blocking(move || {
        let m = common::vakt(&["db", "migrate", "--database", &u]);
        assert!(m.status.success(), "{}", stderr(&m));
        // The vendor's employees and teams in the database first: they name
        // the firm, which the sync's world keeps.
        let seed = tempfile::tempdir().unwrap();
        std::fs::copy(
            Path::new(&d).join("vendor.yaml"),
            seed.path().join("vendor.yaml"),
        )
        .unwrap();
        std::fs::write(
            seed.path().join("orgs.yaml"),
            format!("organizations:\n  - orgNumber: \"{FIRM}\"\n    name: Firm\nsystemUsers:\n  - id: \"{AGENT}\"\n    reporteeOrgNo: \"{FIRM}\"\n    userType: agent\n    accessPackages: []\n  - id: \"{STANDARD}\"\n    reporteeOrgNo: \"{FIRM}\"\n    userType: standard\n    accessPackages: []\n"),
        )
        .unwrap();
        let i = common::vakt(&[
            "db",
            "import",
            seed.path().to_str().unwrap(),
            "--database",
            &u,
        ]);
        assert!(i.status.success(), "{}", stderr(&i));
    });
    prep.await.unwrap();
    let out = sync(&e, &["--database", &url]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("links_added=2"), "{}", stderr(&out));
    let links = pg.psql(db, "SELECT count(*) FROM vakt.client_link");
    assert!(
        links.trim().ends_with('2') || links.contains(" 2"),
        "{links}"
    );
    let stamp = pg.psql(db, "SELECT count(*) FROM vakt.sync_stamp");
    assert!(stamp.contains('1'), "{stamp}");
    let employees = pg.psql(db, "SELECT id FROM vakt.employee");
    assert!(employees.contains("kari"), "{employees}");
    // Outage: nothing changes in the database.
    e.altinn.set_mode(Mode::Unavailable);
    let out = sync(&e, &["--database", &url]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let again = pg.psql(db, "SELECT count(*) FROM vakt.client_link");
    assert_eq!(again, links);
}

/// A database migrated, with login roles, and the vendor's records imported by
/// its owner: the firm, its two system users (no links yet), the team and
/// `kari`. The sync then runs as [`common::pg::WRITER`].
async fn seeded_database(pg: &std::sync::Arc<common::pg::Cluster>, e: &Env, db: &str) {
    let url = pg.create_db(db);
    let d = e.data.display().to_string();
    let pg = pg.clone();
    tokio::task::spawn_blocking(move || {
        let m = common::vakt(&["db", "migrate", "--database", &url]);
        assert!(m.status.success(), "{}", stderr(&m));
        pg.logins();
        let seed = tempfile::tempdir().unwrap();
        std::fs::copy(
            Path::new(&d).join("vendor.yaml"),
            seed.path().join("vendor.yaml"),
        )
        .unwrap();
        std::fs::write(
            seed.path().join("orgs.yaml"),
            format!("organizations:\n  - orgNumber: \"{FIRM}\"\n    name: Firm\nsystemUsers:\n  - id: \"{AGENT}\"\n    reporteeOrgNo: \"{FIRM}\"\n    userType: agent\n    accessPackages: []\n  - id: \"{STANDARD}\"\n    reporteeOrgNo: \"{FIRM}\"\n    userType: standard\n    accessPackages: []\n"),
        )
        .unwrap();
        let i = common::vakt(&[
            "db",
            "import",
            seed.path().to_str().unwrap(),
            "--database",
            &url,
        ]);
        assert!(i.status.success(), "{}", stderr(&i));
    })
    .await
    .unwrap();
}

/// Connects to `url` with tokio-postgres (the connection driven in the
/// background).
async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

/// Microseconds since the epoch, rounded down (PostgreSQL's precision).
fn micros(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}

/// Waits (bounded) until `n` sessions of database `db` wait for a lock of
/// `locktype` (`advisory`, `relation`).
async fn waiting_on(pg: &std::sync::Arc<common::pg::Cluster>, db: &str, locktype: &str, n: usize) {
    let (pg, db, locktype) = (pg.clone(), db.to_owned(), locktype.to_owned());
    tokio::task::spawn_blocking(move || {
        let sql = format!(
            "SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
              WHERE NOT l.granted AND l.locktype = '{locktype}' AND d.datname = '{db}'"
        );
        common::until(
            Duration::from_secs(30),
            &format!("{n} sync(s) waiting on a {locktype} lock"),
            || pg.psql(&db, &sql).parse::<usize>().unwrap_or(0) >= n,
        )
    })
    .await
    .unwrap();
}

/// Runs `vakt altinn sync --config CONFIG` with `args` in the background.
fn sync_in_background(
    config: &Path,
    args: &[&str],
) -> tokio::task::JoinHandle<std::process::Output> {
    let mut all: Vec<String> = vec![
        "altinn".into(),
        "sync".into(),
        "--config".into(),
        config.display().to_string(),
    ];
    all.extend(args.iter().map(|s| (*s).to_owned()));
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        common::vakt(&refs)
    })
}

/// The sync writes as vakt_writer (no owner rights): row changes in one
/// transaction. An employee another writer is adding while the sync runs (its
/// transaction still open when the sync reaches the database) survives: the
/// sync waits for it, reads it, checks it and keeps it (the old whole-world
/// import would have truncated it away, and needed vakt_owner). The stamp is
/// the time the read of Altinn began: after the sync started, no later than
/// the stand-in served the first page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_is_written_as_vakt_writer_and_keeps_a_concurrent_employee() {
    let pg = std::sync::Arc::new(
        tokio::task::spawn_blocking(common::pg::Cluster::start)
            .await
            .unwrap(),
    );
    let db = "syncwriter";
    let e = env(2).await;
    seeded_database(&pg, &e, db).await;
    let writer_url = pg.url_as(common::pg::WRITER, db);
    // The writer role is no owner: the old import refused it.
    let owner = pg.psql_as(
        common::pg::WRITER,
        db,
        "SELECT pg_has_role('vakt_owner', 'USAGE')",
    );
    assert_eq!(owner, "f");
    // Another writer adds an employee and has not committed yet.
    let mut other = pg_client(&writer_url).await;
    let tx = other.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO vakt.employee (id, organization, name, active) VALUES ('ola', $1, 'Ola', true)",
        &[&FIRM],
    )
    .await
    .unwrap();
    tx.execute(
        "INSERT INTO vakt.employee_team (employee_id, team_id) VALUES ('ola', 'regnskap')",
        &[],
    )
    .await
    .unwrap();
    let before = std::time::SystemTime::now();
    let running = sync_in_background(&e.config, &["--database", &writer_url]);
    // The sync has read Altinn and waits for the other writer's transaction.
    waiting_on(&pg, db, "relation", 1).await;
    assert_eq!(
        pg.psql(db, "SELECT count(*) FROM vakt.sync_stamp"),
        "0",
        "nothing committed while it waits"
    );
    tx.commit().await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("the sync finished")
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("links_added=2"), "{}", stderr(&out));
    let employees = pg.psql(db, "SELECT id FROM vakt.employee ORDER BY id");
    assert_eq!(employees, "kari\nola", "the concurrent employee survives");
    assert_eq!(
        pg.psql(
            db,
            "SELECT team_id FROM vakt.employee_team WHERE employee_id = 'ola'"
        ),
        "regnskap"
    );
    assert_eq!(
        pg.psql(db, "SELECT count(*) FROM vakt.client_link"),
        "2",
        "the sync's links"
    );
    // Row changes, not a bulk load: the feed's epoch did not move (every
    // sidecar follows the changes instead of reading the world whole).
    assert_eq!(
        pg.psql(db, "SELECT reason FROM vakt.feed_epoch"),
        "bulk load (vakt db import)",
        "only the seeding import moved the epoch"
    );
    let epoch_before = pg.psql(db, "SELECT epoch FROM vakt.feed_epoch");
    // The stamp: when the read of Altinn began.
    let stamp: i64 = pg
        .psql(
            db,
            "SELECT (extract(epoch FROM synced_at) * 1000000)::bigint FROM vakt.sync_stamp",
        )
        .parse()
        .unwrap();
    let first_page = e.altinn.first_page_at().expect("Altinn was read");
    assert!(micros(before) <= stamp, "{} <= {stamp}", micros(before));
    assert!(
        stamp <= micros(first_page),
        "the stamp {stamp} is no later than the first page was served ({})",
        micros(first_page)
    );
    // A sync that changes nothing writes only the stamp (the team still names
    // both system users, kari and ola stay).
    let out = sync(&e, &["--database", &writer_url]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("links_added=0"), "{}", stderr(&out));
    assert_eq!(
        pg.psql(db, "SELECT epoch FROM vakt.feed_epoch"),
        epoch_before
    );
    assert_eq!(
        pg.psql(db, "SELECT id FROM vakt.employee ORDER BY id"),
        "kari\nola"
    );
    assert_eq!(
        pg.psql(
            db,
            "SELECT count(*) FROM vakt.team_system_user WHERE team_id = 'regnskap'"
        ),
        "2"
    );
}

/// Two syncs into one database run one after the other: each waits on the
/// sync's advisory lock before it reads, so the second reads what the first
/// committed (it finds nothing to add) and neither fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_syncs_into_postgresql_are_serialised() {
    let pg = std::sync::Arc::new(
        tokio::task::spawn_blocking(common::pg::Cluster::start)
            .await
            .unwrap(),
    );
    let db = "synctwice";
    let e = env(2).await;
    seeded_database(&pg, &e, db).await;
    let writer_url = pg.url_as(common::pg::WRITER, db);
    // Held here first, so both syncs are seen waiting on it.
    let holder = pg_client(&writer_url).await;
    holder
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&vakt::source::postgres::write::SYNC_LOCK_KEY],
        )
        .await
        .unwrap();
    let first = sync_in_background(&e.config, &["--database", &writer_url]);
    let second = sync_in_background(&e.config, &["--database", &writer_url]);
    waiting_on(&pg, db, "advisory", 2).await;
    assert_eq!(pg.psql(db, "SELECT count(*) FROM vakt.sync_stamp"), "0");
    holder
        .execute(
            "SELECT pg_advisory_unlock($1)",
            &[&vakt::source::postgres::write::SYNC_LOCK_KEY],
        )
        .await
        .unwrap();
    let mut added = Vec::new();
    for run in [first, second] {
        let out = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("the sync finished")
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let err = stderr(&out);
        added.push(
            ["links_added=2", "links_added=0"]
                .into_iter()
                .find(|w| err.contains(w))
                .unwrap_or_else(|| panic!("{err}")),
        );
    }
    added.sort();
    assert_eq!(
        added,
        ["links_added=0", "links_added=2"],
        "one added the links, the other found them"
    );
    assert_eq!(pg.psql(db, "SELECT count(*) FROM vakt.client_link"), "2");
    assert_eq!(pg.psql(db, "SELECT count(*) FROM vakt.sync_stamp"), "1");
}

/// Files: the manifest's stamp is the time the read of Altinn began, never the
/// time the files were written.
#[tokio::test]
async fn the_files_stamp_is_when_the_read_of_altinn_began() {
    let e = env(2).await;
    let before = std::time::SystemTime::now();
    let out = sync(&e, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest = std::fs::read_to_string(e.data.join("SHA256SUMS")).unwrap();
    let line = manifest
        .lines()
        .find_map(|l| l.strip_prefix("# synced_at "))
        .unwrap_or_else(|| panic!("{manifest}"));
    let stamp = humantime::parse_rfc3339(line.trim()).unwrap();
    let first_page = e.altinn.first_page_at().expect("Altinn was read");
    assert!(before <= stamp, "{line}");
    assert!(
        stamp <= first_page,
        "{line} is no later than the first page was served ({})",
        humantime::format_rfc3339_nanos(first_page)
    );
}

/// The TT02 configuration the README and docs/altinn-sync.md show is read by
/// the sync as it is (only the key file, Maskinporten and Altinn pointed at the
/// stand-ins), and `vakt config check` accepts the same file for `vakt serve`.
#[tokio::test]
async fn the_documented_configuration_is_accepted() {
    let e = env(1).await;
    let key = write_private(
        e.config.parent().unwrap(),
        "maskinporten.key",
        &key(1).pkcs8_pem,
    );
    for doc in [
        include_str!("../../README.md"),
        include_str!("../../docs/altinn-sync.md"),
    ] {
        let start = doc.find("```toml\n[maskinporten]").expect("the example");
        let example = &doc[start + "```toml\n".len()..];
        let example = &example[..example.find("```").unwrap()];
        assert!(example.contains("[altinn.sync]"), "{example}");
        assert!(example.contains("base_url = \"https://platform.tt02.altinn.no\""));
        let config = example
            .replace("/etc/vakt/maskinporten.key", key.to_str().unwrap())
            .replace("https://test.maskinporten.no/", &e.mp.issuer)
            .replace("https://platform.tt02.altinn.no", &e.altinn.base)
            .replace("310000000_regnskapsys", SYSTEM)
            .replace(
                "client_id = \"0f6a2b1c-3d4e-4f50-8a9b-0c1d2e3f4a5b\"",
                &format!("client_id = \"{CLIENT_ID}\""),
            )
            .replace("kid = \"vakt-2026-01\"", &format!("kid = \"{CLIENT_KID}\""));
        std::fs::write(&e.config, &config).unwrap();
        let check = common::vakt(&["config", "check", e.config.to_str().unwrap()]);
        assert_eq!(check.status.code(), Some(0), "{}\n{config}", stderr(&check));
        // Read as the sync reads it: Altinn is asked, and the client
        // administrator the example names is no system user of the stand-in's.
        let out = sync(&e, &["--dry-run"]).await;
        assert_eq!(out.status.code(), Some(1), "{}\n{config}", stderr(&out));
        assert!(
            stderr(&out).contains("5e3a7c1d-2b4f-4e6a-9c8d-7f1e0a2b3c4d"),
            "{}",
            stderr(&out)
        );
    }
}
