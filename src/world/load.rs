//! Reading the world's data files: a directory of JSON or YAML files, each parsed
//! into records that remember where they came from.
//!
//! Every file is an object with any of the keys `organizations`, `systemUsers`,
//! `teams` and `employees`, each a list of records (format in README "Data files").
//! A file whose top level is a list holds entities in Cedar's own JSON format.
//! Checking the records against each other is `build`'s work.

use crate::problem::{Problem, Problems, SourceFile};
use serde::Deserialize;
use std::path::Path;

// ---- The file format. Field names follow Altinn's APIs. ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DataFile {
    #[serde(default)]
    organizations: Vec<serde_json::Value>,
    #[serde(default)]
    system_users: Vec<serde_json::Value>,
    #[serde(default)]
    teams: Vec<serde_json::Value>,
    #[serde(default)]
    employees: Vec<serde_json::Value>,
}

/// Altinn-shaped records tolerate fields Vakt does not use, so a vendor can feed
/// what Altinn returns as it is.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationRecord {
    pub org_number: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub parent_org_number: Option<String>,
    /// The Entity Register's organisation form, when given (BEDR, AAFY, ORGL, AS, ...).
    /// Only an operational unit (BEDR, AAFY) inherits from its parent.
    #[serde(default, alias = "organizationForm")]
    pub unit_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemUserRecord {
    pub id: String,
    #[serde(default)]
    pub integration_title: Option<String>,
    #[serde(default)]
    pub system_id: Option<String>,
    pub reportee_org_no: String,
    pub user_type: String,
    /// `[{"urn": ...}]` as Altinn returns them, or bare URNs.
    #[serde(default, deserialize_with = "package_refs")]
    pub access_packages: Vec<PackageRef>,
    #[serde(default)]
    pub external_ref: Option<String>,
    #[serde(default)]
    pub is_deleted: bool,
    #[serde(default)]
    pub self_delegated: bool,
    #[serde(default)]
    pub clients: Vec<ClientRecord>,
}

#[derive(Debug, Deserialize)]
pub struct PackageRef {
    pub urn: String,
}

/// A package as Altinn writes it in different APIs: `{"urn": ...}` or the bare URN.
#[derive(Deserialize)]
#[serde(untagged)]
enum PackageForm {
    Urn(String),
    Object { urn: String },
}

impl PackageForm {
    fn into_urn(self) -> String {
        match self {
            Self::Urn(u) | Self::Object { urn: u } => u,
        }
    }
}

fn package_refs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PackageRef>, D::Error> {
    package_urns(d).map(|v| v.into_iter().map(|urn| PackageRef { urn }).collect())
}

