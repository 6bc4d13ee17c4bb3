//! `vakt verify`: proves the properties file's claims about the policy set with
//! the cvc5 solver, or (`--against`) classifies a change to the policies.
//!
//! Exit codes: 0 every property holds (with `--against`: the change is
//! equivalent or stricter); 1 a property fails, or the change grants access
//! the old policies denied, or the policies are invalid; 2 usage error or a bad
//! properties file; 3 the solver is missing; 4 no answer (the solver gave up, or
//! a counterexample is not a world Vakt builds: an assumption is missing).

use super::args::{report_problems, Format};
use crate::rules::snapshot::{Rules, SourcePaths, Sources};
use crate::tools::verify::{self, Outcome, Properties, Solver, Witness};
use anyhow::Context as _;
use clap::Args;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The properties shipped with the policies.
const SHIPPED_PROPERTIES: (&str, &str) = (
    "policies/properties.toml",
    include_str!("../../policies/properties.toml"),
);

pub(super) const EXIT_SOLVER_MISSING: u8 = 3;
pub(super) const EXIT_NO_ANSWER: u8 = 4;

#[derive(Args)]
pub(super) struct VerifyArgs {
    /// Directory of *.cedar policy files [default: the built-in copy of policies/]
    #[arg(long, env = "VAKT_POLICIES", value_name = "DIR")]
    policies: Option<PathBuf>,
    /// Directory of *.cedarschema files and access-packages.json [default: the
    /// built-in copy of schema/]
    #[arg(long, env = "VAKT_SCHEMA", value_name = "DIR")]
    schema: Option<PathBuf>,
    /// The properties to prove (TOML) [default: the built-in
    /// policies/properties.toml]
    #[arg(long, value_name = "FILE")]
    properties: Option<PathBuf>,
    /// Compare with the policies in this directory instead: equivalent, stricter,
    /// more permissive, or both, with a counterexample for each kind of request
    /// that changes (the properties file's assumptions apply)
    #[arg(long, value_name = "OLD_POLICIES_DIR")]
    against: Option<PathBuf>,
    /// Write each counterexample's world and request into DIR/<property>/
    #[arg(long, value_name = "DIR")]
    counterexamples: Option<PathBuf>,
    /// Print each example's world (its data files), a proved can-allow
    /// property's allowed request too, and the `vakt check` command that shows the
    /// decision [default: a failure's request and decisions only]
    #[arg(long)]
    show_witnesses: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Pretty)]
    format: Format,
}

fn sources(policies: &Option<PathBuf>, schema: &Option<PathBuf>) -> Result<Sources, ExitCode> {
    Sources::read(&SourcePaths {
        policies: policies.clone(),
        schema: schema.clone(),
        data: None,
        data_manifest: None,
        max_file_bytes: crate::problem::DEFAULT_MAX_FILE_BYTES,
        link_packages: crate::rules::model::LinkPackages::None,
    })
    .map_err(|p| report_problems(&p))
}

pub(super) fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    for (flag, p) in [
        ("--policies", &args.policies),
        ("--schema", &args.schema),
        ("--against", &args.against),
    ] {
        if let Some(p) = p {
            if !p.is_dir() {
                anyhow::bail!("{flag} {}: no such directory", p.display());
            }
        }
    }
    let from = |p: &Option<PathBuf>, d: &str| {
        p.as_ref()
            .map_or(format!("built-in {d}"), |p| p.display().to_string())
    };
    eprintln!(
        "vakt: policies from {}, schema from {}, properties from {}",
        from(&args.policies, "policies/"),
        from(&args.schema, "schema/"),
        from(&args.properties, "policies/properties.toml"),
    );
    let src = match sources(&args.policies, &args.schema) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let rules = match Rules::build(&src) {
        Ok(r) => r,
        Err(p) => return Ok(report_problems(&p)),
    };
    let (name, text) = match &args.properties {
        None => (
            SHIPPED_PROPERTIES.0.to_owned(),
            SHIPPED_PROPERTIES.1.to_owned(),
        ),
        Some(p) => {
            let text = crate::problem::read_named(p, verify::MAX_PROPERTIES_BYTES as u64)
                .map_err(anyhow::Error::msg)?;
            (p.display().to_string(), text)
        }
    };
    let props = match Properties::parse(&name, &text, &rules.schema) {
        Ok(p) => p,
        Err(problems) => {
            eprintln!("vakt: {problems}");
            return Ok(ExitCode::from(2));
        }
    };
    let solver = match Solver::find() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vakt: {e}");
            return Ok(ExitCode::from(EXIT_SOLVER_MISSING));
        }
    };
    eprintln!("vakt: solver {}", solver.version());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let subject = verify::Subject {
        sources: &src,
        rules: &rules,
    };
    if let Some(old_dir) = &args.against {
        let old_src = match sources(&Some(old_dir.clone()), &args.schema) {
            Ok(s) => s,
            Err(code) => return Ok(code),
        };
        let old_rules = match Rules::build(&old_src) {
            Ok(r) => r,
            Err(p) => return Ok(report_problems(&p)),
        };
        let old = verify::Subject {
            sources: &old_src,
            rules: &old_rules,
        };
        let result = runtime.block_on(verify::compare(&subject, &old, &props, &solver));
        return match result {
            Err(e) => no_answer(e),
            Ok(c) => against(&args, &c),
        };
    }
    let verdicts = match runtime.block_on(verify::verify(&subject, &props, &solver)) {
        Ok(v) => v,
        Err(e) => return no_answer(e),
    };
    report(&args, &verdicts)
}

