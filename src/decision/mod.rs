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
    let derived = Derived::of(world, q, subject, rules.link_packages);
    let outcome = with_context(q, &derived, |context| {
        rules.engine.evaluate(&request(q, su_id, context), world)
    });
    let mut d = explain(rules, q, subject, su_id, outcome);
    d.reasons.extend(derived.note(q, su_id));
    if d.allowed {
        d.path = Some(derived.path(subject.system_user));
    }
    d
}
