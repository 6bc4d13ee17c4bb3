//! `vakt review` through the real binary: effective access equals what Authorize
//! allows for every employee × system user × client × package of the
//! organisation; conflicts, deactivated employees and unusable clients are found;
//! usage comes from a decision log written by a real `vakt serve` and verified
//! first (a tampered log writes no review); CSV has the documented columns; the
//! HTML opens in headless Chromium with its rows and summary and no console
//! messages, and a screenshot is kept in `target/test-artifacts/`.

use crate::common;
use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use vakt::decision::{decide, Query, RawRequest};

fn review_json(args: &[&str], dir: &Path) -> serde_json::Value {
    let out = dir.join("review.json");
    let mut all = vec!["review", "--format", "json", "--out", out.to_str().unwrap()];
    all.extend_from_slice(args);
    let o = vakt(&all);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

fn strs(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn effective_access_is_what_authorize_allows_and_conflicts_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let snap = default_snapshot();
    let packages: Vec<String> = snap
        .world
        .system_users()
        .flat_map(|s| s.access_packages.iter().map(|p| p.to_string()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rows_seen = 0;
    for org in ["310001015", "310003034", "310004049"] {
        let r = review_json(&["--org", org], dir.path());
        assert_eq!(r["format"], "vakt-access-review/1");
        assert_eq!(r["organization"]["org_number"], org);
        let got: BTreeSet<(String, String, String, String)> = r["access"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["employee_id"].as_str().unwrap().to_owned(),
                    a["system_user_id"].as_str().unwrap().to_owned(),
                    a["client_org_number"].as_str().unwrap().to_owned(),
                    a["access_package"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let mut want = BTreeSet::new();
        for e in snap
            .world
            .employees()
            .filter(|e| e.organization.to_string() == org)
        {
            for su in snap.world.system_users() {
                for c in snap.world.organizations() {
                    for p in &packages {
                        let raw = RawRequest {
                            employee_id: e.id.to_string(),
                            system_user_id: su.id.to_string(),
                            client_org_number: c.org_number.to_string(),
                            access_package: p.clone(),
                            ..Default::default()
                        };
                        if decide(&snap, &Query::check(&snap, raw, "").unwrap()).allowed {
                            want.insert((
                                e.id.to_string(),
                                su.id.to_string(),
                                c.org_number.to_string(),
                                p.clone(),
                            ));
                        }
                    }
                }
            }
        }
        assert_eq!(got, want, "effective access of {org}");
        rows_seen += got.len();
        assert_eq!(r["summary"]["access"], got.len());
        assert!(r["log"].is_null());
    }
    assert!(rows_seen > 20);
    // Randi audits Fjordfisk and holds an accountant path to it too: a conflict,
    // though rule 8 denies her the accountant path.
    let r = review_json(&["--org", "310003034"], dir.path());
    let c = &r["conflicts"][0];
    assert_eq!(c["employee_id"], "randi");
    assert_eq!(c["client_org_number"], "310021210");
    assert_eq!(strs(&c["auditor_system_users"]), ["rr-revisjon"]);
    assert_eq!(strs(&c["other_system_users"]), ["rr-regnskap"]);
    assert_eq!(r["conflicts"].as_array().unwrap().len(), 1, "{r}");
    // Magnus holds only the accountant path: no conflict, though he is in the
    // same accountant team.
    let r = review_json(&["--org", "310001015"], dir.path());
    assert_eq!(r["deactivated_in_teams"][0]["employee_id"], "per");
    assert_eq!(r["conflicts"].as_array().unwrap().len(), 0);
    let u = &r["unusable_clients"][0];
    assert_eq!(
        (u["system_user_id"].as_str(), u["why"].as_str()),
        (Some("tk-gammel"), Some("the system user is deleted"))
    );
}

/// A log from a real sidecar: Kari used tk-regnskap through tk-regnskap-team.
fn write_log(dir: &Path) -> PathBuf {
    let log = dir.join("decisions.jsonl");
    let sink = format!("file:{}", log.display());
    let s = Spawned::start(&["--decision-log", &sink], false);
    s.with_client(|mut c| async move {
        let a = c
            .authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
            .await
            .unwrap()
            .into_inner();
        assert_allow(&a);
        // A deny uses nothing.
        let d = c
            .authorize(request("ola", "tk-sykefravaer", "310017175", SYKEFRAVAER))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(d.decision(), vakt::proto::Decision::Deny);
    });
    s.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["path"]["teams"][0], "tk-regnskap-team", "{first}");
    assert_eq!(
        first["path"]["link_client_org_number"], "310015156",
        "{first}"
    );
    log
}

#[test]
fn unused_grants_come_from_a_verified_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path());
    let logs = log.to_str().unwrap();
    let r = review_json(&["--org", "310001015", "--log", logs], dir.path());
    assert_eq!(r["log"]["verified"], true);
    assert_eq!(r["log"]["allows"], 1);
    let unused_sus: Vec<&str> = r["unused_system_users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["system_user_id"].as_str().unwrap())
        .collect();
    assert!(!unused_sus.contains(&"tk-regnskap"), "{unused_sus:?}");
    assert!(unused_sus.contains(&"tk-sykefravaer"), "{unused_sus:?}");
    let grants: Vec<(&str, &str)> = r["unused_team_grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["team_id"].as_str().unwrap(),
                u["system_user_id"].as_str().unwrap(),
            )
        })
        .collect();
    // The grant Kari used is not listed; the same system user granted to another
    // team, unused there, is.
    assert!(
        !grants.contains(&("tk-regnskap-team", "tk-regnskap")),
        "{grants:?}"
    );
    assert!(grants.contains(&("tk-nord", "tk-regnskap")), "{grants:?}");
    // Since a time after the log, nothing was used; each keeps when it last was.
    let r = review_json(
        &["--org", "310001015", "--log", logs, "--since", "2999-01-01"],
        dir.path(),
    );
    let regnskap = r["unused_system_users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["system_user_id"] == "tk-regnskap")
        .unwrap();
    assert!(
        regnskap["last_used"].as_str().unwrap().starts_with("20"),
        "{regnskap}"
    );
    assert_eq!(r["since"], "2999-01-01T00:00:00Z");
    // A tampered log writes no review.
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replacen("\"kari\"", "\"ola\"", 1)).unwrap();
    let out = dir.path().join("tampered.json");
    let o = vakt(&[
        "review",
        "--org",
        "310001015",
        "--log",
        logs,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("BROKEN"),
        "{o:?}"
    );
    assert!(!out.exists());
}

#[test]
fn csv_has_the_documented_columns_and_bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("review.csv");
    let o = vakt(&[
        "review",
        "--org",
        "310003034",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{o:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.split("\r\n");
    assert_eq!(
        lines.next().unwrap(),
        vakt::tools::review::CSV_COLUMNS.join(",")
    );
    let rows: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    assert!(
        rows.iter().any(|r| r.starts_with("access,magnus,")),
        "{text}"
    );
    assert!(
        rows.iter().any(|r| r.starts_with("conflict,randi,")),
        "{text}"
    );
    for (args, names) in [
        (vec!["--org", "123"], "--org"),
        (
            vec!["--org", "310003034", "--since", "yesterday", "--log", "x"],
            "--since",
        ),
        (vec!["--org", "310999903"], "not in the world"),
    ] {
        let mut all = vec!["review", "--out", out.to_str().unwrap()];
        all.extend(args.iter());
        let o = vakt(&all);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(names), "{args:?}: {err}");
    }
    let o = vakt(&[
        "review",
        "--org",
        "310003034",
        "--out",
        dir.path().join("r.txt").to_str().unwrap(),
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--format"),
        "{o:?}"
    );
}

/// Debian's `chromium`, or a failure naming what to install.
fn chromium() -> &'static str {
    for c in ["chromium", "chromium-browser"] {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c;
        }
    }
    panic!("headless Chromium is needed for this test: apt-get install chromium (scripts/test installs it)");
}

#[test]
fn the_html_review_renders_in_headless_chromium() {
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path());
    let html = dir.path().join("review.html");
    let o = vakt(&[
        "review",
        "--org",
        "310001015",
        "--log",
        log.to_str().unwrap(),
        "--out",
        html.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{o:?}");
    let r = review_json(
        &["--org", "310001015", "--log", log.to_str().unwrap()],
        dir.path(),
    );
    let text = std::fs::read_to_string(&html).unwrap();
    for external in ["http://", "https://", "src=\"//", "@import"] {
        assert!(!text.contains(external), "the report loads {external}");
    }
    let url = format!("file://{}", html.display());
    let run = |extra: &[&str]| {
        let o = Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let console: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
            .collect();
        assert!(console.is_empty(), "console messages: {console:#?}");
        (o, err)
    };
    let (dom, _) = run(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let rows = dom.matches("<tr class=\"row\"").count();
    let s = &r["summary"];
    let want = [
        "access",
        "conflicts",
        "deactivated_in_teams",
        "unused_system_users",
        "unused_team_grants",
        "unusable_clients",
    ]
    .iter()
    .map(|k| s[k].as_u64().unwrap())
    .sum::<u64>();
    assert_eq!(rows as u64, want, "rows rendered");
    assert!(want > 20);
    assert_eq!(
        dom.matches("class=\"summary-item").count(),
        7,
        "summary cards"
    );
    assert!(dom.contains("Tall og Kontroll AS"));
    assert!(dom.contains("Kari Nordmann"));
    // A package by its name, with its URN under it.
    assert!(
        dom.contains("Regnskapsfører med signeringsrettighet")
            && dom.contains("urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet"),
        "package names"
    );
    let artefacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let shot = artefacts.join("access-review.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    run(&[&arg, "--window-size=1280,1600"]);
    let png = std::fs::read(&shot).expect("a screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}

/// `--out` through a symlink replaces the link and leaves what it pointed at
/// alone; a dangling link does not create its target.
#[test]
fn the_review_is_written_without_following_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let out = dir.path().join("review.csv");
    std::os::unix::fs::symlink(&victim, &out).unwrap();
    let dangling = dir.path().join("dangling.csv");
    let target = dir.path().join("made-by-the-link");
    std::os::unix::fs::symlink(&target, &dangling).unwrap();
    for path in [&out, &dangling] {
        let o = vakt(&[
            "review",
            "--org",
            "310003034",
            "--out",
            path.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{o:?}");
        assert!(!std::fs::symlink_metadata(path).unwrap().is_symlink());
        assert!(std::fs::read_to_string(path).unwrap().contains("magnus"));
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!target.exists());
}

/// Each access row names its package as the package list does, beside the URN,
/// in JSON and CSV.
#[test]
fn packages_are_named_from_the_package_list_beside_their_urns() {
    let list: serde_json::Value = serde_json::from_str(vakt::rules::embedded::PACKAGES.1).unwrap();
    let name_of = |urn: &str| -> String {
        list["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["urn"] == urn)
            .and_then(|p| p["name"].as_str())
            .unwrap_or_else(|| panic!("{urn} has no name in the list"))
            .to_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    let r = review_json(&["--org", "310001015"], dir.path());
    let access = r["access"].as_array().unwrap();
    assert!(access.len() > 5, "{r}");
    for a in access {
        let urn = a["access_package"].as_str().unwrap();
        assert!(urn.starts_with("urn:altinn:accesspackage:"), "{a}");
        assert_eq!(a["package_name"], name_of(urn).as_str(), "{a}");
    }
    assert!(access
        .iter()
        .any(|a| a["package_name"] == "Regnskapsfører med signeringsrettighet"));

    let out = dir.path().join("review.csv");
    let o = vakt(&[
        "review",
        "--org",
        "310001015",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{o:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.split("\r\n");
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |col: &str| header.iter().position(|h| *h == col).unwrap();
    assert_eq!(at("package_name"), at("access_package") + 1, "{header:?}");
    let mut named = 0;
    for line in lines.filter(|l| l.starts_with("access,")) {
        let cells = csv_cells(line);
        assert_eq!(cells.len(), header.len(), "{line}");
        assert_eq!(
            cells[at("package_name")],
            name_of(&cells[at("access_package")]),
            "{line}"
        );
        named += 1;
    }
    assert_eq!(named, access.len());
}

/// The cells of one RFC 4180 line.
fn csv_cells(line: &str) -> Vec<String> {
    let (mut cells, mut cell, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(std::mem::take(&mut cell)),
            _ => cell.push(c),
        }
    }
    cells.push(cell);
    cells
}