fn package_urns<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<PackageForm>::deserialize(d).map(|v| v.into_iter().map(PackageForm::into_urn).collect())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientRecord {
    #[serde(default)]
    pub client_id: Option<String>,
    pub client_organization_number: String,
    #[serde(default)]
    pub client_organization_name: Option<String>,
    #[serde(default)]
    pub access: Vec<AccessRecord>,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct AccessRecord {
    pub role: String,
    /// URNs, or `{"urn": ...}` objects.
    #[serde(default, deserialize_with = "package_urns")]
    pub packages: Vec<String>,
}

/// Vakt's own records are strict: a misspelt field is an error, not a silent default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TeamRecord {
    pub id: String,
    pub organization: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub system_users: Vec<String>,
    pub clients: ClientsRecord,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ClientsRecord {
    Keyword(String),
    List(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EmployeeRecord {
    pub id: String,
    pub organization: String,
    #[serde(default)]
    pub name: String,
    pub active: bool,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub teams: Vec<String>,
    #[serde(default)]
    pub audit_clients: Vec<String>,
}

/// Where a record came from, for messages.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    pub file: usize,
    /// `line:column` of the record in its file, when it can be found.
    pub at: String,
    /// The record's place and id, e.g. `employees[3] ("kari")`.
    pub record: String,
}

/// The records of one file, each with its origin.
#[derive(Default)]
pub(super) struct Parsed {
    pub orgs: Vec<(Origin, OrganizationRecord)>,
    pub system_users: Vec<(Origin, SystemUserRecord)>,
    pub teams: Vec<(Origin, TeamRecord)>,
    pub employees: Vec<(Origin, EmployeeRecord)>,
    /// Entities in Cedar's own JSON format.
    pub cedar_json: Vec<serde_json::Value>,
    /// Problems: (origin or whole-file position, message).
    pub problems: Vec<(Origin, String)>,
}

/// Reads every `*.json`, `*.yaml` and `*.yml` file directly in `dir`, in name order.
pub fn load_dir(dir: &Path) -> Result<Vec<SourceFile>, Problems> {
    let fail =
        |message: String| Problems(vec![Problem::new(dir.display().to_string(), "", message)]);
    let entries =
        std::fs::read_dir(dir).map_err(|e| fail(format!("cannot read directory: {e}")))?;
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json" | "yaml" | "yml")
                )
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(fail("holds no .json, .yaml or .yml data file".into()));
    }
    let mut files = Vec::with_capacity(paths.len());
    let mut errors = Vec::new();
    for p in paths {
        match std::fs::read_to_string(&p) {
            Ok(text) => files.push(SourceFile {
                name: p.display().to_string(),
                text,
            }),
            Err(e) => errors.push(Problem::new(
                p.display().to_string(),
                "",
                format!("cannot read: {e}"),
            )),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(Problems(errors))
    }
}

/// Parses one file (the `file`-th) into records; problems are collected.
pub(super) fn parse_file(file: usize, src: &SourceFile) -> Parsed {
    let mut out = Parsed::default();
    let whole = |at: String| Origin {
        file,
        at,
        record: String::new(),
    };
    let is_yaml = src.name.ends_with(".yaml") || src.name.ends_with(".yml");
    let value: serde_json::Value = if is_yaml {
        match serde_yaml::from_str(&src.text) {
            Ok(v) => v,
            Err(e) => {
                let at = e
                    .location()
                    .map(|l| format!("{}:{}", l.line(), l.column()))
                    .unwrap_or_default();
                out.problems
                    .push((whole(at), format!("not valid YAML: {e}")));
                return out;
            }
        }
    } else {
        match serde_json::from_str(&src.text) {
            Ok(v) => v,
            Err(e) => {
                let at = format!("{}:{}", e.line(), e.column());
                out.problems
                    .push((whole(at), format!("not valid JSON: {e}")));
                return out;
            }
        }
    };
    if value.is_array() {
        out.cedar_json.push(value);
        return out;
    }
    let data: DataFile = match serde_path_to_error::deserialize(value) {
        Ok(d) => d,
        Err(e) => {
            out.problems.push((
                whole(String::new()),
                format!(
                    "expected an object with keys organizations, systemUsers, teams, employees: {} at {}",
                    e.inner(),
                    e.path()
                ),
            ));
            return out;
        }
    };
    let text = src.text.as_str();
    out.orgs = parse_records(
        file,
        text,
        "organizations",
        data.organizations,
        &mut out.problems,
    );
    out.system_users = parse_records(
        file,
        text,
        "systemUsers",
        data.system_users,
        &mut out.problems,
    );
    out.teams = parse_records(file, text, "teams", data.teams, &mut out.problems);
    out.employees = parse_records(file, text, "employees", data.employees, &mut out.problems);
    out
}

fn parse_records<R: serde::de::DeserializeOwned>(
    file: usize,
    text: &str,
    key: &str,
    values: Vec<serde_json::Value>,
    problems: &mut Vec<(Origin, String)>,
) -> Vec<(Origin, R)> {
    let mut out = Vec::with_capacity(values.len());
    let mut from = text.find(key).unwrap_or(0);
    for (i, v) in values.into_iter().enumerate() {
        let id = record_id(&v);
        let at = id
            .and_then(|id| find_value(text, from, id).map(|o| (o, id.len())))
            .map(|(offset, len)| {
                from = offset + len + 1;
                let (l, c) = crate::problem::line_col(text, offset);
                format!("{l}:{c}")
            })
            .unwrap_or_default();
        let origin = Origin {
            file,
            at,
            record: record_label(key, i, id),
        };
        match serde_path_to_error::deserialize::<_, R>(v) {
            Ok(r) => out.push((origin, r)),
            Err(e) => {
                let path = e.path().to_string();
                let msg = if path == "." {
                    e.inner().to_string()
                } else {
                    format!("{path}: {}", e.inner())
                };
                problems.push((origin, msg));
            }
        }
    }
    out
}

/// The record's id (`id`, or `orgNumber` for organisations), when it is a string.
fn record_id(v: &serde_json::Value) -> Option<&str> {
    ["id", "orgNumber"]
        .iter()
        .find_map(|k| v.get(k).and_then(|x| x.as_str()))
}

/// `employees[3] ("kari")`: the key, index and, when readable, the record's id.
fn record_label(key: &str, i: usize, id: Option<&str>) -> String {
    match id {
        Some(id) => format!("{key}[{i}] ({id:?})"),
        None => format!("{key}[{i}]"),
    }
}

/// Byte offset of the first `value` at or after `from` that stands as a whole
/// scalar (quoted, or a bare YAML value): where a record with that id starts.
fn find_value(text: &str, from: usize, value: &str) -> Option<usize> {
    let mut start = from.min(text.len());
    while let Some(rel) = text.get(start..)?.find(value) {
        let at = start + rel;
        let before = text[..at].chars().next_back();
        let after = text[at + value.len()..].chars().next();
        let quoted = matches!(before, Some('"' | '\'')) && before == after;
        let bare = matches!(before, Some(' ' | ':'))
            && matches!(after, None | Some('\n' | '\r' | ',' | '}' | ' ' | '#'));
        if quoted || bare {
            return Some(if quoted { at - 1 } else { at });
        }
        start = at + value.len().max(1);
    }
    None
}
