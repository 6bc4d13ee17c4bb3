//! Loading: bad data, schema and policies are refused with messages naming the
//! file and record, every problem at once; a security team's policy file changes
//! decisions without touching Rust; the binary refuses to start on bad input.

use crate::common;
use common::*;
use std::path::Path;
use std::process::Command;
use vakt::rules::snapshot::{Snapshot, SourcePaths, Sources};

fn build(
    policies: Option<&Path>,
    data: Option<&Path>,
) -> Result<Snapshot, vakt::problem::Problems> {
    let paths = SourcePaths {
        policies: policies.map(Path::to_path_buf),
        schema: None,
        data: data.map(Path::to_path_buf),
        ..Default::default()
    };
    Snapshot::build(&Sources::read(&paths)?)
}

fn messages(p: &vakt::problem::Problems) -> Vec<String> {
    p.0.iter().map(ToString::to_string).collect()
}

const ORGS: &str = r#"organizations:
  - orgNumber: "310001015"
    name: Tall og Kontroll AS
  - orgNumber: "310015156"
    name: Bakeri Brød AS
"#;

#[test]
fn bad_data_is_refused_naming_file_and_record_and_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orgs.yaml"), ORGS).unwrap();
    std::fs::write(
        dir.path().join("rest.json"),
        r#"{
  "systemUsers": [
    {"id": "su1", "reporteeOrgNo": "310001015", "userType": "agent", "isDeleted": false,
     "accessPackages": [{"urn": "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet"}],
     "clients": [{"clientOrganizationNumber": "310030309", "access": []}]},
    {"id": "su1", "reporteeOrgNo": "310001016", "userType": "robot"}
  ],
  "teams": [{"id": "t1", "organization": "310001015", "systemUsers": ["su1", "nope"], "clients": "some"}],
  "employees": [
    {"id": "kari", "organization": "310001015", "active": true, "teams": ["t1", "ghost-team"]},
    {"id": "ola", "organization": "310001015", "active": "yes", "teams": []},
    {"id": "kari", "organization": "310001015", "active": true, "teams": []}
  ]
}"#,
    )
    .unwrap();
    let err = build(None, Some(dir.path()))
        .err()
        .expect("bad data is refused");
    let all = messages(&err).join("\n");
    let expect = [
        // A link to an unknown organisation.
        r#"rest.json:3:12: systemUsers[0] ("su1"): clients[0].clientOrganizationNumber "310030309" is not a known organisation"#,
        // Duplicate id, mod-11 failure, bad enum.
        r#"rest.json:6:12: systemUsers[1] ("su1"): id "su1" is defined twice"#,
        r#"rest.json:6:12: systemUsers[1] ("su1"): reporteeOrgNo "310001016" fails the mod-11 check digit"#,
        r#"rest.json:6:12: systemUsers[1] ("su1"): userType "robot" must be "standard" or "agent""#,
        r#"rest.json:8:20: teams[0] ("t1"): systemUsers[1] "nope" is not a known system user"#,
        r#"rest.json:8:20: teams[0] ("t1"): clients "some" must be "all" or a list of org numbers"#,
        // An employee in an unknown team.
        r#"rest.json:10:12: employees[0] ("kari"): teams[1] "ghost-team" is not a known team"#,
        r#"rest.json:11:12: employees[1] ("ola"): active: invalid type: string "yes", expected a boolean"#,
        r#"rest.json:12:12: employees[2] ("kari"): id "kari" is defined twice"#,
    ];
    for e in expect {
        assert!(all.contains(e), "missing {e:?} in:\n{all}");
    }
}

#[test]
fn syntax_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.json"),
        "{\n  \"organizations\": [\n    {\"orgNumber\": }\n  ]\n}",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "organizations:\n  - orgNumber: \"310001015\"\n   name: [unclosed\n",
    )
    .unwrap();
    let err = build(None, Some(dir.path())).err().expect("refused");
    let all = messages(&err).join("\n");
    assert!(all.contains("a.json:3:19: not valid JSON"), "{all}");
    assert!(all.contains("b.yaml:3:"), "{all}");
}

