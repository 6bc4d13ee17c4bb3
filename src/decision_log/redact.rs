//! Keeping secrets out of decision records and diagnostics: secret-shaped parts of
//! any string are replaced, and context attributes an operator names are never
//! written.
//!
//! A caller may send a token where an id belongs, or inside a longer value. Only the
//! secret-shaped part is replaced by `[redacted]`, so ordinary ids, org numbers,
//! UUIDs, URNs and hex digests stay as they are and the rest of a message stays
//! readable.
//!
//! Two passes find secrets. Most shapes have a fixed part (a vendor prefix, a
//! keyword such as `password`, `Bearer`, `://`), found by one case-insensitive
//! Aho-Corasick scan over every trigger and then checked against the exact shape of
//! its kind. The few shapes without one (national identity numbers, card numbers,
//! bare AWS secret keys, Twilio keys) are found by one byte-class pass that only
//! runs on strings long enough to hold them. A string with neither costs one scan.
//!
//! The shapes are Vakt's own patterns, drawn from the rule lists of secretlint's
//! recommended preset (`@secretlint/secretlint-rule-preset-recommend` 12.0.0, npm)
//! and detect-secrets 1.5.0 (PyPI), plus the shapes of issue 22 and Norwegian
//! identity numbers; `tests/data/secrets/` holds one example of each, with its
//! source.
//!
//! Every check that fails gives up after a bounded number of bytes, and the runs
//! the checks read to their end are remembered during one scan, so a hostile string
//! of repeated triggers costs time linear in its length.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
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

/// What may follow a vendor prefix.
#[derive(Clone, Copy)]
enum Tail {
    /// Letters, digits, `-` and `_`.
    Word,
    /// Word bytes and `.`, `~`, `+`, `/`, `=` (base64 and dotted tokens).
    Token,
    /// Hex digits.
    Hex,
    /// Word bytes with both upper- and lower-case letters among them: after a
    /// short, generic prefix (`sk-`, `hf_`) only a random-looking tail is a key,
    /// not a kebab-case id such as `sk-regnskap-oslo`.
    Mixed,
}

impl Tail {
    fn class(self) -> Class {
        match self {
            Tail::Word | Tail::Mixed => Class::Word,
            Tail::Token => Class::Token,
            Tail::Hex => Class::Hex,
        }
    }

    fn accepts(self, b: u8) -> bool {
        self.class().accepts(b)
    }
}

/// The kinds of secret with a fixed part; each trigger is found case-insensitively
/// and then checked against the exact shape of its kind.
#[derive(Clone, Copy)]
enum Kind {
    /// `Bearer`, spaces or tabs, a token: an HTTP Authorization value. (A short
    /// word of letters after it is the next word of a sentence, not a token.)
    Bearer,
    /// `Basic`, spaces or tabs, base64 of `user:password`.
    Basic,
    /// A JWT (JWS or JWE): its header is base64url of `{` and `"` or whitespace,
    /// so it starts `ey` or `ew`; two dots or more; the signature may be empty.
    Jwt,
    /// `-----BEGIN … PRIVATE KEY-----` through its END line.
    Pem,
    /// A vendor token: the prefix in exactly the trigger's case, at the start of a
    /// word, then at least `min` bytes of its tail.
    Prefix { min: usize, tail: Tail },
    /// An AWS access key id: a 4-letter prefix (`AKIA`, `ASIA`, ...; `A3T` and one
    /// more), 20 upper-case letters or digits in all.
    AwsKeyId,
    /// `name=value`, `name: value`, `"name": "value"`, `name => value`,
    /// `name%3Dvalue`: the value. With `word`, the name must start a word (short
    /// names that occur inside others, like `sig` in `design`); with `suffix`,
    /// letters may follow it (`password1`, `secret_access_key`).
    Pair { word: bool, suffix: bool },
    /// A header whose whole value is a credential (`Cookie:`, `Set-Cookie:`,
    /// `Authorization:`): the value, to the end of its line.
    Header,
    /// `scheme://userinfo@host`: the user-info part (user and password).
    UrlUser,
    /// A webhook URL whose path is its credential: the path.
    Webhook,
    /// A Mailchimp key: 32 lower-case letters or digits, `-us`, the data centre.
    Mailchimp,
    /// A Telegram bot token: 8 to 10 digits, `:AA`, 30 to 40 more.
    Telegram,
}

const fn prefix(min: usize, tail: Tail) -> Kind {
    Kind::Prefix { min, tail }
}

/// A keyword whose value is secret, wherever it stands in a name.
const PAIR: Kind = Kind::Pair {
    word: false,
    suffix: true,
};
/// A keyword that must start a word, but may be followed by more letters.
const WORD_PAIR: Kind = Kind::Pair {
    word: true,
    suffix: true,
};
/// A keyword that must be a word of its own.
const EXACT_PAIR: Kind = Kind::Pair {
    word: true,
    suffix: false,
};

