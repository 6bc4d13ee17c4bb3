//! A solver's counterexample written as Vakt data: a small world of data files
//! and one request, replayed through Vakt's own loader and engine and through
//! Cedar's authorizer, so that what `vakt verify` prints is what `vakt check` shows.

use crate::decision::{decide, Query, RawRequest};
use crate::ids::{check_id, check_org_number};
use crate::problem::SourceFile;
use crate::rules::model;
use crate::rules::snapshot::{Snapshot, Sources};
use crate::world::{
    AccessRecord, ClientRecord, ClientsRecord, DataFile, EmployeeRecord, OrganizationRecord,
    PackageRef, SystemUserRecord, TeamRecord,
};
use cedar_policy::{Authorizer, Decision};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A concrete world and request, as data files Vakt loads.
#[derive(Debug, Clone)]
pub struct Witness {
    /// `world.json` (and `entities.json` for entity types outside Vakt's format).
    pub files: Vec<SourceFile>,
    pub employee: String,
    pub system_user: String,
    pub client: String,
    pub package: String,
    pub action: String,
    /// The caller's context attributes (what the request sends, not what Vakt derives).
    pub context: Map<String, Value>,
    /// Vakt's decision on the world and request, when it loads.
    pub vakt_allows: Option<bool>,
    /// Cedar's decision on the solver's own entities and request.
    pub cedar_allows: bool,
    /// Why the world is not one Vakt builds, when it is not.
    pub not_buildable: Option<String>,
    /// The reasons Vakt gave.
    pub reasons: Vec<(String, String)>,
}

impl Witness {
    /// The arguments that make `vakt check` decide this request.
    pub fn check_args(&self) -> Vec<String> {
        let mut args = vec![
            "--employee".into(),
            self.employee.clone(),
            "--system-user".into(),
            self.system_user.clone(),
            "--client".into(),
            self.client.clone(),
            "--package".into(),
            self.package.clone(),
        ];
        if self.action != model::DEFAULT_ACTION {
            args.extend(["--action".into(), self.action.clone()]);
        }
        if !self.context.is_empty() {
            args.extend([
                "--context".into(),
                Value::Object(self.context.clone()).to_string(),
            ]);
        }
        args
    }
}

/// Entity uids as JSON: `(type, id)`.
type Uid = (String, String);

fn uid_of(v: &Value) -> Option<Uid> {
    let e = v.get("__entity").unwrap_or(v);
    Some((
        e.get("type")?.as_str()?.to_owned(),
        e.get("id")?.as_str()?.to_owned(),
    ))
}

