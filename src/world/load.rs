//! Reading the world's data files: a directory of JSON or YAML files, each parsed
//! into records that remember where they came from.
//!
//! Every file is an object with any of the keys `organizations`, `systemUsers`,
//! `teams` and `employees`, each a list of records (format in docs/data.md, "Data files").
//! A file whose top level is a list holds entities in Cedar's own JSON format.
//! Checking the records against each other is `build`'s work.

use super::checks::Fields;
use super::format::{
    ClientRecord, EmployeeRecord, OrganizationRecord, PackageRef, RecordId, Section,
    SystemUserRecord, TeamRecord, SECTIONS,
};
use super::records::RecordKey;
use super::records::{Employee, Organization, SystemUser, Team};
use super::shapes;
use super::state::World;
use crate::problem::{read_dir_files, Problem, Problems, SourceFile};
use crate::rules::packages::AccessPackages;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// Where a record came from, for messages.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    pub file: usize,
    /// `line:column` of the record in its file, when it can be found.
    pub at: String,
    /// The record's place and id, e.g. `employees[3] ("kari")`.
    pub record: String,
}

/// What a file adds to a system user another record defines: its clients (a
/// client list), its packages (a standard system user's delegations), whether it
/// is self-delegated.
#[derive(Debug)]
pub(super) struct Attachment {
    pub system_user: String,
    pub clients: Option<Vec<ClientRecord>>,
    pub packages: Option<Vec<PackageRef>>,
    pub self_delegated: Option<bool>,
}

/// The records of one file, each with its origin.
#[derive(Default)]
pub(super) struct Parsed {
    /// Additions to system users defined elsewhere (Altinn's per-system-user
    /// responses).
    pub attachments: Vec<(Origin, Attachment)>,
    pub orgs: Vec<(Origin, OrganizationRecord)>,
    pub system_users: Vec<(Origin, SystemUserRecord)>,
    pub teams: Vec<(Origin, TeamRecord)>,
    pub employees: Vec<(Origin, EmployeeRecord)>,
    /// Entities in Cedar's own JSON format.
    pub cedar_json: Vec<serde_json::Value>,
    /// Problems: (origin or whole-file position, message).
    pub problems: Vec<(Origin, String)>,
}

/// Reads every `*.json`, `*.yaml` and `*.yml` file directly in `dir`, in name order,
/// each at most `max_bytes` long.
pub fn load_dir(dir: &Path, max_bytes: u64) -> Result<Vec<SourceFile>, Problems> {
    let files = read_dir_files(dir, is_data_name, max_bytes)?;
    if files.is_empty() {
        return Err(Problems(vec![Problem::new(
            dir.display().to_string(),
            "",
            "holds no .json, .yaml or .yml data file",
        )]));
    }
    Ok(files)
}

/// Whether a file of a data directory is a data file, by its name.
fn is_data_name(n: &str) -> bool {
    n.ends_with(".json") || n.ends_with(".yaml") || n.ends_with(".yml")
}

/// The data files [`load_dir`] reads, in the same order, without reading them.
pub fn list_data_dir(dir: &Path) -> Result<Vec<PathBuf>, Problems> {
    crate::problem::list_dir(dir, is_data_name)
}

/// Line starts of a text, so that a byte offset becomes `line:column` without
/// rescanning the text for every record; records come in order, so the column is
/// counted on from the last one placed (a file may be one long line).
struct LineIndex {
    starts: Vec<usize>,
    /// The last offset placed, with its line and column.
    last: std::cell::Cell<(usize, usize, usize)>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            starts,
            last: std::cell::Cell::new((0, 1, 1)),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let (last_offset, last_line, last_col) = self.last.get();
        let (from, col0) = if line == last_line && offset >= last_offset {
            (last_offset, last_col)
        } else {
            (self.starts[line - 1], 1)
        };
        let col = col0
            + text
                .get(from..offset)
                .map_or(offset - from, |l| l.chars().count());
        self.last.set((offset, line, col));
        (line, col)
    }
}

/// Parses one file (the `file`-th) into records; problems are collected.
pub(super) fn parse_file(file: usize, src: &SourceFile) -> Parsed {
    if src.name.ends_with(".yaml") || src.name.ends_with(".yml") {
        parse_yaml(file, src)
    } else {
        parse_json(file, src)
    }
}

fn whole(file: usize, at: String) -> Origin {
    Origin {
        file,
        at,
        record: String::new(),
    }
}

