//! Checkpoints: the published head of a log file's chain, signed with an Ed25519
//! key, and the key files themselves.
//!
//! A checkpoint names the first and last `seq` of the file it sits beside, the hash
//! of the last record, when it was written, and the hash of the checkpoint before
//! it, so checkpoints form a chain of their own. Signed, it pins the log: whoever
//! can edit the log but not read the key can recompute the records' hash chain, but
//! not a signature over its head. The model is Certificate Transparency's signed
//! tree heads; each checkpoint is also written to the diagnostic log, so copies live
//! outside the log's directory.

use super::chain::{sha256_hex, Chain, GENESIS};
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a signature covers: this tag, a newline, then the checkpoint's JSON without
/// its signature, so a signature made for anything else never passes as one.
const SIGNED_TAG: &str = "vakt-decision-log-checkpoint-v1\n";

/// A published chain head of one log file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The seq of the first record in the file (last + 1 while it is empty); 0 in
    /// checkpoints written before Vakt recorded it.
    #[serde(default)]
    pub first_seq: u64,
    /// The seq of the last record written, in this file or (right after rotation)
    /// in the file rotated before it.
    #[serde(alias = "records")]
    pub last_seq: u64,
    /// The SHA-256 of the line of record `first_seq`, in hex, once the file holds
    /// it: with the seq, the checkpoint names which record the file begins with,
    /// so a set of files can be shown to begin where the log does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_hash: Option<String>,
    /// The SHA-256 of the last record's line, in hex.
    pub head: String,
    /// When the checkpoint was written (RFC 3339, UTC).
    pub timestamp: String,
    /// The SHA-256 of the previous checkpoint's line (64 zeros for the first).
    #[serde(default = "genesis")]
    pub prev_checkpoint: String,
    /// The first 16 hex digits of the SHA-256 of the signing key's public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Ed25519 signature over [`SIGNED_TAG`] and the checkpoint without this field,
    /// in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

fn genesis() -> String {
    GENESIS.to_owned()
}

/// Why a checkpoint's signature does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("it is not signed")]
    Unsigned,
    #[error("it was signed by key {found}, not by key {expected}")]
    OtherKey { found: String, expected: String },
    #[error("its signature does not match its contents: it was forged or edited")]
    Invalid,
}

impl Checkpoint {
    /// An unsigned checkpoint of `chain` for a file whose first record is
    /// `first_seq`, following the checkpoint whose line hashes to `prev`.
    pub fn of(chain: &Chain, first_seq: u64, prev: &str) -> Self {
        Self {
            first_seq,
            last_seq: chain.seq,
            first_hash: None,
            head: chain.head(),
            timestamp: super::record::now_rfc3339(),
            prev_checkpoint: prev.to_owned(),
            key_id: None,
            signature: None,
        }
    }

    /// The bytes a signature covers.
    fn signed_bytes(&self) -> Vec<u8> {
        let unsigned = Self {
            signature: None,
            ..self.clone()
        };
        let mut out = SIGNED_TAG.as_bytes().to_vec();
        // A struct of strings and numbers always serialises.
        out.extend(serde_json::to_vec(&unsigned).unwrap_or_default());
        out
    }

    /// Signs the checkpoint with `key`.
    pub fn sign(mut self, key: &Signer) -> Self {
        self.key_id = Some(key.key_id.clone());
        self.signature = None;
        let sig = key.key.sign(&self.signed_bytes());
        self.signature = Some(hex::encode(sig.to_bytes()));
        self
    }

    /// Checks the signature against `key`.
    pub fn verify_signature(&self, key: &PublicKey) -> Result<(), SignatureError> {
        let Some(sig_hex) = &self.signature else {
            return Err(SignatureError::Unsigned);
        };
        if self.key_id.as_deref() != Some(&key.key_id) {
            return Err(SignatureError::OtherKey {
                found: self.key_id.clone().unwrap_or_else(|| "-".into()),
                expected: key.key_id.clone(),
            });
        }
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(sig_hex, &mut bytes).map_err(|_| SignatureError::Invalid)?;
        key.key
            .verify(&self.signed_bytes(), &Signature::from_bytes(&bytes))
            .map_err(|_| SignatureError::Invalid)
    }

