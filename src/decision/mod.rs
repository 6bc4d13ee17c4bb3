//! The decision: check a request at the edge, then look up → derive → evaluate →
//! explain.
//!
//! For each request Vakt looks up the few records it needs (employee, system user,
//! client and its parent), derives the facts Cedar cannot express (which of the
//! employee's teams cover the client, which client link applies), and evaluates the
//! policies over the world's records read in place (`engine`). Nothing
//! here does I/O or takes a lock, and no step grows with the size of the world.
//! Any evaluation error denies.
//!
//! The steps, one file each: `check` (a raw request into a `Query`), `derive`
//! (the subject's records and the derived facts), `engine` (evaluate),
//! `explain` (the decision and its reasons); `resolve` and `reverse` decide
//! about every candidate, and `reference` is Cedar's own authorizer, to check
//! the engine against.

mod check;
mod derive;
pub(crate) mod engine;
mod explain;
pub mod reference;
mod resolve;
pub mod reverse;

pub(crate) use check::{Fields, Need};
pub use check::{
    InvalidField, Query, RawRequest, MAX_CONTEXT_DEPTH, MAX_CONTEXT_STRING_BYTES,
    MAX_CONTEXT_VALUES,
};
pub(crate) use derive::{request, with_context, Derived, Subject};
pub(crate) use explain::explain;
pub use explain::{Decision, Path, Reason, DATA_STALE};
pub(crate) use resolve::{resolve, Resolution};

use crate::rules::snapshot::{Rules, Snapshot};
use crate::world::World;

/// Decides one checked request against a snapshot.
pub fn decide(snap: &Snapshot, q: &Query) -> Decision {
    decide_under(snap, &snap.world, q)
}

/// Decides one checked request without the path of an allow ([`Decision::path`]
/// stays `None`): for a call whose decision no sink records, the only reader of
/// the path.
pub(crate) fn decide_without_path(snap: &Snapshot, q: &Query) -> Decision {
    let subject = Subject::find(&snap.world, q);
    decide_subject_with(snap, &snap.world, q, &subject, &q.system_user, false)
}

/// Decides one checked request under other rules (a candidate policy set built
/// with the same schema) on a snapshot's world: shadow evaluation.
pub fn decide_under(rules: &Rules, world: &World, q: &Query) -> Decision {
    let subject = Subject::find(world, q);
    decide_subject(rules, world, q, &subject, &q.system_user)
}

/// Decides for a subject already looked up, acting on system user `su_id`:
/// derive, evaluate, explain. Resolve and the reverse queries call it per
/// candidate.
pub(crate) fn decide_subject(
    rules: &Rules,
    world: &World,
    q: &Query,
    subject: &Subject<'_>,
    su_id: &str,
) -> Decision {
    decide_subject_with(rules, world, q, subject, su_id, true)
}

/// [`decide_subject`], with the path of an allow built only when `with_path`.
fn decide_subject_with(
    rules: &Rules,
    world: &World,
    q: &Query,
    subject: &Subject<'_>,
    su_id: &str,
    with_path: bool,
) -> Decision {
    let derived = Derived::of(world, q, subject, rules.link_packages);
    let outcome = with_context(q, &derived, |context| {
        rules.engine.evaluate(&request(q, su_id, context), world)
    });
    let mut d = explain(rules, q, subject, su_id, outcome);
    d.reasons.extend(derived.note(q, su_id));
    if d.allowed && with_path {
        d.path = Some(derived.path(subject.system_user));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's first request, an allow on the embedded example world.
    fn readme_query(snap: &Snapshot) -> Query {
        let raw = RawRequest {
            employee_id: "kari".into(),
            system_user_id: "tk-regnskap".into(),
            client_org_number: "310015156".into(),
            access_package: "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet"
                .into(),
            action: String::new(),
            context: None,
        };
        Query::check(snap, raw, "").expect("the README's request is valid")
    }

    #[test]
    fn a_decision_without_the_path_is_the_same_decision() {
        let snap = Snapshot::build(&crate::rules::snapshot::Sources::embedded())
            .expect("the embedded default loads");
        let q = readme_query(&snap);
        let (with, without) = (decide(&snap, &q), decide_without_path(&snap, &q));
        assert!(with.allowed, "the README's request is an allow");
        assert!(with.path.is_some(), "an allow carries its path");
        assert_eq!(without.allowed, with.allowed);
        assert_eq!(without.reasons, with.reasons);
        assert!(without.path.is_none(), "the path is not built");
    }
}
