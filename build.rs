//! Compiles proto/ with a pure-Rust protobuf compiler (protox), so building Vakt
//! never needs a `protoc` on the machine; and names the build (`vakt --version`,
//! the `vakt_build_info` metric): the git commit and the build date.
use std::{env, path::PathBuf, process::Command};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/vakt/v1/authorization.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // Server reflection serves this descriptor set, so grpcurl works without the .proto.
    std::fs::write(
        out.join("vakt_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    build_info()
}

/// `VAKT_BUILD_COMMIT` and `VAKT_BUILD_DATE` for the crate's code.
///
/// The commit is `$VAKT_BUILD_COMMIT` when set (a build from a tarball, where there
/// is no `.git`), else `git rev-parse --short=12 HEAD` of this checkout, else
/// "unknown". The date (UTC, YYYY-MM-DD) is `$SOURCE_DATE_EPOCH` when set, so that
/// a reproducible build gives the same bytes, else the day the script ran.
fn build_info() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=VAKT_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let commit = match env::var("VAKT_BUILD_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_owned(),
        _ => git_commit().unwrap_or_else(|| "unknown".to_owned()),
    };
    let epoch = match env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => s.trim().parse::<i64>().map_err(|_| {
            format!("SOURCE_DATE_EPOCH: {s:?} is not a whole number of seconds since 1970")
        })?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64,
    };
    println!("cargo:rustc-env=VAKT_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=VAKT_BUILD_DATE={}", utc_date(epoch));
    Ok(())
}

/// The commit checked out, when this crate is the top of a git work tree (not
/// a tarball unpacked inside some other repository).
///
/// Release-like builds (release, profiling, bench) rerun this script when HEAD or
/// the branch it points to moves, so a shipped binary names its commit. Debug
/// builds do not: every commit would rebuild the whole crate and every test
/// binary, so a debug build names the commit of the last time this script ran.
/// Only files that exist are watched: cargo reruns a script on every build while
/// a watched path is missing (a branch kept in `packed-refs`, say).
fn git_commit() -> Option<String> {
    let dir = env::var("CARGO_MANIFEST_DIR").ok()?;
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    };
    let top = PathBuf::from(git(&["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != PathBuf::from(&dir).canonicalize().ok()? {
        return None;
    }
    if env::var("PROFILE").as_deref() == Ok("release") {
        let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])?];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let loose = PathBuf::from(&dir).join(git(&["rev-parse", "--git-path", &branch])?);
            // A branch kept only in packed-refs gets its loose file at its next
            // commit: then the directory it appears in changes.
            if loose.exists() {
                watched.push(loose.display().to_string());
            } else if let Some(dir) = loose.parent() {
                watched.push(dir.display().to_string());
            }
        }
        watched.push(git(&["rev-parse", "--git-path", "packed-refs"])?);
        for path in watched {
            let path = PathBuf::from(&dir).join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}

/// Seconds since 1970 as a UTC calendar date (the civil-from-days algorithm).
fn utc_date(epoch: i64) -> String {
    let z = epoch.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