/// Every entity uid a JSON value mentions.
fn collect_uids(v: &Value, out: &mut BTreeSet<Uid>) {
    match v {
        Value::Object(m) => {
            if let Some(u) = m.get("__entity").and_then(uid_of) {
                out.insert(u);
            } else {
                m.values().for_each(|x| collect_uids(x, out));
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_uids(x, out)),
        _ => {}
    }
}

/// New ids for the solver's: a valid org number for each organisation, a listed
/// URN for each access package, a readable id for the rest. An id that is
/// already valid is kept, so a policy that names one still matches.
struct Names {
    by_uid: BTreeMap<Uid, String>,
}

impl Names {
    fn new(uids: &BTreeSet<Uid>, packages: &[&str]) -> Self {
        let t = model::types();
        let (org, pkg) = (t.organization.to_string(), t.access_package.to_string());
        let mut used: BTreeSet<(String, String)> = BTreeSet::new();
        let mut by_uid = BTreeMap::new();
        // Keep the valid ids first, so a renamed one never takes them.
        for (ty, id) in uids {
            let keep = if *ty == org {
                check_org_number(id).is_ok()
            } else if *ty == pkg {
                packages.contains(&id.as_str())
            } else {
                check_id(id).is_ok() && id.chars().all(|c| c.is_ascii_graphic())
            };
            if keep {
                used.insert((ty.clone(), id.clone()));
                by_uid.insert((ty.clone(), id.clone()), id.clone());
            }
        }
        // The first eight digits of the org numbers made up for a witness.
        let mut next_org = 31_090_000_u32;
        let mut counters: BTreeMap<String, usize> = BTreeMap::new();
        for (ty, id) in uids {
            if by_uid.contains_key(&(ty.clone(), id.clone())) {
                continue;
            }
            let fresh = loop {
                let candidate = if *ty == org {
                    next_org += 1;
                    match (0..10)
                        .map(|d| format!("{next_org:08}{d}"))
                        .find(|n| check_org_number(n).is_ok())
                    {
                        Some(n) => n,
                        None => continue,
                    }
                } else if *ty == pkg {
                    let n = counters.entry(ty.clone()).or_default();
                    *n += 1;
                    match packages.get(*n - 1) {
                        Some(u) => (*u).to_owned(),
                        // More packages than the list holds: no world to build.
                        None => format!("urn:altinn:accesspackage:unlisted-{n}"),
                    }
                } else {
                    let n = counters.entry(ty.clone()).or_default();
                    *n += 1;
                    let base = ty.rsplit("::").next().unwrap_or(ty).to_ascii_lowercase();
                    format!("{base}-{n}")
                };
                if !used.contains(&(ty.clone(), candidate.clone())) {
                    break candidate;
                }
            };
            used.insert((ty.clone(), fresh.clone()));
            by_uid.insert((ty.clone(), id.clone()), fresh);
        }
        Self { by_uid }
    }

    fn of(&self, u: &Uid) -> String {
        self.by_uid.get(u).cloned().unwrap_or_else(|| u.1.clone())
    }

    fn of_value(&self, v: &Value) -> Option<String> {
        uid_of(v).map(|u| self.of(&u))
    }

    /// Renames every entity reference inside a JSON value.
    fn rename(&self, v: &Value) -> Value {
        match v {
            Value::Object(m) => match m.get("__entity").and_then(uid_of) {
                Some((ty, id)) => {
                    let new = self.of(&(ty.clone(), id));
                    json!({"__entity": {"type": ty, "id": new}})
                }
                None => Value::Object(m.iter().map(|(k, x)| (k.clone(), self.rename(x))).collect()),
            },
            Value::Array(a) => Value::Array(a.iter().map(|x| self.rename(x)).collect()),
            other => other.clone(),
        }
    }
}

fn str_attr(attrs: &Value, key: &str) -> Option<String> {
    attrs.get(key)?.as_str().map(str::to_owned)
}

fn bool_attr(attrs: &Value, key: &str) -> bool {
    attrs.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Writes the solver's environment as Vakt data and replays it.
pub(super) fn witness(
    env: &cedar_policy_symcc::Env,
    rules_sources: &Sources,
    rules: &crate::rules::snapshot::Rules,
) -> Witness {
    let cedar_allows = Authorizer::new()
        .is_authorized(&env.request, &rules.policies.set, &env.entities)
        .decision()
        == Decision::Allow;
    let entities = env.entities.to_json_value().unwrap_or(Value::Array(vec![]));
    let entities = entities.as_array().cloned().unwrap_or_default();
    let context = env
        .request
        .context()
        .and_then(|c| c.to_json_value().ok())
        .unwrap_or_else(|| json!({}));
    let principal = env
        .request
        .principal()
        .map(|u| (u.type_name().to_string(), u.id().unescaped().to_owned()));
    let resource = env
        .request
        .resource()
        .map(|u| (u.type_name().to_string(), u.id().unescaped().to_owned()));
    let action = env
        .request
        .action()
        .map(|u| u.id().unescaped().to_owned())
        .unwrap_or_else(|| model::DEFAULT_ACTION.to_owned());

    let mut uids = BTreeSet::new();
    for e in &entities {
        collect_uids(e, &mut uids);
        if let Some(u) = e.get("uid").and_then(uid_of) {
            uids.insert(u);
        }
    }
    collect_uids(&context, &mut uids);
    uids.extend(principal.clone());
    uids.extend(resource.clone());
    let mut listed: Vec<&str> = rules.packages.urns().collect();
    listed.sort_unstable();
    let names = Names::new(&uids, &listed);
    let t = model::types();
    let by_type = |ty: &cedar_policy::EntityTypeName| -> Vec<(Uid, Value, Vec<Uid>)> {
        let ty = ty.to_string();
        entities
            .iter()
            .filter_map(|e| {
                let u = e.get("uid").and_then(uid_of)?;
                (u.0 == ty).then(|| {
                    let parents = e
                        .get("parents")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(uid_of).collect())
                        .unwrap_or_default();
                    (
                        u,
                        e.get("attrs").cloned().unwrap_or_else(|| json!({})),
                        parents,
                    )
                })
            })
            .collect()
    };
    let ctx_get = |k: &str| context.get(k);
    let client = ctx_get(model::CTX_CLIENT)
        .and_then(|v| names.of_value(v))
        .unwrap_or_default();
    let package = ctx_get(model::CTX_ACCESS_PACKAGE)
        .and_then(|v| names.of_value(v))
        .unwrap_or_default();
    let portfolio: BTreeSet<String> = ctx_get(model::CTX_PORTFOLIO_TEAMS)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| names.of_value(v)).collect())
        .unwrap_or_default();
    let link = ctx_get(model::CTX_CLIENT_LINK);

    // Organisations: every one the world mentions, with its parent.
    let org = |n: &str, name: String, parent: Option<String>| OrganizationRecord {
        org_number: n.to_owned(),
        name,
        parent_org_number: parent,
        unit_type: None,
        party_id: None,
        party_uuid: None,
    };
    let mut orgs: BTreeMap<String, OrganizationRecord> = BTreeMap::new();
    for (u, attrs, _) in by_type(&t.organization) {
        let n = names.of(&u);
        let name = str_attr(&attrs, "name").filter(|s| !s.trim().is_empty());
        let parent = attrs.get("parent").and_then(|v| names.of_value(v));
        let record = org(
            &n,
            name.unwrap_or_else(|| format!("Organisation {n}")),
            parent,
        );
        orgs.insert(n, record);
    }
    for u in uids.iter().filter(|u| u.0 == t.organization.to_string()) {
        let n = names.of(u);
        orgs.entry(n.clone())
            .or_insert_with(|| org(&n, format!("Organisation {n}"), None));
    }
    // A parent the data checks refuse (the organisation itself, a unit, or one
    // not in the world) is left out; the replay below says whether that changed
    // the decision.
    let refused: Vec<String> = orgs
        .iter()
        .filter(|(n, o)| {
            o.parent_org_number.as_ref().is_some_and(|p| {
                p == *n || orgs.get(p).is_none_or(|po| po.parent_org_number.is_some())
            })
        })
        .map(|(n, _)| n.clone())
        .collect();
    for n in refused {
        if let Some(o) = orgs.get_mut(&n) {
            o.parent_org_number = None;
        }
    }

    // Teams: each grants the system users that are `in` it; a team in the
    // request's portfolio covers the client, any other covers nobody.
    let mut grants: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut system_users = Vec::new();
    for (u, attrs, parents) in by_type(&t.system_user) {
        let id = names.of(&u);
        for p in parents.iter().filter(|p| p.0 == t.team.to_string()) {
            grants.entry(names.of(p)).or_default().push(id.clone());
        }
        let owner = attrs.get("owner").and_then(|v| names.of_value(v));
        let packages: Vec<PackageRef> = attrs
            .get("accessPackages")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| names.of_value(v))
                    .map(|urn| PackageRef { urn })
                    .collect()
            })
            .unwrap_or_default();
        let text = |k: &str, fallback: &str| {
            str_attr(&attrs, k)
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| fallback.to_owned())
        };
        // A value the data checks refuse (the solver may pick any string where
        // no assumption says otherwise) becomes a valid one; the replay below
        // says whether that changed the outcome.
        let is_request_agent = Some(&u) == resource.as_ref() && link.is_some();
        let user_type = match str_attr(&attrs, "userType").as_deref() {
            Some(t @ ("standard" | "agent")) => t.to_owned(),
            _ if is_request_agent || bool_attr(&attrs, "selfDelegated") => "agent".into(),
            _ => "standard".into(),
        };
        let clients = match link {
            Some(l) if Some(&u) == resource.as_ref() => vec![client_link(l, &names)],
            _ => Vec::new(),
        };
        system_users.push(SystemUserRecord {
            integration_title: Some(text("integrationTitle", &id)),
            system_id: Some(text("systemId", "system")),
            reportee_org_no: owner.unwrap_or_default(),
            self_delegated: bool_attr(&attrs, "selfDelegated") && user_type == "agent",
            user_type: Some(user_type),
            access_packages: Some(packages),
            external_ref: Some(text("externalRef", &id)),
            is_deleted: bool_attr(&attrs, "isDeleted"),
            clients,
            id,
        });
    }
    let mut teams = Vec::new();
    for (u, attrs, _) in by_type(&t.team) {
        let id = names.of(&u);
        let clients = if portfolio.contains(&id) {
            vec![client.clone()]
        } else {
            Vec::new()
        };
        teams.push(TeamRecord {
            organization: attrs
                .get("organization")
                .and_then(|v| names.of_value(v))
                .unwrap_or_default(),
            name: str_attr(&attrs, "name")
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| id.clone()),
            system_users: grants.remove(&id).unwrap_or_default(),
            clients: ClientsRecord::List(clients),
            id,
        });
    }
    let mut employees = Vec::new();
    for (u, attrs, _) in by_type(&t.employee) {
        let id = names.of(&u);
        let set = |k: &str| -> Vec<String> {
            attrs
                .get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| names.of_value(v)).collect())
                .unwrap_or_default()
        };
        employees.push(EmployeeRecord {
            organization: attrs
                .get("organization")
                .and_then(|v| names.of_value(v))
                .unwrap_or_default(),
            name: str_attr(&attrs, "name")
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| id.clone()),
            active: bool_attr(&attrs, "active"),
            kind: Some(match str_attr(&attrs, "kind").as_deref() {
                Some(k @ ("person" | "automation")) => k.to_owned(),
                _ => "person".to_owned(),
            }),
            teams: set("teams"),
            audit_clients: set("auditClients"),
            id,
        });
    }
    let world = DataFile {
        organizations: orgs.into_values().collect(),
        system_users,
        teams,
        employees,
    };
    let mut files = vec![SourceFile {
        name: "world.json".into(),
        text: pretty(&world),
    }];
    // Entity types outside Vakt's data format go in Cedar's own format.
    let others: Vec<Value> = entities
        .iter()
        .filter(|e| {
            e.get("uid").and_then(uid_of).is_some_and(|u| {
                ![
                    &t.employee,
                    &t.team,
                    &t.system_user,
                    &t.organization,
                    &t.access_package,
                    &t.action,
                ]
                .iter()
                .any(|ty| ty.to_string() == u.0)
            })
        })
        .map(|e| names.rename(e))
        .collect();
    if !others.is_empty() {
        files.push(SourceFile {
            name: crate::world::CEDAR_FILE.into(),
            text: pretty(&Value::Array(others)),
        });
    }
    let caller_context: Map<String, Value> = context
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !model::DERIVED_CONTEXT.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), names.rename(v)))
                .collect()
        })
        .unwrap_or_default();
    let mut w = Witness {
        files,
        employee: principal.as_ref().map(|u| names.of(u)).unwrap_or_default(),
        system_user: resource.as_ref().map(|u| names.of(u)).unwrap_or_default(),
        client,
        package,
        action,
        context: caller_context,
        vakt_allows: None,
        cedar_allows,
        not_buildable: None,
        reasons: Vec::new(),
    };
    replay(&mut w, rules_sources);
    w
}

