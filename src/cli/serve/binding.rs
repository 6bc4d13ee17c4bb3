//! The binding tables of the configuration file (`[maskinporten]` with
//! `[maskinporten.scopes]`, `[altinn]`, `[identity_provider]`, `[envoy]` and
//! `[[route]]`): read and checked together, every problem by file and line,
//! and built into the [`Binding`] `vakt serve` serves with. A SIGHUP reads them
//! again; an unchanged `[maskinporten]` (and unchanged key files) keeps its
//! client, and with it the token cache.

use crate::maskinporten::{
    IdentityProvider, IdentityProviderConfig, Maskinporten, MaskinportenConfig, MaskinportenTable,
};
use crate::problem::line_at;
use crate::rules::packages::AccessPackages;
use crate::rules::snapshot::{SourcePaths, Sources};
use crate::server::envoy::{EmployeeFrom, EmployeeVerifier, EnvoyConfig, TokenKind};
use crate::server::{Binding, EnvoyBinding};
use std::path::Path;
use std::sync::Arc;
use url::Url;

/// The tables of the configuration file that are not `vakt serve` flags.
pub(in crate::cli) const TABLES: &[&str] = &[
    "maskinporten",
    "altinn",
    "identity_provider",
    "envoy",
    "route",
];

/// Altinn's token exchange, under `[altinn] base_url`.
const EXCHANGE_PATH: &str = "/authentication/api/v1/exchange/maskinporten";

/// The binding tables of one configuration file, read and checked.
#[derive(Clone)]
pub(in crate::cli) struct Tables {
    file: String,
    maskinporten: MaskinportenTable,
    altinn_exchange: Option<Url>,
    envoy: Option<EnvoyConfig>,
    /// With its table as the file gives it, to tell whether a SIGHUP changed it.
    identity_provider: Option<(IdentityProviderConfig, toml::Value)>,
    /// The line of each `[[route]]`, in file order.
    route_lines: Vec<usize>,
}

/// The route's name in problems, as [`EnvoyConfig::from_toml`] writes it.
fn route_label(i: usize, name: &str) -> String {
    if name == format!("route[{i}]") {
        name.to_owned()
    } else {
        format!("route[{i}] ({name:?})")
    }
}

/// The line a problem written as `file:line: …` names (0 when none).
fn line_in(problem: &str, file: &str) -> usize {
    problem
        .strip_prefix(file)
        .and_then(|r| r.strip_prefix(':'))
        .and_then(|r| r.split(':').next())
        .and_then(|l| l.parse().ok())
        .unwrap_or(0)
}

/// The lines of the top-level tables and of each `[[route]]`.
#[derive(serde::Deserialize, Default)]
struct Spans {
    #[serde(default)]
    altinn: Option<toml::Spanned<toml::Value>>,
    #[serde(default)]
    identity_provider: Option<toml::Spanned<toml::Value>>,
    #[serde(default)]
    envoy: Option<toml::Spanned<toml::Value>>,
    #[serde(default)]
    route: Option<toml::Spanned<Vec<toml::Spanned<toml::Value>>>>,
}