    /// The checkpoint as one line of JSON (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The hash the next checkpoint names as `prev_checkpoint`.
    pub fn hash(&self) -> String {
        sha256_hex(self.to_line().as_bytes())
    }

    /// Every checkpoint in `text`: checkpoint files, one checkpoint per line, or
    /// Vakt's JSON diagnostic log, whose "decision log checkpoint" events carry one
    /// each (other lines are skipped). Errors name the line.
    pub fn parse_all(text: &str) -> Result<Vec<Self>, String> {
        let mut found = Vec::new();
        for (i, line) in text.lines().enumerate() {
            found.extend(Self::parse_line(line).map_err(|e| format!("line {}: {e}", i + 1))?);
        }
        Ok(found)
    }

    /// The checkpoint one line of a checkpoint file or of the diagnostic log
    /// carries, if any (see [`Checkpoint::parse_all`]).
    pub fn parse_line(line: &str) -> Result<Option<Self>, String> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(None);
        }
        let value: serde_json::Value = crate::json::parse(line.as_bytes()).map_err(|e| {
            // Most often a diagnostic log written as text: its checkpoint events
            // are copies only in the JSON format.
            format!(
                "not JSON ({e}): a checkpoint copy is a checkpoint file, or Vakt's diagnostic log written with `vakt serve --log-format json` (a text-format log's checkpoint events cannot be read back)"
            )
        })?;
        let embedded = value
            .pointer("/fields/checkpoint")
            .and_then(|v| v.as_str())
            .map(crate::json::from_str::<Self>);
        match embedded {
            Some(cp) => cp.map(Some).map_err(|e| e.to_string()),
            None if value.get("fields").is_some() => Ok(None),
            None => serde_json::from_value(value)
                .map(Some)
                .map_err(|e| format!("not a checkpoint: {e}")),
        }
    }
}

/// Largest key or checkpoint file read: either is a few hundred bytes.
pub(crate) const MAX_SMALL_FILE: u64 = 64 << 10;

/// Reads a key or checkpoint file: a regular file (after following symbolic
/// links) of at most [`MAX_SMALL_FILE`] bytes; a refusal names the file.
pub(crate) fn read_small(path: &Path) -> Result<String, String> {
    crate::problem::read_file(path, MAX_SMALL_FILE).map_err(|e| format!("{}: {e}", path.display()))
}

/// `<log>.checkpoint`: where the checkpoint of a log file is published.
pub fn checkpoint_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".checkpoint");
    PathBuf::from(name)
}

/// Bytes kept allocated for the next checkpoint (one is well under 1 KiB).
const RESERVE_BYTES: i64 = 8 << 10;

/// Writes the checkpoint atomically (temporary file, fsync, rename) and sends a copy
/// to the diagnostic log.
///
/// The temporary file is the one reserved after the checkpoint before: its blocks
/// are already allocated, so the write needs no free space, and a checkpoint can
/// still be written, at the latest at shutdown, when the log's records filled
/// the disk. Otherwise records written just before would stay unsigned, and a
/// restart would have to record them as unattested.
pub(crate) fn publish(path: &Path, cp: &Checkpoint) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = tmp_path(path);
    let mut line = cp.to_line();
    line.push('\n');
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(line.as_bytes())?;
            f.set_len(line.len() as u64)?;
            f.sync_data()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    match &written {
        Ok(()) => {
            reserve(&tmp);
            tracing::info!(
                last_seq = cp.last_seq,
                head = %cp.head,
                file = %path.display(),
                checkpoint = %line.trim_end(),
                "decision log checkpoint"
            )
        }
        Err(e) => {
            tracing::error!(error = %e, file = %path.display(), "decision log checkpoint failed")
        }
    }
    written
}

/// `.<name>.tmp` beside the checkpoint: hidden, so that a glob over a log's
/// files, such as `decisions.jsonl.[0-9]*`, never takes it in.
pub(crate) fn tmp_path(checkpoint: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(checkpoint.file_name().unwrap_or_default());
    name.push(".tmp");
    checkpoint.with_file_name(name)
}

