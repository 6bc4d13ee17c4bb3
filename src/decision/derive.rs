//! Look up and derive: the few records one request is about (`Subject`), the
//! facts Vakt derives from them that Cedar cannot express (`Derived`: the teams
//! covering the client, the client link that applies), and the request and
//! context record the engine evaluates, which read those facts in place.

use super::engine::value::{Elems, Ent};
use super::engine::{Request, Val};
use super::{Path, Query, Reason};
use crate::rules::model::{self, core_types};
use crate::world::{Employee, OrgNo, SystemUser, World};
use smol_str::SmolStr;
use std::sync::Arc;

/// What one request is about, as found in the world.
pub(crate) struct Subject<'w> {
    pub(crate) employee: Option<&'w Employee>,
    pub(crate) system_user: Option<&'w SystemUser>,
    /// The client's parent, when the client is an operational unit.
    pub(crate) parent: Option<OrgNo>,
}

impl<'w> Subject<'w> {
    pub(crate) fn find(w: &'w World, q: &Query) -> Self {
        Self::with(
            w,
            w.employee(&q.employee),
            w.system_user(&q.system_user),
            q.client_no,
        )
    }

    pub(crate) fn with(
        w: &'w World,
        employee: Option<&'w Employee>,
        system_user: Option<&'w SystemUser>,
        client: OrgNo,
    ) -> Self {
        Self {
            employee,
            system_user,
            parent: w.organization(client).and_then(|c| c.parent()),
        }
    }
}

/// The facts Vakt derives for one request, which the context record reads in place.
pub(crate) struct Derived {
    /// Those of the employee's teams whose client scope covers the client, sorted.
    portfolio: Vec<SmolStr>,
    /// The active link to the client (or its parent): the linked org and its access.
    link: Option<(OrgNo, Arc<crate::world::LinkAccess>)>,
    /// When the link lists no packages for a relationship and the operator chose
    /// to take the system user's own for it: the link's packages and auditor
    /// packages with them.
    assumed: Option<Assumed>,
}

/// A link's packages with the system user's own taken for what it does not list.
pub(crate) struct Assumed {
    packages: Box<[SmolStr]>,
    auditor_packages: Box<[SmolStr]>,
}

impl Derived {
    pub(crate) fn of(
        w: &World,
        q: &Query,
        s: &Subject<'_>,
        link_packages: model::LinkPackages,
    ) -> Self {
        let portfolio = s
            .employee
            .into_iter()
            .flat_map(|e| e.teams.iter())
            .filter(|id| {
                w.team(id)
                    .is_some_and(|team| team.covers(q.client_no, s.parent))
            })
            .cloned()
            .collect();
        let link = s
            .system_user
            .and_then(|su| su.link_for(q.client_no, s.parent))
            .map(|(org, l)| (org, l.access.clone()));
        let assumed = match (&link, s.system_user, link_packages) {
            (Some((_, access)), Some(su), model::LinkPackages::SystemUserPackages)
                if access.entries.is_empty()
                    || access.entries.iter().any(|(_, p)| p.is_empty()) =>
            {
                // A link that names no relationship at all (a delegated-clients
                // list) carries the system user's packages, but through no
                // auditor role.
                let with_own = |auditor_only: bool| {
                    let mut v: Vec<SmolStr> = Vec::new();
                    if access.entries.is_empty() && !auditor_only {
                        v.extend(su.access_packages.iter().cloned());
                    }
                    for (role, p) in access.entries.iter() {
                        if auditor_only && role.as_deref() != Some(model::AUDITOR_ROLE) {
                            continue;
                        }
                        if p.is_empty() {
                            v.extend(su.access_packages.iter().cloned());
                        } else {
                            v.extend(p.iter().cloned());
                        }
                    }
                    v.sort();
                    v.dedup();
                    v.into_boxed_slice()
                };
                Some(Assumed {
                    packages: with_own(false),
                    auditor_packages: with_own(true),
                })
            }
            _ => None,
        };
        Self {
            portfolio,
            link,
            assumed,
        }
    }

