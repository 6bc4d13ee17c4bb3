//! `vakt test`: policy test suites (`*_test.yaml`), run through the same loader and
//! decision code as `vakt serve`.
//!
//! A suite names a world (a data directory, or the data inline) and cases: who
//! asks for what, the expected decision and, optionally, the exact set of policy
//! ids among the reasons. Format in docs/policies.md, "Policy test suites".

use crate::decision::{decide, Query, RawRequest};
use crate::problem::SourceFile;
use crate::problem::{Problem, Problems};
use crate::rules::snapshot::{Snapshot, Sources};
use crate::world::load_dir;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

// `JsonSchema`: `vakt schema suite` (src/cli/schema.rs) is made from these types.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SuiteDoc {
    /// The suite's name in reports (default: the file name).
    #[serde(default)]
    name: Option<String>,
    /// A data directory, relative to the suite's file, or the data inline.
    world: serde_json::Value,
    cases: Vec<CaseDoc>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CaseDoc {
    /// Unique within its suite.
    name: String,
    employee: String,
    system_user: String,
    /// The client's organisation number.
    client: String,
    /// An access package URN.
    package: String,
    /// The Cedar action (default: useSystemUser).
    #[serde(default)]
    action: Option<String>,
    /// The request's context attributes.
    #[serde(default)]
    context: Option<serde_json::Map<String, serde_json::Value>>,
    expect: Expect,
    /// Exactly these policy ids among the reasons.
    #[serde(default)]
    reasons: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Allow,
    Deny,
}

/// The outcome of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub suite: String,
    pub name: String,
    pub passed: bool,
    pub expected: Expect,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_reasons: Option<Vec<String>>,
    /// The decision made, when the case could be decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub got: Option<Expect>,
    pub got_reasons: Vec<crate::decision::Reason>,
    /// Why the case could not be decided (a malformed field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything `vakt test` found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub cases: Vec<CaseResult>,
    /// Suites that could not be run at all (not YAML, inconsistent world, ...).
    pub suite_errors: Vec<Problem>,
    /// Per policy id, how many cases it decided (was among the reasons of).
    pub coverage: BTreeMap<String, usize>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed).count()
    }
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed() + self.suite_errors.len()
    }
    /// Percentage of policies that decided at least one case.
    pub fn coverage_percent(&self) -> f64 {
        if self.coverage.is_empty() {
            return 100.0;
        }
        let hit = self.coverage.values().filter(|n| **n > 0).count();
        100.0 * hit as f64 / self.coverage.len() as f64
    }
}

/// A path given on the command line that does not exist.
#[derive(Debug, thiserror::Error)]
#[error("{0}: no such file or directory")]
pub struct MissingPath(pub String);

/// The largest suite file read: far past any written by hand or generated.
const MAX_SUITE_BYTES: u64 = 64 << 20;

/// One suite file: its name, its text and where a relative `world:` path starts.
#[derive(Debug, Clone)]
pub struct SuiteFile {
    pub name: String,
    pub text: Result<String, String>,
    /// The directory the suite sits in, or `None` for a built-in suite, whose
    /// relative world paths name the built-in data.
    pub dir: Option<PathBuf>,
}

impl SuiteFile {
    fn read(path: &Path) -> Self {
        Self {
            name: path.display().to_string(),
            // A regular file, capped: a FIFO or a device is refused, not waited on.
            text: crate::problem::read_file(path, MAX_SUITE_BYTES),
            dir: Some(path.parent().unwrap_or(Path::new(".")).to_owned()),
        }
    }
}

/// The suites shipped in `policies/tests/`, built into the binary.
pub fn builtin() -> Vec<SuiteFile> {
    crate::rules::embedded::SUITES
        .iter()
        .map(|(name, text)| SuiteFile {
            name: (*name).to_owned(),
            text: Ok((*text).to_owned()),
            dir: None,
        })
        .collect()
}

