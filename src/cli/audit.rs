//! `vakt audit`: check a decision log's hash chain and signed checkpoints, and make
//! the key pair that signs them.

use crate::decision_log::checkpoint::{
    checkpoint_path, generate_key_pair, read_small, Checkpoint, PublicKey,
};
use crate::decision_log::verify::{for_each_line, verify_files, Against, Attestation};
use anyhow::Context as _;
use clap::Subcommand;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub(super) enum AuditCommand {
    /// Verify a decision log: its hash chain (oldest file first, for rotated
    /// files), its checkpoint and, with --public-key, the checkpoints' signatures.
    /// Says which records it checked (first and last seq) and, for each range of
    /// them, whether a checkpoint attests it. Exits 0 when it holds, 1 when it was
    /// tampered with or is incomplete (saying how), 2 when a file cannot be read.
    Verify {
        /// Log files, oldest first: `decisions.jsonl.[0-9]* decisions.jsonl`.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// More checkpoints to check the log against: checkpoint files, or Vakt's
        /// diagnostic log, whose checkpoint events are copies kept outside the log's
        /// directory (repeatable). The checkpoint beside the log,
        /// `<last file>.checkpoint`, is always read when it exists.
        #[arg(long, value_name = "FILE")]
        checkpoint: Vec<PathBuf>,
        /// The public key of the checkpoint signing key (`vakt audit keygen`): every
        /// checkpoint must carry its signature, a checkpoint must be given, and
        /// every record must be attested by a signed checkpoint.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// The seq of the first record given, when older rotated files are gone
        /// (retention): the records are checked from there on. Without it the
        /// files must begin at the log's first record (seq 1).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        from_seq: Option<u64>,
    },
    /// Write a new Ed25519 key pair for signing checkpoints: PREFIX.key (private,
    /// PKCS#8 PEM, readable only by its owner) and PREFIX.pub (public, PEM).
    Keygen {
        /// Path prefix of the two files [default: vakt-audit]
        #[arg(long, value_name = "PREFIX", default_value = "vakt-audit")]
        out: PathBuf,
        /// Replace existing key files.
        #[arg(long)]
        force: bool,
    },
}

pub(super) fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify {
            files,
            checkpoint,
            public_key,
            from_seq,
        } => run_verify(&files, &checkpoint, public_key.as_deref(), from_seq),
        AuditCommand::Keygen { out, force } => keygen(&out, force),
    }
}