/// The sections of a JSON data file, each a list of records kept as raw text
/// (which says where each record sits); a key given twice, or one that is not a
/// section, is an error.
struct Sections<'a>(Vec<(String, Vec<&'a serde_json::value::RawValue>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Sections<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Sections<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "an object with keys {}", SECTIONS.join(", "))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out: Vec<(String, Vec<&'a serde_json::value::RawValue>)> = Vec::new();
                while let Some(key) = m.next_key::<String>()? {
                    if !SECTIONS.contains(&key.as_str()) {
                        return Err(serde::de::Error::unknown_field(&key, &SECTIONS));
                    }
                    if out.iter().any(|(k, _)| *k == key) {
                        return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
                    }
                    let records = m.next_value()?;
                    out.push((key, records));
                }
                Ok(Sections(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

fn parse_json(file: usize, src: &SourceFile) -> Parsed {
    let mut out = Parsed::default();
    let text = src.text.as_str();
    if let Some(restated) = shapes::restate(text) {
        restated_records(file, src, restated, &mut out);
        return out;
    }
    if text.trim_start().starts_with('[') {
        // Entities in Cedar's own format, read strictly: a member given twice (two
        // `parents`, two `attrs`) is refused, never "the last one wins".
        match crate::json::parse(text.as_bytes()) {
            Ok(v) => out.cedar_json.push(v),
            Err(e) => out.problems.push((
                whole(file, format!("{}:{}", e.line(), e.column())),
                if e.is_data() {
                    strip_position(&e.to_string())
                } else {
                    format!("not valid JSON: {e}")
                },
            )),
        }
        return out;
    }
    let sections: Sections<'_> = match serde_json::from_str(text) {
        Ok(s) => s,
        Err(e) => {
            let what = if e.is_syntax() || e.is_eof() {
                "not valid JSON"
            } else {
                "not a data file"
            };
            out.problems.push((
                whole(file, format!("{}:{}", e.line(), e.column())),
                strip_position(&format!("{what}: {e}")),
            ));
            return out;
        }
    };
    let lines = LineIndex::new(text);
    for (key, records) in sections.0 {
        let at = |raw: &serde_json::value::RawValue| {
            (raw.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize)
        };
        let Some(section) = Section::of(&key) else {
            continue;
        };
        let mut json = JsonRecords {
            file,
            text,
            lines: &lines,
            key: &key,
        };
        let with_offsets = records.into_iter().map(|r| (at(r), r)).collect();
        read_section(section, &mut json, with_offsets, &mut out);
    }
    out
}

/// Reads the records of one section of a file, each placed in the file and each
/// problem at its record.
trait SectionReader<Raw> {
    fn parse<R: serde::de::DeserializeOwned + RecordId>(
        &mut self,
        records: Vec<Raw>,
        problems: &mut Vec<(Origin, String)>,
    ) -> Vec<(Origin, R)>;
}

/// The one section dispatch of the JSON and YAML readers: each section's records
/// read as that section's record type.
fn read_section<Raw>(
    section: Section,
    reader: &mut impl SectionReader<Raw>,
    records: Vec<Raw>,
    out: &mut Parsed,
) {
    let problems = &mut out.problems;
    match section {
        Section::Organizations => out.orgs = reader.parse(records, problems),
        Section::SystemUsers => out.system_users = reader.parse(records, problems),
        Section::Teams => out.teams = reader.parse(records, problems),
        Section::Employees => out.employees = reader.parse(records, problems),
    }
}

/// The records of a file in one of Altinn's shapes, restated in the compact
/// format: checked as compact records are, each problem at its record's line.
fn restated_records(
    file: usize,
    src: &SourceFile,
    restated: Result<shapes::Restated, (usize, String)>,
    out: &mut Parsed,
) {
    let text = src.text.as_str();
    let lines = LineIndex::new(text);
    let at = |offset: usize| {
        let (l, c) = lines.line_col(text, offset);
        format!("{l}:{c}")
    };
    let r = match restated {
        Ok(r) => r,
        Err((offset, m)) => {
            out.problems.push((whole(file, at(offset)), m));
            return;
        }
    };
    for w in &r.warnings {
        tracing::warn!(file = %src.name, warning = %w, "data file read with a caveat");
    }
    for (offset, m) in r.problems {
        out.problems.push((whole(file, at(offset)), m));
    }
    /// One compact record from its restated value; a problem names the field.
    fn typed<R: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<R, String> {
        serde_path_to_error::deserialize::<_, R>(v).map_err(|e| path_message(&e))
    }
    let origin = |key: &str, i: usize, offset: usize, v: &serde_json::Value| Origin {
        file,
        at: at(offset),
        record: record_label(
            key,
            i,
            v.get("id")
                .or_else(|| v.get("orgNumber"))
                .and_then(|x| x.as_str()),
        ),
    };
    for (i, (offset, v)) in r.organizations.into_iter().enumerate() {
        let o = origin("organizations", i, offset, &v);
        match typed(v) {
            Ok(rec) => out.orgs.push((o, rec)),
            Err(m) => out.problems.push((o, m)),
        }
    }
    for (i, (offset, v)) in r.system_users.into_iter().enumerate() {
        let o = origin("systemUsers", i, offset, &v);
        match typed(v) {
            Ok(rec) => out.system_users.push((o, rec)),
            Err(m) => out.problems.push((o, m)),
        }
    }
    for (offset, a) in r.attachments {
        let o = Origin {
            file,
            at: at(offset),
            record: format!("systemUserId {:?}", a.system_user),
        };
        let mut clients = None;
        if let Some(list) = a.clients {
            let mut ok = Vec::with_capacity(list.len());
            for (i, (offset, v)) in list.into_iter().enumerate() {
                match typed::<ClientRecord>(v) {
                    Ok(c) => ok.push(c),
                    Err(m) => out.problems.push((
                        Origin {
                            file,
                            at: at(offset),
                            record: format!("clients[{i}]"),
                        },
                        m,
                    )),
                }
            }
            clients = Some(ok);
        }
        out.attachments.push((
            o,
            Attachment {
                system_user: a.system_user,
                clients,
                packages: a
                    .packages
                    .map(|p| p.into_iter().map(|urn| PackageRef { urn }).collect()),
                self_delegated: a.self_delegated,
            },
        ));
    }
}

/// Parses the records of one section of a JSON file, each from its own text, so a
/// problem points at the record (or into it) and a field given twice is an error.
struct JsonRecords<'t> {
    file: usize,
    text: &'t str,
    lines: &'t LineIndex,
    key: &'t str,
}

impl<'r> SectionReader<(usize, &'r serde_json::value::RawValue)> for JsonRecords<'_> {
    fn parse<R: serde::de::DeserializeOwned + RecordId>(
        &mut self,
        records: Vec<(usize, &'r serde_json::value::RawValue)>,
        problems: &mut Vec<(Origin, String)>,
    ) -> Vec<(Origin, R)> {
        let mut out = Vec::with_capacity(records.len());
        for (i, (offset, raw)) in records.into_iter().enumerate() {
            // A record is placed where its id stands (or its opening brace, without one).
            let origin = |id: Option<&str>| {
                let at_id = id.and_then(|id| find_value(raw.get(), 0, id)).unwrap_or(0);
                let (l, c) = self.lines.line_col(self.text, offset + at_id);
                Origin {
                    file: self.file,
                    at: format!("{l}:{c}"),
                    record: record_label(self.key, i, id),
                }
            };
            let mut de = serde_json::Deserializer::from_str(raw.get());
            match serde_path_to_error::deserialize::<_, R>(&mut de) {
                Ok(r) => {
                    let o = origin(Some(r.id()));
                    out.push((o, r))
                }
                Err(e) => {
                    let origin = origin(json_id(raw.get()).as_deref());
                    let first = e.path().iter().next().cloned();
                    problems.push((origin.clone(), strip_position(&path_message(&e))));
                    // The record's other bad fields, so one does not hide the next.
                    if let (Ok(v), Some(first)) =
                        (serde_json::from_str::<serde_json::Value>(raw.get()), first)
                    {
                        let (more, rest) = other_problems::<R>(v, first);
                        for m in more {
                            problems.push((origin.clone(), m));
                        }
                        // What is left of the record is checked too (its
                        // references, packages, org numbers); the problems above
                        // keep the world from being built with it.
                        if let Some(r) = rest {
                            out.push((origin, r));
                        }
                    }
                }
            }
        }
        out
    }
}