/// Finds the suite files in `paths`: files as given, directories searched
/// recursively for `*_test.yaml` / `*_test.yml`.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<SuiteFile>, MissingPath> {
    let mut out = Vec::new();
    for p in paths {
        // Any file given by name, so that one that is not a regular file is
        // refused by name when read rather than called missing.
        if p.exists() && !p.is_dir() {
            out.push(p.clone());
        } else if p.is_dir() {
            walk(p, &mut out);
        } else {
            return Err(MissingPath(p.display().to_string()));
        }
    }
    out.sort();
    out.dedup();
    Ok(out.iter().map(|p| SuiteFile::read(p)).collect())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with("_test.yaml") || n.ends_with("_test.yml"))
        {
            out.push(p);
        }
    }
}

/// Runs every suite against the policies and schema of `base` (its data is
/// replaced by each suite's world).
pub fn run(files: &[SuiteFile], base: &Sources) -> Report {
    let mut report = Report::default();
    for file in files {
        run_suite(file, base, &mut report);
    }
    report
}

/// The data files a suite's `world: <relative path>` names.
fn world_files(file: &SuiteFile, rel: &str) -> Result<Vec<SourceFile>, String> {
    let list = |p: Problems| p.0.iter().map(|p| format!("\n    {p}")).collect::<String>();
    match &file.dir {
        Some(dir) => load_dir(&dir.join(rel), crate::problem::DEFAULT_MAX_FILE_BYTES)
            .map_err(|p| format!("the world cannot be read:{}", list(p))),
        None => {
            // A built-in suite sits in policies/tests/; the only built-in world is
            // examples/world/.
            let base = Path::new(&file.name).parent().unwrap_or(Path::new(""));
            let joined = base.join(rel);
            let mut named = PathBuf::new();
            for c in joined.components() {
                match c {
                    std::path::Component::ParentDir => {
                        named.pop();
                    }
                    std::path::Component::Normal(n) => named.push(n),
                    _ => {}
                }
            }
            if named == Path::new("examples/world") {
                Ok(crate::rules::embedded::source_files(
                    crate::rules::embedded::WORLD,
                ))
            } else {
                Err(format!(
                    "{rel:?} names {}, but the only built-in world is examples/world",
                    named.display()
                ))
            }
        }
    }
}

fn run_suite(file: &SuiteFile, base: &Sources, report: &mut Report) {
    let name = file.name.clone();
    let fail = |report: &mut Report, at: String, m: String| {
        report.suite_errors.push(Problem::new(&name, at, m))
    };
    let text = match &file.text {
        Ok(t) => t.as_str(),
        Err(e) => return fail(report, String::new(), e.clone()),
    };
    let value = match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!("{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            return fail(report, at, format!("not valid YAML: {e}"));
        }
        Ok(v) => v,
    };
    // The cases that can be read run; each that cannot is one failure, by line.
    let Some((doc, cases)) = read_suite(&name, text, value, &mut report.suite_errors) else {
        return;
    };
    let world = match &doc.world {
        serde_json::Value::String(rel) => match world_files(file, rel) {
            Ok(f) => f,
            Err(m) => return fail(report, "world".into(), m),
        },
        serde_json::Value::Object(_) => vec![SourceFile {
            name: format!("{name} (world).json"),
            text: doc.world.to_string(),
        }],
        _ => {
            return fail(
                report,
                "world".into(),
                "must be a data directory path or the data inline".into(),
            )
        }
    };
    let sources = Sources {
        data: world,
        ..base.clone()
    };
    let snap = match Snapshot::build(&sources) {
        Ok(s) => s,
        Err(p) => {
            let m = p.0.iter().map(|p| format!("\n    {p}")).collect::<String>();
            return fail(
                report,
                "world".into(),
                format!("the world is not consistent:{m}"),
            );
        }
    };
    for id in snap.policies.policy_ids() {
        report.coverage.entry(id.to_string()).or_insert(0);
    }
    let suite = doc.name.clone().unwrap_or_else(|| name.clone());
    let mut seen = BTreeSet::new();
    for (i, c) in cases {
        if !seen.insert(c.name.clone()) {
            fail(
                report,
                line_at(text, &case_steps(i)),
                format!(
                    "case {} {:?}: case name is used twice in this suite",
                    i + 1,
                    c.name
                ),
            );
        }
        report
            .cases
            .push(run_case(&snap, &suite, c, &mut report.coverage));
    }
}

