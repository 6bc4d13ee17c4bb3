//! Request paths for the Envoy check: the normalised form a route is matched
//! against, and route path patterns with their named captures.
//!
//! Normalisation is what makes "which client" a property of the request and not
//! of its spelling: `//`, `.`, `..`, `%2e%2e` all reach the same segments, and
//! the spellings an upstream could read differently from Vakt (an encoded slash
//! or backslash, a double-encoded `%`, a control character) are refused.

use std::fmt;

/// Why a request path (or query) cannot be decided on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is empty or does not start with '/'")]
    NotAbsolute,
    #[error("the path has a fragment ('#')")]
    Fragment,
    #[error("the path has a malformed percent escape")]
    BadEscape,
    #[error("the path holds an encoded slash or backslash (%2F, %5C), which an upstream may read as a separator")]
    EncodedSlash,
    #[error("the path holds a backslash, which some servers read as a separator")]
    Backslash,
    #[error("the path holds an encoded '%' (%25): a double-encoded path reads differently when decoded twice")]
    DoubleEncoded,
    #[error("the path holds a NUL or control character")]
    Control,
    #[error("the path is not UTF-8 once decoded")]
    NotUtf8,
    #[error("the path climbs above the root with '..'")]
    AboveRoot,
    #[error("the path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("the query has a malformed percent escape or a control character")]
    BadQuery,
}

/// Longest request target (path and query) checked; Envoy's own default header
/// limit is 60 KiB, and an Altinn path is a few hundred bytes.
pub const MAX_PATH_BYTES: usize = 16 * 1024;

/// A request path after normalisation: its decoded segments, with empty and `.`
/// segments dropped and each `..` taking away the segment before it. Kept as
/// its text (`/a/b/c`, or `/` for none): no decoded segment can hold a `/`
/// (an encoded slash is refused), so the segments are the text's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    text: String,
}

impl NormalPath {
    /// No path yet: reads as the root (`/`, no segments), allocates nothing.
    pub(super) fn none() -> Self {
        Self {
            text: String::new(),
        }
    }

    /// The path's text, as a route and the decision record see it.
    pub fn as_str(&self) -> &str {
        if self.text.is_empty() {
            "/"
        } else {
            &self.text
        }
    }

    /// The decoded segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        let rest = self.text.get(1..).unwrap_or("");
        rest.split('/').filter(move |_| !rest.is_empty())
    }

    /// Adds a segment (already checked).
    fn push(&mut self, segment: &str) {
        if self.text.len() > 1 {
            self.text.push('/');
        }
        self.text.push_str(segment);
    }

    /// Takes the last segment away; `false` when there is none.
    fn pop(&mut self) -> bool {
        if self.text.len() <= 1 {
            return false;
        }
        let cut = self.text.rfind('/').unwrap_or(0).max(1);
        self.text.truncate(cut);
        true
    }
}

impl fmt::Display for NormalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Splits a request target (`/a/b?x=1`) into its normalised path and its raw
/// query (without the `?`).
pub fn split_target(target: &str) -> Result<(NormalPath, &str), PathError> {
    if target.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    if target.contains('#') {
        return Err(PathError::Fragment);
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    Ok((normalise(path)?, query))
}

/// Normalises a raw path (no query): percent-decodes each segment, refuses what
/// an upstream could split or decode differently, merges empty segments and
/// resolves `.` and `..` (also when spelt `%2e`).
pub fn normalise(raw: &str) -> Result<NormalPath, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(PathError::Control);
    }
    if raw.contains('\\') {
        return Err(PathError::Backslash);
    }
    let mut path = NormalPath {
        text: String::with_capacity(raw.len()),
    };
    path.text.push('/');
    for raw_segment in raw.split('/') {
        // A segment without an escape is its own decoding: checked in place
        // (no '/', '\\' or '%' can be in it, and it is UTF-8), not copied.
        // The raw path holds no ASCII control character (checked above), so
        // such a segment can hold only a non-ASCII one.
        let decoded;
        let escaped = raw_segment.contains('%');
        let segment = if escaped {
            let bytes = decode(raw_segment, false).ok_or(PathError::BadEscape)?;
            if bytes.contains(&b'/') || bytes.contains(&b'\\') {
                return Err(PathError::EncodedSlash);
            }
            if bytes.contains(&b'%') {
                return Err(PathError::DoubleEncoded);
            }
            decoded = String::from_utf8(bytes).map_err(|_| PathError::NotUtf8)?;
            decoded.as_str()
        } else {
            raw_segment
        };
        if (escaped || !segment.is_ascii()) && segment.chars().any(char::is_control) {
            return Err(PathError::Control);
        }
        match segment {
            "" | "." => {}
            ".." => {
                if !path.pop() {
                    return Err(PathError::AboveRoot);
                }
            }
            _ => path.push(segment),
        }
    }
    Ok(path)
}

