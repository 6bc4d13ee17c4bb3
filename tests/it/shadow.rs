//! Shadow evaluation through the real binary: `vakt serve --shadow-policies DIR`
//! answers with the serving policies only, records each decision the candidate
//! set makes differently (`shadow_decision`, `shadow_reasons`) in a log that
//! still verifies, counts the flips in `/metrics`, and `vakt shadow report`
//! summarises them; a candidate set that does not load turns shadowing off,
//! logged, and changes no answer.

use crate::common;
use common::*;
use std::path::Path;
use vakt::proto::Decision;

const SKATT_NAERING: &str = "urn:altinn:accesspackage:skatt-naering";

/// A small world: trond's team (another firm's) grants nm-egen, so only the
/// tenant rule denies him; siri and sara may use it.
const WORLD: &str = r#"
organizations:
  - {orgNumber: "310001015", name: Tall og Kontroll AS}
  - {orgNumber: "310005053", name: Nordlys Maskin AS}
systemUsers:
  - id: nm-egen
    reporteeOrgNo: "310005053"
    userType: standard
    isDeleted: false
    accessPackages: [{urn: urn:altinn:accesspackage:skatt-naering}]
teams:
  - {id: tk-feil, organization: "310001015", name: Feil, systemUsers: [nm-egen], clients: all}
  - {id: nm-okonomi, organization: "310005053", name: Økonomi, systemUsers: [nm-egen], clients: ["310005053"]}
employees:
  - {id: trond, organization: "310001015", name: Trond, active: true, kind: person, teams: [tk-feil]}
  - {id: siri, organization: "310005053", name: Siri, active: true, kind: person, teams: [nm-okonomi]}
  - {id: sara, organization: "310005053", name: Sara, active: true, kind: person, teams: [nm-okonomi]}
"#;

/// The shipped policies without the tenant rule, and with one that forbids siri.
fn candidate(dir: &Path) {
    for (name, body) in vakt::rules::embedded::POLICIES {
        let file = Path::new(name).file_name().unwrap();
        if file != "03-tenant.cedar" {
            std::fs::write(dir.join(file), body).unwrap();
        }
    }
    std::fs::write(
        dir.join("90-siri.cedar"),
        "@id(\"not-siri\")\n@reason(\"siri is on leave\")\nforbid (principal, action, resource)\nwhen { principal == Vakt::Employee::\"siri\" };\n",
    )
    .unwrap();
}

/// The world, the candidate policies and the durable log, in a temporary directory.
struct Setup {
    dir: tempfile::TempDir,
    candidate: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let candidate = dir.path().join("candidate");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&candidate).unwrap();
        std::fs::write(data.join("world.yaml"), WORLD).unwrap();
        self::candidate(&candidate);
        let log = dir.path().join("decisions.jsonl");
        Self {
            dir,
            candidate,
            log,
        }
    }

    /// `vakt serve` on the world, shadowing the candidate, logging to the file.
    fn start(&self, extra: &[&str]) -> Spawned {
        let data = self.dir.path().join("data");
        let sink = format!("file:{}", self.log.display());
        let mut args = vec![
            "--data",
            data.to_str().unwrap(),
            "--shadow-policies",
            self.candidate.to_str().unwrap(),
            "--decision-log",
            &sink,
        ];
        args.extend(extra);
        Spawned::start(&args, false)
    }
}

fn decide_all(s: &Spawned) -> Vec<(String, i32)> {
    s.with_client(|mut c| async move {
        let mut out = Vec::new();
        for e in ["trond", "siri", "sara"] {
            let r = c
                .authorize(request(e, "nm-egen", "310005053", SKATT_NAERING))
                .await
                .unwrap()
                .into_inner();
            out.push((e.to_owned(), r.decision));
        }
        out
    })
}

fn records(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["call"] == "authorize")
        .collect()
}

fn served() -> Vec<(String, i32)> {
    vec![
        ("trond".into(), Decision::Deny as i32),
        ("siri".into(), Decision::Allow as i32),
        ("sara".into(), Decision::Allow as i32),
    ]
}