/// The keys of a suite and of a case, as [`SuiteDoc`] and [`CaseDoc`] spell them,
/// to name the nearest one to a misspelt key (`keys_match_the_types` keeps them so).
const SUITE_KEYS: [&str; 3] = ["name", "world", "cases"];
const CASE_KEYS: [&str; 9] = [
    "name",
    "employee",
    "systemUser",
    "client",
    "package",
    "action",
    "context",
    "expect",
    "reasons",
];

/// Reads a suite's top level and each of its cases: the suite and the cases that
/// could be read, each with its index, or `None` when no case can run. Each
/// problem (an unknown key, a case that cannot be read) is one entry in
/// `problems`, with its line.
fn read_suite(
    file: &str,
    text: &str,
    value: serde_yaml_ng::Value,
    problems: &mut Vec<Problem>,
) -> Option<(SuiteDoc, Vec<(usize, CaseDoc)>)> {
    use serde_yaml_ng::Value;
    let problem = |steps: &[Step], m: String| Problem::new(file, line_at(text, steps), m);
    let Value::Mapping(mut top) = value else {
        problems.push(Problem::new(
            file,
            "",
            format!(
                "not a test suite: expected the keys {}",
                SUITE_KEYS.join(", ")
            ),
        ));
        return None;
    };
    // A key the suite does not know is named with its nearest, at this level; the
    // rest of the suite still runs.
    let unknown: Vec<Value> = top
        .keys()
        .filter(|k| !SUITE_KEYS.contains(&key_text(k).as_str()))
        .cloned()
        .collect();
    for k in unknown {
        let key = key_text(&k);
        problems.push(problem(
            &[Step::Key(key.clone())],
            format!("unknown key {}", hint(&key, &SUITE_KEYS)),
        ));
        top.remove(&k);
    }
    // Each case on its own, so one that cannot be read fails alone.
    let mut readable = Vec::new();
    let mut indices = Vec::new();
    let cases_key = Value::String("cases".into());
    match top.get_mut(&cases_key) {
        Some(Value::Sequence(items)) => {
            for (i, item) in std::mem::take(items).into_iter().enumerate() {
                match read_case(text, i, &item) {
                    Ok(()) => {
                        readable.push(item);
                        indices.push(i);
                    }
                    Err((steps, m)) => problems.push(problem(&steps, m)),
                }
            }
            top.insert(cases_key, Value::Sequence(readable));
        }
        Some(_) => {
            problems.push(problem(
                &[Step::Key("cases".into())],
                "cases: must be a list of cases".into(),
            ));
            return None;
        }
        None => {}
    }
    let mut doc: SuiteDoc = match serde_path_to_error::deserialize(Value::Mapping(top)) {
        Ok(d) => d,
        Err(e) => {
            let steps = steps_of(e.path());
            let at = if steps.is_empty() {
                String::new()
            } else {
                format!("{}: ", e.path())
            };
            problems.push(problem(&steps, format!("{at}{}", e.inner())));
            return None;
        }
    };
    let cases = indices
        .into_iter()
        .zip(std::mem::take(&mut doc.cases))
        .collect();
    Some((doc, cases))
}

