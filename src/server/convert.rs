//! Conversions between the protobuf messages and Vakt's own types: requests in,
//! answers out.

use super::authorize::Answer;
use crate::decision::{RawRequest, Reason};
use crate::proto;
use prost_types::{value::Kind, Struct, Value};

/// google.protobuf.Struct to JSON. Numbers stay numbers; the schema check decides
/// whether a fractional one is acceptable.
pub fn struct_to_json(s: Struct) -> serde_json::Map<String, serde_json::Value> {
    s.fields
        .into_iter()
        .map(|(k, v)| (k, value_to_json(v)))
        .collect()
}

fn value_to_json(v: Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v.kind {
        None | Some(Kind::NullValue(_)) => J::Null,
        Some(Kind::BoolValue(b)) => J::Bool(b),
        Some(Kind::NumberValue(n)) => {
            // Cedar has only integers; send whole numbers as such.
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                J::from(n as i64)
            } else {
                serde_json::Number::from_f64(n).map_or(J::Null, J::Number)
            }
        }
        Some(Kind::StringValue(s)) => J::String(s),
        Some(Kind::ListValue(l)) => J::Array(l.values.into_iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => J::Object(struct_to_json(s)),
    }
}

impl From<proto::AuthorizeRequest> for RawRequest {
    fn from(r: proto::AuthorizeRequest) -> Self {
        Self {
            employee_id: r.employee_id,
            system_user_id: r.system_user_id,
            client_org_number: r.client_org_number,
            access_package: r.access_package,
            action: r.action,
            context: r.context.map(struct_to_json),
        }
    }
}

impl From<proto::ResolveSystemUserRequest> for RawRequest {
    fn from(r: proto::ResolveSystemUserRequest) -> Self {
        Self {
            employee_id: r.employee_id,
            system_user_id: String::new(),
            client_org_number: r.client_org_number,
            access_package: r.access_package,
            action: r.action,
            context: r.context.map(struct_to_json),
        }
    }
}

/// The reasons as gRPC sends them, moved rather than copied.
pub fn reasons(rs: Vec<Reason>) -> Vec<proto::Reason> {
    rs.into_iter()
        .map(|r| proto::Reason {
            policy_id: r.policy_id,
            message: r.message,
        })
        .collect()
}

/// A decision as gRPC answers it: the one conversion from the domain answer.
impl From<Answer<'_>> for proto::AuthorizeResponse {
    fn from(a: Answer<'_>) -> Self {
        let decision = if a.decision.allowed {
            proto::Decision::Allow
        } else {
            proto::Decision::Deny
        };
        Self {
            decision: decision as i32,
            reasons: reasons(a.decision.reasons),
            decision_id: a.decision_id,
            revision: a.revision.to_owned(),
            data_sequence: a.data_sequence,
        }
    }
}

/// A decision as AuthorizeWithToken answers it, before any token is added.
impl From<Answer<'_>> for proto::AuthorizeWithTokenResponse {
    fn from(a: Answer<'_>) -> Self {
        let r = proto::AuthorizeResponse::from(a);
        Self {
            decision: r.decision,
            reasons: r.reasons,
            decision_id: r.decision_id,
            revision: r.revision,
            data_sequence: r.data_sequence,
            ..Default::default()
        }
    }
}
