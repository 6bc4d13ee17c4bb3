//! Writing a report file (a review, a JUnit file, a counterexample) so that a
//! symlink at the path is replaced, never followed.
//!
//! `std::fs::write` opens the path as it finds it: a symlink planted there, in a
//! shared or world-writable directory, would have the report written over
//! whatever it points at, and a dangling one would create its target. Writing to
//! a new file beside it and renaming that over the path touches only the path.

use anyhow::Context as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Writes `bytes` to `path` through a new file in the same directory, renamed
/// over `path` once complete. A reader never sees half a report.
pub(super) fn write_report(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("writing {}: not a file name", path.display()))?;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        anyhow::bail!("writing {}: is a directory", path.display());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut nonce = [0u8; 6];
    getrandom::fill(&mut nonce).context("random bytes for a temporary name")?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        hex::encode(nonce)
    ));
    // create_new is O_CREAT|O_EXCL: it fails on anything already there,
    // a symlink included, so the temporary file is ours alone.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_at_the_path_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let out = dir.path().join("review.csv");
        std::os::unix::fs::symlink(&victim, &out).unwrap();
        write_report(&out, b"report").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(&out).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "report");

        let dangling = dir.path().join("dangling.csv");
        let target = dir.path().join("created-by-the-link");
        std::os::unix::fs::symlink(&target, &dangling).unwrap();
        write_report(&dangling, b"report").unwrap();
        assert!(!target.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_directory_at_the_path_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let e = write_report(dir.path(), b"x").unwrap_err();
        assert!(format!("{e:#}").contains(&dir.path().display().to_string()));
    }
}
