//! Data files as Altinn and the Entity Register return them: the saved responses in
//! `examples/altinn-world/` load unchanged and decide every request exactly as the
//! hand-written example world does; the delegated-clients list (no roles, no
//! packages) denies rather than guess; bad input in each shape names file, line and
//! field.

use std::path::{Path, PathBuf};
use vakt::decision::{decide, Query, RawRequest};
use vakt::rules::snapshot::{Snapshot, SourcePaths, Sources};

const HAND: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/world");
const SAVED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/altinn-world");

fn load(dir: &Path) -> Result<Snapshot, String> {
    let src = Sources::read(&SourcePaths {
        data: Some(dir.to_path_buf()),
        ..Default::default()
    })
    .map_err(|p| p.to_string())?;
    Snapshot::build(&src).map_err(|p| p.to_string())
}

fn ask(snap: &Snapshot, e: &str, s: &str, c: &str, p: &str) -> (bool, Vec<String>) {
    let raw = RawRequest {
        employee_id: e.into(),
        system_user_id: s.into(),
        client_org_number: c.into(),
        access_package: p.into(),
        action: String::new(),
        context: None,
    };
    let d = decide(snap, &Query::check(snap, raw, "").unwrap());
    (
        d.allowed,
        d.reasons.into_iter().map(|r| r.policy_id).collect(),
    )
}

#[test]
fn saved_responses_decide_exactly_as_the_hand_written_world() {
    let hand = load(Path::new(HAND)).unwrap();
    let saved = load(Path::new(SAVED)).unwrap();
    // Altinn names system users by id (a UUID); the hand-written world by the
    // vendor's external ref, which both carry.
    let altinn_id = |name: &str| {
        saved
            .world
            .system_users()
            .find(|s| &*s.external_ref == name)
            .map(|s| s.id.to_string())
    };
    let orgs: Vec<String> = hand
        .world
        .organizations()
        .map(|o| o.org_number.to_string())
        .collect();
    assert_eq!(orgs.len(), saved.world.organizations().count());
    let packages = [
        "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet",
        "urn:altinn:accesspackage:sykefravaer",
        "urn:altinn:accesspackage:a-ordning",
        "urn:altinn:accesspackage:ansvarlig-revisor",
        "urn:altinn:accesspackage:forretningsforer-eiendom",
        "urn:altinn:accesspackage:skattegrunnlag",
        "urn:altinn:accesspackage:merverdiavgift",
    ];
    let (mut compared, mut allowed) = (0, 0);
    for e in hand.world.employees() {
        for s in hand.world.system_users() {
            let Some(id) = altinn_id(&s.external_ref) else {
                // tk-gammel: deleted, so no API lists it any more.
                assert!(s.is_deleted, "{} is missing from the saved responses", s.id);
                continue;
            };
            for c in &orgs {
                for p in packages {
                    let want = ask(&hand, &e.id, &s.id, c, p);
                    let got = ask(&saved, &e.id, &id, c, p);
                    assert_eq!(got, want, "{} via {} ({id}) for {c} with {p}", e.id, s.id);
                    compared += 1;
                    allowed += usize::from(want.0);
                }
            }
        }
    }
    assert!(
        compared > 10_000 && allowed > 20,
        "{compared} compared, {allowed} allowed"
    );
    // Register v2 names each party by id and UUID: both are read.
    let tall = saved.world.organization_by_party_id(51117759).unwrap();
    assert_eq!(tall.org_number.to_string(), "310001015");
    assert_eq!(
        tall.party_uuid().map(|u| u.to_string()).as_deref(),
        Some("4a06214d-b261-4695-b33a-0771a995b503")
    );
    let uuid = uuid::Uuid::parse_str("6d9f5b1e-3c8a-4f27-b4d0-a7e3c1f9b5d8").unwrap();
    assert_eq!(
        saved
            .world
            .organization_by_party_uuid(uuid)
            .map(|o| o.org_number.to_string())
            .as_deref(),
        Some("310025259")
    );
}

