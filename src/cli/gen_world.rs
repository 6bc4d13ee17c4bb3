//! `vakt gen-world`: write a generated world of accounting firms in the data format.

use anyhow::Context as _;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct GenWorldArgs {
    /// Directory to write the data files into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Number of firms; each is about 1,000 entities and 316 client links.
    #[arg(long, default_value_t = 1)]
    firms: usize,
    /// Number of files to spread the firms over (with `--layout firms`).
    #[arg(long, default_value_t = 1)]
    files: usize,
    /// How the world is laid out in files: `firms`, whole firms in each of
    /// `--files` files (world-0000.json, ...); or `sections`, one file per section
    /// (organizations.json, system-users.json, teams.json, employees.json), exactly
    /// as `vakt db export` writes a world. `sections` builds the world in memory
    /// first (about 1.2 GB at 1,000 firms).
    #[arg(long, value_enum, default_value_t = Layout::Firms)]
    layout: Layout,
    /// Seed: the same seed gives the same world.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// `--layout`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Layout {
    Firms,
    Sections,
}

pub(super) fn run(args: GenWorldArgs) -> anyhow::Result<ExitCode> {
    if args.firms == 0 {
        anyhow::bail!("--firms must be at least 1");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let g = match args.layout {
        Layout::Firms => {
            crate::tools::gen::write_world(&args.out, args.firms, args.files, args.seed)
        }
        Layout::Sections => {
            crate::tools::gen::write_world_sections(&args.out, args.firms, args.seed)
        }
    }
    .with_context(|| format!("writing into {}", args.out.display()))?;
    println!(
        "wrote {} entities ({} organisations, {} system users with {} client links, {} teams, {} employees) in {} bytes to {}",
        g.entities(),
        g.organizations,
        g.system_users,
        g.client_links,
        g.teams,
        g.employees,
        g.bytes,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
