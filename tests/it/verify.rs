//! `vakt verify` as a security team runs it, with the real cvc5 solver: the
//! shipped properties hold for the shipped policies; taking out each rule's
//! policy file breaks that rule's properties, and every counterexample is a world
//! that `vakt check` loads and allows while the shipped policies deny it;
//! `--against` classifies changes; a missing solver and a bad properties file get
//! their own exit codes.

use std::path::Path;
use std::process::{Command, Output};

fn vakt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The tests need the solver; say what to install rather than skip.
fn require_cvc5() {
    let found = std::env::var_os("CVC5").is_some()
        || std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .any(|d| d.join("cvc5").is_file());
    assert!(
        found,
        "the cvc5 SMT solver is needed: install it (Debian: apt-get install cvc5) or set CVC5"
    );
}

/// The shipped policies, without the files named.
fn policies_without(skip: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in vakt::rules::embedded::POLICIES {
        let file = Path::new(name).file_name().unwrap();
        if !skip.iter().any(|s| file.to_str().unwrap().starts_with(s)) {
            std::fs::write(dir.path().join(file), body).unwrap();
        }
    }
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `vakt verify --format json`: (exit code, the properties by id with their result).
fn verify_json(extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut args = vec!["verify", "--format", "json"];
    args.extend(extra);
    let out = vakt(&args);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap(), json, text(&out.stderr))
}