#[test]
fn shadow_decisions_are_recorded_counted_and_reported_never_answered() {
    let setup = Setup::new();
    let log = &setup.log;
    let s = setup.start(&["--metrics-listen", "127.0.0.1:0"]);
    assert!(
        s.diagnostics()
            .iter()
            .any(|l| l.contains("shadow evaluation on")),
        "{:?}",
        s.diagnostics()
    );
    // The answers are the serving policies' own.
    assert_eq!(decide_all(&s), served());
    let admin = admin_addr(&s);
    let (_, scrape) = get(&admin, "/metrics");
    assert_eq!(sample(&scrape, "vakt_shadow_decisions_total"), Some(3.0));
    for d in ["allow_to_deny", "deny_to_allow"] {
        assert_eq!(
            sample(
                &scrape,
                &format!("vakt_shadow_flips_total{{direction=\"{d}\"}}")
            ),
            Some(1.0),
            "{d}\n{scrape}"
        );
    }
    s.stop();

    let recs = records(log);
    assert_eq!(recs.len(), 3);
    let by = |e: &str| recs.iter().find(|r| r["employee_id"] == e).unwrap();
    assert_eq!(by("trond")["decision"], "deny");
    assert_eq!(by("trond")["shadow_decision"], "allow");
    assert_eq!(by("siri")["decision"], "allow");
    assert_eq!(by("siri")["shadow_decision"], "deny");
    assert_eq!(by("siri")["shadow_reasons"][0]["policy_id"], "not-siri");
    assert_eq!(
        by("siri")["shadow_reasons"][0]["message"],
        "siri is on leave"
    );
    // A decision the candidate agrees with carries no shadow fields.
    assert!(
        by("sara").get("shadow_decision").is_none(),
        "{}",
        by("sara")
    );

    // The log, shadow fields and all, verifies.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["audit", "verify", log.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    // The report: by direction and policy, with examples.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["shadow", "report", log.to_str().unwrap()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("3 Authorize decisions") && out.contains("1 the same"),
        "{out}"
    );
    assert!(
        out.contains("deny → allow, the shadow policies no longer forbid it by tenant-mismatch: 1"),
        "{out}"
    );
    assert!(
        out.contains("allow → deny, the shadow policies forbid it by not-siri: 1"),
        "{out}"
    );
    assert!(out.contains("employee trond, system user nm-egen"), "{out}");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args([
            "shadow",
            "report",
            "--fail-on",
            "deny-to-allow",
            "--format",
            "json",
            log.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json[0]["report"]["flips"].as_array().unwrap().len(), 2);
}

#[test]
fn a_candidate_that_does_not_load_turns_shadowing_off_and_changes_no_answer() {
    let setup = Setup::new();
    let (cand, log) = (&setup.candidate, &setup.log);
    std::fs::write(
        cand.join("99-broken.cedar"),
        "@id(\"broken\")\npermit (principal, action, resource) when { principal.nosuch };\n",
    )
    .unwrap();
    let s = setup.start(&[]);
    let error = s
        .diagnostics()
        .into_iter()
        .find(|l| l.contains("shadow evaluation is off"))
        .expect("an ERROR saying shadowing is off");
    assert!(
        error.contains("\"ERROR\"") && error.contains("99-broken.cedar"),
        "{error}"
    );
    assert_eq!(decide_all(&s), served());
    // Fixed and SIGHUP: shadowing comes on, still without changing an answer.
    std::fs::remove_file(cand.join("99-broken.cedar")).unwrap();
    signal(s.pid(), libc::SIGHUP);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !s
        .diagnostics()
        .iter()
        .any(|l| l.contains("shadow evaluation on"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no shadow after SIGHUP"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(decide_all(&s), served());
    s.stop();
    let recs = records(log);
    assert_eq!(recs.len(), 6);
    assert!(recs[..3].iter().all(|r| r.get("shadow_decision").is_none()));
    assert_eq!(
        recs[3..]
            .iter()
            .filter(|r| r.get("shadow_decision").is_some())
            .count(),
        2
    );
}