use Tail::{Hex, Mixed, Token, Word};

/// Every trigger and its kind. Sources, by the names of their rules: secretlint's
/// recommended preset (`sl:`) and detect-secrets' plugins (`ds:`); the rest come
/// from issue 22 or are Vakt's.
const TRIGGERS: &[(&str, Kind)] = &[
    // HTTP credentials (ds: BasicAuthDetector; sl: basicauth; issue 22).
    ("bearer", Kind::Bearer),
    ("basic", Kind::Basic),
    ("authorization", Kind::Header),
    ("cookie", Kind::Header),
    ("://", Kind::UrlUser),
    // ds: JwtTokenDetector.
    ("ey", Kind::Jwt),
    ("ew", Kind::Jwt),
    // sl: privatekey; ds: PrivateKeyDetector.
    ("-----begin", Kind::Pem),
    // sl: github; ds: GitHubTokenDetector.
    ("ghp_", prefix(30, Word)),
    ("gho_", prefix(30, Word)),
    ("ghu_", prefix(30, Word)),
    ("ghs_", prefix(30, Word)),
    ("ghr_", prefix(30, Word)),
    ("github_pat_", prefix(40, Word)),
    // sl: gitlab; ds: GitLabTokenDetector.
    ("glpat-", prefix(16, Word)),
    ("gldt-", prefix(16, Word)),
    ("glft-", prefix(16, Word)),
    ("glsoat-", prefix(16, Word)),
    ("glrt-", prefix(16, Word)),
    ("glcbt-", prefix(16, Word)),
    ("glimt-", prefix(16, Word)),
    ("glptt-", prefix(16, Word)),
    ("glagent-", prefix(16, Word)),
    ("gloas-", prefix(16, Word)),
    ("GR1348941", prefix(16, Word)),
    // sl: grafana.
    ("glc_", prefix(32, Token)),
    ("glsa_", prefix(32, Word)),
    // ds: StripeDetector.
    ("sk_live_", prefix(10, Word)),
    ("sk_test_", prefix(10, Word)),
    ("rk_live_", prefix(10, Word)),
    ("rk_test_", prefix(10, Word)),
    ("whsec_", prefix(10, Word)),
    // sl: openai, anthropic; ds: OpenAIDetector; issue 22 (`sk-…`).
    ("sk-", prefix(20, Mixed)),
    // sl: groq, huggingface, linear, notion.
    ("gsk_", prefix(40, Word)),
    ("hf_", prefix(30, Mixed)),
    ("lin_api_", prefix(30, Word)),
    ("ntn_", prefix(40, Word)),
    ("secret_", prefix(40, Mixed)),
    // sl: slack; ds: SlackDetector.
    ("xoxb-", prefix(10, Word)),
    ("xoxp-", prefix(10, Word)),
    ("xoxa-", prefix(10, Word)),
    ("xoxr-", prefix(10, Word)),
    ("xoxs-", prefix(10, Word)),
    ("xoxo-", prefix(10, Word)),
    ("xoxe-", prefix(10, Word)),
    ("xapp-", prefix(10, Word)),
    ("hooks.slack.com/", Kind::Webhook),
    // Discord and Microsoft Teams webhooks (Vakt).
    ("discord.com/api/webhooks/", Kind::Webhook),
    ("discordapp.com/api/webhooks/", Kind::Webhook),
    ("webhook.office.com/", Kind::Webhook),
    // sl: npm; ds: NpmDetector, PypiTokenDetector.
    ("npm_", prefix(30, Word)),
    ("pypi-", prefix(30, Word)),
    // sl: gcp (API keys); Google OAuth (issue 22: `GOCSPX-`).
    ("AIza", prefix(30, Word)),
    ("ya29.", prefix(20, Token)),
    ("GOCSPX-", prefix(20, Word)),
    // sl: sendgrid; ds: SendGridDetector; issue 22.
    ("SG.", prefix(40, Token)),
    // ds: SquareOAuthDetector.
    ("sq0atp-", prefix(16, Word)),
    ("sq0csp-", prefix(16, Word)),
    // sl: shopify.
    ("shpat_", prefix(20, Word)),
    ("shppa_", prefix(20, Word)),
    ("shpca_", prefix(20, Word)),
    ("shpss_", prefix(20, Word)),
    // DigitalOcean (Vakt).
    ("dop_v1_", prefix(20, Word)),
    ("doo_v1_", prefix(20, Word)),
    ("dor_v1_", prefix(20, Word)),
    // sl: hashicorp-vault.
    ("hvs.", prefix(20, Word)),
    ("hvb.", prefix(20, Word)),
    ("hvr.", prefix(20, Word)),
    // sl: vercel.
    ("vcp_", prefix(20, Word)),
    ("vci_", prefix(20, Word)),
    ("vca_", prefix(20, Word)),
    ("vcr_", prefix(20, Word)),
    ("vck_", prefix(20, Word)),
    // sl: databricks (the prefix is part of the token's hex).
    ("dapi", prefix(32, Hex)),
    // sl: docker; issue 22.
    ("dckr_pat_", prefix(20, Word)),
    ("dckr_oat_", prefix(20, Word)),
    // sl: figma, 1password.
    ("figd_", prefix(30, Word)),
    ("ops_ey", prefix(50, Token)),
    // ds: ArtifactoryDetector (API tokens).
    ("AKC", prefix(20, Word)),
    // sl: aws; ds: AWSKeyDetector.
    ("AKIA", Kind::AwsKeyId),
    ("ASIA", Kind::AwsKeyId),
    ("ABIA", Kind::AwsKeyId),
    ("ACCA", Kind::AwsKeyId),
    ("A3T", Kind::AwsKeyId),
    // ds: MailchimpDetector, TelegramBotTokenDetector.
    ("-us", Kind::Mailchimp),
    (":AA", Kind::Telegram),
    // ds: KeywordDetector; sl: aws (secret access key), database-connection-string;
    // issue 22 (`password%3D`, `AccountKey=`, `session=`).
    ("password", PAIR),
    ("passwd", PAIR),
    ("passphrase", PAIR),
    ("pass", EXACT_PAIR),
    ("pwd", WORD_PAIR),
    ("contraseña", PAIR),
    ("contrasena", PAIR),
    ("secret", PAIR),
    ("token", PAIR),
    ("credential", PAIR),
    ("api_key", PAIR),
    ("apikey", PAIR),
    ("api-key", PAIR),
    ("auth_key", PAIR),
    ("authkey", PAIR),
    ("service_key", PAIR),
    ("servicekey", PAIR),
    ("account_key", PAIR),
    ("accountkey", PAIR),
    ("access_key", PAIR),
    ("accesskey", PAIR),
    ("db_key", PAIR),
    ("database_key", PAIR),
    ("priv_key", PAIR),
    ("privkey", PAIR),
    ("private_key", PAIR),
    ("privatekey", PAIR),
    ("client_key", PAIR),
    ("clientkey", PAIR),
    ("db_pass", PAIR),
    ("dbpass", PAIR),
    ("database_pass", PAIR),
    ("key_pass", PAIR),
    ("keypass", PAIR),
    ("session", WORD_PAIR),
    ("signature", PAIR),
    ("sig", EXACT_PAIR),
    ("auth", EXACT_PAIR),
];