/// The decoded values of query parameter `name` (form rules: `+` is a space),
/// in order. A malformed escape or a control character anywhere in the query
/// is an error, so no parameter hides behind a bad one.
pub fn query_values(query: &str, name: &str) -> Result<Vec<String>, PathError> {
    let mut found = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_text(k)?;
        let value = decode_text(v)?;
        if key == name {
            found.push(value);
        }
    }
    Ok(found)
}

fn decode_text(s: &str) -> Result<String, PathError> {
    let bytes = decode(s, true).ok_or(PathError::BadQuery)?;
    let text = String::from_utf8(bytes).map_err(|_| PathError::BadQuery)?;
    if text.chars().any(char::is_control) {
        return Err(PathError::BadQuery);
    }
    Ok(text)
}

/// Percent-decodes `s`; `None` on a `%` not followed by two hex digits.
fn decode(s: &str, plus_is_space: bool) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    // Most segments have nothing to decode: copied whole.
    if !b.iter().any(|&c| c == b'%' || (plus_is_space && c == b'+')) {
        return Some(b.to_vec());
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = hex(*b.get(i + 1)?)?;
                let lo = hex(*b.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// One segment of a route's path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Matches this segment exactly (case-sensitive, after decoding).
    Literal(String),
    /// `{name}`: any one segment, captured under `name`.
    Capture(String),
    /// `*`: any one segment.
    Any,
    /// `**`: any number of segments, none included; only last.
    Rest,
}

/// A route's path pattern, such as `/{org}/{app}/instances/{party}/**`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub parts: Vec<Part>,
}

