//! Conversions between the protobuf messages and Vakt's own types.

use crate::decision::{Decision, RawRequest, Reason};
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

pub fn reasons(rs: &[Reason]) -> Vec<proto::Reason> {
    rs.iter()
        .map(|r| proto::Reason {
            policy_id: r.policy_id.clone(),
            message: r.message.clone(),
        })
        .collect()
}

pub fn decision(d: &Decision) -> proto::Decision {
    if d.allowed {
        proto::Decision::Allow
    } else {
        proto::Decision::Deny
    }
}
