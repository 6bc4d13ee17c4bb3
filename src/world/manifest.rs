//! The data manifest (`--data-manifest`): which data files make up the world and
//! the SHA-256 of each, in `sha256sum`'s format.
//!
//! A tool that writes several files, or a writer that pauses with a file closed,
//! cannot be told apart from a finished write by looking at the files alone. With a
//! manifest, the set is read only when every listed file matches it, so a world is
//! never built from some files old and some new, or from a file cut short. Files
//! the manifest does not list are not part of the world.
//!
//! A manifest may also say when the data was last synced from Altinn (`vakt
//! altinn sync`): one line `# synced_at <RFC 3339 time in UTC>`. It is a comment
//! to `sha256sum -c`, and it is renamed into place with the list it stamps, so the
//! stamp and the data it came with are always read together.

use crate::problem::{read_data_file as read_file, Problem, Problems, SourceFile};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A manifest read and checked: the data files it lists, in its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub files: Vec<(PathBuf, [u8; 32])>,
    /// When the data was last synced from Altinn (its `# synced_at` line), if it
    /// says.
    pub synced_at: Option<SystemTime>,
}

/// The word that starts the stamp's comment line.
const STAMP_KEY: &str = "synced_at";

/// The manifest line that stamps the data as synced at `at`:
/// `# synced_at 2026-12-07T20:06:37.123456789Z`.
pub fn stamp_line(at: SystemTime) -> String {
    format!("# {STAMP_KEY} {}", humantime::format_rfc3339_nanos(at))
}

/// The stamp a comment line (without its `#`) holds: `None` for any other
/// comment, else the time or what is wrong with it.
fn stamp_of(comment: &str) -> Option<Result<SystemTime, String>> {
    let rest = comment.trim_start().strip_prefix(STAMP_KEY)?;
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    Some(humantime::parse_rfc3339(rest.trim()).map_err(|_| {
        format!(
            "{STAMP_KEY} {:?} is not an RFC 3339 time in UTC, such as 2026-12-07T20:06:37Z",
            rest.trim()
        )
    }))
}

/// The most data files one manifest may list.
const MAX_FILES: usize = 100_000;

fn is_data_name(n: &str) -> bool {
    n.ends_with(".json") || n.ends_with(".yaml") || n.ends_with(".yml")
}

/// Reads the manifest at `path`. Each line is `<64 hex digits>  <name>` (or
/// `<hex> *<name>`, sha256sum's binary mode); blank lines and `#` comments are
/// skipped. A name is a data file directly in `data_dir`. Every problem is
/// reported with its line.
pub fn read_manifest(path: &Path, data_dir: &Path, max_bytes: u64) -> Result<Manifest, Problems> {
    let shown = path.display().to_string();
    let text =
        read_file(path, max_bytes).map_err(|m| Problems(vec![Problem::new(&shown, "", m)]))?;
    parse_manifest(&shown, &text, data_dir)
}

/// [`read_manifest`] on a manifest's text, named `shown` in problems: the caller
/// that checked the text (that it is whole) parses exactly that text.
pub fn parse_manifest(shown: &str, text: &str, data_dir: &Path) -> Result<Manifest, Problems> {
    let shown = shown.to_owned();
    let mut files = Vec::new();
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    let mut synced_at = None;
    for (i, line) in text.lines().enumerate() {
        let at = format!("{}:1", i + 1);
        let line = line.trim_end_matches('\r');
        if let Some(stamp) = line.strip_prefix('#').and_then(stamp_of) {
            match stamp {
                Ok(_) if synced_at.is_some() => problems.push(Problem::new(
                    &shown,
                    &at,
                    format!("{STAMP_KEY} is given twice"),
                )),
                Ok(t) => synced_at = Some(t),
                Err(m) => problems.push(Problem::new(&shown, &at, m)),
            }
            continue;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((digest, name)) = split_line(line) else {
            problems.push(Problem::new(
                &shown,
                &at,
                "expected `<64 hex digits>  <file name>`, as sha256sum writes it",
            ));
            continue;
        };
        let mut hash = [0u8; 32];
        if hex::decode_to_slice(digest, &mut hash).is_err() {
            problems.push(Problem::new(
                &shown,
                &at,
                "the SHA-256 is not 64 hexadecimal digits",
            ));
            continue;
        }
        if name.contains('/') || name.starts_with("..") || !is_data_name(name) {
            problems.push(Problem::new(
                &shown,
                &at,
                format!(
                    "{name:?} is not a data file name: a .json, .yaml or .yml file directly in the data directory"
                ),
            ));
            continue;
        }
        if !seen.insert(name.to_string()) {
            problems.push(Problem::new(
                &shown,
                &at,
                format!("{name:?} is listed twice"),
            ));
            continue;
        }
        files.push((data_dir.join(name), hash));
    }
    if files.len() > MAX_FILES {
        problems.push(Problem::new(
            &shown,
            "",
            format!("lists {} files, more than {MAX_FILES}", files.len()),
        ));
    }
    if files.is_empty() && problems.is_empty() {
        problems.push(Problem::new(&shown, "", "lists no data file"));
    }
    if problems.is_empty() {
        Ok(Manifest { files, synced_at })
    } else {
        Err(Problems(problems))
    }
}

/// `<hex>  <name>` or `<hex> *<name>`.
fn split_line(line: &str) -> Option<(&str, &str)> {
    let (digest, rest) = line.split_once(' ')?;
    let name = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('*'))?;
    (digest.len() == 64 && !name.is_empty()).then_some((digest, name))
}