impl Tables {
    /// Reads the binding tables from a configuration file's text: every problem
    /// the file alone shows (a package the schema does not know needs the
    /// schema: [`Tables::unknown_packages`]), each with its line. `None` when
    /// the file has no `[maskinporten]` (and so nothing else of these).
    pub(in crate::cli) fn from_text(
        file: &str,
        text: &str,
    ) -> Result<Option<Self>, Vec<(usize, String)>> {
        let top: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_at(text, s.start));
            vec![(line, format!("{file}:{line}: not TOML: {}", e.message()))]
        })?;
        if !TABLES.iter().any(|t| top.contains_key(*t)) {
            return Ok(None);
        }
        let spans: Spans = toml::from_str(text).unwrap_or_default();
        let line_of = |s: &Option<toml::Spanned<toml::Value>>| {
            s.as_ref().map_or(0, |s| line_at(text, s.span().start))
        };
        let route_lines: Vec<usize> = spans
            .route
            .as_ref()
            .map(|r| {
                r.get_ref()
                    .iter()
                    .map(|s| line_at(text, s.span().start))
                    .collect()
            })
            .unwrap_or_default();
        let mut problems: Vec<(usize, String)> = Vec::new();
        let foreign = |found: Vec<String>, problems: &mut Vec<(usize, String)>| {
            problems.extend(found.into_iter().map(|p| (line_in(&p, file), p)));
        };
        // Each table's reader reports its own problems; `Err` here means "has
        // problems" (already reported), `Ok(None)` "not in the file".
        let maskinporten = MaskinportenConfig::from_toml(file, text)
            .map_err(|p| foreign(p, &mut problems))
            .map_err(drop);
        let envoy = EnvoyConfig::from_toml(file, text)
            .map_err(|p| foreign(p, &mut problems))
            .map_err(drop);
        let identity_provider = IdentityProviderConfig::from_toml(file, text)
            .map_err(|p| foreign(p, &mut problems))
            .map_err(drop);
        let altinn_line = line_of(&spans.altinn);
        let altinn_exchange = match top.get("altinn") {
            None => Ok(None),
            Some(v) => read_altinn(file, altinn_line, text, v)
                .map(Some)
                .map_err(|p| problems.extend(p)),
        };
        let mut bad = |line: usize, key: &str, what: String| {
            problems.push((line, format!("{file}:{line}: {key}: {what}")));
        };
        let has_maskinporten = top.contains_key("maskinporten");
        // Nothing Vakt binds works without the Maskinporten client.
        if !has_maskinporten {
            let needs = "needs [maskinporten]: Vakt hands out the system user's token only with its own Maskinporten client";
            if top.contains_key("envoy") {
                bad(line_of(&spans.envoy), "envoy", needs.into());
            }
            if let Some(first) = route_lines.first() {
                bad(*first, "route", needs.into());
            }
            if top.contains_key("altinn") {
                bad(altinn_line, "altinn", needs.into());
            }
        }
        let idp_line = line_of(&spans.identity_provider);
        if let (Ok(envoy), Ok(idp)) = (&envoy, &identity_provider) {
            let jwt = envoy
                .as_ref()
                .is_some_and(|e| matches!(e.employee, EmployeeFrom::Jwt(_)));
            if jwt && idp.is_none() {
                bad(
                    line_of(&spans.envoy),
                    "envoy.employee_jwt_header",
                    "needs [identity_provider] to verify the employee's JWT".into(),
                );
            }
            if !jwt && idp.is_some() {
                bad(
                    idp_line,
                    "identity_provider",
                    "is configured, but [envoy] employee_jwt_header is not set, so no JWT would ever be verified".into(),
                );
            }
        }
        // The scopes each package is allowed, as the file gives them: a route's
        // are checked against them even when [maskinporten] has other problems.
        let allowed_scopes = raw_scopes(&top);
        if let Ok(Some(envoy)) = &envoy {
            for (i, route) in envoy.routes.iter().enumerate() {
                let line = route_lines.get(i).copied().unwrap_or(0);
                let label = route_label(i, &route.name);
                if route.token == TokenKind::Altinn && !top.contains_key("altinn") {
                    bad(
                        line,
                        &format!("{label}.token"),
                        "\"altinn\" needs [altinn] base_url (Altinn's token exchange)".into(),
                    );
                }
                if !has_maskinporten {
                    continue;
                }
                let allowed = allowed_scopes.get(&route.package);
                let list = || allowed.map(|a| a.join(", ")).unwrap_or_default();
                if route.scopes.is_empty() && allowed.is_none() {
                    bad(
                        line,
                        &format!("{label}.scopes"),
                        format!(
                            "none given, and [maskinporten.scopes] allows none for {}: Check could never get a token for this route",
                            route.package
                        ),
                    );
                }
                for s in &route.scopes {
                    if !allowed.is_some_and(|a| a.contains(s)) {
                        bad(
                            line,
                            &format!("{label}.scopes"),
                            format!(
                                "{s:?} is not allowed for {} by [maskinporten.scopes] (allowed: {})",
                                route.package,
                                if allowed.is_some() { list() } else { "none".into() }
                            ),
                        );
                    }
                }
            }
        }
        if !problems.is_empty() {
            problems.sort();
            problems.dedup();
            return Err(problems);
        }
        // No problems: each reader answered Ok.
        let (Ok(maskinporten), Ok(envoy), Ok(identity_provider), Ok(altinn_exchange)) =
            (maskinporten, envoy, identity_provider, altinn_exchange)
        else {
            return Err(vec![(
                0,
                format!("{file}: the binding tables have problems"),
            )]);
        };
        let Some(maskinporten) = maskinporten else {
            return Ok(None);
        };
        Ok(Some(Self {
            file: file.to_owned(),
            maskinporten,
            altinn_exchange,
            envoy,
            identity_provider: identity_provider.map(|c| {
                let raw = top.get("identity_provider").cloned();
                (c, raw.unwrap_or(toml::Value::Boolean(false)))
            }),
            route_lines,
        }))
    }

    /// Every package a route or `[maskinporten.scopes]` names that the schema's
    /// package list does not know, each with its line.
    pub(in crate::cli) fn unknown_packages(&self, packages: &AccessPackages) -> Vec<String> {
        let file = &self.file;
        let mut found: Vec<(usize, String)> = Vec::new();
        for (urn, line) in &self.maskinporten.scope_lines {
            if !packages.contains(urn) {
                found.push((
                    *line,
                    format!("{file}:{line}: maskinporten.scopes: {urn:?} is not a known access package (the schema's access-packages.json)"),
                ));
            }
        }
        for (i, route) in self.envoy.iter().flat_map(|e| e.routes.iter()).enumerate() {
            if !packages.contains(&route.package) {
                let line = self.route_lines.get(i).copied().unwrap_or(0);
                found.push((
                    line,
                    format!(
                        "{file}:{line}: {}.package: {:?} is not a known access package (the schema's access-packages.json)",
                        route_label(i, &route.name),
                        route.package
                    ),
                ));
            }
        }
        found.sort();
        found.into_iter().map(|(_, p)| p).collect()
    }

    /// How many routes Check serves.
    pub(super) fn routes(&self) -> usize {
        self.envoy.as_ref().map_or(0, |e| e.routes.len())
    }
}