static MATCHER: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        // Every trigger at every position: a longer trigger whose shape does not
        // hold (`secret_` without its tail) must not hide a shorter one (`secret`).
        .match_kind(MatchKind::Standard)
        .kind(Some(AhoCorasickKind::DFA))
        .build(TRIGGERS.iter().map(|(t, _)| t))
        .expect("constant patterns build")
});

/// How far a failing check looks before it gives up, so that a hostile string of
/// repeated triggers costs linear time.
const LOOK: usize = 256;

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn is_token_byte(b: u8) -> bool {
    is_word_byte(b) || matches!(b, b'.' | b'~' | b'+' | b'/' | b'=')
}

/// A byte of base64url, the alphabet of JWT segments.
fn is_b64url(b: u8) -> bool {
    is_word_byte(b)
}

/// The end of the run of bytes `accepts` takes, starting at `from`.
fn run_end(s: &[u8], from: usize, accepts: impl Fn(u8) -> bool) -> usize {
    from + s[from..].iter().take_while(|b| accepts(**b)).count()
}

/// The end of a run of at most `limit` bytes `accepts` takes, from `from`.
fn short_run_end(s: &[u8], from: usize, limit: usize, accepts: impl Fn(u8) -> bool) -> usize {
    let lim = (from + limit).min(s.len());
    from + s[from..lim].iter().take_while(|b| accepts(**b)).count()
}

/// Whether the byte before `at` could continue an identifier (so a trigger found
/// there is the middle of a longer word, not the start of a secret).
fn inside_word(s: &[u8], at: usize) -> bool {
    at > 0 && s[at - 1].is_ascii_alphanumeric()
}

/// Whether base64url `text` (a JWT segment) decodes to the start of a JSON object
/// with a member: `{`, optional whitespace, `"`. Only its first 24 characters are
/// decoded.
fn json_object_start(text: &[u8]) -> bool {
    let n = text.len().min(24) / 4 * 4;
    if n < 4 {
        return false;
    }
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&text[..n]) else {
        return false;
    };
    match bytes.split_first() {
        Some((b'{', rest)) => rest
            .iter()
            .find(|c| !c.is_ascii_whitespace())
            .is_some_and(|c| *c == b'"'),
        _ => false,
    }
}