/// For a "never-errors" counterexample, what must replay is the error, not a
/// decision: Vakt names the erroring policy among its reasons (and denies).
pub(super) fn expect_error(w: &mut Witness, policy_id: &str) {
    if w.vakt_allows.is_none() {
        return;
    }
    let errs = w
        .reasons
        .iter()
        .any(|(p, m)| p == policy_id && m.contains("could not be evaluated"));
    w.not_buildable = (!errs).then(|| {
        format!("Vakt evaluates policy {policy_id} without an error on the world written from the solver's: an assumption Vakt's derivation guarantees is missing from the properties file")
    });
}

/// One client link, its relationships rebuilt from the link's roles and packages:
/// the auditor role carries the auditor packages, the other roles the rest.
fn client_link(link: &Value, names: &Names) -> ClientRecord {
    let set = |k: &str| -> Vec<String> {
        link.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| names.of_value(v)).collect())
            .unwrap_or_default()
    };
    let packages = set("packages");
    let auditor = set("auditorPackages");
    let roles: Vec<String> = link
        .get("roles")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut others: Vec<String> = roles
        .iter()
        .filter(|r| r.as_str() != model::AUDITOR_ROLE)
        .cloned()
        .collect();
    let rest: Vec<String> = packages
        .iter()
        .filter(|p| !auditor.contains(p))
        .cloned()
        .collect();
    if others.is_empty() && !rest.is_empty() {
        others.push("urn:altinn:external-role:ccr:regnskapsforer".into());
    }
    let mut access = Vec::new();
    if roles.iter().any(|r| r == model::AUDITOR_ROLE) || !auditor.is_empty() {
        access.push(AccessRecord {
            role: Some(model::AUDITOR_ROLE.to_owned()),
            packages: auditor,
        });
    }
    for (i, role) in others.iter().enumerate() {
        // A role the data would refuse keeps its place under a valid name.
        let role = if role.starts_with("urn:altinn:") {
            role.clone()
        } else {
            format!("urn:altinn:external-role:ccr:role-{}", i + 1)
        };
        let carried = if i == 0 { rest.clone() } else { Vec::new() };
        access.push(AccessRecord {
            role: Some(role),
            packages: carried,
        });
    }
    ClientRecord {
        client_id: None,
        client_organization_number: link
            .get("client")
            .and_then(|v| names.of_value(v))
            .unwrap_or_default(),
        client_organization_name: None,
        access,
        status: Some("active".to_owned()),
    }
}

