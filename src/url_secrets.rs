//! Credentials in URLs and connection strings, masked before anything shows
//! them: `vakt config show`, the `vakt db` commands, the diagnostic log and error
//! messages. One function, [`mask_url`], so every place masks alike.
//!
//! It masks what a parser could take for a secret, not only what a correct URL
//! holds: the user-info part up to the *last* `@` (an unencoded `@` in a
//! password must not leave the password's tail in view, and a host never
//! contains `@`), every query or `key=value` parameter whose name says it is a
//! secret, and the pieces of a parameter's value an unencoded `&` split off. What
//! is left shown is the scheme, the host, the port, the path and the parameters
//! that are plainly not secret.

/// What replaces a secret.
const MASK: &str = "****";

/// `text` (a URL, or a string of `key=value` settings) with every credential it
/// may hold replaced by `****`.
///
/// ```text
/// postgres://vakt:s3cret@db/vakt?password=x&sslmode=require
///   -> postgres://vakt:****@db/vakt?password=****&sslmode=require
/// ```
pub fn mask_url(text: &str) -> String {
    let Some(sep) = text.find("://") else {
        return mask_pairs(text);
    };
    let (head, rest) = text.split_at(sep + 3);
    let mut out = mask_pairs(head);
    let after = match rest.rfind('@') {
        Some(at) => {
            out.push_str(&mask_userinfo(head, &rest[..at]));
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    match after.find('?') {
        Some(q) => {
            out.push_str(&mask_pairs(&after[..q]));
            out.push('?');
            out.push_str(&mask_query(&after[q + 1..]));
        }
        None => out.push_str(&mask_pairs(after)),
    }
    out
}

/// `text` (an error message, say) with every appearance of `url`, and of each
/// secret `url` holds (as written and percent-decoded), masked. For messages of
/// libraries that quote the URL they were given. Secrets shorter than three
/// characters are masked only as part of the whole URL: replacing every `a` of a
/// message would leave nothing readable.
pub fn mask_in(text: &str, url: &str) -> String {
    let mut out = if url.is_empty() {
        text.to_owned()
    } else {
        text.replace(url, &mask_url(url))
    };
    for secret in secrets_of(url) {
        if secret.chars().count() >= 3 {
            out = out.replace(&secret, MASK);
        }
    }
    out
}

/// The secrets `mask_url` would hide in `url`, as written and percent-decoded.
fn secrets_of(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut add = |s: &str| {
        if !s.is_empty() {
            found.push(s.to_owned());
            let decoded = percent_decode(s);
            if decoded != s {
                found.push(decoded);
            }
        }
    };
    // Only a URL has a user-info part; `@` in a path is no separator.
    let rest = url.find("://").map_or("", |i| &url[i + 3..]);
    if let Some(at) = rest.rfind('@') {
        let userinfo = &rest[..at];
        match userinfo.split_once(':') {
            Some((_, password)) => add(password),
            None => add(userinfo),
        }
    }
    for (key, value) in pairs(url) {
        if is_secret_key(key) {
            add(value);
        }
    }
    found
}

/// The user-info part of a URL with its password masked: `user:****`, or
/// `****` when even the user name is doubtful (it holds a character a user
/// name in a URL cannot, so the split is not clear) or, outside PostgreSQL
/// URLs, when there is no password (`https://TOKEN@host` puts the token there).
fn mask_userinfo(head: &str, userinfo: &str) -> String {
    let clean = |u: &str| !u.is_empty() && !u.contains(['@', '/', '?', '#', '&', '=']);
    match userinfo.split_once(':') {
        Some((user, _)) if clean(user) => format!("{user}:{MASK}"),
        Some(_) => MASK.to_owned(),
        None => {
            let postgres = head.ends_with("postgres://") || head.ends_with("postgresql://");
            if postgres && clean(userinfo) {
                userinfo.to_owned()
            } else {
                MASK.to_owned()
            }
        }
    }
}

/// A query string with secret parameters masked. A value that holds an unencoded
/// `&` splits into pieces; the pieces that follow a secret and do not look like
/// `name=value` of their own are taken as part of it and dropped.
fn mask_query(query: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut in_secret = false;
    for segment in query.split('&') {
        match segment.split_once('=') {
            Some((key, _)) if is_secret_key(key) => {
                out.push(format!("{key}={MASK}"));
                in_secret = true;
            }
            Some((key, _)) if !in_secret || is_plain_name(key) => {
                out.push(mask_pairs(segment));
                in_secret = false;
            }
            // The rest of a secret value that held `&` or `=`.
            Some(_) => {}
            None if in_secret => {}
            None if segment.is_empty() => out.push(String::new()),
            // A bare token: nothing says it is not a secret.
            None => out.push(MASK.to_owned()),
        }
    }
    out.join("&")
}

/// `key=value` settings anywhere in `text` (a libpq connection string, a JDBC
/// `;password=` suffix, a `password%3D` encoded in a value) with each secret
/// value masked up to the next separator.
fn mask_pairs(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let eq_len = if bytes[i] == b'=' {
            1
        } else if text[i..].len() >= 3 && text[i..i + 3].eq_ignore_ascii_case("%3d") {
            3
        } else {
            0
        };
        if eq_len == 0 {
            i += 1;
            continue;
        }
        let key_start = text[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .map_or(0, |k| k + 1);
        let value_start = i + eq_len;
        if !is_secret_key(&text[key_start..i]) {
            i = value_start;
            continue;
        }
        let value_end = value_end(text, value_start, eq_len == 3);
        out.push_str(&text[copied..value_start]);
        out.push_str(MASK);
        copied = value_end;
        i = value_end.max(value_start);
    }
    out.push_str(&text[copied..]);
    out
}

/// Where a `key=value` setting's value that starts at `start` ends: at its closing
/// quote if quoted, else at whitespace or a separator (and, for a value inside an
/// encoded one, at an encoded separator).
fn value_end(text: &str, start: usize, encoded: bool) -> usize {
    let rest = &text[start..];
    if let Some(q) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') {
        // A quoted value ends at its closing quote; an unclosed one runs to the end.
        return rest[1..]
            .find(q)
            .map_or(text.len(), |end| start + 1 + end + 1);
    }
    let mut end = rest.len();
    for (k, c) in rest.char_indices() {
        let stop = c.is_whitespace()
            || matches!(c, '&' | ';' | ',' | '"' | '\'')
            || (encoded && c == '%' && rest[k..].len() >= 2 && &rest[k + 1..k + 2] == "2");
        if stop {
            end = k;
            break;
        }
    }
    start + end
}

/// Every `key=value` pair of a query string or a connection string, roughly: what
/// [`secrets_of`] looks for secrets in.
fn pairs(text: &str) -> Vec<(&str, &str)> {
    text.split(['&', '?', ';', ' ', '\t', '\n'])
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            let k = k
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
                .map_or(k, |i| &k[i + 1..]);
            (k, v)
        })
        .collect()
}