#[test]
fn unit_of_a_unit_and_unknown_parent_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("orgs.yaml"),
        r#"organizations:
  - {orgNumber: "310001015", name: Parent}
  - {orgNumber: "310003034", name: Unit, parentOrgNumber: "310001015"}
  - {orgNumber: "310004049", name: Unit of unit, parentOrgNumber: "310003034"}
  - {orgNumber: "310005053", name: Orphan, parentOrgNumber: "310006068"}
"#,
    )
    .unwrap();
    let all = messages(&build(None, Some(dir.path())).err().unwrap()).join("\n");
    assert!(all.contains(r#"organizations[2] ("310004049"): parentOrgNumber "310003034" is itself an operational unit"#), "{all}");
    assert!(all.contains(r#"organizations[3] ("310005053"): parentOrgNumber "310006068" is not a known organisation"#), "{all}");
}

#[test]
fn policy_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in vakt::rules::embedded::POLICIES {
        let base = Path::new(name).file_name().unwrap();
        std::fs::write(dir.path().join(base), text).unwrap();
    }
    std::fs::write(
        dir.path().join("90-broken.cedar"),
        "@id(\"broken\")\nforbid (principal, action, resource)\nwhen { principal.shoeSize > 3 };\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("91-syntax.cedar"),
        "@id(\"syntax\")\npermit (principal, action resource);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("92-noid.cedar"),
        "forbid (principal, action, resource);\n",
    )
    .unwrap();
    let all = messages(&build(Some(dir.path()), None).err().expect("refused")).join("\n");
    assert!(
        all.contains("90-broken.cedar:3:8:") && all.contains("shoeSize"),
        "{all}"
    );
    assert!(all.contains("91-syntax.cedar:2:"), "{all}");
    assert!(
        all.contains("92-noid.cedar: policy 1 of the file: policy has no @id"),
        "{all}"
    );
}

#[tokio::test]
async fn a_new_policy_file_changes_decisions_without_touching_rust() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in vakt::rules::embedded::POLICIES {
        std::fs::write(dir.path().join(Path::new(name).file_name().unwrap()), text).unwrap();
    }
    std::fs::write(
        dir.path().join("20-require-mfa.cedar"),
        r#"@id("require-mfa")
@reason("employee {employee} must sign in with multi-factor authentication to use {system_user}")
forbid (principal, action, resource)
when { principal has kind && principal.kind == "person" }
unless { context has mfa && context.mfa };
"#,
    )
    .unwrap();
    let mut s = start(snapshot_from(Some(dir.path()), None, None)).await;
    let r = s.ask("kari", "tk-regnskap", "310015156", REGNSKAP).await;
    assert_deny(&r, &["require-mfa"]);
    assert_eq!(
        r.reasons[0].message,
        "employee kari must sign in with multi-factor authentication to use tk-regnskap"
    );
    // The batch job is no person.
    assert_allow(
        &s.ask("tk-amelding-batch", "tk-regnskap", "310015156", REGNSKAP)
            .await,
    );
}

#[test]
fn binary_refuses_to_start_on_bad_data() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("orgs.yaml"),
        "organizations:\n  - orgNumber: \"123456789\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(r#"orgs.yaml:2:16: organizations[0] ("123456789"): orgNumber "123456789" fails the mod-11 check digit"#), "{stderr}");
}

#[test]
fn validate_and_check_commands() {
    let vakt = env!("CARGO_BIN_EXE_vakt");
    let out = Command::new(vakt).arg("validate").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: 14 policies"));

    let out = Command::new(vakt)
        .args([
            "check",
            "--employee",
            "per",
            "--system-user",
            "tk-regnskap",
            "--client",
            "310020206",
            "--package",
            SYKEFRAVAER,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("DENY\n"), "{stdout}");
    for id in [
        "employee-deactivated",
        "package-not-held",
        "client-not-linked",
    ] {
        assert!(stdout.contains(id), "{stdout}");
    }
    let out = Command::new(vakt)
        .args(["validate", "--data", "/nonexistent/dir"])
        .output()
        .unwrap();
    // A directory that does not exist is a usage error.
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--data /nonexistent/dir: no such directory")
    );
}

