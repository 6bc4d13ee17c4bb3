//! One decision record and its serialisation to a JSON line, with every string that
//! came from outside scrubbed of secrets on the way out.

use super::redact::{self, Redactor};
use crate::decision::Reason;
use serde::Serialize;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};

/// Who called, as far as the transport tells.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Caller {
    /// The client certificate's identity (SAN URI or DNS name), under mutual TLS:
    /// the verified identity of the caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The peer's address on TCP, or `unix` on the Unix socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// On the Unix socket, the peer's user and process as the kernel reports them
    /// (`SO_PEERCRED`): the verified identity of the caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// The `x-vakt-caller` header, when the calling service sets one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// W3C trace context of the call, when it carried a `traceparent` header.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Trace {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
}

impl Trace {
    /// Parses `traceparent: 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
    pub fn from_traceparent(v: &str) -> Self {
        let parts: Vec<&str> = v.trim().split('-').collect();
        let hex = |s: &str, n: usize| {
            s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
        };
        match parts.as_slice() {
            [ver, trace, span, flags]
                if (hex(ver, 2) || *ver == "00")
                    && hex(trace, 32)
                    && hex(span, 16)
                    && flags.len() == 2 =>
            {
                Self {
                    trace_id: Some(trace.to_ascii_lowercase()),
                    span_id: Some(span.to_ascii_lowercase()),
                }
            }
            _ => Self::default(),
        }
    }
}

/// One decision, as written to the log.
#[derive(Debug, Clone)]
pub struct DecisionRecord<'a> {
    pub decision_id: &'a str,
    /// RFC 3339, UTC, microseconds.
    pub timestamp: String,
    /// "authorize" or "resolve_system_user".
    pub call: &'a str,
    pub employee_id: &'a str,
    pub system_user_id: Option<&'a str>,
    pub system_user_external_ref: Option<&'a str>,
    pub system_user_owner: Option<&'a str>,
    /// For resolve_system_user: the system users found usable.
    pub usable_system_users: Option<Vec<&'a str>>,
    pub client_org_number: &'a str,
    pub access_package: &'a str,
    pub action: &'a str,
    /// "allow" or "deny".
    pub decision: &'a str,
    pub reasons: &'a [Reason],
    pub revision: &'a str,
    /// The data sequence of the data decided on.
    pub data_sequence: u64,
    pub evaluation_us: u64,
    /// The caller's context attributes.
    pub context: Option<&'a serde_json::Map<String, serde_json::Value>>,
    pub caller: &'a Caller,
    pub trace: &'a Trace,
    /// Under `--shadow-policies`, when the candidate policies decide otherwise:
    /// their decision ("allow" or "deny") and reasons.
    pub shadow: Option<(&'a str, &'a [Reason])>,
    /// For an allow: the teams that granted it and the link it rested on, so an
    /// access review can tell which grants were used.
    pub path: Option<&'a crate::decision::Path>,
    /// For a call that handed out a token (`authorize_with_token`, `envoy_check`):
    /// the token's id and expiry, never the token.
    pub token: Option<TokenNote<'a>>,
    /// For Envoy's Check: the request as it was checked.
    pub envoy: Option<EnvoyNote<'a>>,
}

/// The token a decision handed out, as the record names it.
#[derive(Debug, Clone, Copy)]
pub struct TokenNote<'a> {
    /// `maskinporten` or `altinn` (a Maskinporten token exchanged at Altinn).
    pub kind: &'a str,
    /// The Maskinporten token's `jti`; `None` when it is not a JWT.
    pub jti: Option<&'a str>,
    /// When it expires.
    pub expires_at: std::time::SystemTime,
    /// The scopes granted, space-separated.
    pub scope: &'a str,
}

/// An outgoing request Envoy asked about, as the record names it.
#[derive(Debug, Clone, Copy)]
pub struct EnvoyNote<'a> {
    /// The route that matched, when one did.
    pub route: Option<&'a str>,
    pub method: &'a str,
    /// Lower-case, without port.
    pub host: &'a str,
    /// The normalised path.
    pub path: &'a str,
    /// Where the client was found (`path {instanceOwnerPartyId}`, `query party`,
    /// `body /instanceOwner/organisationNumber`), when it was.
    pub client_from: Option<&'a str>,
    /// The client as extracted (an org number or a party id), when it was.
    pub client: Option<&'a str>,
    /// Shadow mode let a request through that the decision denied.
    pub shadow_deny: bool,
}