fn results(json: &serde_json::Value) -> Vec<(String, String)> {
    json["properties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["property"].as_str().unwrap().to_owned(),
                p["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Runs `vakt check` on a witness written by `--counterexamples`.
fn check_witness(policies: Option<&Path>, dir: &Path) -> (i32, String) {
    let policies: Vec<&str> = policies.map_or(vec![], |p| vec!["--policies", s(p)]);
    check_witness_with(&policies, dir)
}

/// Runs `vakt check ARGS` on a witness written by `--counterexamples`.
fn check_witness_with(sources: &[&str], dir: &Path) -> (i32, String) {
    let req: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("request.json")).unwrap()).unwrap();
    let data = dir.join("data");
    let mut args: Vec<String> = vec!["check".into()];
    args.extend(sources.iter().map(|a| a.to_string()));
    args.extend(["--data".into(), s(&data).into()]);
    for (flag, key) in [
        ("--employee", "employee"),
        ("--system-user", "system_user"),
        ("--client", "client"),
        ("--package", "access_package"),
    ] {
        args.extend([flag.into(), req[key].as_str().unwrap().to_owned()]);
    }
    if req["context"].as_object().is_some_and(|c| !c.is_empty()) {
        args.extend(["--context".into(), req["context"].to_string()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = vakt(&refs);
    (out.status.code().unwrap(), text(&out.stdout))
}

#[test]
fn the_shipped_properties_hold_for_the_shipped_policies() {
    require_cvc5();
    let (code, json, stderr) = verify_json(&[]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    let r = results(&json);
    assert!(r.len() >= 14, "{r:?}");
    assert!(r.iter().all(|(_, res)| res == "holds"), "{r:?}");
    for want in [
        "no-cross-tenant-allow",
        "no-allow-for-an-inactive-employee",
        "no-allow-through-a-deleted-system-user",
        "no-allow-for-a-package-the-system-user-lacks",
        "no-allow-for-a-client-a-standard-system-user-does-not-cover",
        "no-allow-for-a-client-an-agent-is-not-linked-to",
        "an-auditor-never-acts-through-a-non-auditor-link",
        "no-policy-raises-an-error",
        "not-deny-everything",
    ] {
        assert!(r.iter().any(|(id, _)| id == want), "{want} missing: {r:?}");
    }
    // The can-allow example is a world where Vakt allows.
    let example = &json["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["property"] == "not-deny-everything")
        .unwrap()["example"];
    assert_eq!(example["vakt_decision"], "ALLOW", "{example:#}");
    // The text report says so too.
    let out = vakt(&["verify"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("PROVED  no-cross-tenant-allow (rule 3)"),
        "{stdout}"
    );
    assert!(stdout.contains("properties:"), "{stdout}");
}

/// Each rule file taken out: the properties of that rule fail, and each
/// counterexample is a world `vakt check` allows under the weakened policies and
/// the shipped policies deny.
#[test]
fn each_missing_rule_gives_counterexamples_that_vakt_check_reproduces() {
    require_cvc5();
    let cases: [(&str, &[&str]); 8] = [
        (
            "01-employee",
            &[
                "no-allow-for-an-inactive-employee",
                "no-allow-for-an-unauthenticated-employee",
            ],
        ),
        (
            "02-system-user",
            &["no-allow-through-a-deleted-system-user"],
        ),
        ("03-tenant", &["no-cross-tenant-allow"]),
        (
            "04-team",
            &[
                "no-allow-without-a-team-grant",
                // Without a grant, no granting team's portfolio is asked about.
                "no-allow-outside-the-granting-teams-portfolio",
            ],
        ),
        (
            "05-package",
            &[
                "no-allow-for-a-package-the-system-user-lacks",
                "no-allow-for-a-package-not-delegated-for-the-client",
            ],
        ),
        (
            "06-client-coverage",
            &[
                "no-allow-for-a-client-a-standard-system-user-does-not-cover",
                "no-allow-for-a-client-an-agent-is-not-linked-to",
            ],
        ),
        (
            "07-portfolio",
            &["no-allow-outside-the-granting-teams-portfolio"],
        ),
        (
            "08-separation-of-duties",
            &["an-auditor-never-acts-through-a-non-auditor-link"],
        ),
    ];
    for (file, must_fail) in cases {
        let weak = policies_without(&[file]);
        let out = tempfile::tempdir().unwrap();
        let (code, json, stderr) = verify_json(&[
            "--policies",
            s(weak.path()),
            "--counterexamples",
            s(out.path()),
        ]);
        assert_eq!(code, 1, "without {file}: {json:#}\n{stderr}");
        let r = results(&json);
        for id in must_fail {
            assert!(
                r.iter().any(|(p, res)| p == id && res == "fails"),
                "without {file}, {id} should fail: {r:?}"
            );
            let dir = out.path().join(id);
            let (code, stdout) = check_witness(Some(weak.path()), &dir);
            assert_eq!(
                (code, stdout.lines().next()),
                (0, Some("ALLOW")),
                "{file}/{id}"
            );
            let (code, stdout) = check_witness(None, &dir);
            assert_eq!(
                (code, stdout.lines().next()),
                (1, Some("DENY")),
                "the shipped policies deny {file}/{id}"
            );
        }
        // The other rules still hold.
        assert!(
            r.iter()
                .filter(|(p, _)| !must_fail.contains(&p.as_str()))
                .all(|(_, res)| res == "holds"),
            "without {file}: {r:?}"
        );
    }
}

#[test]
fn an_error_a_policy_can_raise_is_found_and_replays() {
    require_cvc5();
    let schema = tempfile::tempdir().unwrap();
    std::fs::write(
        schema.path().join("vakt.cedarschema"),
        vakt::rules::embedded::SCHEMA[0]
            .1
            .replace("    mfa?: Bool,", "    mfa?: Bool,\n    retries?: Long,"),
    )
    .unwrap();
    std::fs::write(
        schema.path().join("access-packages.json"),
        vakt::rules::embedded::PACKAGES.1,
    )
    .unwrap();
    let policies = policies_without(&[]);
    std::fs::write(
        policies.path().join("99-retries.cedar"),
        "@id(\"too-many-retries\")\nforbid (principal, action, resource)\nwhen { context has retries && context.retries + 1 > 5 };\n",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, json, stderr) = verify_json(&[
        "--policies",
        s(policies.path()),
        "--schema",
        s(schema.path()),
        "--counterexamples",
        s(out.path()),
    ]);
    assert_eq!(code, 1, "{json:#}\n{stderr}");
    assert!(results(&json).contains(&("no-policy-raises-an-error".into(), "fails".into())));
    let dir = out.path().join("no-policy-raises-an-error");
    let req: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("request.json")).unwrap()).unwrap();
    assert_eq!(req["context"]["retries"], i64::MAX, "{req:#}");
    let (_, stdout) = check_witness_with(
        &[
            "--policies",
            s(policies.path()),
            "--schema",
            s(schema.path()),
        ],
        &dir,
    );
    assert!(
        stdout.contains("too-many-retries: policy too-many-retries could not be evaluated"),
        "{stdout}"
    );
}

#[test]
fn against_classifies_a_change_and_gives_a_world_for_each_kind_that_gains() {
    require_cvc5();
    let shipped = policies_without(&[]);
    let weak = policies_without(&["03-tenant", "02-system-user"]);
    // The same policies: equivalent, exit 0.
    let o = vakt(&[
        "verify",
        "--policies",
        s(shipped.path()),
        "--against",
        s(shipped.path()),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).starts_with("change: equivalent"));
    // Dropping two rules: more permissive, one shape per dropped rule, exit 1.
    let out = tempfile::tempdir().unwrap();
    let o = vakt(&[
        "verify",
        "--format",
        "json",
        "--policies",
        s(weak.path()),
        "--against",
        s(shipped.path()),
        "--counterexamples",
        s(out.path()),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["change"], "more permissive", "{json:#}");
    let gained: Vec<&str> = json["gained"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["denied_by"].as_str().unwrap())
        .collect();
    for rule in ["tenant-mismatch", "system-user-deleted"] {
        assert!(gained.contains(&rule), "{gained:?}");
        let dir = out.path().join("gained").join(rule);
        assert_eq!(check_witness(Some(weak.path()), &dir).0, 0, "{rule}");
        assert_eq!(check_witness(Some(shipped.path()), &dir).0, 1, "{rule}");
    }
    for f in json["gained"].as_array().unwrap() {
        assert_eq!(f["old_decision"], "DENY", "{f:#}");
        assert_eq!(f["example"]["vakt_decision"], "ALLOW", "{f:#}");
    }
    // The other way round: stricter, exit 0.
    let o = vakt(&[
        "verify",
        "--policies",
        s(shipped.path()),
        "--against",
        s(weak.path()),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.starts_with("change: stricter"), "{stdout}");
    assert!(
        stdout.contains("the new policies deny it by tenant-mismatch"),
        "{stdout}"
    );
    // A new permit for what was denied by no permit at all, plus a new rule: both.
    let both = policies_without(&["03-tenant"]);
    std::fs::write(
        both.path().join("09-no-automation.cedar"),
        "@id(\"no-automation\")\nforbid (principal, action, resource)\nwhen { principal.kind == \"automation\" };\n",
    )
    .unwrap();
    let o = vakt(&[
        "verify",
        "--policies",
        s(both.path()),
        "--against",
        s(shipped.path()),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stdout).starts_with("change: both stricter and more permissive"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn a_missing_solver_is_its_own_exit_code_never_a_pass() {
    let o = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .arg("verify")
        .env("PATH", "/nonexistent")
        .env_remove("CVC5")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let err = text(&o.stderr);
    assert!(err.contains("apt-get install cvc5"), "{err}");
    assert!(o.stdout.is_empty());
    let o = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .arg("verify")
        .env("CVC5", "/nonexistent/cvc5")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o.stderr).contains("CVC5=/nonexistent/cvc5"));
}

#[test]
fn a_bad_properties_file_names_the_file_the_line_and_the_property() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("props.toml");
    std::fs::write(
        &file,
        "[[property]]\nid = \"x\"\nkind = \"never-allows\"\nwhen = \"true\"\nwehn = \"typo\"\n",
    )
    .unwrap();
    let o = vakt(&["verify", "--properties", s(&file)]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("props.toml:5:1") && err.contains("wehn"),
        "{err}"
    );
    std::fs::write(
        &file,
        "[[property]]\nid = \"typo\"\nkind = \"never-allows\"\nwhen = \"principal.departmnet == 1\"\n\n[[property]]\nid = \"typo\"\nkind = \"sometimes\"\n",
    )
    .unwrap();
    let o = vakt(&["verify", "--properties", s(&file)]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("props.toml") && err.contains("sometimes"),
        "{err}"
    );
    std::fs::write(
        &file,
        "[[property]]\nid = \"typo\"\nkind = \"never-allows\"\nwhen = \"principal.departmnet == 1\"\n",
    )
    .unwrap();
    let o = vakt(&["verify", "--properties", s(&file)]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("property \"typo\"") && err.contains("departmnet"),
        "{err}"
    );
}

#[test]
fn a_deny_everything_set_fails_can_allow_and_says_so() {
    require_cvc5();
    let none = policies_without(&["00-use-system-user"]);
    let (code, json, stderr) = verify_json(&["--policies", s(none.path())]);
    assert_eq!(code, 1, "{json:#}\n{stderr}");
    let r = results(&json);
    for (id, res) in &r {
        let want = if id == "not-deny-everything" || id == "an-agent-can-act-for-a-linked-client" {
            "fails"
        } else {
            "holds"
        };
        assert_eq!(res, want, "{id}: {r:?}");
    }
    let out = vakt(&["verify", "--policies", s(none.path())]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("FAILED  not-deny-everything")
            && stdout.contains("no request at all is allowed"),
        "{stdout}"
    );
}

/// Timings vary: `[57 ms]` read as `[N ms]`.
fn without_ms(line: &str) -> String {
    match (line.rfind(" ["), line.ends_with(" ms]")) {
        (Some(at), true) => format!("{} [N ms]", &line[..at]),
        _ => line.to_owned(),
    }
}

/// `vakt verify` prints what docs/policies.md shows, one line a property and the
/// count; the worlds of its examples only with `--show-witnesses`. A failure
/// still names its counterexample's request and decisions.
#[test]
fn the_default_report_is_the_one_the_readme_shows_and_worlds_come_on_request() {
    require_cvc5();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/policies.md")).unwrap();
    let start = readme
        .find("```text\nPROVED  ")
        .expect("docs/policies.md shows `vakt verify`'s report")
        + "```text\n".len();
    let shown: Vec<String> = readme[start..start + readme[start..].find("```").unwrap()]
        .lines()
        .map(without_ms)
        .collect();
    let out = vakt(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed: Vec<String> = text(&out.stdout).lines().map(without_ms).collect();
    // The document's first lines, its elision, then its last line.
    assert_eq!(shown[2], "...");
    assert_eq!(printed[..2], shown[..2], "{printed:#?}");
    assert_eq!(printed.last(), shown.last(), "{printed:#?}");
    // Nothing else: one PROVED line a property.
    let (_, json, _) = verify_json(&[]);
    let properties = results(&json).len();
    assert_eq!(printed.len(), properties + 1, "{printed:#?}");
    assert!(
        printed[..properties]
            .iter()
            .all(|l| l.starts_with("PROVED  ") && l.ends_with(" [N ms]")),
        "{printed:#?}"
    );

    // Asked for: the can-allow properties' allowed requests, with their worlds.
    let out = vakt(&["verify", "--show-witnesses"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("    an allowed request:"), "{stdout}");
    assert!(stdout.contains("    DIR/world.json:"), "{stdout}");
    assert!(stdout.contains("\"organizations\""), "{stdout}");
    assert!(
        stdout.contains("    reproduce: vakt check --data DIR "),
        "{stdout}"
    );
    assert!(stdout.lines().count() > properties + 50, "{stdout}");

    // A failure: its request and decisions, the world only on request.
    let weak = policies_without(&["03-tenant"]);
    let out = vakt(&["verify", "--policies", s(weak.path())]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("FAILED  no-cross-tenant-allow (rule 3)")
            && stdout.contains("    counterexample:")
            && stdout.contains("    request: employee ")
            && stdout.contains(
                "    world not shown: --show-witnesses prints it, --counterexamples DIR writes it"
            ),
        "{stdout}"
    );
    assert!(
        !stdout.contains("DIR/world.json") && !stdout.contains("\"organizations\""),
        "{stdout}"
    );
    let out = vakt(&["verify", "--show-witnesses", "--policies", s(weak.path())]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("    DIR/world.json:") && stdout.contains("    reproduce: vakt check "),
        "{stdout}"
    );
}