/// The SHA-256 of a text, as the manifest states it.
pub fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Reads every file the manifest lists; each must match its SHA-256. A file that
/// is missing or does not match is a problem naming it (and the manifest).
pub fn read_listed(
    manifest: &Manifest,
    manifest_path: &Path,
    max_bytes: u64,
) -> Result<Vec<SourceFile>, Problems> {
    let mut out = Vec::with_capacity(manifest.files.len());
    let mut problems = Vec::new();
    for (p, want) in &manifest.files {
        let name = p.display().to_string();
        match read_file(p, max_bytes) {
            Ok(text) if sha256(&text) == *want => out.push(SourceFile { name, text }),
            Ok(_) => problems.push(Problem::new(
                name,
                "",
                format!(
                    "does not match its SHA-256 in the data manifest {}",
                    manifest_path.display()
                ),
            )),
            Err(m) => problems.push(Problem::new(
                name,
                "",
                format!(
                    "{m} (listed in the data manifest {})",
                    manifest_path.display()
                ),
            )),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Problems(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sha256sum_lines_and_names_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("SHA256SUMS");
        let h = "ab".repeat(32);
        std::fs::write(
            &m,
            format!("# made by a tool\n{h}  a.yaml\n{h} *b.json\n\n{h}  a.yaml\nxyz  c.yaml\n{h}  ../d.yaml\n{h}  notes.txt\n"),
        )
        .unwrap();
        let e = read_manifest(&m, dir.path(), 1 << 20).unwrap_err();
        let lines: Vec<&str> = e.0.iter().map(|p| p.at.as_str()).collect();
        assert_eq!(lines, ["5:1", "6:1", "7:1", "8:1"], "{e}");
        assert!(e.0[0].message.contains("listed twice"), "{e}");
        std::fs::write(&m, format!("{h}  a.yaml\n{h} *b.json\n")).unwrap();
        let ok = read_manifest(&m, dir.path(), 1 << 20).unwrap();
        assert_eq!(ok.files.len(), 2);
        assert_eq!(ok.files[1].0, dir.path().join("b.json"));
        std::fs::write(&m, "# nothing\n").unwrap();
        assert!(read_manifest(&m, dir.path(), 1 << 20)
            .unwrap_err()
            .to_string()
            .contains("lists no data file"));
    }

    #[test]
    fn listed_files_must_match() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "employees: []\n").unwrap();
        let m = Manifest {
            files: vec![(dir.path().join("a.yaml"), sha256("employees: []\n"))],
            synced_at: None,
        };
        let path = dir.path().join("SHA256SUMS");
        assert_eq!(read_listed(&m, &path, 1 << 20).unwrap().len(), 1);
        std::fs::write(dir.path().join("a.yaml"), "employees: [\n").unwrap();
        let e = read_listed(&m, &path, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
    }

    #[test]
    fn a_stamp_line_says_when_the_data_was_synced() {
        let dir = tempfile::tempdir().unwrap();
        let h = "ab".repeat(32);
        let at = humantime::parse_rfc3339("2026-12-07T20:06:37.5Z").unwrap();
        let text = format!(
            "{}\n# made by vakt altinn sync\n{h}  a.yaml\n",
            stamp_line(at)
        );
        let m = parse_manifest("SHA256SUMS", &text, dir.path()).unwrap();
        assert_eq!(m.synced_at, Some(at));
        assert_eq!(m.files.len(), 1);
        let m = parse_manifest("SHA256SUMS", &format!("{h}  a.yaml\n"), dir.path()).unwrap();
        assert_eq!(m.synced_at, None);
        // Another comment that merely begins with the word is a comment.
        let m = parse_manifest("M", &format!("# synced_atlas\n{h}  a.yaml\n"), dir.path());
        assert_eq!(m.unwrap().synced_at, None);
        let bad = format!(
            "# synced_at yesterday\n#synced_at 2026-12-07T20:06:37+01:00\n# synced_at 2026-12-07T20:06:37Z\n# synced_at 2026-12-07T20:06:38Z\n{h}  a.yaml\n"
        );
        let e = parse_manifest("M", &bad, dir.path()).unwrap_err();
        let lines: Vec<&str> = e.0.iter().map(|p| p.at.as_str()).collect();
        assert_eq!(lines, ["1:1", "2:1", "4:1"], "{e}");
        assert!(e.0[0].message.contains("RFC 3339"), "{e}");
        assert!(e.0[2].message.contains("twice"), "{e}");
    }
}
