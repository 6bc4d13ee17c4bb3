//! The sync stamp: when `vakt altinn sync` last read Altinn successfully, written
//! with the data it synced, so every sidecar knows how old its copy of Altinn is
//! (`vakt serve --max-sync-age`, `Status.last_sync_unix`).
//!
//! - Files: a `# synced_at <RFC 3339>` line in the data manifest
//!   (`crate::world::stamp_line`). The manifest is the commit point of a set of
//!   data files, renamed into place after them, so the stamp it carries is read
//!   exactly when the data it lists is: a sync writes its data files, then the
//!   manifest with [`stamp_line`](crate::world::stamp_line) among its lines, and
//!   renames it in. A sync that changed nothing restamps the manifest alone with
//!   [`write_files`].
//! - PostgreSQL: the one row of `vakt.sync_stamp` (migration 4), written by
//!   `postgres::write::write_sync_stamp` in the sync's own transaction, so it
//!   commits with the rows it stamps. Sidecars read it in every poll's snapshot.
//!
//! Data without a stamp was never synced: with `--max-sync-age` set, a sidecar
//! denies every request on it (fail closed).

use crate::problem::{read_data_file, Problems, DEFAULT_MAX_FILE_BYTES};
use crate::world::{parse_manifest, stamp_line};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Why the stamp could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StampError {
    /// The manifest could not be read, or the new one written or renamed.
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    /// The manifest has problems of its own: a broken manifest is not stamped.
    #[error("{0}")]
    Manifest(Problems),
}

fn io(path: &Path, e: impl std::fmt::Display) -> StampError {
    StampError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The manifest's text with its stamp set to `at`: any `# synced_at` line
/// replaced by one first line; every other line kept as it was.
pub fn restamp(text: &str, at: SystemTime) -> String {
    let mut out = stamp_line(at);
    out.push('\n');
    for line in text.lines() {
        let is_stamp = line
            .strip_prefix('#')
            .map(str::trim_start)
            .and_then(|c| c.strip_prefix("synced_at"))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']));
        if !is_stamp {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Stamps the data manifest at `manifest` as synced at `at`: its stamp line set
/// (see [`restamp`]), written to a temporary file beside it, flushed to disk and
/// renamed into place, so a sidecar reads the old manifest or the new one, never
/// a part. The manifest must read as a manifest first (its listed files are not
/// checked: that is what a sidecar does).
pub fn write_files(manifest: &Path, at: SystemTime) -> Result<(), StampError> {
    let text = read_data_file(manifest, DEFAULT_MAX_FILE_BYTES).map_err(|m| io(manifest, m))?;
    let dir = match manifest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let new = restamp(&text, at);
    parse_manifest(&manifest.display().to_string(), &new, dir).map_err(StampError::Manifest)?;
    let name = manifest
        .file_name()
        .ok_or_else(|| io(manifest, "names no file"))?;
    let tmp = dir.join(format!(".{}.stamp.tmp", name.to_string_lossy()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(new.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, manifest)?;
        // The rename itself reaches the disk with the directory.
        std::fs::File::open(dir)?.sync_all()
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(manifest, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_is_restamped_in_place_of_its_old_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("SHA256SUMS");
        let h = "ab".repeat(32);
        let first = humantime::parse_rfc3339("2026-12-07T20:00:00Z").unwrap();
        let second = humantime::parse_rfc3339("2026-12-07T20:05:00Z").unwrap();
        std::fs::write(&m, format!("# by hand\n{h}  a.yaml\n")).unwrap();
        write_files(&m, first).unwrap();
        write_files(&m, second).unwrap();
        let text = std::fs::read_to_string(&m).unwrap();
        assert_eq!(
            text,
            format!("# synced_at 2026-12-07T20:05:00.000000000Z\n# by hand\n{h}  a.yaml\n")
        );
        let read = parse_manifest("m", &text, dir.path()).unwrap();
        assert_eq!(read.synced_at, Some(second));
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A broken manifest is not stamped.
        std::fs::write(&m, "not a manifest\n").unwrap();
        assert!(matches!(
            write_files(&m, second),
            Err(StampError::Manifest(_))
        ));
        assert_eq!(std::fs::read_to_string(&m).unwrap(), "not a manifest\n");
    }
}
