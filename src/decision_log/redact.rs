//! Keeping secrets out of decision records: secret-shaped parts of any string are
//! replaced, and context attributes an operator names are never written.
//!
//! A caller may send a token where an id belongs, or inside a longer value. Only the
//! secret-shaped part is replaced by `[redacted]`, so ordinary ids, org numbers and
//! URNs stay as they are and the rest of a message stays readable.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine as _;
use std::borrow::Cow;
use std::sync::LazyLock;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Context attributes never written as they are (`--decision-log-redact`).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    fields: Vec<String>,
}

impl Redactor {
    pub fn new(fields: impl IntoIterator<Item = String>) -> Self {
        Self {
            fields: fields.into_iter().collect(),
        }
    }

    pub fn is_redacted_field(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f == name)
    }

    pub fn fields(&self) -> &[String] {
        &self.fields
    }
}

/// The kinds of secret recognised; each trigger is found case-insensitively and then
/// checked against the exact shape of its kind.
#[derive(Clone, Copy)]
enum Kind {
    /// `Bearer <token>`: an HTTP Authorization value.
    Bearer,
    /// `Basic <base64 of user:password>`.
    Basic,
    /// `eyJ…​.…​.…`: a JWT (its header is base64 of `{"`).
    Jwt,
    /// `-----BEGIN … PRIVATE KEY-----` through its END line.
    Pem,
    /// A vendor token prefix (`ghp_`, `sk_live_`, `xoxb-`, ...) and what follows it.
    Prefix { min_tail: usize },
    /// An AWS access key id: `AKIA`/`ASIA` and 16 upper-case letters or digits.
    AwsKeyId,
    /// `password=…`, `token: …` and the like: the value after the name.
    Pair,
}

const TRIGGERS: &[(&str, Kind)] = &[
    ("bearer ", Kind::Bearer),
    ("basic ", Kind::Basic),
    ("eyj", Kind::Jwt),
    ("-----begin", Kind::Pem),
    ("ghp_", Kind::Prefix { min_tail: 20 }),
    ("gho_", Kind::Prefix { min_tail: 20 }),
    ("ghu_", Kind::Prefix { min_tail: 20 }),
    ("ghs_", Kind::Prefix { min_tail: 20 }),
    ("ghr_", Kind::Prefix { min_tail: 20 }),
    ("github_pat_", Kind::Prefix { min_tail: 20 }),
    ("glpat-", Kind::Prefix { min_tail: 16 }),
    ("sk_live_", Kind::Prefix { min_tail: 10 }),
    ("sk-proj-", Kind::Prefix { min_tail: 20 }),
    ("sk-ant-", Kind::Prefix { min_tail: 20 }),
    ("sk_test_", Kind::Prefix { min_tail: 10 }),
    ("rk_live_", Kind::Prefix { min_tail: 10 }),
    ("rk_test_", Kind::Prefix { min_tail: 10 }),
    ("whsec_", Kind::Prefix { min_tail: 10 }),
    ("xoxb-", Kind::Prefix { min_tail: 10 }),
    ("xoxp-", Kind::Prefix { min_tail: 10 }),
    ("xoxa-", Kind::Prefix { min_tail: 10 }),
    ("xoxr-", Kind::Prefix { min_tail: 10 }),
    ("xoxs-", Kind::Prefix { min_tail: 10 }),
    ("xapp-", Kind::Prefix { min_tail: 10 }),
    ("npm_", Kind::Prefix { min_tail: 30 }),
    ("pypi-", Kind::Prefix { min_tail: 30 }),
    ("aiza", Kind::Prefix { min_tail: 30 }),
    ("sq0atp-", Kind::Prefix { min_tail: 16 }),
    ("sq0csp-", Kind::Prefix { min_tail: 16 }),
    ("shpat_", Kind::Prefix { min_tail: 20 }),
    ("dop_v1_", Kind::Prefix { min_tail: 20 }),
    ("hvs.", Kind::Prefix { min_tail: 20 }),
    ("akia", Kind::AwsKeyId),
    ("asia", Kind::AwsKeyId),
    ("password", Kind::Pair),
    ("passwd", Kind::Pair),
    ("pwd", Kind::Pair),
    ("secret", Kind::Pair),
    ("token", Kind::Pair),
    ("api_key", Kind::Pair),
    ("apikey", Kind::Pair),
    ("api-key", Kind::Pair),
    ("private_key", Kind::Pair),
    ("access_key", Kind::Pair),
    ("credential", Kind::Pair),
];

static MATCHER: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostLongest)
        .build(TRIGGERS.iter().map(|(t, _)| t))
        .expect("constant patterns build")
});

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'=')
}

/// The end of the run of token bytes starting at `from`.
fn token_end(s: &[u8], from: usize) -> usize {
    from + s[from..].iter().take_while(|b| is_token_byte(**b)).count()
}

/// Whether the byte before `at` could continue an identifier (so a trigger found
/// there is the middle of a longer word, not the start of a secret).
fn inside_word(s: &[u8], at: usize) -> bool {
    at > 0 && (s[at - 1].is_ascii_alphanumeric())
}