/// Checks that case `i` reads as a [`CaseDoc`]; else where and what is wrong,
/// naming the case.
fn read_case(text: &str, i: usize, item: &serde_yaml_ng::Value) -> Result<(), (Vec<Step>, String)> {
    let label = match item.get("name").and_then(serde_yaml_ng::Value::as_str) {
        Some(n) => format!("case {} {n:?}", i + 1),
        None => format!("case {}", i + 1),
    };
    let mut at = case_steps(i);
    if let serde_yaml_ng::Value::Mapping(m) = item {
        let unknown: Vec<String> = m
            .keys()
            .map(key_text)
            .filter(|k| !CASE_KEYS.contains(&k.as_str()))
            .collect();
        if let Some(first) = unknown.first() {
            at.push(Step::Key(first.clone()));
            let keys: Vec<String> = unknown.iter().map(|k| hint(k, &CASE_KEYS)).collect();
            let s = if keys.len() == 1 { "" } else { "s" };
            return Err((at, format!("{label}: unknown key{s} {}", keys.join(", "))));
        }
    }
    match serde_path_to_error::deserialize::<_, CaseDoc>(item.clone()) {
        Ok(_) => Ok(()),
        Err(e) => {
            let inner = steps_of(e.path());
            let what = if inner.is_empty() {
                e.inner().to_string()
            } else {
                format!("{}: {}", e.path(), e.inner())
            };
            // Where the field is, or else where the case begins.
            let mut deeper = at.clone();
            deeper.extend(inner);
            if line_of(text, &deeper).is_some() {
                at = deeper;
            }
            Err((at, format!("{label}: {what}")))
        }
    }
}

fn case_steps(i: usize) -> Vec<Step> {
    vec![Step::Key("cases".into()), Step::Index(i)]
}

/// A mapping key as written.
fn key_text(k: &serde_yaml_ng::Value) -> String {
    match k {
        serde_yaml_ng::Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    }
}

/// `` `key` (did you mean `nearest`?) ``, or the keys this level has.
fn hint(key: &str, known: &[&str]) -> String {
    let lower = key.to_lowercase();
    let nearest = known
        .iter()
        .map(|k| (strsim::levenshtein(&lower, &k.to_lowercase()), *k))
        .filter(|(d, k)| d * 2 <= key.len().max(k.len()))
        .min();
    match nearest {
        Some((_, k)) => format!("`{key}` (did you mean `{k}`?)"),
        None => format!("`{key}` (the keys here are {})", known.join(", ")),
    }
}

/// One step from a YAML document's root towards a node.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn steps_of(path: &serde_path_to_error::Path) -> Vec<Step> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Seq { index } => Some(Step::Index(*index)),
            _ => None,
        })
        .collect()
}

/// [`line_of`] as a [`Problem`]'s `at`: the line, or empty when not found.
fn line_at(text: &str, steps: &[Step]) -> String {
    line_of(text, steps).map_or_else(String::new, |l| l.to_string())
}

/// The 1-based line of the node `steps` lead to in the YAML `text`: of the key
/// itself when the last step is a key. serde_yaml_ng's values carry no positions, so
/// the text is read again, skipping everything off the path, and stopped with an
/// error at the node: serde_yaml_ng gives an error the position of the node it arose at.
fn line_of(text: &str, steps: &[Step]) -> Option<usize> {
    use serde::de::DeserializeSeed;
    match Probe(steps).deserialize(serde_yaml_ng::Deserializer::from_str(text)) {
        Err(e) if e.to_string().contains(PROBE_FOUND) => e.location().map(|l| l.line()),
        _ => None,
    }
}

/// The error [`Probe`] stops with where it finds its node.
const PROBE_FOUND: &str = "vakt: the node sought is here";

struct Probe<'a>(&'a [Step]);

impl<'de> serde::de::DeserializeSeed<'de> for Probe<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Probe<'_> {
    /// A scalar: the node sought when no step is left; else the path ends here.
    fn leaf<E: serde::de::Error>(self) -> Result<(), E> {
        if self.0.is_empty() {
            Err(E::custom(PROBE_FOUND))
        } else {
            Ok(())
        }
    }
}

impl<'de> serde::de::Visitor<'de> for Probe<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML node")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.leaf()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.leaf()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.leaf()
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        use serde::de::Error;
        let Some((step, rest)) = self.0.split_first() else {
            return Err(A::Error::custom(PROBE_FOUND));
        };
        let Step::Index(want) = step else {
            return Ok(());
        };
        for _ in 0..*want {
            if seq.next_element::<serde::de::IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Probe(rest)).map(|_| ())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        let Some((step, rest)) = self.0.split_first() else {
            return Err(A::Error::custom(PROBE_FOUND));
        };
        let Step::Key(want) = step else {
            return Ok(());
        };
        let seek = KeyProbe {
            want,
            last: rest.is_empty(),
        };
        while let Some(hit) = map.next_key_seed(seek)? {
            if hit {
                return map.next_value_seed(Probe(rest));
            }
            map.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(())
    }
}