/// A deserialization error as `field.path: message`.
fn path_message<E: std::fmt::Display>(e: &serde_path_to_error::Error<E>) -> String {
    let path = e.path().to_string();
    if path == "." {
        e.inner().to_string()
    } else {
        format!("{path}: {}", e.inner())
    }
}

/// After a record failed on the field `first`: that field is taken out and the
/// rest is tried again, and so on, giving each further bad field's problem (at
/// most 32), and the record without its bad fields when that reads. A problem
/// with the record as a whole (a missing field) ends it.
fn other_problems<R: serde::de::DeserializeOwned>(
    mut v: serde_json::Value,
    first: serde_path_to_error::Segment,
) -> (Vec<String>, Option<R>) {
    let mut out = Vec::new();
    let mut drop_field = Some(first);
    for _ in 0..32 {
        let (Some(serde_path_to_error::Segment::Map { key }), Some(obj)) =
            (drop_field.take(), v.as_object_mut())
        else {
            break;
        };
        obj.remove(&key);
        match serde_path_to_error::deserialize::<_, R>(v.clone()) {
            Ok(r) => return (out, Some(r)),
            Err(e) => {
                if e.path().to_string() == "." {
                    // A field it needs is gone now, or missing: not a new problem
                    // of the record as written unless it is missing there too.
                    break;
                }
                out.push(strip_position(&path_message(&e)));
                drop_field = e.path().iter().next().cloned();
            }
        }
    }
    (out, None)
}

/// serde_json appends " at line L column C" to its messages; the problem carries
/// the position already.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// The id of a JSON record (`id`, or `orgNumber` for organisations), when it has one.
fn json_id(raw: &str) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Peek {
        id: Option<String>,
        org_number: Option<String>,
    }
    let p: Peek = serde_json::from_str(raw).ok()?;
    p.id.or(p.org_number)
}