#[tokio::test]
async fn altinn_shapes_are_accepted_as_altinn_writes_them() {
    // Bare package URNs as well as {"urn": ...} objects, enum values in any case,
    // and fields Vakt does not use.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("world.json"),
        r#"{
  "organizations": [{"orgNumber": "310001015", "name": "Firm", "unitType": "AS"},
                    {"orgNumber": "310015156", "name": "Client"}],
  "systemUsers": [{"id": "su", "reporteeOrgNo": "310001015", "userType": "Agent", "isDeleted": false,
                   "created": "2026-01-01T00:00:00Z", "partyId": 50001,
                   "accessPackages": ["urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet"],
                   "clients": [{"clientOrganizationNumber": "310015156", "status": "Active",
                                "access": [{"role": "urn:altinn:external-role:ccr:regnskapsforer",
                                            "packages": [{"urn": "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet"}]}]}]}],
  "teams": [{"id": "t", "organization": "310001015", "systemUsers": ["su"], "clients": "all"}],
  "employees": [{"id": "e", "organization": "310001015", "active": true, "teams": ["t"]}]
}"#,
    )
    .unwrap();
    let mut s = start(snapshot_from(None, None, Some(dir.path()))).await;
    assert_allow(&s.ask("e", "su", "310015156", REGNSKAP).await);
}

#[tokio::test]
async fn a_sub_entity_with_a_parent_in_the_entity_register_inherits_nothing() {
    // Entity Register data gives an ORGL a parent too; only BEDR/AAFY units inherit.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("world.yaml"),
        r#"organizations:
  - {orgNumber: "310008087", name: Oslo kommune, unitType: KOMM}
  - {orgNumber: "310010103", name: Utdanningsetaten, parentOrgNumber: "310008087", unitType: ORGL}
  - {orgNumber: "310009091", name: Rådhuset, parentOrgNumber: "310008087", unitType: BEDR}
systemUsers:
  - {id: ok-egen, reporteeOrgNo: "310008087", userType: standard, accessPackages: [{urn: urn:altinn:accesspackage:sykefravaer}]}
teams:
  - {id: lonn, organization: "310008087", systemUsers: [ok-egen], clients: all}
employees:
  - {id: ingrid, organization: "310008087", active: true, teams: [lonn]}
"#,
    )
    .unwrap();
    let mut s = start(snapshot_from(None, None, Some(dir.path()))).await;
    assert_allow(&s.ask("ingrid", "ok-egen", "310009091", SYKEFRAVAER).await);
    assert_deny(
        &s.ask("ingrid", "ok-egen", "310010103", SYKEFRAVAER).await,
        &["client-not-covered"],
    );
}

/// A key given twice could re-activate a deactivated employee (the last one would
/// win); it is an error naming the file, the line and the key, in JSON and YAML.
#[test]
fn a_key_given_twice_is_an_error_not_the_last_one_winning() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orgs.yaml"), ORGS).unwrap();
    std::fs::write(
        dir.path().join("people.json"),
        "{\n  \"employees\": [\n    {\"id\": \"per\", \"organization\": \"310001015\", \"active\": false,\n     \"teams\": [], \"active\": true}\n  ]\n}\n",
    )
    .unwrap();
    let err = build(None, Some(dir.path())).err().expect("refused");
    let all = messages(&err).join("\n");
    assert!(
        all.contains("people.json:3:12: employees[0] (\"per\"): duplicate field `active`"),
        "{all}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("orgs.yaml"),
        format!("{ORGS}employees:\n  - id: per\n    organization: \"310001015\"\n    active: false\n    active: true\n"),
    )
    .unwrap();
    let err = build(None, Some(dir.path())).err().expect("refused");
    let all = messages(&err).join("\n");
    assert!(
        all.contains(
            "orgs.yaml:7:5: not valid YAML: employees[0]: duplicate entry with key \"active\""
        ),
        "{all}"
    );

    // A section given twice in one file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.json"),
        "{\"organizations\": [], \"organizations\": []}",
    )
    .unwrap();
    let err = build(None, Some(dir.path())).err().expect("refused");
    assert!(
        (messages(&err).join("\n") + "\n")
            .contains("a.json:1:37: not a data file: duplicate key `organizations`\n"),
        "{err}"
    );
}