/// RFC 3339 timestamp in UTC with microseconds.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now();
    let Ok(since) = now.duration_since(std::time::UNIX_EPOCH) else {
        return humantime::format_rfc3339_micros(now).to_string();
    };
    let (secs, micros) = (since.as_secs(), since.subsec_micros());
    // The date and time of day change once a second: formatted once per second
    // and thread, and only the microseconds every time.
    let second = SECOND.try_with(|cached| {
        let (at, text) = cached.get();
        if at == secs {
            return Some(text);
        }
        let whole = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        let full = humantime::format_rfc3339_seconds(whole).to_string();
        // `YYYY-MM-DDTHH:MM:SSZ`; any other shape is formatted in full below.
        let text: [u8; 19] = full.as_bytes().get(..19)?.try_into().ok()?;
        (full.len() == 20).then(|| {
            cached.set((secs, text));
            text
        })
    });
    let Some(text) = second.ok().flatten() else {
        return humantime::format_rfc3339_micros(now).to_string();
    };
    let mut out = String::with_capacity(27);
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
    out.push('.');
    let mut digits = [b'0'; 6];
    let mut n = micros;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.push_str(std::str::from_utf8(&digits).unwrap_or_default());
    out.push('Z');
    out
}

thread_local! {
    /// The second [`now_rfc3339`] last formatted on this thread, and its text up
    /// to the seconds.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [b'0'; 19])) };
}

impl DecisionRecord<'_> {
    /// The record as one JSON object on one line (no newline), secrets scrubbed and
    /// the context fields `redactor` names replaced.
    pub fn to_json(&self, redactor: &Redactor) -> String {
        let mut out = String::with_capacity(1024);
        self.write_json(redactor, &mut out);
        out
    }

    /// [`DecisionRecord::to_json`] appended to `out`, which the caller reuses from
    /// record to record: written field by field straight into it, with nothing
    /// built on the way. The bytes are serde_json's for the same fields (its
    /// string escapes, its numbers), in the order below, which the hash chain and
    /// `vakt audit verify` rely on: change neither.
    pub fn write_json(&self, redactor: &Redactor, out: &mut String) {
        let r = self;
        let mut w = Writer {
            out,
            marks: Vec::new(),
        };
        w.out.push('{');
        w.key_first("decision_id");
        w.scrubbed(r.decision_id);
        w.key("timestamp");
        w.raw(&r.timestamp);
        w.key("call");
        w.raw(r.call);
        w.key("employee_id");
        w.field(r.employee_id, "employee_id");
        if let Some(v) = r.system_user_id {
            w.key("system_user_id");
            w.field(v, "system_user_id");
        }
        if let Some(v) = r.system_user_external_ref {
            w.key("system_user_external_ref");
            w.field(v, "system_user_external_ref");
        }
        if let Some(v) = r.system_user_owner {
            w.key("system_user_owner");
            w.scrubbed(v);
        }
        if let Some(v) = &r.usable_system_users {
            w.key("usable_system_users");
            w.out.push('[');
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    w.out.push(',');
                }
                w.field(x, "usable_system_users");
            }
            w.out.push(']');
        }
        w.key("client_org_number");
        w.field(r.client_org_number, "client_org_number");
        w.key("access_package");
        w.field(r.access_package, "access_package");
        w.key("action");
        w.field(r.action, "action");
        w.key("decision");
        w.raw(r.decision);
        w.key("reasons");
        w.reasons(r.reasons);
        if let Some((decision, reasons)) = r.shadow {
            w.key("shadow_decision");
            w.raw(decision);
            w.key("shadow_reasons");
            w.reasons(reasons);
        }
        if let Some(p) = r.path {
            w.key("path");
            w.out.push('{');
            w.key_first("teams");
            w.raw_list(p.teams.iter().map(|t| t.as_str()));
            if let Some(o) = p.link_client {
                w.key("link_client_org_number");
                w.raw(&o.digits());
            }
            w.key("link_roles");
            w.raw_list(p.link_roles.iter().map(|t| t.as_str()));
            w.out.push('}');
        }
        if let Some(t) = &r.token {
            w.key("token");
            w.out.push('{');
            w.key_first("kind");
            w.raw(t.kind);
            if let Some(jti) = t.jti {
                w.key("jti");
                w.scrubbed(jti);
            }
            w.key("expires_at");
            w.raw(&humantime::format_rfc3339_seconds(t.expires_at).to_string());
            w.key("scope");
            w.scrubbed(t.scope);
            w.out.push('}');
        }
        if let Some(e) = &r.envoy {
            w.key("envoy");
            w.out.push('{');
            // `route` is first when there is one: no comma before `method` then.
            match e.route {
                Some(route) => {
                    w.key_first("route");
                    w.scrubbed(route);
                    w.key("method");
                }
                None => w.key_first("method"),
            }
            w.scrubbed(e.method);
            w.key("host");
            w.scrubbed(e.host);
            w.key("path");
            w.field(e.path, "envoy.path");
            if let Some(f) = e.client_from {
                w.key("client_from");
                w.scrubbed(f);
            }
            if let Some(c) = e.client {
                w.key("client");
                w.field(c, "envoy.client");
            }
            if e.shadow_deny {
                w.key("shadow_deny");
                w.out.push_str("true");
            }
            w.out.push('}');
        }
        w.key("revision");
        w.raw(r.revision);
        w.key("data_sequence");
        push_u64(w.out, r.data_sequence);
        w.key("evaluation_us");
        push_u64(w.out, r.evaluation_us);
        if let Some(ctx) = r.context {
            w.key("context");
            w.context(ctx, redactor);
        }
        w.key("caller");
        w.caller(r.caller);
        if let Some(t) = &r.trace.trace_id {
            w.key("trace_id");
            w.raw(t);
        }
        if let Some(t) = &r.trace.span_id {
            w.key("span_id");
            w.raw(t);
        }
        if !w.marks.is_empty() {
            let marks = std::mem::take(&mut w.marks);
            w.key("redacted");
            w.raw_list(marks.iter().map(|m| &**m));
        }
        w.out.push('}');
    }
}