/// A copy of the saved responses with `name` replaced by `text` (or added).
fn variant(name: &str, text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(SAVED).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.path().join(name), text).unwrap();
    dir
}

fn saved(name: &str) -> String {
    std::fs::read_to_string(PathBuf::from(SAVED).join(name)).unwrap()
}

#[test]
fn a_delegated_clients_list_carries_no_packages_so_its_links_deny() {
    // tk-regnskap's clients as the authentication API lists them, in place of
    // access management's list.
    let dir = variant(
        "clients-tk-regnskap.json",
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/delegated-clients/delegated-clients-tk-regnskap.json"
        ))
        .unwrap(),
    );
    let snap = load(dir.path()).unwrap();
    let tk = "0b7f3a52-6d1e-4c8a-9f43-1a2b3c4d5e01";
    let regnskap = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet";
    // The link is there (the client is linked) but carries no package.
    assert_eq!(
        ask(&snap, "kari", tk, "310015156", regnskap),
        (false, vec!["package-not-delegated-for-client".to_owned()])
    );
    // Loading it says so, naming the file.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["validate", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warn = stderr
        .lines()
        .find(|l| l.contains("WARN") && l.contains("clients-tk-regnskap.json"))
        .unwrap_or_else(|| panic!("no WARN naming the file in:\n{stderr}"));
    assert!(warn.contains("carries no roles or packages"), "{warn}");
    // An operator may take the system user's own packages for such links: then
    // the request is allowed, and the decision says what it relied on.
    let check = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
            .args([
                "check",
                "--employee",
                "kari",
                "--system-user",
                tk,
                "--client",
                "310015156",
            ])
            .args(["--package", regnskap, "--data"])
            .arg(dir.path())
            .args(extra)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let assumed = check(&["--links-without-packages", "system-user-packages"]);
    assert!(assumed.starts_with("ALLOW\n"), "{assumed}");
    assert!(assumed.contains("vakt:link-packages-assumed:"), "{assumed}");
    let strict = check(&[]);
    assert!(
        strict.starts_with("DENY\n") && strict.contains("package-not-delegated-for-client"),
        "{strict}"
    );
    // With access management's list, the same request is allowed.
    let full = load(Path::new(SAVED)).unwrap();
    assert_eq!(
        ask(&full, "kari", tk, "310015156", regnskap),
        (true, vec!["use-system-user".to_owned()])
    );
}