/// A class of bytes whose runs the checks read to their end.
#[derive(Clone, Copy)]
enum Class {
    /// [`is_token_byte`].
    Token,
    /// [`is_word_byte`].
    Word,
    Hex,
    /// JWT segments: base64url, and `+`, `/`, `=` of base64 written loosely.
    Jwt,
    /// A keyword's value: up to `&`, `;`, `,`, white space, a quote or `}`.
    Value,
    /// A header's value: to the end of the line or a quote.
    Line,
}

impl Class {
    const COUNT: usize = 6;

    fn accepts(self, c: u8) -> bool {
        match self {
            Class::Token => is_token_byte(c),
            Class::Word => is_word_byte(c),
            Class::Hex => c.is_ascii_hexdigit(),
            Class::Jwt => is_b64url(c) || matches!(c, b'+' | b'/' | b'='),
            Class::Value => !matches!(
                c,
                b'&' | b';' | b',' | b' ' | b'\t' | b'"' | b'\'' | b'\n' | b'\r' | b'}'
            ),
            Class::Line => !matches!(c, b'\n' | b'\r' | b'"' | b'\''),
        }
    }
}

/// What one scan has already read, so that triggers repeated inside one run (a
/// hostile `password=password=…`) do not each read it again: the scan stays
/// linear in the string's length.
#[derive(Default)]
struct Memo {
    /// Per class, the last run read: a start within it, and its end.
    runs: [(usize, usize); Class::COUNT],
    /// A JWT header's end, and where the JWT after it ends (None: not a JWT).
    jwt: Option<(usize, Option<usize>)>,
    /// The last dotted chain of JWT segments read: a start within it, and its end.
    chain: Option<(usize, usize)>,
    /// The last search for a PEM block's end: where it began, the `-----END` it
    /// found (or the string's end), and where the block ends.
    pem: Option<(usize, usize, usize)>,
}

impl Memo {
    /// The end of the run of `class` bytes from `from`.
    fn run_end(&mut self, b: &[u8], class: Class, from: usize) -> usize {
        let (a, z) = self.runs[class as usize];
        if a <= from && from < z {
            return z;
        }
        let z = run_end(b, from, |c| class.accepts(c));
        self.runs[class as usize] = (from, z);
        z
    }
}

/// Where a JWT whose header ends (at a dot) at `header_end` ends: after the
/// payload, a dot, the signature (perhaps empty) and, for a JWE, more segments.
fn jwt_rest(b: &[u8], header_end: usize, memo: &mut Memo) -> Option<usize> {
    let payload_end = memo.run_end(b, Class::Jwt, header_end + 1);
    if b.get(payload_end) != Some(&b'.') {
        return None;
    }
    // Every position of one dotted chain ends where the chain ends.
    let from = payload_end + 1;
    if let Some((a, z)) = memo.chain {
        if a <= from && from <= z {
            return Some(z);
        }
    }
    let mut stop = memo.run_end(b, Class::Jwt, from);
    while b.get(stop) == Some(&b'.') && b.get(stop + 1).is_some_and(|c| Class::Jwt.accepts(*c)) {
        stop = memo.run_end(b, Class::Jwt, stop + 1);
    }
    memo.chain = Some((from, stop));
    Some(stop)
}