#[test]
fn a_file_over_the_size_limit_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orgs.yaml"), ORGS).unwrap();
    let paths = |max: u64| SourcePaths {
        data: Some(dir.path().to_path_buf()),
        max_file_bytes: max,
        ..Default::default()
    };
    let err = Sources::read(&paths(50)).expect_err("refused");
    assert!(
        messages(&err)[0].ends_with(&format!(
            "orgs.yaml: is {} bytes, more than the limit of 50 bytes (--max-file-bytes)",
            ORGS.len()
        )),
        "{err}"
    );
    assert!(Sources::read(&paths(ORGS.len() as u64)).is_ok());
    // A 4 GB sparse file under the default limit: refused from its size alone.
    let f = std::fs::File::create(dir.path().join("huge.json")).unwrap();
    f.set_len(4 << 30).unwrap();
    let err = Sources::read(&SourcePaths {
        data: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .expect_err("refused");
    assert!(
        messages(&err)[0].contains("huge.json: is 4294967296 bytes, more than the limit"),
        "{err}"
    );
}

#[test]
fn entries_that_are_not_regular_files_are_each_reported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("orgs.yaml"), ORGS).unwrap();
    std::os::unix::fs::symlink(d.join("missing.json"), d.join("dangling.json")).unwrap();
    std::os::unix::fs::symlink(d.join("loop-b.yaml"), d.join("loop-a.yaml")).unwrap();
    std::os::unix::fs::symlink(d.join("loop-a.yaml"), d.join("loop-b.yaml")).unwrap();
    std::fs::create_dir(d.join("folder.json")).unwrap();
    let fifo = std::ffi::CString::new(d.join("pipe.yml").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a valid, NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    // Kubernetes ConfigMap internals are not data.
    std::os::unix::fs::symlink(d.join("nowhere"), d.join("..data")).unwrap();
    let err = build(None, Some(d)).err().expect("refused");
    let all = messages(&err).join("\n");
    for (file, why) in [
        (
            "dangling.json",
            "is a symbolic link that leads nowhere readable",
        ),
        (
            "loop-a.yaml",
            "is a symbolic link that leads nowhere readable",
        ),
        (
            "loop-b.yaml",
            "is a symbolic link that leads nowhere readable",
        ),
        ("folder.json", "is a directory, not a regular file"),
        (
            "pipe.yml",
            "is a special file (FIFO, socket or device), not a regular file",
        ),
    ] {
        assert!(all.contains(&format!("{file}: {why}")), "{file}: {all}");
    }
    assert_eq!(err.0.len(), 5, "{all}");
}

/// The revision names the data, not where it sits: the built-in example world
/// and copies of it in two directories get one revision, from `vakt validate`
/// and from a running server alike. A server that reads only its policies from
/// files says its data is the built-in copy.
#[test]
fn the_same_data_gets_one_revision_wherever_it_is_read_from() {
    let revision_of = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_vakt"))
            .arg("validate")
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .rsplit_once("revision ")
            .map(|(_, r)| r.trim().to_owned())
            .unwrap_or_else(|| panic!("{stdout}"))
    };
    let top = tempfile::tempdir().unwrap();
    let here = top.path().join("w");
    let there = top.path().join("a/b/world");
    let policies = top.path().join("policies");
    for d in [&here, &there, &policies] {
        std::fs::create_dir_all(d).unwrap();
    }
    for (name, text) in vakt::rules::embedded::WORLD {
        let base = Path::new(name).file_name().unwrap();
        std::fs::write(here.join(base), text).unwrap();
        std::fs::write(there.join(base), text).unwrap();
    }
    for (name, text) in vakt::rules::embedded::POLICIES {
        std::fs::write(policies.join(Path::new(name).file_name().unwrap()), text).unwrap();
    }
    let built_in = revision_of(&[]);
    assert_eq!(revision_of(&["--data", here.to_str().unwrap()]), built_in);
    assert_eq!(revision_of(&["--data", there.to_str().unwrap()]), built_in);

    let status = |args: &[&str]| {
        let s = Spawned::start(args, false);
        let st = s.with_client(|mut c| async move {
            c.status(vakt::proto::StatusRequest {})
                .await
                .unwrap()
                .into_inner()
        });
        s.stop();
        (st.revision, st.data_source)
    };
    assert_eq!(
        status(&["--data", there.to_str().unwrap()]),
        (built_in.clone(), "files".to_owned())
    );
    assert_eq!(
        status(&["--policies", policies.to_str().unwrap()]),
        (built_in, "built-in".to_owned())
    );
}