#[test]
fn bad_input_in_each_shape_names_file_line_and_field() {
    let cases: Vec<(&str, String, &str)> = vec![
        // An Entity Register unit with a bad check digit.
        (
            "enhetsregisteret-310010103.json",
            saved("enhetsregisteret-310010103.json").replace("\"310010103\"", "\"310010104\""),
            "orgNumber \"310010104\" fails the mod-11 check digit",
        ),
        // A system user of the agents list without userType.
        (
            "systemusers-agents.json",
            saved("systemusers-agents.json").replacen("\"userType\": \"agent\",", "", 1),
            "userType: missing; Altinn's system-user API returns it",
        ),
        // A system user without accessPackages.
        (
            "systemusers-agents.json",
            saved("systemusers-agents.json").replacen("\"accessPackages\"", "\"accessPackagez\"", 1),
            "accessPackages: missing",
        ),
        // A client list for a system user no file defines.
        (
            "clients-tk-regnskap.json",
            saved("clients-tk-regnskap.json")
                .replace("0b7f3a52-6d1e-4c8a-9f43-1a2b3c4d5e01", "00000000-0000-0000-0000-000000000000"),
            "\"00000000-0000-0000-0000-000000000000\" is not a known system user",
        ),
        // A client whose role is neither a URN nor an object with one.
        (
            "clients-tk-sykefravaer.json",
            saved("clients-tk-sykefravaer.json").replacen("\"role\": {", "\"role\": 7, \"x\": {", 1),
            "clients[0].access[0].role: expected a role URN",
        ),
        // A key given twice: never "the last one wins".
        (
            "systemusers-agents.json",
            saved("systemusers-agents.json").replacen(
                "\"isDeleted\": false,",
                "\"isDeleted\": true, \"isDeleted\": false,",
                1,
            ),
            "duplicate member \"isDeleted\"",
        ),
        // A Register v2 party id that is not a whole number.
        (
            "register-v2-organizations.json",
            saved("register-v2-organizations.json").replacen("\"partyId\": 51117759", "\"partyId\": \"5111775x\"", 1),
            "partyId \"5111775x\" must be a whole number",
        ),
        // Two organisations of one party UUID.
        (
            "register-v2-organizations.json",
            saved("register-v2-organizations.json").replace(
                "2f9c4e7b-6d1a-4b83-a5c0-8e2f4d6b9c16",
                "4a06214d-b261-4695-b33a-0771a995b503",
            ),
            "partyUuid \"4a06214d-b261-4695-b33a-0771a995b503\" is given to two organisations, 310001015 and 310007072",
        ),
        // A truncated file.
        (
            "enhetsregisteret-enheter.json",
            saved("enhetsregisteret-enheter.json")[..400].to_owned(),
            "enhetsregisteret-enheter.json:",
        ),
        // A list that mixes organisations and system users.
        (
            "mixed.json",
            format!(
                "[{}, {{\"id\": \"x\", \"reporteeOrgNo\": \"310001015\", \"userType\": \"agent\", \"accessPackages\": []}}]",
                r#"{"organisasjonsnummer": "310001015", "navn": "Tall og Kontroll AS"}"#
            ),
            "[1]: a list mixes organisations and system users",
        ),
    ];
    for (file, text, want) in cases {
        let dir = variant(file, &text);
        let Err(err) = load(dir.path()) else {
            panic!("{file}: loaded, wanted {want:?}")
        };
        assert!(err.contains(want), "{file}: wanted {want:?} in:\n{err}");
        // Each problem names the file and a line.
        let line = err
            .lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("{file} not named in:\n{err}"));
        assert!(
            line.split(file)
                .nth(1)
                .is_some_and(|rest| rest.starts_with(':')),
            "{line}"
        );
    }
}

#[test]
fn every_problem_of_one_record_is_reported() {
    // A client with an unknown role shape and a bad package, and no org number.
    let text = saved("clients-tk-sykefravaer.json")
        .replacen(
            "\"organizationIdentifier\": \"310017175\"",
            "\"organizationIdentifier\": null",
            1,
        )
        .replacen("\"role\": {", "\"role\": 7, \"x\": {", 1);
    let dir = variant("clients-tk-sykefravaer.json", &text);
    let Err(err) = load(dir.path()) else {
        panic!("loaded")
    };
    assert!(
        err.contains("clients[0].clientOrganizationNumber: missing"),
        "{err}"
    );
    assert!(err.contains("clients[0].access[0].role"), "{err}");
}

#[test]
fn every_problem_of_a_compact_record_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("d.json"),
        r#"{"organizations": [{"orgNumber": "310001015", "name": "T"}],
 "systemUsers": [{"id": "su1", "reporteeOrgNo": "310001016", "userType": "robot", "isDeleted": "no", "accessPackages": ["urn:altinn:accesspackage:nope"]}]}"#,
    )
    .unwrap();
    let Err(err) = load(dir.path()) else {
        panic!("loaded")
    };
    for want in [
        "d.json:2:25: systemUsers[0] (\"su1\"): isDeleted: invalid type",
        "reporteeOrgNo \"310001016\" fails the mod-11 check digit",
        "userType \"robot\" must be",
        "\"urn:altinn:accesspackage:nope\" is not a known access package",
    ] {
        assert!(err.contains(want), "wanted {want:?} in:\n{err}");
    }
}
