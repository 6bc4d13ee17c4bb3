//! `vakt replay`: re-decide logged requests under a candidate policy set and report
//! every decision that would flip, grouped by the policies responsible; and
//! `vakt shadow report`: the same report from the decisions a candidate set made
//! beside the serving one (`--shadow-policies`), as recorded in the log.

use crate::decision::{decide, Query, RawRequest};
use crate::problem::Problem;
use crate::rules::snapshot::Snapshot;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The fields of a decision record that replay needs; others are ignored.
#[derive(Debug, Deserialize)]
struct LoggedDecision {
    #[serde(default)]
    decision_id: String,
    employee_id: String,
    system_user_id: String,
    client_org_number: String,
    access_package: String,
    #[serde(default)]
    action: String,
    decision: String,
    #[serde(default)]
    reasons: Vec<LoggedReason>,
    #[serde(default)]
    context: Option<serde_json::Map<String, serde_json::Value>>,
    /// Under `--shadow-policies`, the candidate's decision when it differed.
    #[serde(default)]
    shadow_decision: Option<String>,
    #[serde(default)]
    shadow_reasons: Vec<LoggedReason>,
}

#[derive(Debug, Deserialize)]
struct LoggedReason {
    policy_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    AllowToDeny,
    DenyToAllow,
}

/// One decision that would change.
#[derive(Debug, Clone, Serialize)]
pub struct Flip {
    pub line: usize,
    pub decision_id: String,
    pub employee_id: String,
    pub system_user_id: String,
    pub client_org_number: String,
    pub access_package: String,
    pub direction: Direction,
    /// Deny to allow: the policies that forbade it and no longer do. Allow to deny:
    /// the policies that now forbid it.
    pub responsible: Vec<String>,
}

/// Flips that share a direction and the policies responsible.
pub type FlipGroup<'a> = ((Direction, Vec<String>), Vec<&'a Flip>);

/// What replay found.
#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    pub replayed: usize,
    pub unchanged: usize,
    /// How many lines are not authorize decisions (resolve records, log notes).
    pub skipped: usize,
    /// Each skipped line and why.
    pub skipped_lines: Vec<Skipped>,
    pub flips: Vec<Flip>,
    /// Lines that could not be read or replayed, with the reason.
    pub problems: Vec<Problem>,
}

/// A line replay did not re-decide, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub line: usize,
    pub reason: String,
}

/// How far a change may go before `--fail-on` fails the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Fail when any logged deny would now be allowed.
    DenyToAllow,
    /// Fail on any flip.
    Any,
}

impl ReplayReport {
    pub fn count(&self, d: Direction) -> usize {
        self.flips.iter().filter(|f| f.direction == d).count()
    }

    pub fn fails(&self, on: Option<FailOn>) -> bool {
        match on {
            None => false,
            Some(FailOn::Any) => !self.flips.is_empty(),
            Some(FailOn::DenyToAllow) => self.count(Direction::DenyToAllow) > 0,
        }
    }

    /// Flips grouped by direction and responsible policies, largest group first.
    pub fn groups(&self) -> Vec<FlipGroup<'_>> {
        let mut g: BTreeMap<(Direction, Vec<String>), Vec<&Flip>> = BTreeMap::new();
        for f in &self.flips {
            g.entry((f.direction, f.responsible.clone()))
                .or_default()
                .push(f);
        }
        let mut v: Vec<_> = g.into_iter().collect();
        v.sort_by(|a, b| a.0 .0.cmp(&b.0 .0).then(b.1.len().cmp(&a.1.len())));
        v
    }
}

/// Problems in line order, as the lines were read.
fn by_line(problems: &mut [Problem]) {
    problems.sort_by_key(|p| {
        p.at.split(':')
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0)
    });
}

