//! `vakt audit`: check a decision log's hash chain and signed checkpoints, and make
//! the key pair that signs them.

use crate::decision_log::checkpoint::{checkpoint_path, generate_key_pair, Checkpoint, PublicKey};
use crate::decision_log::verify::{verify, Against};
use anyhow::Context as _;
use clap::Subcommand;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub(super) enum AuditCommand {
    /// Verify a decision log: its hash chain (oldest file first, for rotated
    /// files), its checkpoint and, with --public-key, the checkpoints' signatures.
    /// Exits 0 when it holds, 1 when it was tampered with (saying how).
    Verify {
        /// Log files, oldest first: `decisions.jsonl.* decisions.jsonl`.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// More checkpoints to check the log against: checkpoint files, or Vakt's
        /// diagnostic log, whose checkpoint events are copies kept outside the log's
        /// directory (repeatable). The checkpoint beside the log,
        /// `<last file>.checkpoint`, is always read when it exists.
        #[arg(long, value_name = "FILE")]
        checkpoint: Vec<PathBuf>,
        /// The public key of the checkpoint signing key (`vakt audit keygen`): every
        /// checkpoint must carry its signature, and every record must be covered by
        /// a signed checkpoint.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
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
        } => run_verify(&files, &checkpoint, public_key.as_deref()),
        AuditCommand::Keygen { out, force } => keygen(&out, force),
    }
}

fn run_verify(
    files: &[PathBuf],
    copies: &[PathBuf],
    public_key: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let Checked {
        texts,
        current,
        others,
        key,
    } = read_for_verify(files, copies, public_key)?;
    let against = Against {
        current: current.as_ref(),
        copies: &others,
        key: key.as_ref(),
    };
    match verify(&texts, &against) {
        Ok(v) => {
            let mut line = format!("ok: {} records, chain head {}", v.records, v.head);
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
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            println!("BROKEN: {broken}");
            Ok(ExitCode::from(1))
        }
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
    let key = public_key
        .map(PublicKey::read)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let texts = files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .map(|t| (f.display().to_string(), t))
                .with_context(|| format!("reading {}", f.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let read_checkpoints = |path: &Path| -> anyhow::Result<Vec<Checkpoint>> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Checkpoint::parse_all(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    };
    let beside = files
        .last()
        .map(|f| checkpoint_path(f))
        .filter(|p| p.is_file());
    let current = match &beside {
        Some(p) => read_checkpoints(p)?.pop(),
        None => None,
    };
    let mut others = Vec::new();
    for path in copies {
        others.extend(read_checkpoints(path)?);
    }
    Ok(Checked {
        texts,
        current,
        others,
        key,
    })
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