/// Whether a parameter's name says its value is a secret: password, passwd, pwd,
/// sslpassword, passphrase, secret, client_secret, token, access_token, api_key,
/// apikey, AccountKey, auth, credential, signature (`sig`), sessionid, cookie.
/// (Not `session` alone: PostgreSQL's `target_session_attrs` is no secret.)
pub(crate) fn is_secret_key(key: &str) -> bool {
    let normal: String = percent_decode(key)
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.'))
        .flat_map(char::to_lowercase)
        .collect();
    const PARTS: &[&str] = &[
        "pass",
        "pwd",
        "secret",
        "token",
        "apikey",
        "auth",
        "credential",
        "signature",
        "sessionid",
        "cookie",
        "privatekey",
    ];
    normal == "sig" || normal.ends_with("key") || PARTS.iter().any(|p| normal.contains(p))
}

/// Whether `key` looks like a parameter name of its own (not a piece of a value).
fn is_plain_name(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// `%XX` escapes decoded (lossily: only for comparing and masking).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Masks `url` and checks that none of `secrets` is left in what is shown.
    fn masked(url: &str, secrets: &[&str]) -> String {
        let shown = mask_url(url);
        for s in secrets {
            assert!(
                !shown.contains(s),
                "{s:?} shown in {shown:?} (from {url:?})"
            );
        }
        shown
    }

    #[test]
    fn user_info_is_masked_up_to_the_last_at() {
        assert_eq!(
            masked("postgres://vakt:s3cret@db:5432/vakt", &["s3cret"]),
            "postgres://vakt:****@db:5432/vakt"
        );
        assert_eq!(
            masked("postgres://u:pa@ss@h/db", &["pa@ss", "ss@h", "pa"]),
            "postgres://u:****@h/db"
        );
        assert_eq!(
            masked("postgres://u:p%40ss@h/db", &["p%40ss"]),
            "postgres://u:****@h/db"
        );
        // A password holding `/` or `?` does not end the user-info part early.
        assert_eq!(
            masked("postgres://u:pa/ss@h/db", &["pa/ss", "ss"]),
            "postgres://u:****@h/db"
        );
        assert_eq!(
            masked("postgres://u:pa?ss@h/db", &["pa?ss", "ss"]),
            "postgres://u:****@h/db"
        );
        // A token as the user name, outside PostgreSQL.
        assert_eq!(
            masked("https://ghp_abcdef@otlp.example:4317", &["ghp_abcdef"]),
            "https://****@otlp.example:4317"
        );
        assert_eq!(
            masked("postgres://vakt@db/vakt", &[]),
            "postgres://vakt@db/vakt"
        );
        assert_eq!(
            masked("otlp:http://user:tok3n@collector:4317", &["tok3n"]),
            "otlp:http://user:****@collector:4317"
        );
    }

    #[test]
    fn secret_parameters_are_masked() {
        assert_eq!(
            masked(
                "postgres://u:p%40ss@h/db?password=hunter2&sslmode=require",
                &["hunter2", "p%40ss"]
            ),
            "postgres://u:****@h/db?password=****&sslmode=require"
        );
        for key in [
            "password",
            "PASSWORD",
            "passwd",
            "pwd",
            "sslpassword",
            "token",
            "access_token",
            "secret",
            "client_secret",
            "api_key",
            "apikey",
            "api-key",
            "AccountKey",
            "sig",
        ] {
            let url = format!("https://h/p?a=1&{key}=hunter2&b=2");
            assert_eq!(
                masked(&url, &["hunter2"]),
                format!("https://h/p?a=1&{key}=****&b=2"),
                "{key}"
            );
        }
        // An unencoded `&` inside the value: its tail is not shown either.
        assert_eq!(
            masked(
                "postgres://h/db?password=hun&ter2&sslmode=require",
                &["ter2"]
            ),
            "postgres://h/db?password=****&sslmode=require"
        );
        // Parameters without a query mark, and encoded ones.
        assert_eq!(
            masked(
                "jdbc:sqlserver://h;user=u;password=hunter2;db=x",
                &["hunter2"]
            ),
            "jdbc:sqlserver://h;user=u;password=****;db=x"
        );
        assert_eq!(
            masked(
                "https://h/?options=-c%20password%3Dhunter2%20x=1",
                &["hunter2"]
            ),
            "https://h/?options=-c%20password%3D****%20x=1"
        );
        assert!(!masked("https://h/x?hunter2", &["hunter2"]).contains("hunter2"));
    }

    #[test]
    fn what_does_not_parse_is_masked_too() {
        // Connection strings, and text that is no URL at all.
        assert_eq!(
            masked("host=h user=u password=hunter2 dbname=d", &["hunter2"]),
            "host=h user=u password=**** dbname=d"
        );
        assert_eq!(
            masked("host=h password='hun ter2' dbname=d", &["hun", "ter2"]),
            "host=h password=**** dbname=d"
        );
        masked("postgres://u:hunter2@", &["hunter2"]);
        masked("postgres://u:hunter2@[::1/db", &["hunter2"]);
        masked("postgres://:hunter2@h", &["hunter2"]);
        masked("postgres://u:hun:ter2@h", &["hun", "ter2"]);
        masked("postgres://h/db?user=a@b&password=hunter2", &["hunter2"]);
        // Plain values stay as they are.
        assert_eq!(masked("/var/lib/vakt/data", &[]), "/var/lib/vakt/data");
        assert_eq!(masked("0.0.0.0:50051", &[]), "0.0.0.0:50051");
        assert_eq!(
            masked("file:/var/log/vakt/decisions.jsonl", &[]),
            "file:/var/log/vakt/decisions.jsonl"
        );
        assert_eq!(masked("max-staleness=30s", &[]), "max-staleness=30s");
    }

    #[test]
    fn secrets_are_masked_inside_messages() {
        let url = "http://u:hunter2@collector:4317/?token=s3cr%40t";
        let message = format!("invalid URI {url}: bad; also saw hunter2 and s3cr@t");
        let shown = mask_in(&message, url);
        for s in ["hunter2", "s3cr%40t", "s3cr@t"] {
            assert!(!shown.contains(s), "{s} in {shown}");
        }
        assert!(shown.contains("collector:4317"), "{shown}");
    }
}
