//! What a SIGHUP does to the settings: reads and checks them again, swaps the
//! [`Live`] ones in whole, and names each [`Fixed`] one that changed, which waits
//! for a restart. Also loads the candidate policies of `--shadow-policies`.

use super::super::changes::Changes as _;
use super::settings::{Fixed, Live, Settings};
use crate::rules::snapshot::{Rules, Sources};
use crate::server::{self, Vakt};
use std::ffi::OsString;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// What the settings act on besides [`Vakt`], kept for every SIGHUP.
pub(super) struct Targets {
    pub(super) log_level: super::super::telemetry::LogLevel,
    /// Every TLS listener: their allow-lists are live.
    pub(super) tls: Vec<Arc<server::Tls>>,
    /// The source's `--max-staleness` when it is not set.
    pub(super) default_max_staleness: Option<Duration>,
    /// The writers of the decision log's sinks: those a SIGHUP opens join them,
    /// so a stop waits for all of them.
    pub(super) writers: Arc<Mutex<crate::decision_log::Writers>>,
    /// The binding served now, and what it was built from.
    pub(super) binding: Option<super::binding::Built>,
}

/// What a SIGHUP found, as it is logged: the live settings that changed, and the
/// fixed ones that changed and wait for a restart.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Reloaded {
    pub(super) live: Vec<String>,
    pub(super) needs_restart: Vec<String>,
}

/// Compares the settings read again with those running: which changed, by flag.
/// The fixed ones are compared with those the sidecar started with, so one that
/// changed is named again at every SIGHUP until a restart.
pub(super) fn compare(running: &Fixed, applied: &Live, new: &Settings) -> Reloaded {
    let mut reloaded = Reloaded::default();
    applied.changes(&new.live, &mut reloaded.live);
    running.changes(&new.fixed, &mut reloaded.needs_restart);
    reloaded
}

/// Re-reads the settings on each SIGHUP: the live ones take effect for the next
/// calls; any fixed one that changed is named in a WARN. Settings that fail their
/// checks change nothing, with an ERROR naming every problem.
pub(super) async fn on_hangup(
    argv: Vec<OsString>,
    started: Settings,
    vakt: Weak<Vakt>,
    targets: Targets,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        return;
    };
    let Settings {
        fixed, mut live, ..
    } = started;
    let mut targets = targets;
    while hangup.recv().await.is_some() {
        let new = match Settings::read(&argv) {
            Ok(s) => s,
            Err(problems) => {
                tracing::error!(problems = %problems.join("; "), "settings not reloaded: they have problems; the current ones stay");
                continue;
            }
        };
        // The binding tables, their packages checked against the running schema
        // directory's list (a changed --schema waits for a restart).
        let tables = match super::binding::read(new.file.as_deref(), fixed.sources.paths()) {
            Ok(t) => t,
            Err(problems) => {
                tracing::error!(problems = %problems.join("; "), "settings not reloaded: they have problems; the current ones stay");
                continue;
            }
        };
        // Built before anything changes: if it cannot be, nothing does.
        let binding = match tables
            .map(|t| super::binding::build(t, targets.binding.as_ref()))
            .transpose()
        {
            Ok(b) => b,
            Err(problems) => {
                tracing::error!(problems = %problems.join("; "), "settings not reloaded: the binding cannot be built; the current one stays");
                continue;
            }
        };
        let Some(vakt) = vakt.upgrade() else { return };
        let reloaded = compare(&fixed, &live, &new);
        // New decision-log sinks are opened (those kept go on as they are) before
        // anything changes: if one cannot be opened, nothing does. How a sink
        // writes is fixed: the running settings say it.
        if new.live.decision_log != live.decision_log
            || new.live.decision_log_redact != live.decision_log_redact
        {
            let running = Settings {
                fixed: fixed.clone(),
                live: new.live.clone(),
                file: new.file.clone(),
            };
            let reopened = running
                .log_options()
                .map_err(|e| e.to_string())
                .and_then(|o| {
                    vakt.log()
                        .reopen(&new.live.decision_log, &o)
                        .map_err(|e| running.mask_urls(e.to_string()))
                });
            match reopened {
                Ok((log, opened)) => {
                    vakt.set_log(log);
                    if let Ok(mut w) = targets.writers.lock() {
                        w.extend(opened);
                    }
                }
                Err(e) => {
                    tracing::error!(problems = %e, "settings not reloaded: a decision-log sink cannot be opened; the current ones stay");
                    continue;
                }
            }
        }
        vakt.set_options(new.live.options(targets.default_max_staleness));
        load_shadow(&new.live, &fixed, &vakt);
        targets.log_level.set(&new.live.log_level);
        for tls in &targets.tls {
            tls.set_allow(new.live.tls_allow.clone());
        }
        if !reloaded.needs_restart.is_empty() {
            tracing::warn!(settings = %reloaded.needs_restart.join(", "), "changed settings take effect only after a restart");
        }
        match binding {
            Some((built, client)) => {
                vakt.set_binding(Some(built.binding.clone()));
                tracing::info!(
                    maskinporten_client = client.as_str(),
                    routes = built.routes(),
                    "binding reloaded"
                );
                targets.binding = Some(built);
            }
            None => {
                if targets.binding.take().is_some() {
                    vakt.set_binding(None);
                    tracing::warn!("binding off: the configuration has no [maskinporten]");
                }
            }
        }
        tracing::info!(changed = %reloaded.live.join(", "), "settings reloaded");
        live = new.live;
    }
}