impl Pattern {
    /// Parses a pattern; the message says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err("must start with '/'".into());
        };
        let mut parts = Vec::new();
        let raw: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        for (i, seg) in raw.iter().enumerate() {
            let part = match *seg {
                "" => return Err("has an empty segment ('//' or a trailing '/')".into()),
                "." | ".." => return Err(format!("has a {seg:?} segment")),
                "*" => Part::Any,
                "**" if i + 1 == raw.len() => Part::Rest,
                "**" => return Err("'**' may only be the last segment".into()),
                s if s.starts_with('{') && s.ends_with('}') => {
                    let name = &s[1..s.len() - 1];
                    if name.is_empty()
                        || !name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        return Err(format!(
                            "capture {s:?} must be {{name}} with letters, digits, '_' or '-'"
                        ));
                    }
                    if parts
                        .iter()
                        .any(|p| matches!(p, Part::Capture(n) if n == name))
                    {
                        return Err(format!("captures {name:?} twice"));
                    }
                    Part::Capture(name.to_owned())
                }
                s if s.contains(['{', '}', '*', '%', '?', '#', '\\'])
                    || s.chars().any(char::is_control) =>
                {
                    return Err(format!(
                        "segment {s:?}: a literal segment may not hold '{{', '}}', '*', '%', '?', '#', '\\' or control characters (use the decoded text; a capture is a whole segment)"
                    ));
                }
                s => Part::Literal(s.to_owned()),
            };
            parts.push(part);
        }
        Ok(Self { parts })
    }

    /// Whether the pattern has a capture named `name`.
    pub fn captures(&self, name: &str) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Capture(n) if n == name))
    }

    /// The captures if `path` matches, in pattern order.
    pub fn matches<'p>(&self, path: &'p NormalPath) -> Option<Vec<(&str, &'p str)>> {
        let mut captured = Vec::new();
        let mut segs = path.segments();
        for part in &self.parts {
            match part {
                Part::Rest => return Some(captured),
                Part::Any => {
                    segs.next()?;
                }
                Part::Literal(l) => {
                    if segs.next()? != l.as_str() {
                        return None;
                    }
                }
                Part::Capture(name) => captured.push((name.as_str(), segs.next()?)),
            }
        }
        segs.next().is_none().then_some(captured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<String, PathError> {
        normalise(s).map(|p| p.to_string())
    }

    #[test]
    fn normalises_spellings_to_one_path() {
        assert_eq!(norm("/a/b/c").unwrap(), "/a/b/c");
        assert_eq!(norm("//a///b/c/").unwrap(), "/a/b/c");
        assert_eq!(norm("/a/./b/x/../c").unwrap(), "/a/b/c");
        assert_eq!(norm("/a/b/x/%2e%2E/c").unwrap(), "/a/b/c");
        assert_eq!(norm("/a/b/x/.%2e/c").unwrap(), "/a/b/c");
        assert_eq!(norm("/a/%62/c").unwrap(), "/a/b/c");
        assert_eq!(norm("/").unwrap(), "/");
        assert_eq!(norm("/a/caf%C3%A9").unwrap(), "/a/café");
    }

    #[test]
    fn refuses_what_an_upstream_could_read_otherwise() {
        assert_eq!(norm("/a%2Fb"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/a%2fb"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/a%5Cb"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/a\\b"), Err(PathError::Backslash));
        assert_eq!(norm("/a%252Fb"), Err(PathError::DoubleEncoded));
        assert_eq!(norm("/a%00b"), Err(PathError::Control));
        assert_eq!(norm("/a\nb"), Err(PathError::Control));
        assert_eq!(norm("/a%0d%0ab"), Err(PathError::Control));
        assert_eq!(norm("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%2"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%ff"), Err(PathError::NotUtf8));
        assert_eq!(norm("/.."), Err(PathError::AboveRoot));
        assert_eq!(norm("/a/../../b"), Err(PathError::AboveRoot));
        assert_eq!(norm("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(norm(""), Err(PathError::NotAbsolute));
        assert_eq!(split_target("/a#x").unwrap_err(), PathError::Fragment);
    }

    #[test]
    fn a_path_is_its_segments() {
        let p = normalise("//a/./b%20c/").unwrap();
        assert_eq!(p.segments().collect::<Vec<_>>(), ["a", "b c"]);
        assert_eq!(p.as_str(), "/a/b c");
        assert_eq!(normalise("/a/..").unwrap().segments().count(), 0);
        assert_eq!(normalise("/a/..").unwrap().as_str(), "/");
        assert_eq!(NormalPath::none().segments().count(), 0);
        // A C1 control character written as itself, not escaped, is refused too.
        assert_eq!(norm("/a/b\u{85}c"), Err(PathError::Control));
        assert_eq!(norm("/a/b%C2%85c"), Err(PathError::Control));
    }

    #[test]
    fn query_values_decode_and_refuse_bad_escapes() {
        assert_eq!(query_values("a=1&party=5%31&b", "party").unwrap(), ["51"]);
        assert_eq!(
            query_values("party=1&party=2", "party").unwrap(),
            ["1", "2"]
        );
        assert_eq!(query_values("p%61rty=7", "party").unwrap(), ["7"]);
        assert_eq!(query_values("x=a+b", "x").unwrap(), ["a b"]);
        assert_eq!(
            query_values("x=%zz&party=1", "party"),
            Err(PathError::BadQuery)
        );
        assert_eq!(
            query_values("party=1%00", "party"),
            Err(PathError::BadQuery)
        );
    }

    #[test]
    fn patterns_parse_and_match() {
        let p = Pattern::parse("/{org}/{app}/instances/{party}/**").unwrap();
        let path = normalise("/ttd/app/instances/512/abc/data").unwrap();
        assert_eq!(
            p.matches(&path).unwrap(),
            [("org", "ttd"), ("app", "app"), ("party", "512")]
        );
        assert!(p
            .matches(&normalise("/ttd/app/instances/512").unwrap())
            .is_some());
        assert!(p
            .matches(&normalise("/ttd/app/instances").unwrap())
            .is_none());
        assert!(p
            .matches(&normalise("/ttd/app/other/512").unwrap())
            .is_none());
        let star = Pattern::parse("/a/*/c").unwrap();
        assert!(star.matches(&normalise("/a/x/c").unwrap()).is_some());
        assert!(star.matches(&normalise("/a/x/c/d").unwrap()).is_none());
        assert!(Pattern::parse("/")
            .unwrap()
            .matches(&normalise("/").unwrap())
            .is_some());
        for bad in [
            "a", "/a//b", "/a/", "/**/a", "/{}", "/{a}/{a}", "/a%2F", "/x*y", "/..",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }
}
