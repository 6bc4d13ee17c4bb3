//! When a decision log file is rotated, and what the rotated file is called.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Rotate a file once it holds `max_bytes`, or once it has been written to for
/// `max_age`; neither set means never.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    pub max_bytes: Option<u64>,
    pub max_age: Option<Duration>,
}

impl Rotation {
    /// Whether a file of `bytes` bytes, begun at `opened`, is due for rotation.
    pub fn due(&self, bytes: u64, opened: Instant) -> bool {
        bytes > 0
            && (self.max_bytes.is_some_and(|max| bytes >= max)
                || self.max_age.is_some_and(|age| opened.elapsed() >= age))
    }
}

/// `<log>.<seq of its last record, 12 digits>`: a rotated log file. The names sort
/// in chain order, so `vakt audit verify log.[0-9]* log` checks the whole chain
/// (`log.*` would take in the checkpoint, `log.checkpoint`, too).
pub fn rotated_path(log: &Path, last_seq: u64) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".{last_seq:012}"));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_by_size_or_age_never_when_empty() {
        let now = Instant::now();
        let by_size = Rotation {
            max_bytes: Some(100),
            max_age: None,
        };
        assert!(!by_size.due(99, now));
        assert!(by_size.due(100, now));
        assert!(!Rotation::default().due(u64::MAX, now));
        let by_age = Rotation {
            max_bytes: None,
            max_age: Some(Duration::ZERO),
        };
        assert!(by_age.due(1, now));
        assert!(!by_age.due(0, now));
        assert_eq!(
            rotated_path(Path::new("/l/d.jsonl"), 42),
            Path::new("/l/d.jsonl.000000000042")
        );
    }
}