fn run_verify(
    files: &[PathBuf],
    copies: &[PathBuf],
    public_key: Option<&Path>,
    from_seq: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let (current, others, key) = read_checkpoints_and_key(files, copies, public_key)?;
    let against = Against {
        current: current.as_ref(),
        copies: &others,
        key: key.as_ref(),
    };
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let outcome = verify_files(&paths, &against, from_seq).map_err(anyhow::Error::msg)?;
    match outcome {
        Ok(v) => {
            let mut line = format!(
                "ok: {} records checked, {}, from {} {}, chain head {}",
                v.records,
                if v.records == 0 {
                    "none".to_owned()
                } else {
                    format!("seq {} to {}", v.first, v.last)
                },
                v.files,
                if v.files == 1 { "file" } else { "files" },
                v.head
            );
            if let Some(n) = from_seq {
                line += &format!(" (from --from-seq {n}: records before it were not checked)");
            }
            if let Some(c) = &current {
                line += &format!(
                    ", consistent with the checkpoint of record seq {}",
                    c.last_seq
                );
            }
            if !others.is_empty() {
                line += &format!(" and {} copies", others.len());
            }
            if let Some(k) = &key {
                line += &format!(", every checkpoint signed by key {}", k.key_id);
            } else if current.as_ref().is_some_and(|c| c.signature.is_some()) {
                line += "; the checkpoint is signed but its signature was not checked (give --public-key)";
            } else if v.unsigned_tail > 0 {
                line += &format!(
                    "; the last {} records are after the newest checkpoint",
                    v.unsigned_tail
                );
            }
            if v.checkpoints == 0 {
                line += "; no checkpoint given, so a cut tail cannot be detected";
            }
            println!("{line}");
            for r in &v.ranges {
                println!(
                    "  seq {} to {}: {}",
                    r.from,
                    r.to,
                    attestation(r.attestation, key.is_some())
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err((broken, ranges)) => {
            println!("BROKEN: {broken}");
            for r in &ranges {
                println!(
                    "  seq {} to {}: {}",
                    r.from,
                    r.to,
                    attestation(r.attestation, key.is_some())
                );
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// What a range's attestation means, as the report line says it.
fn attestation(a: Attestation, signed: bool) -> String {
    match a {
        Attestation::Covered if signed => "attested by a signed checkpoint".into(),
        Attestation::Covered => {
            "covered by a checkpoint (signatures not checked: give --public-key)".into()
        }
        Attestation::Unattested { note } => format!(
            "NOT attested: on file past the last checkpoint when Vakt continued the log (its record seq {note} says so)"
        ),
        Attestation::AfterNewest => "after the newest checkpoint: none covers them".into(),
    }
}

/// A log's files, its checkpoints and the public key, read for [`verify`].
pub(super) struct Checked {
    pub texts: Vec<(String, String)>,
    pub current: Option<Checkpoint>,
    pub others: Vec<Checkpoint>,
    pub key: Option<PublicKey>,
}

/// Reads log files (oldest first), the checkpoint beside the last one, the
/// checkpoint copies in `copies` and the public key, for [`verify`].
pub(super) fn read_for_verify(
    files: &[PathBuf],
    copies: &[PathBuf],
    public_key: Option<&Path>,
) -> anyhow::Result<Checked> {
    let (current, others, key) = read_checkpoints_and_key(files, copies, public_key)?;
    let mut texts = Vec::new();
    for f in files {
        let mut text = String::new();
        let mut bad = None;
        for_each_line(f, |n, line| {
            match std::str::from_utf8(line) {
                Ok(l) => text.push_str(l),
                Err(_) => return Err(n),
            }
            text.push('\n');
            Ok(())
        })
        .map_err(anyhow::Error::msg)?
        .unwrap_or_else(|n| bad = Some(n));
        if let Some(n) = bad {
            anyhow::bail!("{}:{n}: not UTF-8", f.display());
        }
        texts.push((f.display().to_string(), text));
    }
    Ok(Checked {
        texts,
        current,
        others,
        key,
    })
}

/// The checkpoint beside the last log file, the checkpoints in `copies` (read a
/// line at a time: a diagnostic log may be large) and the public key. Every file
/// must be a regular one; the key and the checkpoint beside the log are small.
fn read_checkpoints_and_key(
    files: &[PathBuf],
    copies: &[PathBuf],
    public_key: Option<&Path>,
) -> anyhow::Result<(Option<Checkpoint>, Vec<Checkpoint>, Option<PublicKey>)> {
    let key = public_key
        .map(PublicKey::read)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    // Anything at the checkpoint's path is read (and refused if it is not a
    // regular file), so a FIFO or a dangling link there is not silently skipped.
    let beside = files
        .last()
        .map(|f| checkpoint_path(f))
        .filter(|p| std::fs::symlink_metadata(p).is_ok());
    let current = match &beside {
        Some(p) => {
            let text = read_small(p).map_err(anyhow::Error::msg)?;
            Checkpoint::parse_all(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
                .pop()
        }
        None => None,
    };
    let mut others = Vec::new();
    for path in copies {
        for_each_line(path, |n, line| {
            let parsed = std::str::from_utf8(line)
                .map_err(|_| "not UTF-8".to_owned())
                .and_then(Checkpoint::parse_line)
                .map_err(|e| format!("{}:{n}: {e}", path.display()))?;
            others.extend(parsed);
            Ok::<(), String>(())
        })
        .map_err(anyhow::Error::msg)?
        .map_err(anyhow::Error::msg)?;
    }
    Ok((current, others, key))
}

fn keygen(prefix: &Path, force: bool) -> anyhow::Result<ExitCode> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let (private, public, key_id) = generate_key_pair().map_err(anyhow::Error::msg)?;
    let with_ext = |ext: &str| {
        let mut p = prefix.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p)
    };
    let (key_path, pub_path) = (with_ext(".key"), with_ext(".pub"));
    let write = |path: &Path, text: &str, mode: u32| -> anyhow::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).mode(mode);
        if force {
            opts.create(true).truncate(true);
        } else {
            opts.create_new(true);
        }
        let mut f = opts
            .open(path)
            .with_context(|| format!("writing {} (--force replaces it)", path.display()))?;
        f.write_all(text.as_bytes())?;
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        f.sync_all()?;
        Ok(())
    };
    write(&key_path, &private, 0o600)?;
    write(&pub_path, &public, 0o644)?;
    println!(
        "wrote {} (private: give it to vakt serve --decision-log-signing-key, readable only by Vakt's user) and {} (public: for vakt audit verify --public-key); key id {key_id}",
        key_path.display(),
        pub_path.display()
    );
    Ok(ExitCode::SUCCESS)
}
