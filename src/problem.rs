//! Vakt's input files, and one shape for every problem found in them (schema,
//! policies, data, test suites): the file, where in it, and a plain-English message.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One input file, by display name (its path) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub file: String,
    /// `line:column` for text positions, a record path such as `employees[3] ("kari")`
    /// for data records, or empty for a whole-file problem.
    pub at: String,
    pub message: String,
}

impl Problem {
    pub fn new(file: impl Into<String>, at: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            at: at.into(),
            message: message.into(),
        }
    }

    /// A problem at a byte offset of `text`, reported as `line:column` (1-based).
    pub fn at_offset(file: &str, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, col) = line_col(text, offset);
        Self::new(file, format!("{line}:{col}"), message)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at.as_bytes().first() {
            None => write!(f, "{}: {}", self.file, self.message),
            Some(b) if b.is_ascii_digit() => {
                write!(f, "{}:{}: {}", self.file, self.at, self.message)
            }
            Some(_) => write!(f, "{}: {}: {}", self.file, self.at, self.message),
        }
    }
}

/// The default limit on the size of one input file (`--max-file-bytes`).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 30;

/// The paths directly in `dir` whose name passes `keep`, in name order, skipping
/// Kubernetes ConfigMap internals (`..data` and the like).
pub(crate) fn list_dir(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>, Problems> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Problems(vec![Problem::new(
            dir.display().to_string(),
            "",
            format!("cannot read directory: {e}"),
        )])
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with("..") && keep(n))
        })
        .collect();
    paths.sort();
    Ok(paths)
}

/// Reads the files directly in `dir` whose name passes `keep`, in name order, each
/// at most `max_bytes` long. An entry with a wanted name that is not a readable
/// regular file (a directory, a FIFO, a dangling symbolic link, a link loop) is a
/// problem, not a silent skip: data that is meant to be there and is not must not
/// pass unnoticed. Kubernetes ConfigMap internals (`..data` and the like) are skipped.
pub fn read_dir_files(
    dir: &Path,
    keep: impl Fn(&str) -> bool,
    max_bytes: u64,
) -> Result<Vec<SourceFile>, Problems> {
    let paths = list_dir(dir, keep)?;
    let mut files = Vec::with_capacity(paths.len());
    let mut problems = Vec::new();
    for p in paths {
        match read_data_file(&p, max_bytes) {
            Ok(text) => files.push(SourceFile {
                name: p.display().to_string(),
                text,
            }),
            Err(m) => problems.push(Problem::new(p.display().to_string(), "", m)),
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(Problems(problems))
    }
}

/// The cap on files no flag sizes: the configuration, TLS certificates, keys and
/// CA bundles, signing keys. Each is a few kilobytes; a megabyte is far past any
/// real one and still harmless to hold.
pub(crate) const MAX_SMALL_FILE_BYTES: u64 = 1 << 20;

/// The cap on a decision log read whole (`vakt replay`, `vakt shadow report`):
/// generous, since logs are large, but bounded, since the whole text is held.
pub(crate) const MAX_LOG_BYTES: u64 = 4 << 30;

/// One regular file's text, at most `max_bytes` long. The message does not name
/// the file (callers put it in front); it names no flag either, see
/// [`read_data_file`].
///
/// Every input file Vakt reads goes through here or [`open_regular`]: it must be
/// a regular file once symbolic links are followed (a Kubernetes ConfigMap mount
/// is a chain of links to a regular file), so a FIFO, a device such as
/// `/dev/zero` or a directory is refused before a byte is read. There is no
/// exception for `-` or `/dev/stdin`.
pub(crate) fn read_file(p: &Path, max_bytes: u64) -> Result<String, String> {
    read_capped(p, max_bytes, None)
}

/// [`read_file`] for policy, schema and data files and the data manifest, whose
/// cap is `--max-file-bytes`: a refusal for size names the flag.
pub(crate) fn read_data_file(p: &Path, max_bytes: u64) -> Result<String, String> {
    read_capped(p, max_bytes, Some("--max-file-bytes"))
}

/// [`read_file`] with the file's name in front of any refusal: `PATH: why`.
pub(crate) fn read_named(p: &Path, max_bytes: u64) -> Result<String, String> {
    read_file(p, max_bytes).map_err(|m| format!("{}: {m}", p.display()))
}

/// Opens `p` for reading only if it is a regular file (after following symbolic
/// links), with its metadata, for a caller that streams it. The type is checked
/// before the open, so a FIFO is never opened; the open itself is non-blocking
/// and the opened file's type checked again, so a FIFO swapped in between the
/// two does not hang the open either. (O_NONBLOCK changes nothing for reads of a
/// regular file.)
pub(crate) fn open_regular(p: &Path) -> Result<(std::fs::File, std::fs::Metadata), String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) => {
            return Err(match std::fs::symlink_metadata(p) {
                Ok(l) if l.file_type().is_symlink() => {
                    format!("is a symbolic link that leads nowhere readable: {e}")
                }
                _ => format!("cannot read: {e}"),
            })
        }
    };
    not_regular(&meta)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
        .map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    not_regular(&meta)?;
    Ok((file, meta))
}