/// Loads the candidate policies of `--shadow-policies` with the serving schema
/// and swaps them in whole; when they do not load, shadow evaluation is off and
/// an ERROR says why. The answers never depend on them.
pub(super) fn load_shadow(live: &Live, fixed: &Fixed, vakt: &Vakt) {
    let Some(dir) = &live.shadow_policies else {
        if vakt.set_shadow(None).is_some() {
            tracing::info!("shadow evaluation off");
        }
        return;
    };
    let paths = crate::rules::snapshot::SourcePaths {
        policies: Some(dir.clone()),
        data: None,
        ..fixed.sources.paths()
    };
    let built = if dir.is_dir() {
        Sources::read(&paths).and_then(|s| Rules::build(&s))
    } else {
        Err(crate::problem::Problems(vec![
            crate::problem::Problem::new(dir.display().to_string(), "", "no such directory"),
        ]))
    };
    match built {
        Ok(rules) => {
            tracing::info!(
                dir = %dir.display(),
                policies = rules.policies.set.policies().count(),
                rules_revision = %rules.rules_revision,
                "shadow evaluation on"
            );
            vakt.set_shadow(Some(server::Shadow {
                rules,
                dir: dir.clone(),
            }));
        }
        Err(problems) => {
            vakt.set_shadow(None);
            tracing::error!(dir = %dir.display(), %problems, "shadow policies not loaded; shadow evaluation is off");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::settings::ServeArgs;
    use super::*;
    use clap::{Args as _, FromArgMatches as _};

    /// The settings README names as those a SIGHUP changes at run time.
    const DOCUMENTED_LIVE: &[&str] = &[
        "max-batch",
        "max-in-flight",
        "max-in-flight-per-peer",
        "max-staleness",
        "max-sync-age",
        "sequence-wait",
        "log-level",
        "reverse-queries",
        "reverse-queries-allow",
        "reverse-page-lifetime",
        "shadow-policies",
        "tls-allow",
        "decision-log",
        "decision-log-redact",
    ];

    /// Values to try for a flag until one parses and differs from its default.
    const CANDIDATES: &[&str] = &[
        "7",
        "7s",
        "127.0.0.1:7",
        "/tmp/vakt-settings-test",
        "text",
        "system-user-packages",
        "debug",
        "file:/tmp/vakt-settings-test.log",
        "https://vakt.example.org",
        "never",
    ];

    /// `vakt serve` with these flags alone (no file).
    fn settings_of(flags: &[&str]) -> Option<Settings> {
        let cmd = ServeArgs::augment_args(clap::Command::new("serve"));
        let argv = std::iter::once("serve").chain(flags.iter().copied());
        let matches = cmd.try_get_matches_from(argv).ok()?;
        ServeArgs::from_arg_matches(&matches)
            .ok()
            .map(Settings::from)
    }

    /// Each flag changed alone, as a SIGHUP would read it: a documented live
    /// setting is named as reloaded and nothing waits for a restart; any other is
    /// named as waiting for a restart. Every flag is in one group or the other,
    /// and each group is found from the typed settings, not from a list.
    #[test]
    fn every_setting_is_live_or_waits_for_a_restart() {
        let base = settings_of(&[]).expect("the defaults parse");
        let cmd = ServeArgs::augment_args(clap::Command::new("serve"));
        let mut live_seen = Vec::new();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "config" || long == "help" {
                continue;
            }
            let flag = format!("--{long}");
            let takes_value = !matches!(
                arg.get_action(),
                clap::ArgAction::SetTrue | clap::ArgAction::SetFalse
            );
            let tries: Vec<Vec<&str>> = if takes_value {
                CANDIDATES.iter().map(|v| vec![flag.as_str(), *v]).collect()
            } else {
                vec![vec![flag.as_str()]]
            };
            let reloaded = tries
                .iter()
                .filter_map(|t| settings_of(t))
                .map(|new| compare(&base.fixed, &base.live, &new))
                .find(|r| *r != Reloaded::default())
                .unwrap_or_else(|| panic!("no value of {flag} changes a setting"));
            if DOCUMENTED_LIVE.contains(&long) {
                assert_eq!(reloaded.live, [long], "{flag}");
                assert!(reloaded.needs_restart.is_empty(), "{flag}: {reloaded:?}");
                live_seen.push(long);
            } else {
                assert_eq!(reloaded.needs_restart, [long], "{flag}");
                assert!(reloaded.live.is_empty(), "{flag}: {reloaded:?}");
            }
        }
        live_seen.sort_unstable();
        let mut documented = DOCUMENTED_LIVE.to_vec();
        documented.sort_unstable();
        assert_eq!(live_seen, documented);
    }

    /// A live per-call setting read again is what the next calls see; a fixed
    /// limit is named and the running one stays.
    #[test]
    fn a_reload_applies_live_settings_and_keeps_fixed_ones() {
        let started = settings_of(&[]).expect("the defaults parse");
        let snapshot =
            crate::rules::snapshot::Snapshot::build(&crate::rules::snapshot::Sources::embedded())
                .expect("the embedded default loads");
        let vakt = Vakt::new(snapshot, crate::decision_log::DecisionLog::disabled())
            .with_limits(started.fixed.limits())
            .with_options(started.live.options(None));
        let new = settings_of(&["--max-batch", "5", "--max-concurrent-streams", "16"])
            .expect("the flags parse");
        let reloaded = compare(&started.fixed, &started.live, &new);
        assert_eq!(reloaded.live, ["max-batch"]);
        assert_eq!(reloaded.needs_restart, ["max-concurrent-streams"]);
        vakt.set_options(new.live.options(None));
        assert_eq!(vakt.options().max_batch, 5);
        assert_eq!(
            vakt.limits().max_concurrent_streams,
            crate::server::DEFAULT_MAX_CONCURRENT_STREAMS
        );
    }
}