/// The decision records of a log, with their line numbers. A line that is not
/// JSON or not a decision record is a problem in `r`; one `skip` gives a reason
/// for is counted as skipped.
fn records(
    file: &str,
    text: &str,
    r: &mut ReplayReport,
    skip: impl Fn(&serde_json::Value) -> Option<String>,
) -> Vec<(usize, LoggedDecision)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = match crate::json::parse(line.as_bytes()) {
            Ok(v) => v,
            Err(e) => {
                r.problems.push(Problem::new(
                    file,
                    format!("{n}:{}", e.column()),
                    format!("not valid JSON: {e}"),
                ));
                continue;
            }
        };
        if let Some(reason) = skip(&value) {
            r.skipped += 1;
            r.skipped_lines.push(Skipped { line: n, reason });
            continue;
        }
        match serde_json::from_value(value) {
            Ok(l) => out.push((n, l)),
            Err(e) => r.problems.push(Problem::new(
                file,
                n.to_string(),
                format!("not a decision record: {e}"),
            )),
        }
    }
    out
}

/// Replays every line of a decision log (`file` names it in messages).
pub fn replay(file: &str, text: &str, snap: &Snapshot) -> ReplayReport {
    let mut r = ReplayReport::default();
    // Log notes (e.g. dropped-record counts) and ResolveSystemUser records are
    // not single decisions to replay.
    let skip = |value: &serde_json::Value| {
        let call = value.get("call").and_then(|c| c.as_str());
        let redacted: Vec<&str> = value
            .get("redacted")
            .and_then(|r| r.as_array())
            .map(|a| a.iter().filter_map(|f| f.as_str()).collect())
            .unwrap_or_default();
        match (value.get("event").and_then(|e| e.as_str()), call) {
            (Some(event), _) => Some(format!("a log note ({event}), not a decision")),
            (None, _) if !redacted.is_empty() => Some(format!(
                "its {} had to be written as [redacted] (a secret-shaped value, or an attribute named in --decision-log-redact), so it cannot be re-decided",
                redacted.join(", ")
            )),
            (None, Some("resolve_system_user")) => Some(
                "a ResolveSystemUser record: it names no single system user to re-decide"
                    .to_owned(),
            ),
            (None, Some(c)) if c != "authorize" => {
                Some(format!("a {c:?} record, not an Authorize decision"))
            }
            _ => None,
        }
    };
    for (n, logged) in records(file, text, &mut r, skip) {
        let was_allowed = match logged.decision.as_str() {
            "allow" => true,
            "deny" => false,
            other => {
                r.problems.push(Problem::new(
                    file,
                    n.to_string(),
                    format!("decision {other:?} is neither \"allow\" nor \"deny\""),
                ));
                continue;
            }
        };
        let raw = RawRequest {
            employee_id: logged.employee_id.clone(),
            system_user_id: logged.system_user_id.clone(),
            client_org_number: logged.client_org_number.clone(),
            access_package: logged.access_package.clone(),
            action: logged.action.clone(),
            context: logged.context.clone(),
        };
        let q = match Query::check(snap, raw, "") {
            Ok(q) => q,
            Err(e) => {
                r.problems.push(Problem::new(
                    file,
                    n.to_string(),
                    format!("cannot be replayed: {e}"),
                ));
                continue;
            }
        };
        let d = decide(snap, &q);
        r.replayed += 1;
        if d.allowed == was_allowed {
            r.unchanged += 1;
            continue;
        }
        let (direction, responsible) = if was_allowed {
            (
                Direction::AllowToDeny,
                d.reasons.iter().map(|x| x.policy_id.clone()).collect(),
            )
        } else {
            (
                Direction::DenyToAllow,
                logged.reasons.iter().map(|x| x.policy_id.clone()).collect(),
            )
        };
        r.flips.push(Flip {
            line: n,
            decision_id: logged.decision_id,
            employee_id: logged.employee_id,
            system_user_id: logged.system_user_id,
            client_org_number: logged.client_org_number,
            access_package: logged.access_package,
            direction,
            responsible,
        });
    }
    by_line(&mut r.problems);
    r
}