/// Writes a record's JSON into a string, and keeps the names of the request
/// fields whose values scrubbing changed, in the order met, for `redacted`.
struct Writer<'o> {
    out: &'o mut String,
    marks: Vec<Cow<'static, str>>,
}

impl Writer<'_> {
    /// The first key of an object (no comma before it). Keys are Vakt's own
    /// names, with nothing to escape: written as they are.
    fn key_first(&mut self, name: &str) {
        self.out.push('"');
        self.out.push_str(name);
        self.out.push_str("\":");
    }

    fn key(&mut self, name: &str) {
        self.out.push(',');
        self.key_first(name);
    }

    /// A string as it is (it came from Vakt, not from a request).
    fn raw(&mut self, s: &str) {
        push_str(self.out, s);
    }

    fn raw_list<'s>(&mut self, items: impl Iterator<Item = &'s str>) {
        self.out.push('[');
        for (i, s) in items.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            push_str(self.out, s);
        }
        self.out.push(']');
    }

    /// A string with any secret in it replaced.
    fn scrubbed(&mut self, s: &str) {
        push_str(self.out, &scrub(s));
    }

    /// A request field, scrubbed; its name is marked when that changed it.
    fn field(&mut self, value: &str, name: &'static str) {
        let scrubbed = scrub(value);
        if matches!(scrubbed, Cow::Owned(_)) {
            self.marks.push(Cow::Borrowed(name));
        }
        push_str(self.out, &scrubbed);
    }

    fn reasons(&mut self, reasons: &[Reason]) {
        self.out.push('[');
        for (i, r) in reasons.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push('{');
            self.key_first("policy_id");
            self.scrubbed(&r.policy_id);
            // Messages quote request fields, so they are scrubbed like them.
            self.key("message");
            self.scrubbed(&r.message);
            self.out.push('}');
        }
        self.out.push(']');
    }

    fn caller(&mut self, c: &Caller) {
        self.out.push('{');
        let mut first = true;
        let mut key = |w: &mut Self, name: &str| {
            if !std::mem::take(&mut first) {
                w.out.push(',');
            }
            w.key_first(name);
        };
        if let Some(i) = &c.identity {
            key(self, "identity");
            self.scrubbed(i);
        }
        if let Some(p) = &c.peer {
            key(self, "peer");
            self.scrubbed(p);
        }
        if let Some(u) = c.uid {
            key(self, "uid");
            push_u64(self.out, u64::from(u));
        }
        if let Some(p) = c.pid {
            key(self, "pid");
            if p < 0 {
                self.out.push('-');
            }
            push_u64(self.out, u64::from(p.unsigned_abs()));
        }
        if let Some(v) = &c.service {
            key(self, "service");
            self.scrubbed(v);
        }
        self.out.push('}');
    }

    /// The caller's context: named fields replaced, every string scrubbed, at any
    /// depth; each attribute changed is marked as `context.<attribute>`.
    fn context(&mut self, map: &serde_json::Map<String, serde_json::Value>, redactor: &Redactor) {
        self.out.push('{');
        for (i, (k, v)) in map.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let key = scrub(k);
            let mut changed = matches!(key, Cow::Owned(_));
            push_str(self.out, &key);
            self.out.push(':');
            if redactor.is_redacted_field(k) {
                changed = true;
                push_str(self.out, redact::REDACTED);
            } else {
                json(self.out, v, &mut changed);
            }
            if changed {
                self.marks.push(Cow::Owned(format!("context.{key}")));
            }
        }
        self.out.push('}');
    }
}