/// Reads one mapping key: whether it is the one sought, stopping at it when it is
/// the last step.
#[derive(Clone, Copy)]
struct KeyProbe<'a> {
    want: &'a str,
    last: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyProbe<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a mapping key")
    }
    fn visit_str<E: serde::de::Error>(self, k: &str) -> Result<bool, E> {
        match (k == self.want, self.last) {
            (true, true) => Err(E::custom(PROBE_FOUND)),
            (hit, _) => Ok(hit),
        }
    }
}

fn run_case(
    snap: &Snapshot,
    suite: &str,
    c: CaseDoc,
    coverage: &mut BTreeMap<String, usize>,
) -> CaseResult {
    let raw = RawRequest {
        employee_id: c.employee,
        system_user_id: c.system_user,
        client_org_number: c.client,
        access_package: c.package,
        action: c.action.unwrap_or_default(),
        context: c.context,
    };
    let mut result = CaseResult {
        suite: suite.to_owned(),
        name: c.name,
        passed: false,
        expected: c.expect,
        expected_reasons: c.reasons.clone(),
        got: None,
        got_reasons: Vec::new(),
        error: None,
    };
    let q = match Query::check(snap, raw, "") {
        Ok(q) => q,
        Err(e) => {
            result.error = Some(e.to_string());
            return result;
        }
    };
    let d = decide(snap, &q);
    for r in &d.reasons {
        if let Some(n) = coverage.get_mut(&r.policy_id) {
            *n += 1;
        }
    }
    let got = if d.allowed {
        Expect::Allow
    } else {
        Expect::Deny
    };
    let got_ids: BTreeSet<&str> = d.reasons.iter().map(|r| r.policy_id.as_str()).collect();
    let reasons_ok = c
        .reasons
        .as_ref()
        .is_none_or(|want| want.iter().map(String::as_str).collect::<BTreeSet<_>>() == got_ids);
    result.passed = got == c.expect && reasons_ok;
    result.got = Some(got);
    result.got_reasons = d.reasons;
    result
}

/// The pretty, human-readable report.
pub fn render_pretty(r: &Report, show_coverage: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut suite = "";
    for c in &r.cases {
        if c.suite != suite {
            suite = &c.suite;
            let _ = writeln!(out, "{suite}");
        }
        if c.passed {
            let _ = writeln!(out, "  ok    {}", c.name);
            continue;
        }
        let _ = writeln!(out, "  FAIL  {}", c.name);
        let want = match &c.expected_reasons {
            Some(ids) => format!("{:?} [{}]", c.expected, ids.join(", ")),
            None => format!("{:?}", c.expected),
        };
        match (&c.error, c.got) {
            (Some(e), _) => {
                let _ = writeln!(
                    out,
                    "        expected {want}, but the case is malformed: {e}"
                );
            }
            (None, Some(got)) => {
                let ids: Vec<&str> = c.got_reasons.iter().map(|r| r.policy_id.as_str()).collect();
                let _ = writeln!(
                    out,
                    "        expected {want}, got {got:?} [{}]",
                    ids.join(", ")
                );
                for reason in &c.got_reasons {
                    let _ = writeln!(out, "          {}: {}", reason.policy_id, reason.message);
                }
            }
            (None, None) => {}
        }
    }
    for p in &r.suite_errors {
        let _ = writeln!(out, "ERROR {p}");
    }
    if show_coverage {
        let _ = writeln!(out, "coverage (cases decided per policy):");
        for (id, n) in &r.coverage {
            let _ = writeln!(out, "  {n:>5}  {id}");
        }
        let _ = writeln!(
            out,
            "  {:.1}% of policies decided at least one case",
            r.coverage_percent()
        );
    }
    let _ = writeln!(out, "{} passed, {} failed", r.passed(), r.failed());
    out
}