    /// The path of an allow, from what was derived for it: those of the teams
    /// covering the client that grant the system user, and the link.
    pub(super) fn path(&self, su: Option<&SystemUser>) -> Path {
        Path {
            teams: self
                .portfolio
                .iter()
                .filter(|t| su.is_some_and(|s| crate::world::records::sorted_has(&s.granted_to, t)))
                .cloned()
                .collect(),
            link_client: self.link.as_ref().map(|(org, _)| *org),
            link_roles: self
                .link
                .as_ref()
                .map_or_else(Vec::new, |(_, l)| l.roles.to_vec()),
        }
    }

    /// The note a decision carries when its link's packages were assumed.
    pub(crate) fn note(&self, q: &Query, su_id: &str) -> Option<Reason> {
        self.assumed.as_ref().map(|_| Reason {
            policy_id: "vakt:link-packages-assumed".into(),
            message: format!(
                "the link of client {} to system user {su_id} lists no packages for a relationship; the system user's own packages were taken for it (links without packages: system-user-packages)",
                q.client
            ),
        })
    }
}

/// Runs `f` with the request's context record: what Vakt derives, then the
/// caller's attributes. The record reads the derived facts in place.
pub(crate) fn with_context<T>(q: &Query, d: &Derived, f: impl FnOnce(Val<'_>) -> T) -> T {
    let t = core_types();
    let link_attrs: Option<[(SmolStr, Val<'_>); 4]> = d.link.as_ref().map(|(org, access)| {
        [
            (
                SmolStr::new_static("auditorPackages"),
                Val::Set(Elems::Entities(
                    &t.access_package,
                    d.assumed
                        .as_ref()
                        .map_or(&access.auditor_packages, |a| &a.auditor_packages),
                )),
            ),
            (
                SmolStr::new_static("client"),
                Val::Ent(
                    Ent::inline(&t.organization, &org.digits()).expect("nine digits fit inline"),
                ),
            ),
            (
                SmolStr::new_static("packages"),
                Val::Set(Elems::Entities(
                    &t.access_package,
                    d.assumed.as_ref().map_or(&access.packages, |a| &a.packages),
                )),
            ),
            (
                SmolStr::new_static("roles"),
                Val::Set(Elems::Strings(&access.roles)),
            ),
        ]
    });
    let mut attrs: Vec<(SmolStr, Val<'_>)> = Vec::with_capacity(4 + q.context.pairs.len());
    attrs.push((
        SmolStr::new_static(model::CTX_ACCESS_PACKAGE),
        Val::Ent(Ent::new(&t.access_package, &q.access_package)),
    ));
    attrs.push((
        SmolStr::new_static(model::CTX_CLIENT),
        Val::Ent(Ent::new(&t.organization, &q.client)),
    ));
    if let Some(link) = &link_attrs {
        attrs.push((
            SmolStr::new_static(model::CTX_CLIENT_LINK),
            Val::Record(link),
        ));
    }
    attrs.push((
        SmolStr::new_static(model::CTX_PORTFOLIO_TEAMS),
        Val::Set(Elems::Entities(&t.team, &d.portfolio)),
    ));
    for (k, v) in &q.context.pairs {
        attrs.push((k.clone(), Val::V(v.clone())));
    }
    f(Val::Record(&attrs))
}

/// The request: the employee asks to act on the system user, with `context`.
pub(crate) fn request<'a>(q: &'a Query, system_user: &'a str, context: Val<'a>) -> Request<'a> {
    let t = core_types();
    Request {
        principal: Ent::new(&t.employee, &q.employee),
        action: Ent::new(q.action.entity_type(), q.action.eid().as_ref()),
        resource: Ent::new(&t.system_user, system_user),
        context,
    }
}
