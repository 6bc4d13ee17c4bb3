//! `vakt fmt`: format policy files in Cedar's canonical style.

use anyhow::Context as _;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr as _;

#[derive(Args)]
pub(super) struct FmtArgs {
    /// List the files that would change and exit 1 instead of rewriting them.
    #[arg(long)]
    check: bool,
    /// Policy files, or directories of *.cedar files (not searched recursively).
    #[arg(default_value = "policies", value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// Every *.cedar file in `paths` (files as given, directories not recursed).
fn policy_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.exists() && !p.is_dir() {
            // Any file given by name, so that one that is not a regular file is
            // refused by name when read.
            out.push(p.clone());
        } else if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| f.is_file() && f.extension().is_some_and(|e| e == "cedar"))
                .collect();
            found.sort();
            out.extend(found);
        } else if p == Path::new("policies") {
            // The default: fmt rewrites files, so it never guesses at another place.
            let here = std::env::current_dir()
                .map(|d| d.join("policies").display().to_string())
                .unwrap_or_else(|_| "policies".into());
            anyhow::bail!(
                "{here}: no such directory; give the policy files or directories to format"
            );
        } else {
            anyhow::bail!("{}: no such file or directory", p.display());
        }
    }
    Ok(out)
}

pub(super) fn run(args: FmtArgs) -> anyhow::Result<ExitCode> {
    let config = cedar_policy_formatter::Config {
        line_width: 80,
        indent_width: 2,
    };
    let files = policy_files(&args.paths)?;
    let mut changed = Vec::new();
    let mut failed = false;
    for f in &files {
        let text = crate::problem::read_named(f, crate::problem::DEFAULT_MAX_FILE_BYTES)
            .map_err(anyhow::Error::msg)?;
        let pretty = match cedar_policy_formatter::policies_str_to_pretty(&text, &config) {
            Ok(p) => p,
            Err(e) => {
                // The formatter says only "cannot parse input policies": Cedar's
                // parser says what is wrong, as `vakt validate` reports it.
                let name = f.display().to_string();
                let problems = match cedar_policy::PolicySet::from_str(&text) {
                    Err(errs) => errs
                        .iter()
                        .flat_map(|d| crate::problem::from_diagnostic(&name, &text, d))
                        .collect(),
                    Ok(_) => crate::problem::from_diagnostic(&name, &text, e.as_ref()),
                };
                for p in problems {
                    eprintln!("{p}");
                }
                failed = true;
                continue;
            }
        };
        if pretty != text {
            changed.push(f.clone());
            if !args.check {
                std::fs::write(f, &pretty).with_context(|| format!("writing {}", f.display()))?;
            }
        }
    }
    let verb = if args.check {
        "would reformat"
    } else {
        "reformatted"
    };
    for f in &changed {
        println!("{verb} {}", f.display());
    }
    let n = files.len();
    let files_word = if n == 1 { "file" } else { "files" };
    if changed.is_empty() && !failed {
        println!("{n} policy {files_word} already formatted");
    }
    Ok(if failed || (args.check && !changed.is_empty()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