/// JUnit XML: one test suite per suite file, one test case per case; suites that
/// could not run are errored test cases.
pub fn render_junit(r: &Report) -> String {
    use quick_junit::{NonSuccessKind, Report as Junit, TestCase, TestCaseStatus, TestSuite};
    let mut junit = Junit::new("vakt test");
    let mut by_suite: BTreeMap<&str, Vec<&CaseResult>> = BTreeMap::new();
    for c in &r.cases {
        by_suite.entry(&c.suite).or_default().push(c);
    }
    for (suite, cases) in by_suite {
        let mut ts = TestSuite::new(suite);
        for c in cases {
            let status = if c.passed {
                TestCaseStatus::success()
            } else {
                let got = match (&c.error, c.got) {
                    (Some(e), _) => format!("malformed case: {e}"),
                    (_, Some(g)) => {
                        let ids: Vec<&str> =
                            c.got_reasons.iter().map(|r| r.policy_id.as_str()).collect();
                        format!("got {g:?} [{}]", ids.join(", "))
                    }
                    _ => String::new(),
                };
                let want = format!(
                    "{:?} {:?}",
                    c.expected,
                    c.expected_reasons.clone().unwrap_or_default()
                );
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                st.set_message(format!("expected {want}, {got}"));
                st
            };
            let mut tc = TestCase::new(c.name.as_str(), status);
            tc.set_classname(suite);
            ts.add_test_case(tc);
        }
        junit.add_test_suite(ts);
    }
    if !r.suite_errors.is_empty() {
        let mut ts = TestSuite::new("suite errors");
        for p in &r.suite_errors {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
            st.set_message(p.to_string());
            let mut tc = TestCase::new(p.file.as_str(), st);
            tc.set_classname("suite errors");
            ts.add_test_case(tc);
        }
        junit.add_test_suite(ts);
    }
    // Serialising an in-memory report to a string cannot fail.
    junit.to_string().unwrap_or_default()
}

#[cfg(test)]
mod key_tests {
    use super::*;

    /// The key lists hints are drawn from are exactly the keys the types take:
    /// serde lists them when it refuses an unknown one.
    #[test]
    fn keys_match_the_types() {
        let listed = |e: String| -> BTreeSet<String> {
            let (_, list) = e.split_once("expected one of ").expect(&e);
            list.split(", ")
                .map(|k| k.trim_matches(|c| c == '`' || c == ' ').to_owned())
                .collect()
        };
        let e = serde_yaml_ng::from_str::<CaseDoc>("nope: 1").unwrap_err();
        let want: BTreeSet<String> = CASE_KEYS.iter().map(|k| k.to_string()).collect();
        assert_eq!(
            listed(e.to_string().split(" at line").next().unwrap().into()),
            want
        );
        let e = serde_yaml_ng::from_str::<SuiteDoc>("nope: 1").unwrap_err();
        let want: BTreeSet<String> = SUITE_KEYS.iter().map(|k| k.to_string()).collect();
        assert_eq!(
            listed(e.to_string().split(" at line").next().unwrap().into()),
            want
        );
    }

    #[test]
    fn lines_are_found_for_keys_and_list_items() {
        let text = "name: s\ncases:\n  - name: a\n    expect: allow\n  - {name: b, expct: deny}\n";
        let key = |k: &str| Step::Key(k.into());
        assert_eq!(line_of(text, &[key("cases")]), Some(2));
        assert_eq!(line_of(text, &[key("cases"), Step::Index(1)]), Some(5));
        assert_eq!(
            line_of(text, &[key("cases"), Step::Index(0), key("expect")]),
            Some(4)
        );
        assert_eq!(line_of(text, &[key("cases"), Step::Index(2)]), None);
        assert_eq!(line_of(text, &[key("world")]), None);
        assert_eq!(
            hint("expct", &CASE_KEYS),
            "`expct` (did you mean `expect`?)"
        );
        assert_eq!(
            hint("systemuser", &CASE_KEYS),
            "`systemuser` (did you mean `systemUser`?)"
        );
        assert!(hint("zzz", &SUITE_KEYS).contains("the keys here are name, world, cases"));
    }
}
