//! One decision record and its serialisation to a JSON line, with every string that
//! came from outside scrubbed of secrets on the way out.

use super::redact::{self, Redactor};
use crate::decision::Reason;
use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct, Serializer};
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
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

impl DecisionRecord<'_> {
    /// The record as one JSON object on one line (no newline), secrets scrubbed and
    /// the context fields `redactor` names replaced.
    pub fn to_json(&self, redactor: &Redactor) -> String {
        let mut out = Vec::with_capacity(512);
        let mut ser = serde_json::Serializer::new(&mut out);
        // Serialising plain strings, numbers and maps cannot fail.
        let _ = Scrubbed {
            rec: self,
            redactor,
        }
        .serialize(&mut ser);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A record seen through the redactor: every string that came from a request is
/// written as [`redact::scrub`] leaves it, and the request fields that had to be
/// changed are listed last, in `redacted`, so that replay knows it cannot re-decide
/// the record.
struct Scrubbed<'r, 'a> {
    rec: &'r DecisionRecord<'a>,
    redactor: &'r Redactor,
}

/// The names of the request fields whose values were changed, as they are met.
type Marks = RefCell<Vec<String>>;

/// A request field, written scrubbed; its name is marked when that changed it.
struct Field<'r> {
    value: &'r str,
    name: &'static str,
    marks: &'r Marks,
}

impl Serialize for Field<'_> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        let scrubbed = redact::scrub(self.value);
        if matches!(scrubbed, Cow::Owned(_)) {
            self.marks.borrow_mut().push(self.name.to_owned());
        }
        s.serialize_str(&scrubbed)
    }
}

/// A string written with any secret in it replaced.
struct S<'a>(&'a str);

impl Serialize for S<'_> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        s.serialize_str(&redact::scrub(self.0))
    }
}

impl Serialize for Scrubbed<'_, '_> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        let r = self.rec;
        let marks = Marks::default();
        let field = |value, name| Field {
            value,
            name,
            marks: &marks,
        };
        let mut m = s.serialize_struct("DecisionRecord", 22)?;
        m.serialize_field("decision_id", &S(r.decision_id))?;
        m.serialize_field("timestamp", &r.timestamp)?;
        m.serialize_field("call", r.call)?;
        m.serialize_field("employee_id", &field(r.employee_id, "employee_id"))?;
        if let Some(v) = r.system_user_id {
            m.serialize_field("system_user_id", &field(v, "system_user_id"))?;
        }
        if let Some(v) = r.system_user_external_ref {
            m.serialize_field(
                "system_user_external_ref",
                &field(v, "system_user_external_ref"),
            )?;
        }
        if let Some(v) = r.system_user_owner {
            m.serialize_field("system_user_owner", &S(v))?;
        }
        if let Some(v) = &r.usable_system_users {
            m.serialize_field(
                "usable_system_users",
                &StrList {
                    items: v,
                    marks: &marks,
                },
            )?;
        }
        m.serialize_field(
            "client_org_number",
            &field(r.client_org_number, "client_org_number"),
        )?;
        m.serialize_field("access_package", &field(r.access_package, "access_package"))?;
        m.serialize_field("action", &field(r.action, "action"))?;
        m.serialize_field("decision", r.decision)?;
        m.serialize_field("reasons", &Reasons(r.reasons))?;
        if let Some((decision, reasons)) = r.shadow {
            m.serialize_field("shadow_decision", decision)?;
            m.serialize_field("shadow_reasons", &Reasons(reasons))?;
        }
        if let Some(p) = r.path {
            m.serialize_field("path", &PathOut(p))?;
        }
        if let Some(t) = &r.token {
            m.serialize_field("token", &TokenOut(t))?;
        }
        if let Some(e) = &r.envoy {
            m.serialize_field(
                "envoy",
                &EnvoyOut {
                    note: e,
                    marks: &marks,
                },
            )?;
        }
        m.serialize_field("revision", r.revision)?;
        m.serialize_field("data_sequence", &r.data_sequence)?;
        m.serialize_field("evaluation_us", &r.evaluation_us)?;
        if let Some(ctx) = r.context {
            m.serialize_field(
                "context",
                &Context {
                    map: ctx,
                    redactor: self.redactor,
                    marks: &marks,
                },
            )?;
        }
        m.serialize_field("caller", &CallerOut(r.caller))?;
        if let Some(t) = &r.trace.trace_id {
            m.serialize_field("trace_id", t)?;
        }
        if let Some(t) = &r.trace.span_id {
            m.serialize_field("span_id", t)?;
        }
        let marks = marks.into_inner();
        if !marks.is_empty() {
            m.serialize_field("redacted", &marks)?;
        }
        m.end()
    }
}

struct TokenOut<'r>(&'r TokenNote<'r>);

impl Serialize for TokenOut<'_> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        let t = self.0;
        let mut m = s.serialize_struct("Token", 4)?;
        m.serialize_field("kind", t.kind)?;
        if let Some(jti) = t.jti {
            m.serialize_field("jti", &S(jti))?;
        }
        m.serialize_field(
            "expires_at",
            &humantime::format_rfc3339_seconds(t.expires_at).to_string(),
        )?;
        m.serialize_field("scope", &S(t.scope))?;
        m.end()
    }
}