/// The refusal for anything but a regular file.
fn not_regular(meta: &std::fs::Metadata) -> Result<(), String> {
    if meta.is_file() {
        return Ok(());
    }
    let what = if meta.is_dir() {
        "a directory"
    } else {
        "a special file (FIFO, socket or device)"
    };
    Err(format!("is {what}, not a regular file"))
}

fn read_capped(p: &Path, max_bytes: u64, flag: Option<&str>) -> Result<String, String> {
    let too_big = |n: u64| {
        let flag = flag.map(|f| format!(" ({f})")).unwrap_or_default();
        format!("is {n} bytes, more than the limit of {max_bytes} bytes{flag}")
    };
    let (file, meta) = open_regular(p)?;
    if meta.len() > max_bytes {
        return Err(too_big(meta.len()));
    }
    // The file may grow after the size was read: never read more than the limit.
    let mut text = String::new();
    file.take(max_bytes + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    if text.len() as u64 > max_bytes {
        return Err(too_big(text.len() as u64));
    }
    Ok(text)
}

/// Every problem found; loading fails if there is any.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{} found:", if n == 1 { "" } else { "s" })?;
        for p in &self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// 1-based line of a byte offset (a TOML span's start, say).
pub(crate) fn line_at(text: &str, offset: usize) -> usize {
    line_col(text, offset).0
}

/// The line each key of a TOML text is set on (or its table begins on), by its
/// dotted path (`maskinporten.scopes.a-ordning`); empty when the text is not TOML.
pub(crate) fn toml_lines(text: &str) -> std::collections::HashMap<String, usize> {
    fn walk(
        text: &str,
        prefix: &str,
        table: &toml::de::DeTable<'_>,
        out: &mut std::collections::HashMap<String, usize>,
    ) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{prefix}.{}", key.get_ref())
            };
            out.entry(path.clone())
                .or_insert_with(|| line_at(text, key.span().start));
            if let toml::de::DeValue::Table(t) = value.get_ref() {
                walk(text, &path, t, out);
            }
        }
    }
    let mut out = std::collections::HashMap::new();
    if let Ok(table) = toml::de::DeTable::parse(text) {
        walk(text, "", table.get_ref(), &mut out);
    }
    out
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Problems from a miette diagnostic (Cedar's parse and validation errors): one per
/// labelled span, or one for the whole file when the diagnostic has no span.
pub fn from_diagnostic(file: &str, text: &str, d: &dyn miette::Diagnostic) -> Vec<Problem> {
    let mut message = d.to_string();
    if let Some(help) = d.help() {
        message = format!("{message} ({help})");
    }
    let labels: Vec<_> = d.labels().map(|l| l.collect()).unwrap_or_default();
    match labels.first() {
        Some(l) => vec![Problem::at_offset(file, text, l.offset(), message)],
        None => vec![Problem::new(file, "", message)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read_and_only_up_to_their_cap() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.toml");
        std::fs::write(&file, "0123456789").unwrap();
        assert_eq!(read_file(&file, 10).unwrap(), "0123456789");
        // The cap: only the data files' names the flag that sets theirs.
        let general = read_file(&file, 9).unwrap_err();
        assert_eq!(general, "is 10 bytes, more than the limit of 9 bytes");
        let data = read_data_file(&file, 9).unwrap_err();
        assert!(data.ends_with("(--max-file-bytes)"), "{data}");
        // Through a chain of symbolic links, as a ConfigMap mounts it.
        std::os::unix::fs::symlink(&file, dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("..data"), dir.path().join("b.toml")).unwrap();
        assert_eq!(
            read_file(&dir.path().join("b.toml"), 10).unwrap(),
            "0123456789"
        );
        // A device, a FIFO (nothing writes to it: opening it would block) and a
        // directory are refused before any byte is read.
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for p in [Path::new("/dev/zero"), &fifo] {
            let why = read_file(p, 1 << 20).unwrap_err();
            assert!(why.contains("special file"), "{why}");
            assert!(open_regular(p).is_err());
        }
        assert!(read_file(dir.path(), 1 << 20)
            .unwrap_err()
            .contains("directory"));
        // A refusal through `read_named` names the file.
        let named = read_named(&fifo, 1 << 20).unwrap_err();
        assert!(
            named.starts_with(&format!("{}: is ", fifo.display())),
            "{named}"
        );
    }

    #[test]
    fn positions() {
        let t = "ab\ncdé\nf";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 7), (2, 4));
        assert_eq!(line_col(t, 999), (3, 2));
        assert_eq!(
            Problem::at_offset("p.cedar", t, 4, "bad").to_string(),
            "p.cedar:2:2: bad"
        );
        assert_eq!(
            Problem::new("d.yaml", "teams[0]", "bad").to_string(),
            "d.yaml: teams[0]: bad"
        );
    }
}
