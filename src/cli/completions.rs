//! `vakt completions SHELL` and `vakt man`: shell completion scripts and manual
//! pages, both made from the command line's own definition, so they name every
//! command and flag there is.

use anyhow::Context as _;
use clap::CommandFactory as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(super) struct CompletionsArgs {
    /// The shell to write the completion script for
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(clap::Args)]
pub(super) struct ManArgs {
    /// Write vakt.1 and one page per command (vakt-serve.1, vakt-audit-verify.1,
    /// ...) into this directory and list them [default: print vakt.1]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// `vakt completions SHELL`: the script on stdout.
pub(super) fn run(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = super::Cli::command();
    // Written whole into memory first: clap_complete gives up on a failed write
    // by panicking, and a closed pipe is no reason to.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "vakt", &mut script);
    std::io::stdout().lock().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}

/// `vakt man [--out DIR]`.
pub(super) fn run_man(args: ManArgs) -> anyhow::Result<ExitCode> {
    let mut command = super::Cli::command().disable_help_subcommand(true);
    // Built first, so that each subcommand knows its full name (`vakt serve`) and
    // its page is called vakt-serve.1.
    command.build();
    let Some(dir) = args.out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        std::io::stdout().lock().write_all(&page)?;
        return Ok(ExitCode::SUCCESS);
    };
    let mut written = Vec::new();
    write_pages(&command, &dir, &mut written)
        .with_context(|| format!("{}: cannot write the manual pages", dir.display()))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The page of `command` and of each of its commands, depth first.
fn write_pages(
    command: &clap::Command,
    dir: &std::path::Path,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    written.push(clap_mangen::Man::new(command.clone()).generate_to(dir)?);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}