struct EnvoyOut<'r> {
    note: &'r EnvoyNote<'r>,
    marks: &'r Marks,
}

impl Serialize for EnvoyOut<'_> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        let e = self.note;
        let mut m = s.serialize_struct("Envoy", 7)?;
        if let Some(r) = e.route {
            m.serialize_field("route", &S(r))?;
        }
        m.serialize_field("method", &S(e.method))?;
        m.serialize_field("host", &S(e.host))?;
        m.serialize_field(
            "path",
            &Field {
                value: e.path,
                name: "envoy.path",
                marks: self.marks,
            },
        )?;
        if let Some(f) = e.client_from {
            m.serialize_field("client_from", &S(f))?;
        }
        if let Some(c) = e.client {
            m.serialize_field(
                "client",
                &Field {
                    value: c,
                    name: "envoy.client",
                    marks: self.marks,
                },
            )?;
        }
        if e.shadow_deny {
            m.serialize_field("shadow_deny", &true)?;
        }
        m.end()
    }
}

struct StrList<'r> {
    items: &'r [&'r str],
    marks: &'r Marks,
}

impl Serialize for StrList<'_> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        let mut seq = s.serialize_seq(Some(self.items.len()))?;
        for x in self.items {
            seq.serialize_element(&Field {
                value: x,
                name: "usable_system_users",
                marks: self.marks,
            })?;
        }
        seq.end()
    }
}

struct PathOut<'r>(&'r crate::decision::Path);

impl Serialize for PathOut<'_> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        let p = self.0;
        let mut m = s.serialize_struct("Path", 3)?;
        m.serialize_field("teams", &p.teams)?;
        if let Some(o) = p.link_client {
            m.serialize_field("link_client_org_number", &o.to_string())?;
        }
        m.serialize_field("link_roles", &p.link_roles)?;
        m.end()
    }
}

struct Reasons<'r>(&'r [Reason]);

impl Serialize for Reasons<'_> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for r in self.0 {
            seq.serialize_element(&ReasonOut(r))?;
        }
        seq.end()
    }
}

struct ReasonOut<'r>(&'r Reason);

impl Serialize for ReasonOut<'_> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        let mut m = s.serialize_struct("Reason", 2)?;
        m.serialize_field("policy_id", &S(&self.0.policy_id))?;
        // Messages quote request fields, so they are scrubbed like them.
        m.serialize_field("message", &S(&self.0.message))?;
        m.end()
    }
}

struct CallerOut<'r>(&'r Caller);

impl Serialize for CallerOut<'_> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        let c = self.0;
        let n = usize::from(c.identity.is_some())
            + usize::from(c.peer.is_some())
            + usize::from(c.uid.is_some())
            + usize::from(c.pid.is_some())
            + usize::from(c.service.is_some());
        let mut m = s.serialize_struct("Caller", n)?;
        if let Some(i) = &c.identity {
            m.serialize_field("identity", &S(i))?;
        }
        if let Some(p) = &c.peer {
            m.serialize_field("peer", &S(p))?;
        }
        if let Some(u) = c.uid {
            m.serialize_field("uid", &u)?;
        }
        if let Some(p) = c.pid {
            m.serialize_field("pid", &p)?;
        }
        if let Some(v) = &c.service {
            m.serialize_field("service", &S(v))?;
        }
        m.end()
    }
}

/// The caller's context: named fields replaced, every string scrubbed, at any depth;
/// each attribute changed is marked as `context.<attribute>`.
struct Context<'r> {
    map: &'r serde_json::Map<String, serde_json::Value>,
    redactor: &'r Redactor,
    marks: &'r Marks,
}

impl Serialize for Context<'_> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        let mut m = s.serialize_map(Some(self.map.len()))?;
        for (k, v) in self.map {
            let key = redact::scrub(k);
            let changed = Cell::new(matches!(key, Cow::Owned(_)));
            if self.redactor.is_redacted_field(k) {
                changed.set(true);
                m.serialize_entry(&*key, redact::REDACTED)?;
            } else {
                m.serialize_entry(
                    &*key,
                    &Json {
                        value: v,
                        changed: &changed,
                    },
                )?;
            }
            if changed.get() {
                self.marks.borrow_mut().push(format!("context.{key}"));
            }
        }
        m.end()
    }
}

/// A context value, scrubbed at any depth; `changed` is set when that changed it.
struct Json<'r> {
    value: &'r serde_json::Value,
    changed: &'r Cell<bool>,
}

impl Json<'_> {
    fn scrubbed<'s>(&self, x: &'s str) -> Cow<'s, str> {
        let out = redact::scrub(x);
        if matches!(out, Cow::Owned(_)) {
            self.changed.set(true);
        }
        out
    }
}

impl Serialize for Json<'_> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        use serde_json::Value as V;
        let inner = |value| Json {
            value,
            changed: self.changed,
        };
        match self.value {
            V::String(x) => s.serialize_str(&self.scrubbed(x)),
            V::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for x in a {
                    seq.serialize_element(&inner(x))?;
                }
                seq.end()
            }
            V::Object(o) => {
                let mut m = s.serialize_map(Some(o.len()))?;
                for (k, x) in o {
                    m.serialize_entry(&*self.scrubbed(k), &inner(x))?;
                }
                m.end()
            }
            other => other.serialize(s),
        }
    }
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