/// Allocates the next checkpoint's temporary file. Best effort: on a full disk
/// the next checkpoint tries to allocate as it writes, as it would without this.
fn reserve(tmp: &Path) {
    use std::os::fd::AsRawFd as _;
    if let Ok(f) = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(tmp)
    {
        // SAFETY: a valid open descriptor and a range within i64.
        let _ = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, RESERVE_BYTES) };
    }
}

/// The first 16 hex digits of the SHA-256 of a public key: what checkpoints name.
fn key_id(key: &VerifyingKey) -> String {
    sha256_hex(key.as_bytes())[..16].to_owned()
}

/// A checkpoint signing key, read from a PKCS#8 PEM file.
pub struct Signer {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for Signer {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.key_id)
    }
}

/// A public key to verify checkpoints with, read from an SPKI PEM file.
#[derive(Debug, Clone)]
pub struct PublicKey {
    key: VerifyingKey,
    pub key_id: String,
}

impl Signer {
    /// Reads a private key file; a key that more than its owner (and, for a
    /// root-owned file, one group) can read is reported, since whoever can read it
    /// can sign a forged log.
    pub fn read(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let text = read_small(path)?;
        let key = SigningKey::from_pkcs8_pem(&text)
            .map_err(|e| format!("{shown}: not an Ed25519 private key in PKCS#8 PEM: {e}"))?;
        {
            use std::os::unix::fs::MetadataExt as _;
            if let Ok(m) = std::fs::metadata(path) {
                if key_file_is_exposed(m.mode(), m.uid()) {
                    tracing::warn!(
                        file = %shown,
                        mode = format!("{:o}", m.mode() & 0o777),
                        owner_uid = m.uid(),
                        "the checkpoint signing key can be read or changed by more than its owner (a group may read it only when root owns the file)"
                    );
                }
            }
        }
        let key_id = key_id(&key.verifying_key());
        Ok(Self { key, key_id })
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        let key = self.key.verifying_key();
        PublicKey {
            key_id: key_id(&key),
            key,
        }
    }
}

impl PublicKey {
    /// Reads a public key file (SPKI PEM, as `vakt audit keygen` writes it).
    pub fn read(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let text = read_small(path)?;
        let key = VerifyingKey::from_public_key_pem(&text)
            .map_err(|e| format!("{shown}: not an Ed25519 public key in PEM: {e}"))?;
        Ok(Self {
            key_id: key_id(&key),
            key,
        })
    }
}

/// Whether a private key file's mode lets more read or change it than should.
/// Nothing for others, and no group write, ever. Group read only on a file owned
/// by root, PostgreSQL's rule for its TLS key: there an administrator chose the
/// group, as a Kubernetes Secret volume with `fsGroup` does (root, the pod's group,
/// 0440 whatever `defaultMode` says); on a file of Vakt's own user a group bit is
/// more likely a loose umask.
pub(crate) fn key_file_is_exposed(mode: u32, owner_uid: u32) -> bool {
    let group_read = mode & 0o040 != 0;
    mode & 0o037 != 0 || (group_read && owner_uid != 0)
}