/// Altinn's party ids, read as Altinn writes them (a JSON number; its digits as a
/// string too; in YAML alike), looked up on the world by id and by UUID, and
/// written back by export as numbers, giving the same world; from Register v2's
/// own shape as well. `gen-world` writes them for every organisation.
#[test]
fn party_ids_are_read_looked_up_and_exported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("orgs.json"),
        r#"{"organizations": [
  {"orgNumber": "310001015", "name": "Tall og Kontroll AS", "partyId": 51117759, "partyUuid": "4A06214D-B261-4695-B33A-0771A995B503"},
  {"orgNumber": "310015156", "name": "Bakeri Brød AS", "partyId": "51561401"}
]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("more.yaml"),
        "organizations:\n  - orgNumber: \"310017175\"\n    name: Uten id AS\n  - orgNumber: \"310019194\"\n    partyId: 51561412\n",
    )
    .unwrap();
    let snap = build(None, Some(dir.path())).unwrap();
    let w = &snap.world;
    let by_id = |id: i64| {
        w.organization_by_party_id(id)
            .map(|o| o.org_number.to_string())
    };
    assert_eq!(by_id(51117759).as_deref(), Some("310001015"));
    assert_eq!(by_id(51561401).as_deref(), Some("310015156"));
    assert_eq!(by_id(51561412).as_deref(), Some("310019194"));
    assert_eq!(by_id(51561413), None);
    assert_eq!(by_id(0), None);
    let u = uuid::Uuid::parse_str("4a06214d-b261-4695-b33a-0771a995b503").unwrap();
    let o = w.organization_by_party_uuid(u).unwrap();
    assert_eq!(
        (o.org_number.to_string(), o.party_id()),
        ("310001015".to_owned(), Some(51117759))
    );
    assert_eq!(
        w.organization(vakt::world::OrgNo::parse("310017175").unwrap())
            .unwrap()
            .party,
        None
    );

    // Exported as Altinn writes them, and read back as the same world.
    let out = tempfile::tempdir().unwrap();
    w.write_files(out.path()).unwrap();
    let orgs = std::fs::read_to_string(out.path().join("organizations.json")).unwrap();
    for want in [
        r#"{"orgNumber":"310001015","name":"Tall og Kontroll AS","partyId":51117759,"partyUuid":"4a06214d-b261-4695-b33a-0771a995b503"}"#,
        r#"{"orgNumber":"310015156","name":"Bakeri Brød AS","partyId":51561401}"#,
        r#"{"orgNumber":"310017175","name":"Uten id AS"}"#,
    ] {
        assert!(orgs.contains(want), "{want} in:\n{orgs}");
    }
    let again = build(None, Some(out.path())).unwrap();
    assert!(again.world == snap.world);

    // A bad one names the file, the line and the field; so does a JSON type
    // that is no party id at all.
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"organizations": [
  {"orgNumber": "310020206", "partyId": 1.5},
  {"orgNumber": "310021210", "partyId": true}
]}"#,
    )
    .unwrap();
    let all = messages(&build(None, Some(dir.path())).err().unwrap()).join("\n");
    for want in [
        r#"bad.json:2:17: organizations[0] ("310020206"): partyId 1.5 must be a whole number written in digits"#,
        r#"bad.json:3:17: organizations[1] ("310021210"): partyId: invalid type: boolean `true`, expected a party id"#,
    ] {
        assert!(all.contains(want), "{want} in:\n{all}");
    }

    // gen-world writes both for every organisation, each once.
    let gen = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args([
            "gen-world",
            "--out",
            gen.path().to_str().unwrap(),
            "--firms",
            "1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let g = build(None, Some(gen.path())).unwrap();
    let n = g.world.organizations().count();
    assert!(n > 600, "{n}");
    for o in g.world.organizations() {
        let id = o.party_id().expect("a party id");
        let u = o.party_uuid().expect("a party UUID");
        assert_eq!(
            g.world.organization_by_party_id(id).unwrap().org_number,
            o.org_number
        );
        assert_eq!(
            g.world.organization_by_party_uuid(u).unwrap().org_number,
            o.org_number
        );
    }
}
