//! The `vakt` command line: parses the arguments and hands each command to its own
//! file. Errors become messages and exit codes here; nothing below this layer uses
//! `anyhow`.
//!
//! Exit codes: 0 success or allow; 1 invalid, failing or deny; 2 usage error (bad
//! flags, unreadable input); 78 a bad configuration (`vakt serve`, `vakt config`:
//! every bad setting is reported at once).

mod altinn;
mod args;
mod audit;
mod changes;
mod check;
mod completions;
mod config;
mod db;
mod fmt;
mod gen_world;
mod replay;
mod report;
mod review;
mod schema;
mod serve;
mod shadow;
mod status;
mod telemetry;
mod test;
mod validate;
mod verify;

use args::SourceArgs;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use std::process::ExitCode;

/// `vakt --version`: the version, the commit and the build date (see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("VAKT_BUILD_COMMIT"),
    ", built ",
    env!("VAKT_BUILD_DATE"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "vakt",
    version = VERSION,
    about = "Authorization sidecar for employees acting through Altinn system users"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC sidecar (with no flags: shipped policies, schema and example world).
    Serve(Box<serve::ServeArgs>),
    /// Parse and strictly validate policies, schema and data; report every problem.
    Validate(SourceArgs),
    /// Decide one request against local files, without a server.
    Check(check::CheckArgs),
    /// Run policy test suites (*_test.yaml).
    Test(test::TestArgs),
    /// Format policy files in Cedar's canonical style.
    Fmt(fmt::FmtArgs),
    /// Re-decide logged decisions under candidate policies; report what would flip.
    Replay(replay::ReplayArgs),
    /// Write the access review of one organisation: effective access with its
    /// path, conflicts of duties, deactivated employees still in teams, unused
    /// grants (from a verified decision log) and unusable clients; CSV, JSON or HTML.
    Review(review::ReviewArgs),
    /// Prove properties of the policies over every world (needs the cvc5 solver),
    /// or classify a change with --against OLD_POLICIES_DIR.
    Verify(verify::VerifyArgs),
    /// Shadow evaluation (`vakt serve --shadow-policies`): report what the
    /// candidate policies decided differently.
    #[command(subcommand)]
    Shadow(shadow::ShadowCommand),
    /// Check decision logs.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Write a generated world of accounting firms, for benchmarks and trials.
    GenWorld(gen_world::GenWorldArgs),
    /// Ask a running sidecar how it stands: revision, data sequence and age, sync
    /// state, last error. Exits 0 when it is live, 1 otherwise, 2 if it cannot be asked.
    Status(status::StatusArgs),
    /// PostgreSQL as the shared data source: apply the schema's migrations, and
    /// move a world between files and the database.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Check or show `vakt serve`'s configuration without serving.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the JSON Schema of a data file, a test suite or the configuration
    /// file, for editors (the same as schemas/ holds).
    Schema(schema::SchemaArgs),
    /// Keep the world's copy of Altinn current: system users, packages, clients.
    #[command(subcommand)]
    Altinn(altinn::AltinnCommand),
    /// Print the completion script for a shell.
    Completions(completions::CompletionsArgs),
    /// Print vakt's manual page, or write one per command with --out.
    Man(completions::ManArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a configuration file (and the environment) the way `vakt serve` does:
    /// every problem at once, exit 0 when good and 78 when not.
    Check {
        /// The file [default: $VAKT_CONFIG]
        #[arg(allow_hyphen_values = true)]
        file: Option<std::path::PathBuf>,
        /// `vakt serve` flags, which override the file and the environment as
        /// they would for `vakt serve` (`--max-batch 7`)
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "SERVE_FLAGS"
        )]
        flags: Vec<std::ffi::OsString>,
    },
    /// Print the settings `vakt serve` would use, from the file, the environment
    /// and the built-in defaults, each with where it came from; passwords masked.
    Show {
        /// The file [default: $VAKT_CONFIG; none: environment and defaults only]
        #[arg(allow_hyphen_values = true)]
        file: Option<std::path::PathBuf>,
        /// `vakt serve` flags, which override the file and the environment as
        /// they would for `vakt serve` (`--max-batch 7`); shown with the flag as
        /// their source
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "SERVE_FLAGS"
        )]
        flags: Vec<std::ffi::OsString>,
    },
}

/// Checks the text of a `vakt serve` configuration file as `vakt config check`
/// does: the problems found (for the fuzz target and its regression tests).
#[doc(hidden)]
pub fn check_config_text(text: &str) -> Vec<String> {
    let mut command = Cli::command();
    let serve = command
        .find_subcommand_mut("serve")
        .expect("serve is a command");
    config::read_text("vakt.toml", text, serve)
        .err()
        .unwrap_or_default()
}