fn no_answer(e: verify::VerifyError) -> anyhow::Result<ExitCode> {
    eprintln!("vakt: {e}");
    Ok(ExitCode::from(match e {
        verify::VerifyError::SolverMissing { .. } | verify::VerifyError::SolverStart(_) => {
            EXIT_SOLVER_MISSING
        }
        verify::VerifyError::Unsupported(_) => EXIT_NO_ANSWER,
    }))
}

/// Writes a witness into `dir`: its data files in `dir/data/` (what `vakt check
/// --data` reads) and the request with both decisions in `dir/request.json`.
fn write_witness(dir: &Path, w: &Witness) -> anyhow::Result<()> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    for f in &w.files {
        let path = data.join(&f.name);
        super::report::write_report(&path, f.text.as_bytes())?;
    }
    let path = dir.join("request.json");
    let mut request = witness_json(w);
    request.as_object_mut().map(|m| m.remove("files"));
    super::report::write_report(
        &path,
        (serde_json::to_string_pretty(&request)? + "\n").as_bytes(),
    )?;
    Ok(())
}

fn witness_json(w: &Witness) -> serde_json::Value {
    json!({
        "employee": w.employee,
        "system_user": w.system_user,
        "client": w.client,
        "access_package": w.package,
        "action": w.action,
        "context": w.context,
        "vakt_decision": w.vakt_allows.map(|a| if a { "ALLOW" } else { "DENY" }),
        "cedar_decision": if w.cedar_allows { "ALLOW" } else { "DENY" },
        "not_buildable": w.not_buildable,
        "reasons": w.reasons.iter().map(|(p, m)| json!({"policy_id": p, "message": m})).collect::<Vec<_>>(),
        "files": w.files.iter().map(|f| json!({"name": f.name, "text": f.text})).collect::<Vec<_>>(),
    })
}