fn pretty(v: &impl serde::Serialize) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// Loads the witness world with `rules_sources`' policies and schema and decides
/// its request through Vakt's engine.
pub(super) fn decide_on(
    w: &Witness,
    rules_sources: &Sources,
) -> Result<crate::decision::Decision, String> {
    let sources = Sources {
        data: w.files.clone(),
        ..rules_sources.clone()
    };
    let snap = Snapshot::build(&sources)
        .map_err(|p| format!("Vakt's data checks refuse the world: {p}"))?;
    let raw = RawRequest {
        employee_id: w.employee.clone(),
        system_user_id: w.system_user.clone(),
        client_org_number: w.client.clone(),
        access_package: w.package.clone(),
        action: w.action.clone(),
        context: (!w.context.is_empty()).then(|| w.context.clone()),
    };
    let q = Query::check(&snap, raw, "").map_err(|e| format!("Vakt refuses the request: {e}"))?;
    Ok(decide(&snap, &q))
}

/// Decides the witness through Vakt and notes any difference from Cedar's answer.
fn replay(w: &mut Witness, rules_sources: &Sources) {
    let d = match decide_on(w, rules_sources) {
        Ok(d) => d,
        Err(why) => {
            w.not_buildable = Some(why);
            return;
        }
    };
    w.vakt_allows = Some(d.allowed);
    w.reasons = d
        .reasons
        .into_iter()
        .map(|r| (r.policy_id, r.message))
        .collect();
    if d.allowed != w.cedar_allows {
        w.not_buildable = Some(format!(
            "Vakt {} the request on the world written from the solver's, where Cedar {} it: an assumption Vakt's derivation guarantees is missing from the properties file",
            if d.allowed { "allows" } else { "denies" },
            if w.cedar_allows { "allows" } else { "denies" },
        ));
    }
}