/// A context value, scrubbed at any depth; `changed` is set when that changed it.
fn json(out: &mut String, value: &serde_json::Value, changed: &mut bool) {
    use serde_json::Value as V;
    fn scrubbed(out: &mut String, s: &str, changed: &mut bool) {
        let s = scrub(s);
        *changed |= matches!(s, Cow::Owned(_));
        push_str(out, &s);
    }
    match value {
        V::String(x) => scrubbed(out, x, changed),
        V::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json(out, x, changed);
            }
            out.push(']');
        }
        V::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                scrubbed(out, k, changed);
                out.push(':');
                json(out, x, changed);
            }
            out.push('}');
        }
        V::Null => out.push_str("null"),
        V::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // serde_json writes a number as its Display shows it (itoa, ryu).
        V::Number(n) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{n}");
        }
    }
}

/// `n` in decimal, as serde_json writes it (serde_json uses itoa too).
fn push_u64(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// `s` as a JSON string, escaped exactly as serde_json escapes it: `"` and `\`,
/// and the control characters below 0x20 (as `\b`, `\t`, `\n`, `\f`, `\r` or
/// `\u00XX`); everything else, non-ASCII included, as it is.
fn push_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    if is_clean(s.as_bytes()) {
        out.push_str(s);
    } else {
        let mut start = 0;
        for at in 0..s.len() {
            escape_at(out, s, &mut start, at);
        }
        out.push_str(s.get(start..).unwrap_or_default());
    }
    out.push('"');
}

/// Whether nothing in `b` needs escaping: eight bytes at a time, since most
/// strings are clean.
fn is_clean(b: &[u8]) -> bool {
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        if any_needs_escape(u64::from_le_bytes(w.try_into().unwrap_or_default())) {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&c| !(c < 0x20 || c == b'"' || c == b'\\'))
}

/// When the byte at `at` must be escaped: writes what came before it since
/// `start`, then its escape, and moves `start` past it.
fn escape_at(out: &mut String, s: &str, start: &mut usize, at: usize) {
    let c = s.as_bytes()[at];
    if !(c < 0x20 || c == b'"' || c == b'\\') {
        return;
    }
    // Escaped bytes are ASCII: `at` and `at + 1` are character boundaries.
    out.push_str(s.get(*start..at).unwrap_or_default());
    match c {
        b'"' => out.push_str("\\\""),
        b'\\' => out.push_str("\\\\"),
        0x08 => out.push_str("\\b"),
        0x09 => out.push_str("\\t"),
        0x0a => out.push_str("\\n"),
        0x0c => out.push_str("\\f"),
        0x0d => out.push_str("\\r"),
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(c >> 4)]));
            out.push(char::from(HEX[usize::from(c & 0xf)]));
        }
    }
    *start = at + 1;
}