/// The byte range to replace for a trigger of `kind` found at `start..end`, if the
/// text there really has the kind's shape.
fn secret_span(
    s: &str,
    start: usize,
    end: usize,
    trigger: &str,
    kind: Kind,
    memo: &mut Memo,
) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    match kind {
        Kind::Bearer => {
            if inside_word(b, start) {
                return None;
            }
            let at = short_run_end(b, end, 16, |c| c == b' ' || c == b'\t');
            let stop = memo.run_end(b, Class::Token, at);
            // A token, not the next word of a sentence ("the bearer is"): long,
            // or with a digit or punctuation in it.
            let token = &b[at..stop];
            let tokenish = token.len() >= 8 || token.iter().any(|c| !c.is_ascii_alphabetic());
            (at > end && !token.is_empty() && tokenish).then_some((start, stop))
        }
        Kind::Basic => {
            if inside_word(b, start) {
                return None;
            }
            let at = short_run_end(b, end, 16, |c| c == b' ' || c == b'\t');
            let stop = short_run_end(b, at, 1024, is_token_byte);
            if at == end || stop == at {
                return None;
            }
            let engine = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            );
            let decoded = engine.decode(&s[at..stop]).ok()?;
            decoded.contains(&b':').then_some((start, stop))
        }
        Kind::Jwt => {
            // The header decodes to a JSON object, and two dots follow; the header
            // may follow other base64url bytes (`x` in `xeyJ…`). Every trigger in one
            // base64url run shares the run's end, and every header ending there the
            // segments after it, so those are read once per run.
            let head = &b[start..end];
            if head != b"ey" && head != b"ew" {
                return None;
            }
            let header_end = memo.run_end(b, Class::Word, start);
            if b.get(header_end) != Some(&b'.') || !json_object_start(&b[start..header_end]) {
                return None;
            }
            let stop = match memo.jwt {
                Some((h, stop)) if h == header_end => stop,
                _ => {
                    let stop = jwt_rest(b, header_end, memo);
                    memo.jwt = Some((header_end, stop));
                    stop
                }
            };
            stop.map(|stop| (start, stop))
        }
        Kind::Pem => {
            let stop = match memo.pem {
                Some((from, found, stop)) if from <= end && end <= found => stop,
                _ => {
                    let (found, stop) = match s[end..].find("-----END") {
                        Some(i) => {
                            let after_end = end + i + "-----END".len();
                            let stop = match s[after_end..].find("-----") {
                                Some(j) => after_end + j + 5,
                                None => s.len(),
                            };
                            (end + i, stop)
                        }
                        None => (s.len(), s.len()),
                    };
                    memo.pem = Some((end, found, stop));
                    stop
                }
            };
            Some((start, stop))
        }
        Kind::Prefix { min, tail } => {
            if &s[start..end] != trigger || inside_word(b, start) {
                return None;
            }
            let seen = short_run_end(b, end, LOOK.max(min), |c| tail.accepts(c));
            if seen - end < min {
                return None;
            }
            if matches!(tail, Tail::Mixed) {
                let t = &b[end..seen];
                if !(t.iter().any(u8::is_ascii_uppercase) && t.iter().any(u8::is_ascii_lowercase)) {
                    return None;
                }
            }
            Some((start, memo.run_end(b, tail.class(), seen)))
        }
        Kind::AwsKeyId => {
            if &s[start..end] != trigger || inside_word(b, start) {
                return None;
            }
            let stop = start + 20;
            let ok = b.len() >= stop
                && b[start..stop]
                    .iter()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                && b.get(stop).is_none_or(|c| !c.is_ascii_alphanumeric());
            ok.then_some((start, stop))
        }
        Kind::Pair { word, suffix } => {
            if word && inside_word(b, start) {
                return None;
            }
            let mut i = end;
            if suffix {
                i = short_run_end(b, i, 32, is_word_byte);
            }
            // A closing quote or bracket of the name, spaces, then the separator.
            i = short_run_end(b, i, 2, |c| matches!(c, b'"' | b'\'' | b']'));
            i = short_run_end(b, i, 8, |c| c == b' ' || c == b'\t');
            let rest = &b[i..];
            let sep = if rest.starts_with(b"=>") || rest.starts_with(b":=") {
                2
            } else if rest.first().is_some_and(|c| *c == b'=' || *c == b':') {
                1
            } else if rest.len() >= 3
                && rest[0] == b'%'
                && (rest[1..3].eq_ignore_ascii_case(b"3d")
                    || rest[1..3].eq_ignore_ascii_case(b"3a"))
            {
                3
            } else {
                return None;
            };
            i += sep;
            i = short_run_end(b, i, 8, |c| matches!(c, b' ' | b'\t' | b'"' | b'\''));
            let value_start = i;
            if s[value_start..].starts_with(REDACTED) {
                return None;
            }
            let stop = memo.run_end(b, Class::Value, value_start);
            (stop > value_start).then_some((value_start, stop))
        }
        Kind::Header => {
            let mut i = short_run_end(b, end, 1, |c| c == b's');
            i = short_run_end(b, i, 2, |c| matches!(c, b'"' | b'\''));
            i = short_run_end(b, i, 8, |c| c == b' ' || c == b'\t');
            if !matches!(b.get(i), Some(b':' | b'=')) {
                return None;
            }
            i = short_run_end(b, i + 1, 8, |c| matches!(c, b' ' | b'\t' | b'"' | b'\''));
            if s[i..].starts_with(REDACTED) {
                return None;
            }
            let stop = memo.run_end(b, Class::Line, i);
            (stop > i).then_some((i, stop))
        }
        Kind::UrlUser => {
            // The authority ends at the path, query, fragment or white space; the
            // user-info ends at its last `@` (a password may hold an unencoded one).
            let authority_end = short_run_end(b, end, 1024, |c| {
                !matches!(
                    c,
                    b'/' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>' | b'\\' | b'`'
                ) && !c.is_ascii_whitespace()
            });
            let at = end + b[end..authority_end].iter().rposition(|c| *c == b'@')?;
            (at > end && !s[end..at].starts_with(REDACTED)).then_some((end, at))
        }
        Kind::Webhook => {
            let stop = memo.run_end(b, Class::Token, end);
            (stop - end >= 10).then_some((end, stop))
        }
        Kind::Mailchimp => {
            let digits = short_run_end(b, end, 3, |c| c.is_ascii_digit());
            let key_start = start.checked_sub(32)?;
            let ok = (1..=2).contains(&(digits - end))
                && b.get(digits).is_none_or(|c| !c.is_ascii_alphanumeric())
                && !inside_word(b, key_start)
                && b[key_start..start]
                    .iter()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase());
            ok.then_some((key_start, digits))
        }
        Kind::Telegram => {
            if &s[start..end] != trigger {
                return None;
            }
            let digits = b[..start]
                .iter()
                .rev()
                .take(11)
                .take_while(|c| c.is_ascii_digit())
                .count();
            let id_start = start - digits;
            let stop = short_run_end(b, start + 1, 42, is_word_byte);
            let ok = (8..=10).contains(&digits)
                && !inside_word(b, id_start)
                && (30..=40).contains(&(stop - start - 1))
                && b.get(stop).is_none_or(|c| !is_word_byte(*c));
            ok.then_some((id_start, stop))
        }
    }
}

/// `s` with every secret-shaped part replaced by `[redacted]`; borrowed when there
/// is none (the common case costs one scan).
pub fn scrub(s: &str) -> Cow<'_, str> {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut memo = Memo::default();
    for m in MATCHER.find_overlapping_iter(s) {
        let start = m.start();
        let (trigger, kind) = TRIGGERS[m.pattern().as_usize()];
        if let Some(span) = secret_span(s, start, m.end(), trigger, kind, &mut memo) {
            spans.push(span);
        }
    }
    bare_spans(s.as_bytes(), &mut spans);
    if spans.is_empty() {
        return Cow::Borrowed(s);
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    let mut current: Option<(usize, usize)> = None;
    for (a, z) in spans {
        match current {
            Some((ca, cz)) if a <= cz => current = Some((ca, cz.max(z))),
            _ => {
                if let Some((ca, cz)) = current {
                    out.push_str(&s[at..ca]);
                    out.push_str(REDACTED);
                    at = cz;
                }
                current = Some((a, z));
            }
        }
    }
    if let Some((ca, cz)) = current {
        out.push_str(&s[at..ca]);
        out.push_str(REDACTED);
        at = cz;
    }
    out.push_str(&s[at..]);
    Cow::Owned(out)
}

/// The secrets without a fixed part: Norwegian national identity numbers and card
/// numbers among the digits, bare AWS secret keys and Twilio keys among the
/// base64 runs. Strings too short to hold one, or without enough digits, are not
/// looked at further.
fn bare_spans(b: &[u8], spans: &mut Vec<(usize, usize)>) {
    if b.len() < 11 {
        return;
    }
    if b.iter().filter(|c| c.is_ascii_digit()).count() >= 11 {
        let mut i = 0;
        while i < b.len() {
            if !b[i].is_ascii_digit() {
                i += 1;
            } else if inside_word(b, i) {
                // Digits inside a word (a hex digest, an id): skip the word.
                i = run_end(b, i, |c| c.is_ascii_alphanumeric());
            } else {
                i = digit_sequence(b, i, spans);
            }
        }
    }
    if b.len() >= 34 {
        let mut i = 0;
        while i < b.len() {
            if !is_std_b64(b[i]) {
                i += 1;
                continue;
            }
            let stop = run_end(b, i, is_std_b64);
            let run = &b[i..stop];
            if (run.len() == 40 && is_aws_secret(run)) || (run.len() == 34 && is_twilio(run)) {
                spans.push((i, stop));
            }
            i = stop;
        }
    }
}

fn is_std_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// A bare AWS secret access key: 40 base64 characters with upper- and lower-case
/// letters and digits (so neither a hex digest nor a word nor a path).
fn is_aws_secret(run: &[u8]) -> bool {
    // Not a path (`/api/v1/…`): those start with a slash or hold two in a row.
    run[0] != b'/'
        && !run.windows(2).any(|w| w == b"//")
        && run.iter().any(u8::is_ascii_uppercase)
        && run.iter().any(u8::is_ascii_lowercase)
        && run.iter().any(u8::is_ascii_digit)
}

/// A Twilio API key (`SK`) or account SID (`AC`) and 32 lower-case hex digits
/// (ds: TwilioKeyDetector).
fn is_twilio(run: &[u8]) -> bool {
    (run.starts_with(b"SK") || run.starts_with(b"AC"))
        && run[2..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// Reads a run of digits from `start` (not inside a word), in groups joined by
/// single spaces or dashes; records an identity number or card number, taken whole
/// or group by group; returns where the run ends.
fn digit_sequence(b: &[u8], start: usize, spans: &mut Vec<(usize, usize)>) -> usize {
    const MAX_GROUPS: usize = 6;
    let mut groups = [(0usize, 0usize); MAX_GROUPS];
    let mut n = 0;
    let mut sep = 0u8;
    let mut i = start;
    loop {
        let g = i;
        i = run_end(b, i, |c| c.is_ascii_digit());
        groups[n] = (g, i);
        n += 1;
        let joins = n < MAX_GROUPS
            && matches!(b.get(i), Some(b' ' | b'-'))
            && (sep == 0 || b[i] == sep)
            && b.get(i + 1).is_some_and(u8::is_ascii_digit);
        if !joins {
            break;
        }
        sep = b[i];
        i += 1;
    }
    let bounded = i == b.len() || !b[i].is_ascii_alphanumeric();
    let groups = &groups[..n];
    if bounded && n > 1 && grouped_secret(b, groups) {
        spans.push((start, i));
        return i;
    }
    for (k, &(g0, g1)) in groups.iter().enumerate() {
        if (k + 1 < n || bounded) && ungrouped_secret(&b[g0..g1]) {
            spans.push((g0, g1));
        }
    }
    i
}

/// Digits in groups: a fødselsnummer written `DDMMYY NNNNN`, or a card number in
/// groups of four (the last shorter), or 4-6-5 / 4-6-4 (American Express, Diners).
fn grouped_secret(b: &[u8], groups: &[(usize, usize)]) -> bool {
    let lens: Vec<usize> = groups.iter().map(|(a, z)| z - a).collect();
    let mut digits = [0u8; 19];
    let total: usize = lens.iter().sum();
    if total > digits.len() {
        return false;
    }
    let mut k = 0;
    for &(a, z) in groups {
        for c in &b[a..z] {
            digits[k] = c - b'0';
            k += 1;
        }
    }
    let digits = &digits[..total];
    if lens == [6, 5] {
        return is_national_id(digits);
    }
    let fours = lens.len() >= 3
        && lens[..lens.len() - 1].iter().all(|l| *l == 4)
        && (1..=4).contains(&lens[lens.len() - 1]);
    let card_groups = fours || lens == [4, 6, 5] || lens == [4, 6, 4];
    card_groups && (13..=19).contains(&total) && luhn(digits)
}

/// One run of digits: a fødselsnummer or D-nummer (11), or a card number (13–19).
fn ungrouped_secret(run: &[u8]) -> bool {
    let mut digits = [0u8; 19];
    if run.len() > digits.len() {
        return false;
    }
    for (d, c) in digits.iter_mut().zip(run) {
        *d = c - b'0';
    }
    let digits = &digits[..run.len()];
    match run.len() {
        11 => is_national_id(digits),
        13..=19 => luhn(digits),
        _ => false,
    }
}

/// A Norwegian national identity number: a fødselsnummer, or a D-nummer (day plus
/// 40), H-nummer (month plus 40) or synthetic test number (month plus 80), whose
/// two mod-11 check digits both hold.
fn is_national_id(d: &[u8]) -> bool {
    if d.len() != 11 {
        return false;
    }
    let day = d[0] * 10 + d[1];
    let month = d[2] * 10 + d[3];
    let day_ok = (1..=31).contains(&day) || (41..=71).contains(&day);
    let month_ok = [0u8, 40, 80]
        .iter()
        .any(|off| (off + 1..=off + 12).contains(&month));
    let check = |weights: &[u32], digits: &[u8]| -> Option<u8> {
        let sum: u32 = weights
            .iter()
            .zip(digits)
            .map(|(w, d)| w * u32::from(*d))
            .sum();
        match 11 - sum % 11 {
            11 => Some(0),
            10 => None,
            k => Some(k as u8),
        }
    };
    let k1 = check(&[3, 7, 6, 1, 8, 9, 4, 5, 2], &d[..9]);
    let k2 = check(&[5, 4, 3, 2, 7, 6, 5, 4, 3, 2], &d[..10]);
    day_ok && month_ok && k1 == Some(d[9]) && k2 == Some(d[10])
}

/// The Luhn check of card numbers.
fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `\n` and `\t` in a corpus value stand for a newline and a tab.
    fn unescape(v: &str) -> String {
        v.replace("\\n", "\n").replace("\\t", "\t")
    }

    /// The lines of a corpus file that are not comments, split at tabs.
    fn rows(text: &'static str) -> impl Iterator<Item = Vec<&'static str>> {
        text.lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.split('\t').collect())
    }

    fn secrets() -> Vec<(String, Vec<&'static str>)> {
        rows(include_str!("../../tests/data/secrets/secrets.tsv"))
            .map(|r| {
                assert!(r.len() >= 4, "{r:?}");
                (unescape(r[2]), r[3..].to_vec())
            })
            .collect()
    }

    #[test]
    fn every_secret_of_the_corpus_is_redacted_alone_and_inside_text() {
        let corpus = secrets();
        assert!(corpus.len() >= 60, "{} shapes", corpus.len());
        for (secret, parts) in &corpus {
            for text in [
                secret.clone(),
                format!("note {secret}"),
                format!("{{\"v\": \"{secret}\"}}"),
                format!("a={secret}&b=2"),
            ] {
                let out = scrub(&text);
                assert!(out.contains(REDACTED), "{text:?} -> {out:?}");
                for part in parts {
                    assert!(!out.contains(part), "{text:?} -> {out:?} keeps {part:?}");
                }
            }
            let text = format!("note {secret}");
            assert!(scrub(&text).starts_with("note "), "{text:?}");
        }
    }

    #[test]
    fn ids_digests_and_near_misses_stay_untouched() {
        let values: Vec<&str> = rows(include_str!("../../tests/data/secrets/untouched.tsv"))
            .map(|r| r[1])
            .collect();
        assert!(values.len() >= 40);
        for v in values {
            assert_eq!(scrub(v), v, "{v}");
            let text = format!("employee ({v}) is not known");
            assert_eq!(scrub(&text), text);
            assert!(matches!(scrub(v), Cow::Borrowed(_)), "{v}");
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
        assert_eq!(scrub("Bearer \t tok123 x"), "[redacted] x");
        assert_eq!(scrub("Basic dXNlcjpwYXNz"), REDACTED);
        assert_eq!(
            scrub("a=1&password=hunter2&b=2"),
            "a=1&password=[redacted]&b=2"
        );
        assert_eq!(scrub("a%26password%3Dhunter2"), "a%26password%3D[redacted]");
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
        assert_eq!(
            scrub("postgres://vakt:p@ss@db:5432/vakt"),
            "postgres://[redacted]@db:5432/vakt"
        );
        assert_eq!(
            scrub("a;AccountKey=abc+/def==;EndpointSuffix=x"),
            "a;AccountKey=[redacted];EndpointSuffix=x"
        );
        assert_eq!(
            scrub("Cookie: session=abc; theme=dark"),
            "Cookie: [redacted]"
        );
        assert_eq!(
            scrub("fnr 15038713008, org 310015156"),
            "fnr [redacted], org 310015156"
        );
        assert_eq!(scrub("card 4111 1111 1111 1111."), "card [redacted].");
        // Org numbers beside an identity number stay.
        assert_eq!(
            scrub("310015156 15038713008 974760673"),
            "310015156 [redacted] 974760673"
        );
    }

    #[test]
    fn identity_numbers_need_both_check_digits() {
        for valid in ["15038713008", "01019013002", "45057512338", "71010112383"] {
            assert_eq!(scrub(valid), REDACTED, "{valid}");
            // Changing any one digit breaks a check digit (mod 11 with weights
            // that are all below 11 catches every single-digit change).
            for i in 0..11 {
                let mut d: Vec<u8> = valid.bytes().collect();
                d[i] = b'0' + (d[i] - b'0' + 1) % 10;
                let changed = String::from_utf8(d).unwrap();
                assert_eq!(scrub(&changed), changed, "{changed}");
            }
        }
        // A first check digit that holds and a second that does not.
        let mut d: Vec<u8> = "15038713008".bytes().collect();
        d[10] = b'9';
        let one = String::from_utf8(d).unwrap();
        assert_eq!(scrub(&one), one);
    }

    #[test]
    fn card_numbers_need_the_luhn_check() {
        for valid in [
            "4111111111111111",
            "5555-5555-5555-4444",
            "3782 822463 10005",
        ] {
            assert_eq!(scrub(valid), REDACTED, "{valid}");
            let mut d: Vec<u8> = valid.bytes().collect();
            let last = d.len() - 1;
            d[last] = b'0' + (d[last] - b'0' + 1) % 10;
            let changed = String::from_utf8(d).unwrap();
            assert_eq!(scrub(&changed), changed, "{changed}");
        }
        // Mixed separators, or groups not shaped like a card's, are not one number.
        assert_eq!(scrub("4111 1111-1111 1111"), "4111 1111-1111 1111");
        assert_eq!(scrub("41111 11111 111111"), "41111 11111 111111");
    }

    #[test]
    fn hostile_strings_cost_linear_time() {
        let n = 200_000;
        let started = std::time::Instant::now();
        for unit in [
            "eyJ9",
            "eyJ9.",
            "ey",
            "sk-aaaa",
            "password",
            "pass",
            "://",
            "Bearer ",
            "basic ",
            "1 ",
            "-us",
            ":AA",
            "cookie",
            "ghp_",
            "-----BEGIN",
            "aaaa+eyJ9",
        ] {
            let s = unit.repeat(n / unit.len());
            let _ = scrub(&s);
        }
        // Quadratic work on these would take minutes; linear work takes
        // milliseconds, even unoptimised.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}