/// Runs the command line and returns its exit code.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut command = Cli::command();
    // `vakt serve --config FILE`: the file's settings become the flags' defaults.
    if let Some(path) = config::path_for_serve(&args) {
        let serve = command
            .find_subcommand("serve")
            .expect("serve is a command");
        match config::read(&path, serve) {
            Ok(settings) => command = config::apply(command, settings),
            Err(problems) => {
                for p in problems {
                    eprintln!("vakt: {p}");
                }
                return ExitCode::from(config::EX_CONFIG);
            }
        }
    }
    let cli = match command
        .try_get_matches_from(&args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            // clap quotes a value it refuses: a URL's credentials are masked.
            eprint!("{}", crate::url_secrets::mask_url(&e.to_string()));
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    if !matches!(cli.command, Command::Serve(_)) {
        // The one-shot commands show the loader's warnings (a data file read with
        // a caveat) as plain text; `serve` sets up its own JSON diagnostics.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("VAKT_LOG").unwrap_or_else(|_| {
                    // The sync's report is its info line.
                    let level = if matches!(cli.command, Command::Altinn(_)) {
                        "info"
                    } else {
                        "warn"
                    };
                    tracing_subscriber::EnvFilter::new(level)
                }),
            )
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .without_time()
            .with_target(false)
            .try_init();
    }
    let result = match cli.command {
        Command::Serve(a) => serve::run(*a),
        Command::Validate(a) => validate::run(&a),
        Command::Check(a) => check::run(a),
        Command::Test(a) => test::run(a),
        Command::Fmt(a) => fmt::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Review(a) => review::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Shadow(c) => shadow::run(c),
        Command::Audit(a) => audit::run(a),
        Command::GenWorld(a) => gen_world::run(a),
        Command::Db(a) => db::run(a),
        Command::Status(a) => status::run(a),
        Command::Config(c) => run_config(c),
        Command::Schema(a) => schema::run(a),
        Command::Altinn(c) => altinn::run(c),
        Command::Completions(a) => completions::run(a),
        Command::Man(a) => completions::run_man(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vakt: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `vakt config check|show`.
fn run_config(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    let (mut file, mut flags, show) = match cmd {
        ConfigCommand::Check { file, flags } => (file, flags, false),
        ConfigCommand::Show { file, flags } => (file, flags, true),
    };
    // `vakt config show --max-batch 7`: no file, only flags (a file whose name
    // starts with a dash is given as `./-name`).
    if let Some(f) = file.take_if(|f| f.as_os_str().as_encoded_bytes().starts_with(b"-")) {
        flags.insert(0, f.into_os_string());
    }
    if let Some(c) = flags.iter().find(|f| {
        let f = f.as_encoded_bytes();
        f == b"--config" || f.starts_with(b"--config=")
    }) {
        anyhow::bail!(
            "{}: give the configuration file as `vakt config check|show FILE`",
            c.to_string_lossy()
        );
    }
    let file = file.or_else(|| std::env::var_os("VAKT_CONFIG").map(Into::into));
    let mut command = Cli::command();
    let mut from_file = Vec::new();
    match &file {
        Some(path) => {
            let serve = command
                .find_subcommand("serve")
                .expect("serve is a command");
            match config::read(path, serve) {
                Ok(settings) => {
                    from_file = settings.iter().map(|s| s.id.clone()).collect();
                    command = config::apply(command, settings);
                }
                Err(problems) => {
                    // As `vakt serve` reports them: one message for one mistake.
                    for p in problems {
                        eprintln!("vakt: {p}");
                    }
                    return Ok(ExitCode::from(config::EX_CONFIG));
                }
            }
        }
        None if !show => anyhow::bail!("give the file to check, or set VAKT_CONFIG"),
        None => {}
    }
    let serve_command = command
        .find_subcommand("serve")
        .expect("serve is a command")
        .clone();
    // As `vakt serve` alone would see it: the file, the environment, the defaults.
    let matches = match command.try_get_matches_from_mut(["vakt", "serve"]) {
        Ok(m) => m,
        Err(e) => {
            let message = config::clap_message(&e);
            eprintln!("vakt: {}", crate::url_secrets::mask_url(&message));
            return Ok(ExitCode::from(config::EX_CONFIG));
        }
    };
    // Then with the flags, which override both, as `vakt serve FLAGS` would take
    // them: a bad flag gets `vakt serve`'s own message and exit code.
    let matches = if flags.is_empty() {
        matches
    } else {
        let argv = ["vakt".into(), "serve".into()].into_iter().chain(flags);
        match command.try_get_matches_from(argv) {
            Ok(m) => m,
            Err(e) => {
                eprint!("{}", crate::url_secrets::mask_url(&e.to_string()));
                return Ok(ExitCode::from(2));
            }
        }
    };
    let Some(("serve", serve_matches)) = matches.subcommand() else {
        anyhow::bail!("no serve settings");
    };
    if show {
        print!(
            "{}",
            config::show(&serve_command, serve_matches, file.as_deref(), &from_file)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let args = serve::ServeArgs::from_arg_matches(serve_matches)?;
    match serve::check_settings(&args) {
        Ok(()) => {
            let shown = file.map(|f| f.display().to_string()).unwrap_or_default();
            println!("ok: {shown}");
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            // As `vakt serve` reports them: one message for one mistake.
            for p in problems {
                eprintln!("vakt: {p}");
            }
            Ok(ExitCode::from(config::EX_CONFIG))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// `--help` explains every flag of every command.
    #[test]
    fn every_flag_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(
                    arg.get_help().is_some_and(|h| !h.to_string().is_empty()),
                    "{path} {id} has no description"
                );
            }
            for sub in cmd.get_subcommands() {
                assert!(
                    sub.get_about().is_some(),
                    "{path} {} has no description",
                    sub.get_name()
                );
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        walk(&Cli::command(), "vakt");
    }

    #[test]
    fn check_shows_the_real_default_action() {
        let cmd = Cli::command();
        let check = cmd.find_subcommand("check").unwrap();
        let action = check
            .get_arguments()
            .find(|a| a.get_id() == "action")
            .unwrap();
        assert_eq!(
            action.get_default_values(),
            [crate::rules::model::DEFAULT_ACTION]
        );
    }
}