/// The byte range to replace for a trigger of `kind` found at `start..end`, if the
/// text there really has the kind's shape.
fn secret_span(s: &str, start: usize, end: usize, kind: Kind) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    match kind {
        Kind::Bearer => {
            let stop = token_end(b, end);
            (stop > end).then_some((start, stop))
        }
        Kind::Basic => {
            let stop = token_end(b, end);
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(&s[end..stop])
                .ok()?;
            decoded.contains(&b':').then_some((start, stop))
        }
        Kind::Jwt => {
            // The header must start the token: `eyJ` exactly (base64 of `{"`).
            if &s[start..end] != "eyJ" {
                return None;
            }
            let stop = token_end(b, end);
            let token = s[start..stop].trim_end_matches(['.', '=']);
            let parts: Vec<&str> = token.split('.').collect();
            let ok = parts.len() >= 3
                && parts.iter().all(|p| {
                    !p.is_empty()
                        && p.bytes()
                            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
                });
            ok.then_some((start, start + token.len()))
        }
        Kind::Pem => {
            let stop = match s[end..].find("-----END") {
                Some(i) => {
                    let after_end = end + i + "-----END".len();
                    match s[after_end..].find("-----") {
                        Some(j) => after_end + j + 5,
                        None => s.len(),
                    }
                }
                None => s.len(),
            };
            Some((start, stop))
        }
        Kind::Prefix { min_tail } => {
            if inside_word(b, start) {
                return None;
            }
            let stop = token_end(b, end);
            (stop - end >= min_tail).then_some((start, stop))
        }
        Kind::AwsKeyId => {
            if inside_word(b, start) || !s[start..end].bytes().all(|c| c.is_ascii_uppercase()) {
                return None;
            }
            let tail = &b[end..];
            let ok = tail.len() >= 16
                && tail[..16]
                    .iter()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                && tail.get(16).is_none_or(|c| !c.is_ascii_alphanumeric());
            ok.then_some((start, end + 16))
        }
        Kind::Pair => {
            // name, optional suffix letters (password1, tokens), optional quote,
            // spaces, then `=` or `:`, then the value up to a delimiter.
            let mut i = end;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                i += 1;
            }
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i >= b.len() || !(b[i] == b'=' || b[i] == b':') {
                return None;
            }
            i += 1;
            while i < b.len() && (b[i] == b' ' || b[i] == b'"' || b[i] == b'\'') {
                i += 1;
            }
            let value_start = i;
            while i < b.len()
                && !matches!(
                    b[i],
                    b'&' | b';' | b',' | b' ' | b'"' | b'\'' | b'\n' | b'}'
                )
            {
                i += 1;
            }
            (i > value_start).then_some((value_start, i))
        }
    }
}

/// `s` with every secret-shaped part replaced by `[redacted]`; borrowed when there
/// is none (the common case costs one scan).
pub fn scrub(s: &str) -> Cow<'_, str> {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for (start, end, kind) in triggers(s) {
        if spans.last().is_some_and(|&(_, e)| start < e) {
            continue;
        }
        if let Some(span) = secret_span(s, start, end, kind) {
            spans.push(span);
        }
    }
    if spans.is_empty() {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for (start, end) in spans {
        if start < at {
            continue;
        }
        out.push_str(&s[at..start]);
        out.push_str(REDACTED);
        at = end;
    }
    out.push_str(&s[at..]);
    Cow::Owned(out)
}

/// Every trigger occurrence, left to right. The search restarts one byte after each
/// match, so a trigger whose shape check fails does not hide a later secret.
fn triggers(s: &str) -> impl Iterator<Item = (usize, usize, Kind)> + '_ {
    let mut from = 0;
    std::iter::from_fn(move || {
        let m = MATCHER.find(aho_corasick::Input::new(s).range(from..))?;
        from = m.start() + 1;
        while from < s.len() && !s.is_char_boundary(from) {
            from += 1;
        }
        Some((m.start(), m.end(), TRIGGERS[m.pattern().as_usize()].1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_values_stay() {
        for s in [
            "kari",
            "tk-regnskap",
            "310015156",
            "urn:altinn:accesspackage:a-ordning",
            "urn:altinn:external-role:ccr:revisor",
            "01a209d4-7b0c-7347-bd2d-e94ff3ea883c",
            "a.b.c",
            "basic accounting",
            "the token was refused",
            "employee kari is not known",
            "eyJ",
            "skatt-naering",
            "akia",
        ] {
            assert_eq!(scrub(s), s, "{s}");
        }
    }

    #[test]
    fn only_the_secret_part_is_replaced() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJrYXJpIn0.c2lnbmF0dXJl";
        assert_eq!(scrub(jwt), REDACTED);
        assert_eq!(scrub(&format!("kari {jwt}")), "kari [redacted]");
        assert_eq!(scrub(&format!("(x{jwt}, y)")), "(x[redacted], y)");
        assert_eq!(
            scrub("employee Bearer abc.def is not known"),
            "employee [redacted] is not known"
        );
        assert_eq!(scrub("Basic dXNlcjpwYXNz"), REDACTED);
        assert_eq!(
            scrub("a=1&password=hunter2&b=2"),
            "a=1&password=[redacted]&b=2"
        );
        assert_eq!(scrub("token: abc123"), "token: [redacted]");
        assert_eq!(
            scrub("key AKIAIOSFODNN7EXAMPLE here"),
            "key [redacted] here"
        );
        assert_eq!(
            scrub("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY----- tail"),
            "[redacted] tail"
        );
        assert_eq!(
            scrub("use ghp_abcdefghijklmnopqrstuvwxyz0123456789 now"),
            "use [redacted] now"
        );
    }
}