fn parse_yaml(file: usize, src: &SourceFile) -> Parsed {
    let mut out = Parsed::default();
    let text = src.text.as_str();
    // Into YAML's own value first: it refuses a key given twice, at any depth.
    let value: serde_yaml_ng::Value = match serde_yaml_ng::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!("{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            out.problems.push((
                whole(file, at),
                strip_position(&format!("not valid YAML: {e}")),
            ));
            return out;
        }
    };
    let map = match value {
        serde_yaml_ng::Value::Sequence(_) => {
            match serde_json::to_value(&value) {
                Ok(v) => out.cedar_json.push(v),
                Err(e) => out.problems.push((
                    whole(file, String::new()),
                    format!("not Cedar entities: {e}"),
                )),
            }
            return out;
        }
        serde_yaml_ng::Value::Mapping(m) => m,
        serde_yaml_ng::Value::Null => return out,
        _ => {
            out.problems.push((
                whole(file, "1:1".to_owned()),
                format!("expected an object with keys {}", SECTIONS.join(", ")),
            ));
            return out;
        }
    };
    let lines = LineIndex::new(text);
    // A top-level key's line: where it stands at the start of a line.
    let key_at = |key: &str| {
        let offset = text
            .match_indices(key)
            .map(|(i, _)| i)
            .find(|&i| i == 0 || text.as_bytes()[i - 1] == b'\n')
            .unwrap_or(0);
        let (l, c) = lines.line_col(text, offset);
        (offset, format!("{l}:{c}"))
    };
    for (k, v) in map {
        let (key, section) = match k.as_str().and_then(|k| Some((k, Section::of(k)?))) {
            Some((k, section)) => (k.to_owned(), section),
            _ => {
                out.problems.push((
                    whole(file, key_at(k.as_str().unwrap_or("")).1),
                    format!(
                        "unknown key {:?}; expected one of {}",
                        k.as_str().unwrap_or("(not a string)"),
                        SECTIONS.join(", ")
                    ),
                ));
                continue;
            }
        };
        let records = match v {
            serde_yaml_ng::Value::Sequence(s) => s,
            serde_yaml_ng::Value::Null => Vec::new(),
            _ => {
                out.problems.push((
                    whole(file, key_at(&key).1),
                    format!("{key}: expected a list of records"),
                ));
                continue;
            }
        };
        let (from, _) = key_at(&key);
        let mut y = YamlRecords {
            file,
            text,
            lines: &lines,
            key: &key,
            from,
        };
        read_section(section, &mut y, records, &mut out);
    }
    out
}

/// Parses the records of one section of a YAML file. YAML values carry no
/// positions, so each record is found in the text by its id, searching forward from
/// the record before it: one pass over the file. A record without a readable id
/// is placed at the next list item.
struct YamlRecords<'t> {
    file: usize,
    text: &'t str,
    lines: &'t LineIndex,
    key: &'t str,
    from: usize,
}