/// Whether any of the eight bytes in `v` is below 0x20, `"` or `\`: the zero-byte
/// test (exact for whether there is one) on `v`, `v ^ "…"` and `v ^ "\…"`.
fn any_needs_escape(v: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |v: u64, n: u64| v.wrapping_sub(ONES * n) & !v & HIGH != 0;
    below(v, 0x20)
        || below(v ^ (ONES * u64::from(b'"')), 1)
        || below(v ^ (ONES * u64::from(b'\\')), 1)
}

/// [`redact::scrub`], remembering on each thread the last strings it found clean:
/// the same package, action, reasons and ids come back call after call, and a
/// string seen clean is clean again without another scan. Only clean strings are
/// kept (nothing secret), at most [`CLEAN_SLOTS`] of at most [`CLEAN_LEN`] bytes.
fn scrub(s: &str) -> Cow<'_, str> {
    if s.len() > CLEAN_LEN {
        return redact::scrub(s);
    }
    use std::hash::BuildHasher as _;
    let hash = foldhash::fast::FixedState::with_seed(0x7363_7275).hash_one(s) as usize;
    // Two slots per hash: two strings that share them do not evict each other.
    let set = (hash % (CLEAN_SLOTS / 2)) * 2;
    let seen = CLEAN
        .try_with(|c| {
            let c = c.borrow();
            c.get(set..set + 2)
                .is_some_and(|two| two.iter().any(|k| k == s))
        })
        .unwrap_or(false);
    if seen {
        return Cow::Borrowed(s);
    }
    let out = redact::scrub(s);
    if matches!(out, Cow::Borrowed(_)) {
        let _ = CLEAN.try_with(|c| {
            if let Some(two) = c.borrow_mut().get_mut(set..set + 2) {
                // The newer of the two goes second, the older is replaced
                // (reusing its allocation).
                two.swap(0, 1);
                two[1].clear();
                two[1].push_str(s);
            }
        });
    }
    out
}

/// Clean strings remembered per thread, and the longest remembered.
const CLEAN_SLOTS: usize = 1024;
const CLEAN_LEN: usize = 256;