/// Reads the shadow decisions a decision log recorded: each Authorize record
/// whose `shadow_decision` differs from its `decision` is a flip, with the
/// serving policies that denied it (deny → allow) or the candidate policies that
/// deny it (allow → deny). `replayed` counts the Authorize records read.
pub fn shadow_report(file: &str, text: &str) -> ReplayReport {
    let mut r = ReplayReport::default();
    let skip = |value: &serde_json::Value| match (
        value.get("event").and_then(|e| e.as_str()),
        value.get("call").and_then(|c| c.as_str()),
    ) {
        (Some(event), _) => Some(format!("a log note ({event}), not a decision")),
        (None, Some("authorize")) => None,
        (None, Some(c)) => Some(format!("a {c:?} record, not an Authorize decision")),
        (None, None) => Some("not a decision record: no \"call\"".to_owned()),
    };
    for (n, logged) in records(file, text, &mut r, skip) {
        r.replayed += 1;
        let (served, shadow) = (logged.decision.as_str(), logged.shadow_decision.as_deref());
        let direction = match (served, shadow) {
            (_, None) => {
                r.unchanged += 1;
                continue;
            }
            ("allow", Some("deny")) => Direction::AllowToDeny,
            ("deny", Some("allow")) => Direction::DenyToAllow,
            (a, Some(b)) if a == b => {
                r.unchanged += 1;
                continue;
            }
            (a, Some(b)) => {
                r.problems.push(Problem::new(
                    file,
                    n.to_string(),
                    format!(
                        "decision {a:?} and shadow_decision {b:?} are not \"allow\" and \"deny\""
                    ),
                ));
                continue;
            }
        };
        let responsible = match direction {
            Direction::AllowToDeny => &logged.shadow_reasons,
            Direction::DenyToAllow => &logged.reasons,
        }
        .iter()
        .map(|x| x.policy_id.clone())
        .collect();
        r.flips.push(Flip {
            line: n,
            decision_id: logged.decision_id,
            employee_id: logged.employee_id,
            system_user_id: logged.system_user_id,
            client_org_number: logged.client_org_number,
            access_package: logged.access_package,
            direction,
            responsible,
        });
    }
    by_line(&mut r.problems);
    r
}

/// The human-readable report: counts, then each group with up to three examples.
pub fn render(r: &ReplayReport, file: &str, revision: &str) -> String {
    let head = format!(
        "replayed {} decisions from {file} under revision {revision}: {} unchanged, {} allow→deny, {} deny→allow ({} {} skipped)",
        r.replayed,
        r.unchanged,
        r.count(Direction::AllowToDeny),
        r.count(Direction::DenyToAllow),
        r.skipped,
        if r.skipped == 1 { "line" } else { "lines" }
    );
    render_with(r, head, ("now forbidden by", "no longer forbidden by"))
}

/// The shadow report: the same shape as replay's.
pub fn render_shadow(r: &ReplayReport, file: &str) -> String {
    let head = format!(
        "{} Authorize decisions in {file}: {} the same under the shadow policies, {} allow→deny, {} deny→allow ({} other {} skipped)",
        r.replayed,
        r.unchanged,
        r.count(Direction::AllowToDeny),
        r.count(Direction::DenyToAllow),
        r.skipped,
        if r.skipped == 1 { "line" } else { "lines" }
    );
    render_with(
        r,
        head,
        (
            "the shadow policies forbid it by",
            "the shadow policies no longer forbid it by",
        ),
    )
}

fn render_with(r: &ReplayReport, head: String, (to_deny, to_allow): (&str, &str)) -> String {
    use std::fmt::Write;
    let mut out = head;
    out.push('\n');
    for s in &r.skipped_lines {
        let _ = writeln!(out, "  skipped line {}: {}", s.line, s.reason);
    }
    for ((dir, policies), flips) in r.groups() {
        let what = match dir {
            Direction::AllowToDeny => format!("allow → deny, {to_deny} {}", policies.join(", ")),
            Direction::DenyToAllow => format!("deny → allow, {to_allow} {}", policies.join(", ")),
        };
        let _ = writeln!(out, "  {what}: {}", flips.len());
        for f in flips.iter().take(3) {
            let _ = writeln!(
                out,
                "    e.g. line {} (decision {}): employee {}, system user {}, client {}, {}",
                f.line,
                f.decision_id,
                f.employee_id,
                f.system_user_id,
                f.client_org_number,
                f.access_package
            );
        }
    }
    for p in &r.problems {
        let _ = writeln!(out, "ERROR {p}");
    }
    out
}
