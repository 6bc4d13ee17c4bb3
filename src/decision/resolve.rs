//! Resolve: which of the system users the employee's organisation owns may be
//! used for a client and package, each decided exactly as `Authorize` decides.

use super::{decide_subject, Decision, Query, Reason, Subject};
use crate::rules::snapshot::Snapshot;
use crate::world::SystemUser;

/// The system users an employee may use for a client and package.
#[derive(Debug, Clone)]
pub(crate) struct Resolution<'a> {
    pub(crate) usable: Vec<&'a SystemUser>,
    /// Why each other candidate is not usable.
    pub(crate) reasons: Vec<Reason>,
}

impl Resolution<'_> {
    /// No system user, because the data may not be decided on.
    pub(crate) fn data_stale(why: &str) -> Self {
        Self {
            usable: Vec::new(),
            reasons: Decision::data_stale(why).reasons,
        }
    }
}

/// Decides the request for every system user the employee's organisation owns and
/// keeps those allowed: the same decision Authorize makes, once per candidate.
pub(crate) fn resolve<'a>(snap: &'a Snapshot, q: &Query) -> Resolution<'a> {
    let w = &snap.world;
    let none = |message: String| Resolution {
        usable: Vec::new(),
        reasons: vec![Reason {
            policy_id: "vakt:no-candidates".into(),
            message,
        }],
    };
    let Some(employee) = w.employee(&q.employee) else {
        return none(format!(
            "employee {} is not known, so no system user can be chosen",
            q.employee
        ));
    };
    let candidates = w.system_users_owned_by(employee.organization);
    if candidates.is_empty() {
        return none(format!(
            "organisation {} owns no system users",
            employee.organization
        ));
    }
    let mut usable = Vec::new();
    let mut reasons = Vec::new();
    for id in candidates {
        let Some(su) = w.system_user(id) else {
            continue;
        };
        let subject = Subject::with(w, Some(employee), Some(su), q.client_no);
        let d = decide_subject(snap, &snap.world, q, &subject, id);
        if d.allowed {
            usable.push(su);
        } else {
            reasons.extend(d.reasons);
        }
    }
    if !usable.is_empty() {
        reasons.clear();
    }
    Resolution { usable, reasons }
}