/// A new key pair as (private PKCS#8 PEM, public SPKI PEM, key id).
pub fn generate_key_pair() -> Result<(String, String, String), String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no randomness from the system: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    // PKCS#8 version 1 (the seed alone), which `openssl pkey` and every other
    // tool reads; `SigningKey::to_pkcs8_pem` writes version 2 with the public key
    // in it, which OpenSSL 3.0 refuses. Keys written that way are still read.
    let private = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: seed,
        public_key: None,
    }
    .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
    .map_err(|e| e.to_string())?;
    let public = key
        .verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| e.to_string())?;
    Ok((private.to_string(), public, key_id(&key.verifying_key())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Signer, PublicKey) {
        let (private, _, _) = generate_key_pair().unwrap();
        let key = SigningKey::from_pkcs8_pem(&private).unwrap();
        let s = Signer {
            key_id: key_id(&key.verifying_key()),
            key,
        };
        let p = s.public();
        (s, p)
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_any_edit_breaks_it() {
        let (signer, public) = pair();
        let mut chain = Chain::default();
        chain.link("{}");
        let cp = Checkpoint::of(&chain, 1, GENESIS).sign(&signer);
        assert_eq!(cp.verify_signature(&public), Ok(()));
        let parsed = Checkpoint::parse_all(&cp.to_line()).unwrap();
        assert_eq!(parsed, std::slice::from_ref(&cp));
        let edited = Checkpoint {
            last_seq: 2,
            ..cp.clone()
        };
        assert_eq!(
            edited.verify_signature(&public),
            Err(SignatureError::Invalid)
        );
        let (_, other) = pair();
        assert!(matches!(
            cp.verify_signature(&other),
            Err(SignatureError::OtherKey { .. })
        ));
        let unsigned = Checkpoint::of(&chain, 1, GENESIS);
        assert_eq!(
            unsigned.verify_signature(&public),
            Err(SignatureError::Unsigned)
        );
    }

    /// Keys that `vakt audit keygen` wrote before it wrote PKCS#8 version 1 (a
    /// version 2 key, with the public key in it) are still read, as the same key.
    #[test]
    fn a_version_2_pkcs8_key_from_an_older_keygen_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let old = "-----BEGIN PRIVATE KEY-----\nMFECAQEwBQYDK2VwBCIEINFSux7DtJbO9ysk64jpN/mBYuX6UZR33uBW8zfYjcvB\ngSEA/yiT7pyAOKYy7J1ynIw1yHjv+r2lfVbG51McUaNA0Sk=\n-----END PRIVATE KEY-----\n";
        let path = dir.path().join("old.key");
        std::fs::write(&path, old).unwrap();
        let signer = Signer::read(&path).unwrap();
        assert_eq!(signer.key_id, "c7f367fd7ad121da");
        // And a new one is version 1: its DER starts SEQUENCE, INTEGER 0.
        let (private, _, key_id) = generate_key_pair().unwrap();
        assert!(
            private.starts_with("-----BEGIN PRIVATE KEY-----\nMC4CAQAw"),
            "{private}"
        );
        let path = dir.path().join("new.key");
        std::fs::write(&path, private).unwrap();
        assert_eq!(Signer::read(&path).unwrap().key_id, key_id);
    }

    #[test]
    fn a_key_is_exposed_by_world_bits_group_write_or_group_read_of_a_non_root_file() {
        // Private to its owner: fine, whoever owns it.
        for (mode, uid) in [(0o600, 10001), (0o400, 10001), (0o400, 0), (0o100600, 0)] {
            assert!(!key_file_is_exposed(mode, uid), "{mode:o} uid {uid}");
        }
        // A Kubernetes Secret volume under fsGroup: root:fsGroup 0440 (the 0o100000
        // file-type bit as metadata gives it), and 0640 the same way.
        for mode in [0o440, 0o100440, 0o640] {
            assert!(!key_file_is_exposed(mode, 0), "{mode:o}");
        }
        // The same group read on a file of Vakt's own user, anything for others,
        // or a group that can write.
        for (mode, uid) in [
            (0o440, 10001),
            (0o640, 1000),
            (0o444, 0),
            (0o604, 10001),
            (0o602, 0),
            (0o460, 0),
            (0o644, 0),
        ] {
            assert!(key_file_is_exposed(mode, uid), "{mode:o} uid {uid}");
        }
    }

    #[test]
    fn checkpoints_are_found_in_diagnostic_logs_and_old_files() {
        let old = r#"{"records":3,"head":"ab","timestamp":"t"}"#;
        let cp = &Checkpoint::parse_all(old).unwrap()[0];
        assert_eq!((cp.first_seq, cp.last_seq), (0, 3));
        let diag = format!(
            "{}\n{}\n",
            r#"{"timestamp":"t","level":"INFO","fields":{"message":"listening"}}"#,
            serde_json::json!({"fields": {"message": "decision log checkpoint", "checkpoint": old}})
        );
        assert_eq!(Checkpoint::parse_all(&diag).unwrap().len(), 1);
        assert!(Checkpoint::parse_all("{\"x\":1}")
            .unwrap_err()
            .contains("line 1"));
    }
}