thread_local! {
    /// Strings [`scrub`] found clean, two per hash; an empty slot matches only
    /// the empty string, which is clean.
    static CLEAN: RefCell<Vec<String>> = RefCell::new(vec![String::new(); CLEAN_SLOTS]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent() {
        let t = Trace::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(
            t.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(t.span_id.as_deref(), Some("00f067aa0ba902b7"));
        for bad in [
            "",
            "00-xyz-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            assert!(Trace::from_traceparent(bad).trace_id.is_none(), "{bad}");
        }
    }

    #[test]
    fn timestamp_is_rfc3339_utc_micros() {
        let t = now_rfc3339();
        assert_eq!(t.len(), "2026-11-23T18:23:02.123456Z".len(), "{t}");
        assert!(t.ends_with('Z'));
    }

    #[test]
    fn an_employee_id_shaped_like_a_national_identity_number_is_redacted_and_marked() {
        let reasons = [Reason {
            policy_id: "employee-unknown".into(),
            message: "employee 15038713008 is not known".into(),
        }];
        let rec = DecisionRecord {
            decision_id: "01a209d4-7b0c-7347-bd2d-e94ff3ea883c",
            timestamp: "t".into(),
            call: "authorize",
            employee_id: "15038713008",
            system_user_id: Some("tk-regnskap"),
            system_user_external_ref: None,
            system_user_owner: Some("310001015"),
            usable_system_users: None,
            client_org_number: "310015156",
            access_package: "urn:altinn:accesspackage:a-ordning",
            action: "useSystemUser",
            decision: "deny",
            reasons: &reasons,
            revision: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            data_sequence: 7,
            evaluation_us: 3,
            context: None,
            caller: &Caller::default(),
            trace: &Trace::default(),
            shadow: None,
            path: None,
            token: None,
            envoy: None,
        };
        let v: serde_json::Value =
            serde_json::from_str(&rec.to_json(&Redactor::default())).unwrap();
        assert_eq!(v["employee_id"], "[redacted]");
        assert_eq!(
            v["reasons"][0]["message"],
            "employee [redacted] is not known"
        );
        assert_eq!(v["redacted"], serde_json::json!(["employee_id"]));
        // The decision id, org numbers, the URN and the revision stay.
        assert_eq!(v["decision_id"], rec.decision_id);
        assert_eq!(v["client_org_number"], "310015156");
        assert_eq!(v["system_user_owner"], "310001015");
        assert_eq!(v["access_package"], rec.access_package);
        assert_eq!(v["revision"], rec.revision);
    }

    /// Every field at once, with strings that need escaping, scrubbing and
    /// redacting: the line is exactly what serde_json writes for the same
    /// object (parsed and written again, keys in their order), and the keys
    /// come in the record's order.
    #[test]
    fn every_field_is_written_as_serde_json_writes_it() {
        let ctx = serde_json::json!({
            "n": 1.5, "m": -3, "big": 18446744073709551615u64, "ok": false, "none": null,
            "ticket": "abc",
            "nested": {"q\"uote": ["a\u{1}b", "tab\there", "Bearer abc.def", 7]},
            "unicode": "blåbær \u{7f} \u{1F600}",
        });
        let reasons = [
            Reason {
                policy_id: "p\\1".into(),
                message: "line\nbreak \"quoted\" \u{8}\u{c}\r".into(),
            },
            Reason {
                policy_id: "p2".into(),
                message: "employee 15038713008 is not known".into(),
            },
        ];
        let shadow = [Reason {
            policy_id: "s".into(),
            message: "shadow".into(),
        }];
        let path = crate::decision::Path {
            teams: vec!["team-a".into(), "team \"b\"".into()],
            link_client: crate::world::records::OrgNo::from_digits("310015156"),
            link_roles: vec!["regnskapsforer".into()],
        };
        let caller = Caller {
            identity: Some("spiffe://x/y".into()),
            peer: Some("127.0.0.1:4242".into()),
            uid: Some(1000),
            pid: Some(-7),
            service: Some("svc".into()),
        };
        let trace =
            Trace::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        for (route, client) in [(Some("register"), Some("15038713008")), (None, None)] {
            let rec = DecisionRecord {
                decision_id: "d",
                timestamp: now_rfc3339(),
                call: "envoy_check",
                employee_id: "15038713008",
                system_user_id: Some("su"),
                system_user_external_ref: Some("ref\u{0}x"),
                system_user_owner: Some("310015156"),
                usable_system_users: Some(vec!["a", "15038713008"]),
                client_org_number: "310015156",
                access_package: "urn:altinn:accesspackage:a-ordning",
                action: "useSystemUser",
                decision: "allow",
                reasons: &reasons,
                revision: "r",
                data_sequence: u64::MAX,
                evaluation_us: 0,
                context: ctx.as_object(),
                caller: &caller,
                trace: &trace,
                shadow: Some(("deny", &shadow)),
                path: Some(&path),
                token: Some(TokenNote {
                    kind: "maskinporten",
                    jti: Some("j"),
                    expires_at: std::time::UNIX_EPOCH
                        + std::time::Duration::from_secs(1_800_000_000),
                    scope: "altinn:a altinn:b",
                }),
                envoy: Some(EnvoyNote {
                    route,
                    method: "GET",
                    host: "platform.altinn.no",
                    path: "/a/15038713008",
                    client_from: Some("path"),
                    client,
                    shadow_deny: true,
                }),
            };
            let line = rec.to_json(&Redactor::new(["ticket".to_owned()]));
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(serde_json::to_string(&v).unwrap(), line);
            let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            assert_eq!(
                keys,
                [
                    "decision_id",
                    "timestamp",
                    "call",
                    "employee_id",
                    "system_user_id",
                    "system_user_external_ref",
                    "system_user_owner",
                    "usable_system_users",
                    "client_org_number",
                    "access_package",
                    "action",
                    "decision",
                    "reasons",
                    "shadow_decision",
                    "shadow_reasons",
                    "path",
                    "token",
                    "envoy",
                    "revision",
                    "data_sequence",
                    "evaluation_us",
                    "context",
                    "caller",
                    "trace_id",
                    "span_id",
                    "redacted",
                ]
            );
            let mut redacted = vec!["employee_id", "usable_system_users", "envoy.path"];
            if client.is_some() {
                redacted.push("envoy.client");
            }
            redacted.extend(["context.ticket", "context.nested"]);
            assert_eq!(v["redacted"], serde_json::json!(redacted), "{line}");
            assert_eq!(v["token"]["expires_at"], "2027-01-15T08:00:00Z");
            assert_eq!(v["path"]["link_client_org_number"], "310015156");
            assert_eq!(v["caller"]["pid"], -7);
            assert_eq!(v["data_sequence"], u64::MAX);
            assert!(
                line.contains(r#""nested":{"q\"uote":["a\u0001b","tab\there","[redacted]",7]}"#),
                "{line}"
            );
            assert!(
                line.contains(r#""message":"line\nbreak \"quoted\" \b\f\r""#),
                "{line}"
            );
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut cases: Vec<String> = (0u8..128)
            .map(|c| format!("ab{}cdefghijklmnopq{}", char::from(c), char::from(c)))
            .collect();
        cases.extend(
            [
                "",
                "a",
                "\"",
                "\\\\",
                "0123456\"",
                "01234567\"",
                "blåbær \u{7f}\u{80}\u{1F600} \u{1f}\u{0}",
                "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet",
            ]
            .map(str::to_owned),
        );
        for c in &cases {
            let mut out = String::new();
            push_str(&mut out, c);
            assert_eq!(out, serde_json::to_string(c).unwrap(), "{c:?}");
        }
    }

    #[test]
    fn the_cached_second_gives_the_same_text_as_humantime() {
        for _ in 0..3 {
            let before = std::time::SystemTime::now();
            let t = now_rfc3339();
            let after = std::time::SystemTime::now();
            let a = humantime::format_rfc3339_micros(before).to_string();
            let b = humantime::format_rfc3339_micros(after).to_string();
            assert!(a <= t && t <= b, "{a} {t} {b}");
        }
    }

    #[test]
    fn a_string_seen_clean_is_still_scrubbed_when_it_is_not() {
        // The same slot may hold another string: only an equal one is taken as
        // clean, so a secret never passes for a remembered clean string.
        for _ in 0..2 {
            assert_eq!(scrub("kari"), "kari");
            assert_eq!(scrub("15038713008"), "[redacted]");
            assert!(matches!(scrub("15038713008"), Cow::Owned(_)));
        }
        for i in 0..5_000 {
            let s = format!("id-{i}");
            assert!(matches!(scrub(&s), Cow::Borrowed(_)));
        }
        assert_eq!(scrub("Bearer abc.def"), "[redacted]");
    }

    #[test]
    fn fields_keep_their_order_and_secrets_are_scrubbed() {
        let ctx = serde_json::json!({"mfa": true, "ticket": "abc", "note": "Bearer abc.def"});
        let reasons = [Reason {
            policy_id: "p".into(),
            message: "employee Bearer xyz-token-1 is not known".into(),
        }];
        let rec = DecisionRecord {
            decision_id: "d",
            timestamp: "t".into(),
            call: "authorize",
            employee_id: "kari",
            system_user_id: Some("su"),
            system_user_external_ref: None,
            system_user_owner: Some("310015156"),
            usable_system_users: None,
            client_org_number: "310015156",
            access_package: "urn:altinn:accesspackage:a-ordning",
            action: "useSystemUser",
            decision: "deny",
            reasons: &reasons,
            revision: "r",
            data_sequence: 7,
            evaluation_us: 3,
            context: ctx.as_object(),
            caller: &Caller::default(),
            trace: &Trace::default(),
            shadow: None,
            path: None,
            token: None,
            envoy: None,
        };
        let redactor = Redactor::new(["ticket".to_owned()]);
        let line = rec.to_json(&redactor);
        assert_eq!(
            line,
            r#"{"decision_id":"d","timestamp":"t","call":"authorize","employee_id":"kari","system_user_id":"su","system_user_owner":"310015156","client_org_number":"310015156","access_package":"urn:altinn:accesspackage:a-ordning","action":"useSystemUser","decision":"deny","reasons":[{"policy_id":"p","message":"employee [redacted] is not known"}],"revision":"r","data_sequence":7,"evaluation_us":3,"context":{"mfa":true,"ticket":"[redacted]","note":"[redacted]"},"caller":{},"redacted":["context.ticket","context.note"]}"#
        );
    }
}