/// The shell command that shows the witness's decision, its data in `dir`.
fn check_command(
    w: &Witness,
    policies: &Option<PathBuf>,
    schema: &Option<PathBuf>,
    dir: &str,
) -> String {
    let mut parts = vec!["vakt".to_owned(), "check".to_owned()];
    if let Some(p) = policies {
        parts.extend(["--policies".into(), p.display().to_string()]);
    }
    if let Some(s) = schema {
        parts.extend(["--schema".into(), s.display().to_string()]);
    }
    parts.extend(["--data".into(), dir.to_owned()]);
    parts.extend(w.check_args());
    parts
        .iter()
        .map(|p| shell_quote(p))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Prints a witness: its world, the request, both decisions and the check command.
fn print_witness(
    args: &VerifyArgs,
    policies: &Option<PathBuf>,
    label: &str,
    w: &Witness,
) -> anyhow::Result<()> {
    let dir = match &args.counterexamples {
        Some(d) => {
            let dir = d.join(label);
            write_witness(&dir, w)?;
            dir.join("data").display().to_string()
        }
        None => "DIR".to_owned(),
    };
    // A world is a hundred lines or more of JSON: printed only when asked for.
    if args.show_witnesses {
        for f in &w.files {
            println!("    {dir}/{}:", f.name);
            for line in f.text.lines() {
                println!("      {line}");
            }
        }
    }
    let world_at_hand = args.show_witnesses || args.counterexamples.is_some();
    if args.counterexamples.is_some() {
        println!("    world written to {dir}/");
    } else if !world_at_hand {
        println!(
            "    world not shown: --show-witnesses prints it, --counterexamples DIR writes it"
        );
    }
    println!(
        "    request: employee {} uses system user {} for client {} with {}{}",
        w.employee,
        w.system_user,
        w.client,
        w.package,
        if w.context.is_empty() {
            String::new()
        } else {
            format!(", context {}", serde_json::Value::Object(w.context.clone()))
        }
    );
    match (w.vakt_allows, &w.not_buildable) {
        (_, Some(why)) => println!("    NOT A WORLD VAKT BUILDS: {why}"),
        (Some(a), None) => println!(
            "    vakt check says {} (as Cedar does on the solver's world)",
            if a { "ALLOW" } else { "DENY" }
        ),
        (None, None) => {}
    }
    for (p, m) in &w.reasons {
        println!("      {p}: {m}");
    }
    if world_at_hand {
        println!(
            "    reproduce: {}",
            check_command(w, policies, &args.schema, &dir)
        );
    }
    Ok(())
}

fn report(args: &VerifyArgs, verdicts: &[verify::Verdict]) -> anyhow::Result<ExitCode> {
    // A counterexample Vakt cannot build is no answer, not a failure.
    let unbuildable =
        |w: &Option<Box<Witness>>| w.as_ref().is_some_and(|w| w.not_buildable.is_some());
    let failed = verdicts
        .iter()
        .filter(|v| matches!(&v.outcome, Outcome::Fails(w) if !unbuildable(w)))
        .count();
    let no_answer = verdicts
        .iter()
        .filter(|v| match &v.outcome {
            Outcome::Unknown(_) => true,
            Outcome::Fails(w) | Outcome::Holds(w) => unbuildable(w),
        })
        .count();
    if matches!(args.format, Format::Json) {
        let items: Vec<_> = verdicts
            .iter()
            .map(|v| {
                let (result, w, why) = match &v.outcome {
                    Outcome::Holds(w) => ("holds", w.as_deref(), None),
                    Outcome::Fails(w) => ("fails", w.as_deref(), None),
                    Outcome::Unknown(why) => ("unknown", None, Some(why.clone())),
                };
                if let (Some(w), Some(d)) = (w, &args.counterexamples) {
                    let _ = write_witness(&d.join(&v.property.id), w);
                }
                json!({
                    "property": v.property.id,
                    "kind": v.property.kind.as_str(),
                    "rule": v.property.rule,
                    "result": result,
                    "why": why,
                    "milliseconds": v.elapsed.as_millis() as u64,
                    "example": w.map(witness_json),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"properties": items}))?
        );
    } else {
        for v in verdicts {
            let p = &v.property;
            let ms = v.elapsed.as_millis();
            let rule = p.rule.map(|r| format!(" (rule {r})")).unwrap_or_default();
            match &v.outcome {
                Outcome::Holds(w) => {
                    println!("PROVED  {}{rule} [{ms} ms]", p.id);
                    // The allowed request that shows a can-allow property holds,
                    // only on request: the report docs/policies.md shows is one line a property.
                    let asked = args.show_witnesses || args.counterexamples.is_some();
                    if let Some(w) = w.as_ref().filter(|_| asked) {
                        println!("    an allowed request:");
                        print_witness(args, &args.policies, &p.id, w)?;
                    }
                }
                Outcome::Fails(w) => {
                    println!("FAILED  {}{rule} [{ms} ms]: {}", p.id, p.description);
                    match w {
                        Some(w) => {
                            println!("    counterexample:");
                            print_witness(args, &args.policies, &p.id, w)?;
                        }
                        None if p.when.is_some() => {
                            println!("    no request where `when` holds is allowed")
                        }
                        None => println!("    no request at all is allowed"),
                    }
                }
                Outcome::Unknown(why) => println!("UNKNOWN {}{rule} [{ms} ms]: {why}", p.id),
            }
        }
        println!(
            "{} properties: {} proved, {} failed, {} without an answer",
            verdicts.len(),
            verdicts.len() - failed - no_answer,
            failed,
            no_answer
        );
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else if no_answer > 0 {
        ExitCode::from(EXIT_NO_ANSWER)
    } else {
        ExitCode::SUCCESS
    })
}

fn against(args: &VerifyArgs, c: &verify::Comparison) -> anyhow::Result<ExitCode> {
    if matches!(args.format, Format::Json) {
        let flips = |v: &[verify::Flip], dir: &str| -> Vec<serde_json::Value> {
            v.iter()
                .map(|f| {
                    if let Some(d) = &args.counterexamples {
                        let _ = write_witness(&d.join(dir).join(slug(&f.denied_by)), &f.witness);
                    }
                    json!({
                        "denied_by": f.denied_by,
                        "old_decision": f.old_allows.map(|a| if a { "ALLOW" } else { "DENY" }),
                        "example": witness_json(&f.witness),
                    })
                })
                .collect()
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "change": c.change.as_str(),
                "gained": flips(&c.gained, "gained"),
                "lost": flips(&c.lost, "lost"),
            }))?
        );
    } else {
        println!("change: {}", c.change.as_str());
        let old = args.against.as_ref().map(|d| d.display().to_string());
        for (title, flips, dir) in [
            (
                "allowed now; the old policies denied it by",
                &c.gained,
                "gained",
            ),
            (
                "allowed before; the new policies deny it by",
                &c.lost,
                "lost",
            ),
        ] {
            for f in flips {
                println!("{title} {}:", f.denied_by);
                print_witness(
                    args,
                    &args.policies,
                    &format!("{dir}/{}", slug(&f.denied_by)),
                    &f.witness,
                )?;
                if let Some(a) = f.old_allows {
                    println!(
                        "    with the old policies ({}): {}",
                        old.as_deref().unwrap_or(""),
                        if a { "ALLOW" } else { "DENY" }
                    );
                }
            }
        }
    }
    let unbuildable = c
        .gained
        .iter()
        .chain(&c.lost)
        .any(|f| f.witness.not_buildable.is_some());
    Ok(if !c.gained.is_empty() {
        ExitCode::from(1)
    } else if unbuildable {
        ExitCode::from(EXIT_NO_ANSWER)
    } else {
        ExitCode::SUCCESS
    })
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