impl SectionReader<serde_yaml_ng::Value> for YamlRecords<'_> {
    fn parse<R: serde::de::DeserializeOwned + RecordId>(
        &mut self,
        records: Vec<serde_yaml_ng::Value>,
        problems: &mut Vec<(Origin, String)>,
    ) -> Vec<(Origin, R)> {
        let mut out = Vec::with_capacity(records.len());
        for (i, v) in records.into_iter().enumerate() {
            let id = ["id", "orgNumber"]
                .iter()
                .find_map(|k| v.get(k).and_then(|x| x.as_str()).map(str::to_owned));
            let at = id
                .as_deref()
                .and_then(|id| find_value(self.text, self.from, id).map(|o| (o, id.len())))
                .or_else(|| next_item(self.text, self.from).map(|o| (o, 1)))
                .map(|(offset, len)| {
                    self.from = offset + len + 1;
                    let (l, c) = self.lines.line_col(self.text, offset);
                    format!("{l}:{c}")
                })
                .unwrap_or_default();
            let origin = Origin {
                file: self.file,
                at,
                record: record_label(self.key, i, id.as_deref()),
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
}

/// Byte offset of the next block list item (`- ` first on its line) at or after
/// `from`.
fn next_item(text: &str, from: usize) -> Option<usize> {
    let mut line_start = text.get(..from)?.rfind('\n').map_or(0, |i| i + 1);
    while line_start < text.len() {
        let line = &text[line_start..];
        let line = &line[..line.find('\n').unwrap_or(line.len())];
        let indent = line.len() - line.trim_start().len();
        let item = line_start + indent;
        if item >= from && (line.trim_start().starts_with("- ") || line.trim() == "-") {
            return Some(item);
        }
        line_start += line.len() + 1;
    }
    None
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

// ---- A data directory read while the world is built: the fast path of a load. ----

/// A data file as [`load_streamed`] read it: its name, the SHA-256 of its text,
/// the keys of the records it holds (organisations, then system users, teams and
/// employees, each in file order, as [`super::WorldBuilder::keys`] gives them), and
/// whether it holds entities in Cedar's own format.
#[derive(Debug, Clone)]
pub struct ReadFile {
    pub name: String,
    pub hash: [u8; 32],
    pub keys: Vec<RecordKey>,
    pub cedar: bool,
}

/// The records of a compact JSON data file as raw text, by section: none when the
/// file is YAML, a list (Cedar's entities, Altinn's responses), one of Altinn's
/// shapes, or not a valid data file. Then [`parse_file`] reads it, and says what
/// is wrong. A file this accepts is one `parse_json` reads through the same
/// `Sections` (an Altinn shape has a key that is not a section).
fn compact_sections<'t>(
    name: &str,
    text: &'t str,
) -> Option<Vec<(Section, Vec<&'t serde_json::value::RawValue>)>> {
    if name.ends_with(".yaml") || name.ends_with(".yml") || text.trim_start().starts_with('[') {
        return None;
    }
    let sections: Sections<'t> = serde_json::from_str(text).ok()?;
    sections
        .0
        .into_iter()
        .map(|(k, v)| Some((Section::of(&k)?, v)))
        .collect()
}

/// A data file's text for the fast path, read into `text` (emptied first, and
/// grown once to the file's size: no copies as it grows); false when it cannot
/// be read or is over `max_bytes`, and the full path says why.
fn read_sized(path: &Path, max_bytes: u64, text: &mut String) -> bool {
    use std::io::Read as _;
    let Ok((file, meta)) = crate::problem::open_regular(path) else {
        return false;
    };
    let Ok(len) = usize::try_from(meta.len()) else {
        return false;
    };
    if meta.len() > max_bytes {
        return false;
    }
    text.clear();
    text.reserve(len.saturating_add(1));
    // The file may grow after its size was read: never more than the limit.
    file.take(max_bytes.saturating_add(1))
        .read_to_string(text)
        .is_ok()
        && text.len() as u64 <= max_bytes
}

/// A buffer for the next file's text, of about `len` bytes: the text of an
/// earlier file whose records are all parsed, when one fits (between `len` and
/// twice that), else a new one. The kernel zeroes every page a process touches
/// first, a good part of a load's CPU; a text read into pages already touched
/// costs none of it. Texts not taken are freed here, as they would have been.
fn reuse_text(texts: &mut Vec<Arc<String>>, len: usize) -> String {
    let mut taken = None;
    texts.retain_mut(|t| {
        let free = Arc::strong_count(t) == 1;
        if free && taken.is_none() && (len..=len.saturating_mul(2)).contains(&t.capacity()) {
            taken = Some(std::mem::take(Arc::make_mut(t)));
        }
        !free
    });
    taken.unwrap_or_default()
}

/// Byte ranges of records in a file's text.
type Ranges = Vec<(usize, usize)>;

/// A file's record keys by kind (organisations, system users, teams, employees),
/// in runs numbered in file order, to be put in that order once all are in.
type KeyRuns = [Vec<(usize, Vec<RecordKey>)>; 4];

/// The most bytes of file text read ahead of the parsing threads before the
/// next file is read (see `load_streamed`).
const TEXTS_IN_FLIGHT: usize = 16 << 20;

/// Records handed to a parsing thread at once: a few MB of records in flight,
/// and each hand-over costs nothing beside the parsing.
const CHUNK: usize = 2048;

/// Work for the parsing threads, numbered in the order the files hold it.
enum Work {
    /// Records of a compact JSON file: byte ranges of its text, which the last
    /// chunk of the file frees.
    Raw {
        seq: usize,
        file: usize,
        text: Arc<String>,
        section: Section,
        ranges: Ranges,
    },
    /// A file read whole by [`parse_file`] (YAML, Altinn's shapes, Cedar's entities).
    Parsed {
        seq: usize,
        file: usize,
        parsed: Box<Parsed>,
    },
}

/// What the parsing threads (and the reader) hand to the thread building the world.
enum Done {
    /// A file read: its name and hash.
    File(usize, String, [u8; 32]),
    Orgs(usize, usize, Vec<Organization>),
    SystemUsers(usize, usize, Vec<SystemUser>),
    Teams(usize, usize, Vec<Team>),
    Employees(usize, usize, Vec<Employee>),
    Cedar(usize, Vec<serde_json::Value>),
}

/// Parses the records at `ranges` of `text` as `R` and field-checks each into a
/// world record; none at the first problem.
fn checked<R: serde::de::DeserializeOwned, T>(
    text: &str,
    ranges: &[(usize, usize)],
    bad: &mut Vec<String>,
    mut check: impl FnMut(&R, &mut Vec<String>) -> Option<T>,
) -> Option<Vec<T>> {
    let mut out = Vec::with_capacity(ranges.len());
    for &(from, to) in ranges {
        let r: R = serde_json::from_str(text.get(from..to)?).ok()?;
        out.push(check(&r, bad)?);
        if !bad.is_empty() {
            return None;
        }
    }
    Some(out)
}

/// [`checked`] for records already parsed.
fn checked_parsed<R, T>(
    records: &[(Origin, R)],
    bad: &mut Vec<String>,
    mut check: impl FnMut(&R, &mut Vec<String>) -> Option<T>,
) -> Option<Vec<T>> {
    let mut out = Vec::with_capacity(records.len());
    for (_, r) in records {
        out.push(check(r, bad)?);
        if !bad.is_empty() {
            return None;
        }
    }
    Some(out)
}

/// One piece of work parsed and field-checked; none at the first problem.
fn do_work(work: Work, fields: &mut Fields<'_>, bad: &mut Vec<String>) -> Option<Vec<Done>> {
    match work {
        Work::Raw {
            seq,
            file,
            text,
            section,
            ranges,
        } => {
            let (text, r) = (text.as_str(), ranges.as_slice());
            Some(vec![match section {
                Section::Organizations => Done::Orgs(
                    seq,
                    file,
                    checked(text, r, bad, |x, b| fields.organization(x, b))?,
                ),
                Section::SystemUsers => Done::SystemUsers(
                    seq,
                    file,
                    checked(text, r, bad, |x, b| fields.system_user(x, b))?,
                ),
                Section::Teams => {
                    Done::Teams(seq, file, checked(text, r, bad, |x, b| fields.team(x, b))?)
                }
                Section::Employees => Done::Employees(
                    seq,
                    file,
                    checked(text, r, bad, |x, b| fields.employee(x, b))?,
                ),
            }])
        }
        Work::Parsed { seq, file, parsed } => {
            if !parsed.problems.is_empty() || !parsed.attachments.is_empty() {
                return None;
            }
            let p = &*parsed;
            Some(vec![
                Done::Orgs(
                    seq,
                    file,
                    checked_parsed(&p.orgs, bad, |x, b| fields.organization(x, b))?,
                ),
                Done::SystemUsers(
                    seq,
                    file,
                    checked_parsed(&p.system_users, bad, |x, b| fields.system_user(x, b))?,
                ),
                Done::Teams(
                    seq,
                    file,
                    checked_parsed(&p.teams, bad, |x, b| fields.team(x, b))?,
                ),
                Done::Employees(
                    seq,
                    file,
                    checked_parsed(&p.employees, bad, |x, b| fields.employee(x, b))?,
                ),
                Done::Cedar(file, parsed.cedar_json),
            ])
        }
    }
}

/// Reads the data files at `paths` (in this order, each at most `max_bytes`
/// long) and builds the world from them as they are read, for a valid world
/// without holding every text and every record at once: one thread reads each
/// file, hashes it and splits its sections into chunks of records; two parse and
/// field-check the chunks; this one puts the records into the world, each file's
/// text freed once its last chunk is parsed. Then the references are checked on
/// the world's own records, and the derived indexes built.
///
/// This path finds whether there is a problem, not what it is: none at the first
/// problem of any kind (a file that cannot be read, a record that does not parse
/// or check, an id defined twice, a reference to nothing, a file that adds to
/// another's system users), and the caller reads the files again the full way
/// ([`super::WorldBuilder`]), which reports every problem with its file and line.
/// For a valid world both give the same world.
pub fn load_streamed(
    paths: &[PathBuf],
    max_bytes: u64,
    packages: &AccessPackages,
    schema: &cedar_policy::Schema,
) -> Option<(World, Vec<ReadFile>)> {
    if paths.is_empty() {
        return None;
    }
    let started = std::time::Instant::now();
    let failed = AtomicBool::new(false);
    let fail = || failed.store(true, Ordering::Relaxed);
    let (work_tx, work_rx) = mpsc::sync_channel::<Work>(4);
    let work_rx = Mutex::new(work_rx);
    let (done_tx, done_rx) = mpsc::sync_channel::<Done>(8);
    let mut world = World::default();
    let mut files: Vec<(String, [u8; 32])> = vec![Default::default(); paths.len()];
    // Each file's keys by kind, as (sequence, keys) to be put in file order.
    let mut keys: Vec<KeyRuns> = vec![Default::default(); paths.len()];
    let mut cedar: Vec<(usize, serde_json::Value)> = Vec::new();
    let mut cedar_files = vec![false; paths.len()];
    // Party ids and UUIDs by organisation, for the indexes built at once.
    let (mut party_ids, mut party_uuids) = (Vec::new(), Vec::new());
    std::thread::scope(|scope| {
        let (failed, work_rx) = (&failed, &work_rx);
        let reader_done = done_tx.clone();
        scope.spawn(move || {
            let mut seq = 0;
            // The texts of the files read, until their records are parsed.
            let mut texts: Vec<Arc<String>> = Vec::new();
            for (file, path) in paths.iter().enumerate() {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let name = path.display().to_string();
                let len = std::fs::metadata(path).map_or(0, |m| m.len() as usize);
                // Reading runs far ahead of parsing: a large file's text is read
                // in a few tens of milliseconds and parsed in a second. Read the
                // next one only once the texts still being parsed are small, so
                // that a world of a few large files (an export's sections) holds
                // one text at a time, not two, at its peak.
                while texts
                    .iter()
                    .filter(|t| Arc::strong_count(t) > 1)
                    .map(|t| t.len())
                    .sum::<usize>()
                    > TEXTS_IN_FLIGHT
                {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                let mut text = reuse_text(&mut texts, len);
                if !read_sized(path, max_bytes, &mut text) {
                    return fail();
                }
                let hash = super::manifest::sha256(&text);
                if reader_done
                    .send(Done::File(file, name.clone(), hash))
                    .is_err()
                {
                    return;
                }
                let base = text.as_ptr() as usize;
                let sections: Option<Vec<(Section, Ranges)>> =
                    compact_sections(&name, &text).map(|s| {
                        s.into_iter()
                            .map(|(section, raws)| {
                                let ranges = raws
                                    .iter()
                                    .map(|r| {
                                        let from = r.get().as_ptr() as usize - base;
                                        (from, from + r.get().len())
                                    })
                                    .collect();
                                (section, ranges)
                            })
                            .collect()
                    });
                let sent = match sections {
                    Some(sections) => {
                        let text = Arc::new(text);
                        texts.push(text.clone());
                        sections.into_iter().all(|(section, ranges)| {
                            ranges.chunks(CHUNK).all(|c| {
                                seq += 1;
                                work_tx
                                    .send(Work::Raw {
                                        seq,
                                        file,
                                        text: text.clone(),
                                        section,
                                        ranges: c.to_vec(),
                                    })
                                    .is_ok()
                            })
                        })
                    }
                    None => {
                        seq += 1;
                        let parsed = parse_file(file, &SourceFile { name, text });
                        work_tx
                            .send(Work::Parsed {
                                seq,
                                file,
                                parsed: Box::new(parsed),
                            })
                            .is_ok()
                    }
                };
                if !sent {
                    return;
                }
            }
        });
        for _ in 0..2 {
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                let mut fields = Fields::new(packages);
                let mut bad = Vec::new();
                loop {
                    let next = work_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(work) = next else { return };
                    if failed.load(Ordering::Relaxed) {
                        continue;
                    }
                    match do_work(work, &mut fields, &mut bad) {
                        Some(done) => {
                            for d in done {
                                if done_tx.send(d).is_err() {
                                    return;
                                }
                            }
                        }
                        None => fail(),
                    }
                }
            });
        }
        drop(done_tx);
        // The world is built here, as the records come; an id given twice fails.
        for d in done_rx {
            if failed.load(Ordering::Relaxed) {
                continue;
            }
            let twice = match d {
                Done::File(file, name, hash) => {
                    files[file] = (name, hash);
                    false
                }
                Done::Orgs(seq, file, v) => {
                    let mut k = Vec::with_capacity(v.len());
                    let mut twice = false;
                    for org in v {
                        let n = org.org_number;
                        party_ids.extend(org.party_id().map(|p| (p, n)));
                        party_uuids.extend(org.party_uuid().map(|u| (u, n)));
                        twice |= world.orgs.insert(n, Arc::new(org)).is_some();
                        k.push(RecordKey::Organization(n));
                    }
                    keys[file][0].push((seq, k));
                    twice
                }
                Done::SystemUsers(seq, file, v) => {
                    let mut k = Vec::with_capacity(v.len());
                    let mut twice = false;
                    for su in v {
                        k.push(RecordKey::SystemUser(su.id.clone()));
                        twice |= world
                            .system_users
                            .insert(su.id.clone(), Arc::new(su))
                            .is_some();
                    }
                    keys[file][1].push((seq, k));
                    twice
                }
                Done::Teams(seq, file, v) => {
                    let mut k = Vec::with_capacity(v.len());
                    let mut twice = false;
                    for t in v {
                        k.push(RecordKey::Team(t.id.clone()));
                        twice |= world.teams.insert(t.id.clone(), Arc::new(t)).is_some();
                    }
                    keys[file][2].push((seq, k));
                    twice
                }
                Done::Employees(seq, file, v) => {
                    let mut k = Vec::with_capacity(v.len());
                    let mut twice = false;
                    for e in v {
                        k.push(RecordKey::Employee(e.id.clone()));
                        twice |= world.employees.insert(e.id.clone(), Arc::new(e)).is_some();
                    }
                    keys[file][3].push((seq, k));
                    twice
                }
                Done::Cedar(file, values) => {
                    cedar_files[file] |= !values.is_empty();
                    cedar.extend(values.into_iter().map(|v| (file, v)));
                    false
                }
            };
            if twice {
                fail();
            }
        }
    });
    if failed.into_inner() {
        return None;
    }
    let (extra, problems) = super::entity::cedar_entities(cedar, schema);
    if !problems.is_empty() {
        return None;
    }
    world.extra = Arc::new(extra);
    world.party_ids = super::state::PartyIndex::of_pairs(party_ids)?;
    world.party_uuids = super::state::PartyIndex::of_pairs(party_uuids)?;
    tracing::debug!(
        files = paths.len(),
        ms = started.elapsed().as_millis() as u64,
        "data files read, parsed and put into the world"
    );
    // The references are checked on a view of the world (a clone shares every
    // node) while the derived indexes are built: three threads, as the two
    // halves of the checks cost about what the indexes do.
    let view = world.clone();
    let hold = std::thread::scope(|scope| {
        let orgs = scope.spawn(|| super::checks::organizations_hold(&view));
        let others = scope.spawn(|| super::checks::others_hold(&view));
        world.reindex();
        [orgs, others]
            .into_iter()
            .all(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    });
    drop(view);
    tracing::debug!(
        hold,
        ms = started.elapsed().as_millis() as u64,
        "references checked, indexes built"
    );
    if !hold {
        return None;
    }
    let read = files
        .into_iter()
        .zip(keys)
        .zip(cedar_files)
        .map(|(((name, hash), kinds), cedar)| ReadFile {
            name,
            hash,
            keys: kinds
                .into_iter()
                .flat_map(|mut runs| {
                    runs.sort_by_key(|(seq, _)| *seq);
                    runs.into_iter().flat_map(|(_, k)| k)
                })
                .collect(),
            cedar,
        })
        .collect();
    Some((world, read))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `dir` loads by the streamed path itself, not by the full load it
    /// falls back on at a problem.
    fn streams(dir: &Path) -> bool {
        let src = crate::rules::snapshot::Sources::embedded();
        let packages = AccessPackages::parse(&src.packages.name, &src.packages.text).unwrap();
        let schema = crate::rules::policy::load_schema(&src.schema).unwrap();
        let files = list_data_dir(dir).unwrap();
        load_streamed(&files, 1 << 30, &packages, &schema).is_some()
    }

    #[test]
    fn valid_layouts_stream_and_a_problem_falls_back() {
        let firms = tempfile::tempdir().unwrap();
        crate::tools::gen::write_world(firms.path(), 3, 2, 3).unwrap();
        assert!(streams(firms.path()));
        let sections = tempfile::tempdir().unwrap();
        crate::tools::gen::write_world_sections(sections.path(), 3, 3).unwrap();
        assert!(streams(sections.path()));
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        assert!(streams(&examples.join("world")), "YAML streams too");
        // Files that add to other files' system users are read the full way.
        assert!(!streams(&examples.join("altinn-world")));
        // An employee defined twice, or naming a team nobody defines.
        let e =
            r#"{"employees": [{"id": "e0@f0.no", "organization": "500000015", "active": true}]}"#;
        std::fs::write(sections.path().join("more.json"), e).unwrap();
        assert!(!streams(sections.path()));
        let e = r#"{"employees": [{"id": "x", "organization": "500000015", "active": true, "teams": ["none"]}]}"#;
        std::fs::write(sections.path().join("more.json"), e).unwrap();
        assert!(!streams(sections.path()));
        std::fs::remove_file(sections.path().join("more.json")).unwrap();
        assert!(streams(sections.path()));
    }

    fn parse(text: &str) -> Parsed {
        let src = SourceFile {
            name: "t.yaml".into(),
            text: text.into(),
        };
        parse_yaml(0, &src)
    }

    // The YAML library must refuse a repeated key itself, at any depth, with a
    // line and column (those of the mapping that holds the key twice): the loader
    // relies on that and checks nothing after it.
    #[test]
    fn yaml_key_given_twice_is_refused_with_its_position() {
        let p = parse("organizations:\n  - orgNumber: \"310001015\"\n    name: A\n    name: B\n");
        assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
        let (at, msg) = &p.problems[0];
        assert_eq!(at.at, "2:5", "{msg}");
        assert!(msg.contains("duplicate entry with key \"name\""), "{msg}");
        // The same record with the key once loads.
        let ok = parse("organizations:\n  - orgNumber: \"310001015\"\n    name: A\n");
        assert!(ok.problems.is_empty(), "{:?}", ok.problems);
        assert_eq!(ok.orgs.len(), 1);
    }

    #[test]
    fn yaml_anchor_and_alias_are_resolved() {
        // A whole record repeated through an alias (the duplicate id is caught
        // later, across files; parsing only has to expand it).
        let p = parse("organizations:\n  - &o {orgNumber: \"310001015\", name: A}\n  - *o\n");
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(p.orgs.len(), 2);
        assert_eq!(p.orgs[1].1.org_number, "310001015");
        assert_eq!(p.orgs[1].1.name, "A");
        let q = parse("organizations:\n  - {orgNumber: &n \"310001015\", name: *n}\n");
        assert!(q.problems.is_empty(), "{:?}", q.problems);
        assert_eq!(q.orgs[0].1.name, "310001015");
    }

    // YAML 1.1 merge keys (`<<:`) are not applied, as docs/data.md says: a record
    // that takes its id from one is refused, not loaded with a guessed id.
    #[test]
    fn yaml_merge_keys_are_not_applied() {
        let p = parse("organizations:\n  - <<: {orgNumber: \"310001015\"}\n    name: A\n");
        assert!(p.orgs.is_empty());
        assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
        assert!(
            p.problems[0].1.contains("missing field `orgNumber`"),
            "{:?}",
            p.problems
        );
    }

    // Every YAML problem keeps its line: a record without a readable id is placed
    // at its list item, a key that is not a section at the key.
    #[test]
    fn yaml_problems_keep_their_line() {
        let p = parse("teams:\n  - id: t1\n    organization: \"310001015\"\n    clients: all\n  - organization: \"310001015\"\n    clients: all\nextra: 1\n");
        let at: Vec<(&str, &str)> = p
            .problems
            .iter()
            .map(|(o, m)| (o.at.as_str(), m.as_str()))
            .collect();
        assert!(
            at.iter()
                .any(|(a, m)| *a == "5:3" && m.contains("missing field `id`")),
            "{at:?}"
        );
        assert!(
            at.iter()
                .any(|(a, m)| *a == "7:1" && m.contains("unknown key \"extra\"")),
            "{at:?}"
        );
        assert_eq!(p.teams.len(), 1);
    }

    #[test]
    fn yaml_org_number_written_as_a_number_is_refused() {
        let p = parse("organizations:\n  - {orgNumber: 310001015, name: A}\n");
        assert!(p.orgs.is_empty());
        assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
        assert!(p.problems[0].1.contains("orgNumber"), "{:?}", p.problems);
    }
}
