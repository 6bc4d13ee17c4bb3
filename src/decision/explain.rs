//! Explain: what a decision says (`Decision`, its `Reason`s, the `Path` of an
//! allow) and how an evaluation outcome becomes one, with reasons rendered from
//! the policies' `@reason` annotations.

use super::engine::Outcome;
use super::{Query, Subject};
use crate::rules::policy::Var;
use crate::rules::snapshot::Rules;
use crate::world::OrgNo;
use smol_str::SmolStr;
use std::borrow::Cow;

/// One reason for a decision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reason {
    pub policy_id: String,
    pub message: String,
}

/// The outcome of one decision.
#[derive(Debug, Clone)]
pub struct Decision {
    pub allowed: bool,
    pub reasons: Vec<Reason>,
    /// For an allow: how it is allowed (the decision log records it).
    pub path: Option<Path>,
}

/// The policy id of a deny because the data may not be decided on.
pub const DATA_STALE: &str = "vakt:data-stale";

impl Decision {
    /// A deny because the data may miss a revocation: it is too old, or lacks a
    /// change the caller asked for.
    pub fn data_stale(why: &str) -> Self {
        Self {
            allowed: false,
            reasons: vec![Reason {
                policy_id: DATA_STALE.into(),
                message: format!("{why}, so the request is denied"),
            }],
            path: None,
        }
    }
}

/// Turns an evaluation outcome into a decision with reasons from the policies'
/// `@reason` annotations.
pub(crate) fn explain(
    snap: &Rules,
    q: &Query,
    subject: &Subject<'_>,
    su_id: &str,
    outcome: Outcome,
) -> Decision {
    let vars = |v: Var| -> Cow<'_, str> {
        match v {
            Var::Employee => Cow::Borrowed(&q.employee),
            Var::SystemUser => Cow::Borrowed(su_id),
            Var::Client => Cow::Borrowed(&q.client),
            Var::AccessPackage => Cow::Borrowed(&q.access_package),
            Var::Action => Cow::Borrowed(&q.action_id),
            Var::EmployeeOrganization => subject
                .employee
                .map_or("(unknown)".into(), |e| e.organization.to_string().into()),
            Var::SystemUserOwner => subject
                .system_user
                .map_or("(unknown)".into(), |s| s.owner.to_string().into()),
        }
    };
    let render = |i: usize, allow: bool| {
        let (id, _) = snap.engine.policy(i);
        Reason {
            policy_id: id.to_owned(),
            message: match &snap.reasons[i] {
                Some(t) => t.render(vars),
                None if allow => format!("permitted by policy {id}"),
                None => format!("forbidden by policy {id}"),
            },
        }
    };
    let allowed = outcome.allowed();
    let mut reasons: Vec<Reason> = if allowed {
        outcome.permits.iter().map(|&i| render(i, true)).collect()
    } else {
        outcome.forbids.iter().map(|&i| render(i, false)).collect()
    };
    // Fail closed: a policy that errored might have been a forbid.
    reasons.extend(outcome.errors.iter().map(|(i, e)| {
        let (id, _) = snap.engine.policy(*i);
        Reason {
            policy_id: id.to_owned(),
            message: format!("policy {id} could not be evaluated, so the request is denied: {e}"),
        }
    }));
    if !allowed && reasons.is_empty() {
        reasons.push(Reason {
            policy_id: "vakt:no-permit".into(),
            message: format!(
                "no policy permits employee {} to {} system user {} for client {} with {}",
                q.employee, q.action_id, su_id, q.client, q.access_package
            ),
        });
    }
    reasons.sort_by(|a, b| a.policy_id.cmp(&b.policy_id));
    Decision {
        allowed,
        reasons,
        path: None,
    }
}

/// How an allowed request is allowed: the employee's teams that grant the system
/// user and have the client in scope, and the client link it rests on. The
/// decision log records it with each allow, so that an access review can tell
/// which grants were used.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Path {
    pub teams: Vec<SmolStr>,
    /// The organisation the link is to: the client, or its parent for an
    /// operational unit. None when no link is involved (a standard system user,
    /// or an agent acting for its owner).
    pub link_client: Option<OrgNo>,
    pub link_roles: Vec<SmolStr>,
}