/// `[maskinporten.scopes]` as the file gives it: package URN → scopes (the
/// strings of each list; what is wrong with them is `[maskinporten]`'s to say).
fn raw_scopes(top: &toml::Table) -> std::collections::HashMap<String, Vec<String>> {
    let prefix = crate::rules::packages::URN_PREFIX;
    top.get("maskinporten")
        .and_then(|m| m.get("scopes"))
        .and_then(toml::Value::as_table)
        .map(|t| {
            t.iter()
                .map(|(package, list)| {
                    let urn = if package.starts_with(prefix) {
                        package.clone()
                    } else {
                        format!("{prefix}{package}")
                    };
                    let scopes = list
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    (urn, scopes)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `[altinn]`: `base_url` alone, as the exchange URL under it.
fn read_altinn(
    file: &str,
    line: usize,
    text: &str,
    v: &toml::Value,
) -> Result<Url, Vec<(usize, String)>> {
    let bad = |l: usize, key: &str, what: String| (l, format!("{file}:{l}: altinn.{key}: {what}"));
    let Some(t) = v.as_table() else {
        return Err(vec![(
            line,
            format!("{file}:{line}: altinn: must be a table ([altinn])"),
        )]);
    };
    // The line of `base_url` itself, when it is on its own line.
    let key_line = text
        .lines()
        .enumerate()
        .skip(line)
        .find(|(_, l)| l.trim_start().starts_with("base_url"))
        .map_or(line, |(i, _)| i + 1);
    let mut problems = Vec::new();
    // `[altinn.sync]` is `vakt altinn sync`'s (src/cli/altinn.rs), which reads
    // the same file.
    for k in t.keys().filter(|k| *k != "base_url" && *k != "sync") {
        problems.push(bad(
            line,
            k,
            "unknown key (the table has base_url and [altinn.sync] only)".into(),
        ));
    }
    let url = match t.get("base_url") {
        None => {
            problems.push(bad(
                line,
                "base_url",
                "is required, such as \"https://platform.tt02.altinn.no\"".into(),
            ));
            None
        }
        Some(toml::Value::String(s)) => match exchange_url(s) {
            Ok(u) => Some(u),
            Err(e) => {
                problems.push(bad(key_line, "base_url", e));
                None
            }
        },
        Some(other) => {
            problems.push(bad(
                key_line,
                "base_url",
                format!("must be a string, not {}", other.type_str()),
            ));
            None
        }
    };
    match url {
        Some(u) if problems.is_empty() => Ok(u),
        _ => Err(problems),
    }
}

/// `{base_url}/authentication/api/v1/exchange/maskinporten`, from an https base
/// URL (plain http only on loopback, for a stand-in) without query, fragment or
/// credentials.
fn exchange_url(base: &str) -> Result<Url, String> {
    let url = Url::parse(base).map_err(|e| format!("{base:?} is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => return Err(format!("{base:?} names no host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(format!("{base:?} must be an https URL")),
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(format!(
            "{base:?} must not carry a query, fragment or credentials"
        ));
    }
    let joined = format!("{}{EXCHANGE_PATH}", base.trim_end_matches('/'));
    Url::parse(&joined).map_err(|e| format!("{joined:?} is not a URL: {e}"))
}

/// Reads the configuration file's binding tables and checks their packages
/// against the package list of the schema `paths` name: every problem, or the
/// tables (`None`: no file, or no `[maskinporten]`).
pub(in crate::cli) fn read(
    file: Option<&Path>,
    paths: SourcePaths,
) -> Result<Option<Tables>, Vec<String>> {
    let Some(path) = file else { return Ok(None) };
    let text = crate::problem::read_named(path, crate::problem::MAX_SMALL_FILE_BYTES)
        .map_err(|m| vec![m])?;
    let shown = path.display().to_string();
    let tables = Tables::from_text(&shown, &text)
        .map_err(|p| p.into_iter().map(|(_, p)| p).collect::<Vec<_>>())?;
    let Some(tables) = tables else {
        return Ok(None);
    };
    // Only the package list is needed: no policies, no data.
    let schema_only = SourcePaths {
        policies: None,
        data: None,
        data_manifest: None,
        ..paths
    };
    // A schema directory that cannot be read is reported with the sources.
    if let Ok(sources) = Sources::read(&schema_only) {
        match AccessPackages::parse(&sources.packages.name, &sources.packages.text) {
            Ok(packages) => {
                let unknown = tables.unknown_packages(&packages);
                if !unknown.is_empty() {
                    return Err(unknown);
                }
            }
            Err(e) => return Err(vec![e.to_string()]),
        }
    }
    Ok(Some(tables))
}

/// The binding a sidecar serves with, and what it was built from.
pub(super) struct Built {
    tables: Tables,
    /// SHA-256 over the key, certificate and CA files: a key replaced at the
    /// same path is a changed `[maskinporten]`.
    fingerprint: [u8; 32],
    identity_provider: Option<Arc<IdentityProvider>>,
    pub(super) binding: Binding,
}

/// Whether a build made a new Maskinporten client or kept the running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Client {
    New,
    Kept,
}

impl Client {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Kept => "kept",
        }
    }
}

impl Built {
    pub(super) fn routes(&self) -> usize {
        self.tables.routes()
    }
}

/// Builds the binding from its tables. With `previous` (a SIGHUP), an unchanged
/// `[maskinporten]` keeps the running client and its token cache, and an
/// unchanged `[identity_provider]` its verifier and the keys it has fetched.
pub(super) fn build(
    tables: Tables,
    previous: Option<&Built>,
) -> Result<(Built, Client), Vec<String>> {
    let config = &tables.maskinporten.config;
    let fingerprint = fingerprint(config).map_err(|e| vec![format!("{}: {e}", tables.file)])?;
    let kept = previous
        .filter(|p| p.tables.maskinporten.config == *config && p.fingerprint == fingerprint);
    let (maskinporten, client) = match kept {
        Some(p) => (p.binding.maskinporten.clone(), Client::Kept),
        None => {
            let m = Maskinporten::new(config.clone()).map_err(|e| {
                e.problems
                    .iter()
                    .map(|p| {
                        format!(
                            "{}:{}: maskinporten.{}: {}",
                            tables.file, tables.maskinporten.line, p.field, p.message
                        )
                    })
                    .collect::<Vec<_>>()
            })?;
            (m, Client::New)
        }
    };
    let identity_provider = match &tables.identity_provider {
        None => None,
        Some((config, raw)) => {
            let same = previous.and_then(|p| {
                p.identity_provider.as_ref().filter(|_| {
                    p.tables
                        .identity_provider
                        .as_ref()
                        .is_some_and(|(_, r)| r == raw)
                })
            });
            match same {
                Some(idp) => Some(idp.clone()),
                None => {
                    let idp = IdentityProvider::new(config.clone()).map_err(|e| {
                        e.problems
                            .iter()
                            .map(|p| {
                                format!(
                                    "{}: identity_provider.{}: {}",
                                    tables.file, p.field, p.message
                                )
                            })
                            .collect::<Vec<_>>()
                    })?;
                    // Keys fetched now and kept fresh in the background (until the
                    // verifier is dropped), so the first employee JWT after a
                    // start or a changed table need not be refused for want of them.
                    drop(idp.start());
                    Some(Arc::new(idp))
                }
            }
        }
    };
    let envoy = tables.envoy.clone().map(|config| EnvoyBinding {
        verifier: match config.employee {
            EmployeeFrom::Jwt(_) => identity_provider
                .clone()
                .map(|i| i as Arc<dyn EmployeeVerifier>),
            EmployeeFrom::Header(_) => None,
        },
        config,
    });
    let binding = Binding {
        maskinporten,
        scopes: tables.maskinporten.scopes.clone(),
        envoy,
        altinn_exchange: tables.altinn_exchange.clone(),
    };
    Ok((
        Built {
            tables,
            fingerprint,
            identity_provider,
            binding,
        },
        client,
    ))
}

/// SHA-256 over the contents of the files the client reads (each with its
/// length, so two files cannot run together): the key never leaves here.
fn fingerprint(config: &MaskinportenConfig) -> Result<[u8; 32], String> {
    use sha2::Digest as _;
    let (key, chain) = match &config.key {
        crate::maskinporten::KeySource::Rsa { key_file, .. } => (key_file, None),
        crate::maskinporten::KeySource::Certificate {
            chain_file,
            key_file,
        } => (key_file, Some(chain_file)),
    };
    let mut h = sha2::Sha256::new();
    for path in [Some(key), chain, config.extra_ca_file.as_ref()]
        .into_iter()
        .flatten()
    {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exchange_url_is_under_the_base_url() {
        for base in [
            "https://platform.tt02.altinn.no",
            "https://platform.tt02.altinn.no/",
        ] {
            assert_eq!(
                exchange_url(base).unwrap().as_str(),
                "https://platform.tt02.altinn.no/authentication/api/v1/exchange/maskinporten"
            );
        }
        assert!(exchange_url("http://127.0.0.1:8080").is_ok());
        for bad in [
            "http://platform.altinn.no",
            "https://u:p@platform.altinn.no",
            "https://platform.altinn.no/?x=1",
            "platform.altinn.no",
        ] {
            assert!(exchange_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_short_package_name_and_its_urn_are_one_package() {
        let text = "[maskinporten]\nissuer = \"https://test.maskinporten.no/\"\nclient_id = \"c\"\nkey_file = \"/nonexistent/k\"\nkid = \"k\"\n[maskinporten.scopes]\na-ordning = [\"s:a\"]\n\"urn:altinn:accesspackage:a-ordning\" = [\"s:b\"]\n";
        let problems = Tables::from_text("f.toml", text).err().unwrap();
        let all: Vec<&str> = problems.iter().map(|(_, p)| p.as_str()).collect();
        assert!(
            all.iter()
                .any(|p| p.starts_with("f.toml:8: maskinporten.scopes.")
                    && p.contains("given twice")),
            "{all:?}"
        );
        assert!(
            all.iter()
                .any(|p| p.starts_with("f.toml:4: maskinporten.key_file: /nonexistent/k")),
            "{all:?}"
        );
    }
}
