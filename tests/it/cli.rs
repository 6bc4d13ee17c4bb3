//! The security-team commands as a user runs them: validate, test, fmt, replay,
//! including bad input, with their documented exit codes (0 ok, 1 invalid or
//! failing, 2 usage error or unreadable input).

use crate::common;
use common::vakt;
use std::path::Path;
use std::process::{Command, Output};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A copy of the shipped policies in a temporary directory.
fn policies_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in vakt::rules::embedded::POLICIES {
        std::fs::write(dir.path().join(Path::new(name).file_name().unwrap()), body).unwrap();
    }
    dir
}

fn p(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

#[test]
fn validate_reports_every_policy_problem_with_position() {
    let dir = policies_copy();
    std::fs::write(dir.path().join("50-typo.cedar"), "@id(\"typo\")\nforbid (principal, action, resource)\nwhen { principal.departmnet == \"x\" };\n").unwrap();
    std::fs::write(
        dir.path().join("51-syntax.cedar"),
        "@id(\"syntax\")\npermit (principal action, resource);\n",
    )
    .unwrap();
    let out = vakt(&["validate", "--policies", p(dir.path())]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("50-typo.cedar:3:8:") && err.contains("departmnet"),
        "{err}"
    );
    assert!(err.contains("51-syntax.cedar:2:"), "{err}");
    assert!(err.contains("2 problem(s) found"), "{err}");

    let out = vakt(&["validate", "--policies", "/no/such/dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--policies /no/such/dir: no such directory"));
    assert_eq!(vakt(&["validate", "--bogus"]).status.code(), Some(2));
}

#[test]
fn test_runs_the_shipped_suites_with_full_coverage_and_junit() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let out = vakt(&[
        "test",
        "--policies",
        "policies",
        "--coverage",
        "--min-coverage",
        "100",
        "--junit",
        junit.to_str().unwrap(),
        "policies/tests",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("100.0% of policies decided at least one case"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("passed, 0 failed"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.starts_with("<?xml")
            && xml.contains("<testsuite name=\"Rules 1 to 8")
            && xml.contains("failures=\"0\""),
        "{xml}"
    );

    let out = vakt(&[
        "test",
        "--policies",
        "policies",
        "--format",
        "json",
        "policies/tests/cross_tenant_test.yaml",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["cases"].as_array().unwrap().len(), 2);
    assert_eq!(json["cases"][0]["passed"], true);
}

#[test]
fn test_reports_failures_bad_suites_and_low_coverage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("wrong_test.yaml"),
        r#"name: wrong expectations
world: ../../does-not-matter
cases: []
"#,
    )
    .unwrap();
    // A case expecting the wrong thing, on an inline world.
    std::fs::write(
        d.join("expect_test.yaml"),
        r#"name: expectations
world:
  organizations: [{orgNumber: "310001015", name: Firm}]
  systemUsers:
    - {id: su, reporteeOrgNo: "310001015", userType: standard, accessPackages: [{urn: urn:altinn:accesspackage:skatt-naering}]}
  teams: [{id: t, organization: "310001015", systemUsers: [su], clients: all}]
  employees: [{id: e, organization: "310001015", active: true, teams: [t]}]
cases:
  - {name: allowed really, employee: e, systemUser: su, client: "310001015", package: "urn:altinn:accesspackage:skatt-naering", expect: deny}
  - {name: right, employee: e, systemUser: su, client: "310001015", package: "urn:altinn:accesspackage:skatt-naering", expect: allow, reasons: [use-system-user]}
  - {name: malformed client, employee: e, systemUser: su, client: "123", package: "urn:altinn:accesspackage:skatt-naering", expect: deny}
"#,
    )
    .unwrap();
    // A world that is not consistent: an employee in an unknown team.
    std::fs::write(
        d.join("world_test.yaml"),
        r#"name: broken world
world:
  organizations: [{orgNumber: "310001015", name: Firm}]
  employees: [{id: e, organization: "310001015", active: true, teams: [nope]}]
cases: []
"#,
    )
    .unwrap();
    std::fs::write(d.join("notyaml_test.yaml"), "cases: [unclosed\n  - {").unwrap();
    let out = vakt(&["test", p(d)]);
    assert_eq!(out.status.code(), Some(1));
    let s = text(&out.stdout);
    assert!(
        s.contains("FAIL  allowed really")
            && s.contains("expected Deny, got Allow [use-system-user]"),
        "{s}"
    );
    assert!(s.contains("ok    right"), "{s}");
    assert!(
        s.contains("FAIL  malformed client") && s.contains("client_org_number:"),
        "{s}"
    );
    assert!(
        s.contains("world_test.yaml: world: the world is not consistent")
            && s.contains("teams[0] \"nope\" is not a known team"),
        "{s}"
    );
    assert!(
        s.contains("notyaml_test.yaml:") && s.contains("not valid YAML"),
        "{s}"
    );
    assert!(
        s.contains("wrong_test.yaml: world: the world cannot be read")
            && s.contains("cannot read directory"),
        "{s}"
    );

    // Coverage: one case cannot decide 13 policies.
    std::fs::remove_file(d.join("world_test.yaml")).unwrap();
    std::fs::remove_file(d.join("notyaml_test.yaml")).unwrap();
    std::fs::remove_file(d.join("wrong_test.yaml")).unwrap();
    let only_right = std::fs::read_to_string(d.join("expect_test.yaml"))
        .unwrap()
        .lines()
        .filter(|l| !l.contains("allowed really") && !l.contains("malformed"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(d.join("expect_test.yaml"), only_right).unwrap();
    let out = vakt(&["test", "--min-coverage", "50", p(d)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("below the minimum of 50%"));
    assert_eq!(
        vakt(&["test", "--min-coverage", "5", p(d)]).status.code(),
        Some(0)
    );

    assert_eq!(vakt(&["test", "/no/such/dir"]).status.code(), Some(2));
}

#[test]
fn fmt_checks_and_rewrites_policy_files() {
    let dir = policies_copy();
    let out = vakt(&["fmt", "--check", p(dir.path())]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "shipped policies are formatted: {}",
        text(&out.stdout)
    );
    assert_eq!(
        text(&out.stdout).trim(),
        format!(
            "{} policy files already formatted",
            vakt::rules::embedded::POLICIES.len()
        )
    );
    let ugly = dir.path().join("60-ugly.cedar");
    std::fs::write(&ugly, "@id(\"ugly\")\nforbid(principal,action,resource) when {principal has active&&!principal.active};\n").unwrap();
    let out = vakt(&["fmt", "--check", p(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("would reformat {}", ugly.display())
    );
    assert!(
        std::fs::read_to_string(&ugly)
            .unwrap()
            .contains("forbid(principal,action"),
        "--check must not write"
    );
    assert_eq!(vakt(&["fmt", p(dir.path())]).status.code(), Some(0));
    assert_eq!(
        vakt(&["fmt", "--check", p(dir.path())]).status.code(),
        Some(0)
    );
    std::fs::write(dir.path().join("61-broken.cedar"), "permit (principal,").unwrap();
    let out = vakt(&["fmt", "--check", p(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("61-broken.cedar"));
    assert_eq!(vakt(&["fmt", "/no/such/dir"]).status.code(), Some(2));
    // With no path, fmt looks for ./policies only, and says where it looked.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = in_dir(elsewhere.path(), &["fmt"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: no such directory",
            elsewhere.path().join("policies").display()
        )),
        "{err}"
    );
}

/// Runs `vakt ARGS` with `dir` as the working directory.
fn in_dir(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vakt"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn reading_commands_work_from_any_directory_on_the_built_in_copy() {
    let elsewhere = tempfile::tempdir().unwrap();
    let d = elsewhere.path();
    let out = in_dir(d, &["test"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).trim_end().ends_with("passed, 0 failed"));
    let err = text(&out.stderr);
    assert!(
        err.contains("suites from the built-in copy of policies/tests/")
            && err.contains("policies from built-in policies/"),
        "{err}"
    );
    let out = in_dir(d, &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("data from built-in example world"));
    let out = in_dir(
        d,
        &[
            "check",
            "--employee",
            "kari",
            "--system-user",
            "tk-regnskap",
            "--client",
            "310015156",
            "--package",
            common::REGNSKAP,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("ALLOW"));
    let log = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/decisions.jsonl");
    let out = in_dir(
        d,
        &["replay", "--log", log.to_str().unwrap(), "--fail-on", "any"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

/// Runs the real server, makes decisions, stops it, and returns its decision log.
fn record_decisions() -> String {
    let server = common::Spawned::start(&[], true);
    server.with_client(|mut c| async move {
        for (e, s, client, pkg) in [
            ("kari", "tk-regnskap", "310015156", common::REGNSKAP), // allow
            ("ola", "tk-regnskap", "310015156", common::REGNSKAP),  // allow, portfolio holds
            ("ola", "tk-regnskap", "310017175", common::REGNSKAP),  // deny: portfolio
            ("nina", "tk-regnskap", "310017175", common::REGNSKAP), // deny: portfolio
            ("per", "tk-regnskap", "310015156", common::REGNSKAP),  // deny: deactivated
        ] {
            c.authorize(common::request(e, s, client, pkg))
                .await
                .unwrap();
        }
    });
    server.stop()
}

#[test]
fn replay_reports_flips_grouped_by_policy() {
    let log = record_decisions();
    assert_eq!(log.lines().count(), 5, "{log}");
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("decisions.jsonl");
    std::fs::write(&log_path, &log).unwrap();
    let lp = log_path.to_str().unwrap();

    // The same policies: nothing flips.
    let out = vakt(&["replay", "--log", lp, "--fail-on", "any"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("replayed 5 decisions")
            && text(&out.stdout).contains("5 unchanged")
    );

    // A candidate without the portfolio rule lets two denies through.
    let cand = policies_copy();
    std::fs::remove_file(cand.path().join("07-portfolio.cedar")).unwrap();
    let out = vakt(&["replay", "--log", lp, "--policies", p(cand.path())]);
    assert_eq!(out.status.code(), Some(0));
    let s = text(&out.stdout);
    assert!(s.contains("0 allow→deny, 2 deny→allow"), "{s}");
    assert!(
        s.contains("deny → allow, no longer forbidden by client-outside-portfolio: 2"),
        "{s}"
    );
    assert!(
        s.contains("employee ola, system user tk-regnskap, client 310017175"),
        "{s}"
    );
    assert_eq!(
        vakt(&[
            "replay",
            "--log",
            lp,
            "--policies",
            p(cand.path()),
            "--fail-on",
            "deny-to-allow"
        ])
        .status
        .code(),
        Some(1)
    );

    // A candidate that also forbids kari turns an allow into a deny.
    std::fs::write(cand.path().join("70-no-kari.cedar"), "@id(\"no-kari\")\n@reason(\"kari is on leave\")\nforbid (principal == Vakt::Employee::\"kari\", action, resource);\n").unwrap();
    let out = vakt(&[
        "replay",
        "--log",
        lp,
        "--policies",
        p(cand.path()),
        "--fail-on",
        "deny-to-allow",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let flips = json["flips"].as_array().unwrap();
    assert_eq!(flips.len(), 3);
    assert!(flips
        .iter()
        .any(|f| f["direction"] == "allow-to-deny" && f["responsible"][0] == "no-kari"));
    assert_eq!(
        vakt(&[
            "replay",
            "--log",
            lp,
            "--policies",
            p(cand.path()),
            "--fail-on",
            "any"
        ])
        .status
        .code(),
        Some(1)
    );

    // Lines that are not Authorize decisions are named, each with why.
    let resolve =
        r#"{"seq":9,"decision_id":"r1","call":"resolve_system_user","employee_id":"kari"}"#;
    let note = r#"{"seq":10,"event":"decision_records_dropped","dropped":2}"#;
    std::fs::write(&log_path, format!("{log}{resolve}\n")).unwrap();
    let s = text(&vakt(&["replay", "--log", lp]).stdout);
    assert!(s.contains("(1 line skipped)"), "{s}");
    assert!(
        s.contains("skipped line 6: a ResolveSystemUser record"),
        "{s}"
    );
    std::fs::write(&log_path, format!("{log}{resolve}\n{note}\n")).unwrap();
    let s = text(&vakt(&["replay", "--log", lp]).stdout);
    assert!(s.contains("(2 lines skipped)"), "{s}");
    assert!(
        s.contains("skipped line 7: a log note (decision_records_dropped)"),
        "{s}"
    );

    // A line that is not JSON is reported with its number; nothing else is lost.
    std::fs::write(&log_path, format!("{log}this is not json\n")).unwrap();
    let out = vakt(&["replay", "--log", lp]);
    assert_eq!(out.status.code(), Some(2));
    let s = text(&out.stdout);
    assert!(
        s.contains("decisions.jsonl:6:2: not valid JSON") && s.contains("replayed 5 decisions"),
        "{s}"
    );

    assert_eq!(
        vakt(&["replay", "--log", "/no/such/file.jsonl"])
            .status
            .code(),
        Some(2)
    );
}

/// A database URL that can't be used is refused without echoing it: it may hold a
/// password.
#[test]
fn a_bad_database_url_is_refused_without_showing_its_password() {
    let url = "postgres://vakt:s3cret-pw@localhost/authz?sslmode=bogus";
    for args in [
        vec!["validate", "--data", url],
        vec!["serve", "--data", url],
        vec!["db", "migrate", "--database", url],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("not a usable database URL"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("sslmode"), "{args:?}: {stderr}");
        assert!(!stderr.contains("s3cret-pw"), "{args:?}: {stderr}");
    }
}

/// `vakt --version` names the version, the commit it was built from and the
/// build date: "vakt 0.1.0 (commit 0123456789ab, built 2026-12-07)".
#[test]
fn version_names_the_commit_and_the_build_date() {
    let out = vakt(&["--version"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = text(&out.stdout);
    let rest = line
        .trim_end()
        .strip_prefix(&format!("vakt {} (commit ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("no version and commit in {line:?}"));
    let (commit, rest) = rest.split_once(", built ").expect(&line);
    let date = rest.strip_suffix(')').expect(&line);
    // A commit of this repository (a debug build may name an earlier one than
    // HEAD: see build.rs), or "unknown" outside a git checkout.
    let root = env!("CARGO_MANIFEST_DIR");
    let in_git = Path::new(root).join(".git").exists();
    if in_git {
        assert!(
            commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
            "{line:?}"
        );
        let known = Command::new("git")
            .args([
                "-C",
                root,
                "cat-file",
                "-e",
                &format!("{commit}^{{commit}}"),
            ])
            .status()
            .unwrap();
        assert!(known.success(), "{commit} is not a commit here: {line:?}");
    } else {
        assert_eq!(commit, "unknown", "{line:?}");
    }
    let parts: Vec<u32> = date.split('-').map(|p| p.parse().unwrap()).collect();
    assert!(
        date.len() == 10 && parts.len() == 3 && parts[0] >= 2024 && (1..=12).contains(&parts[1]),
        "{line:?}"
    );
    let today = Command::new("date")
        .args(["-u", "+%F"])
        .output()
        .map(|o| text(&o.stdout).trim().to_owned())
        .unwrap();
    assert!(date <= today.as_str(), "built in the future: {line:?}");
}

/// `vakt fmt` on a file that does not parse says what is wrong, by file, line and
/// column, as `vakt validate` does (not only "cannot parse input policies").
#[test]
fn fmt_reports_parse_problems_as_validate_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.cedar"),
        "permit(principal, action, resource)\nwhen { principal.x == };\n",
    )
    .unwrap();
    let validate = vakt(&["validate", "--policies", p(dir.path())]);
    assert_eq!(validate.status.code(), Some(1));
    let problems: Vec<String> = text(&validate.stderr)
        .lines()
        .filter(|l| l.contains("a.cedar:"))
        .map(str::to_owned)
        .collect();
    assert!(!problems.is_empty(), "{}", text(&validate.stderr));
    let fmt = vakt(&["fmt", "--check", p(dir.path())]);
    assert_eq!(fmt.status.code(), Some(1));
    let said = text(&fmt.stderr);
    for problem in &problems {
        assert!(
            said.contains(problem.as_str()),
            "fmt: {said}\nvalidate: {problem}"
        );
    }
    assert!(!said.contains("cannot parse input policies"), "{said}");
}
