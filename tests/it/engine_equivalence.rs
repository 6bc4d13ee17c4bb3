//! Vakt's engine decides exactly as `cedar_policy::Authorizer` does over the same
//! world as a Cedar entity store: same decision, same reasons (error messages
//! included), for every combination of employee, system user, client and package
//! in the example world, plus unknown ids and caller context; with the shipped
//! policies, and with a set that uses every kind of expression and fails to
//! evaluate on purpose (tests/data/exotic.cedar).
//!
//! With an extended schema (types of a security team's own, `Sec::Project` and
//! `Sec::Portfolio`, whose parents may be Vakt's records), and entities in Cedar's
//! JSON format spread over several files: `in` is Cedar's closure over the whole
//! world (every file, Vakt's records, and live changes to either), checked at the
//! level of a decision (the forbid that issue 21 found missed) and by generated
//! policies.
//!
//! The generated comparison draws policies from a grammar that uses every operator
//! (`in`, `is`, `has`, `like`, tags, the extension functions of ip, decimal,
//! datetime and duration, `&&`/`||`/`if` with sides that fail), a random hierarchy
//! of Cedar-format entities across three files, requests of any principal, action and
//! resource, and a live change; it compares the decision, the deciding policies and
//! the failing policies (with their messages) against `cedar_policy::Authorizer`.
//! It runs from a fixed seed (`PROPTEST_SEED=N` explores others); CI runs
//! `VAKT_EQUIVALENCE_CASES` cases, 300 by default. A longer run:
//!
//! ```sh
//! VAKT_EQUIVALENCE_CASES=100000 cargo test --release --test it engine_equivalence::generated
//! ```

use vakt::decision::reference::Reference;
use vakt::decision::{decide, Query, RawRequest};
use vakt::rules::snapshot::{Snapshot, Sources};

#[test]
fn the_engine_matches_cedar_on_the_shipped_policies() {
    let (checked, allowed, errors) = compare(Sources::embedded(), 3);
    // The comparison covered both outcomes in bulk.
    assert!(checked > 30_000, "{checked}");
    assert!(
        allowed > 50 && allowed < checked / 2,
        "{allowed} of {checked}"
    );
    assert_eq!(errors, 0);
}

#[test]
fn the_engine_matches_cedar_on_every_kind_of_expression_and_error() {
    let mut sources = Sources::embedded();
    sources.policies.push(vakt::problem::SourceFile {
        name: "exotic.cedar".into(),
        text: include_str!("../data/exotic.cedar").into(),
    });
    let (checked, allowed, errors) = compare(sources, 7);
    assert!(checked > 5_000, "{checked}");
    assert!(allowed > 10, "{allowed} of {checked}");
    // Unknown employees and system users, and the overflow, make policies fail.
    assert!(errors > 1_000, "{errors} of {checked}");
}

/// Links whose role is unknown (an access entry without `role`, as `vakt altinn
/// sync` writes them): the engine and Cedar agree on every combination, and on
/// the two that show what such a link means: its packages count (the accountant
/// acts), and it is no auditor basis (the auditor, allowed with the role known,
/// is denied by rule 8).
#[test]
fn the_engine_matches_cedar_on_links_whose_role_is_unknown() {
    let mut sources = Sources::embedded();
    let mut stripped = 0;
    for f in &mut sources.data {
        for role in [
            "urn:altinn:external-role:ccr:revisor",
            "urn:altinn:external-role:ccr:regnskapsforer",
        ] {
            let from = format!("- role: {role}\n            packages:");
            stripped += f.text.matches(&from).count();
            f.text = f.text.replace(&from, "- packages:");
        }
    }
    assert!(stripped >= 3, "{stripped}");
    let snap = Snapshot::build(&sources).unwrap();
    let ask = |e: &str, s: &str, c: &str, p: &str| {
        let raw = RawRequest {
            employee_id: e.into(),
            system_user_id: s.into(),
            client_org_number: c.into(),
            access_package: p.into(),
            action: String::new(),
            context: None,
        };
        let q = Query::check(&snap, raw, "").unwrap();
        let ours = decide(&snap, &q);
        let cedar = Reference::new(&snap.world).decide(&snap, &q);
        assert_eq!(ours.allowed, cedar.allowed, "{e} {s} {c} {p}");
        assert_eq!(ours.reasons, cedar.reasons, "{e} {s} {c} {p}");
        ours
    };
    let regnskap = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet";
    let revisor = "urn:altinn:accesspackage:ansvarlig-revisor";
    assert!(ask("magnus", "rr-regnskap", "310021210", regnskap).allowed);
    let denied = ask("randi", "rr-revisjon", "310022225", revisor);
    assert!(!denied.allowed);
    let ids: Vec<&str> = denied
        .reasons
        .iter()
        .map(|r| r.policy_id.as_str())
        .collect();
    assert_eq!(ids, ["auditor-separation-of-duties"]);
    // With the role known the same request is allowed: the deny is the role's.
    let known = Snapshot::build(&Sources::embedded()).unwrap();
    let raw = RawRequest {
        employee_id: "randi".into(),
        system_user_id: "rr-revisjon".into(),
        client_org_number: "310022225".into(),
        access_package: revisor.into(),
        action: String::new(),
        context: None,
    };
    assert!(decide(&known, &Query::check(&known, raw, "").unwrap()).allowed);
    let (checked, allowed, errors) = compare(sources, 3);
    assert!(checked > 30_000, "{checked}");
    assert!(allowed > 50, "{allowed} of {checked}");
    assert_eq!(errors, 0);
}

/// Decides every combination (every context on one in `every` of them) with both
/// engines; returns how many were checked, allowed, and had a failed policy.
fn compare(sources: Sources, every: usize) -> (usize, usize, usize) {
    let snap = Snapshot::build(&sources).unwrap();
    let reference = Reference::new(&snap.world);
    let employees = [
        "kari",
        "ola",
        "nina",
        "per",
        "tk-amelding-batch",
        "randi",
        "magnus",
        "eva",
        "jonas",
        "lise",
        "siri",
        "fi-sap-batch",
        "ingrid",
        "nobody",
    ];
    let system_users = [
        "tk-regnskap",
        "tk-sykefravaer",
        "tk-regnskap-syk",
        "tk-gammel",
        "rr-regnskap",
        "rr-revisjon",
        "rr-aordning",
        "ed-forretningsforer",
        "ed-regnskap",
        "nm-egen",
        "fi-sap",
        "ok-egen",
        "ok-underenheter",
        "ok-samlet",
        "missing",
    ];
    let orgs: Vec<String> = vakt::rules::embedded::WORLD
        .iter()
        .flat_map(|(_, text)| text.lines())
        .filter_map(|l| {
            l.trim()
                .strip_prefix("- orgNumber: \"")
                .map(|r| r[..9].to_owned())
        })
        .chain(["310030309".to_owned()]) // valid, but not in the world
        .collect();
    assert!(orgs.len() >= 25);
    let packages = [
        "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet",
        "urn:altinn:accesspackage:ansvarlig-revisor",
        "urn:altinn:accesspackage:sykefravaer",
        "urn:altinn:accesspackage:a-ordning",
        "urn:altinn:accesspackage:forretningsforer-eiendom",
        "urn:altinn:accesspackage:merverdiavgift",
    ];
    let contexts = [
        None,
        Some(serde_json::json!({"authenticated": false})),
        Some(serde_json::json!({"mfa": true})),
    ];
    let (mut checked, mut allowed, mut errors) = (0, 0, 0);
    for e in employees {
        for s in system_users {
            for (i, c) in orgs.iter().enumerate() {
                for (j, p) in packages.iter().enumerate() {
                    // Every context on some of the combinations keeps the run short.
                    let ctxs: &[Option<serde_json::Value>] = if (i + j) % every == 0 {
                        &contexts
                    } else {
                        &contexts[..1]
                    };
                    for ctx in ctxs {
                        let raw = RawRequest {
                            employee_id: e.into(),
                            system_user_id: s.into(),
                            client_org_number: c.clone(),
                            access_package: (*p).into(),
                            action: String::new(),
                            context: ctx.as_ref().and_then(|v| v.as_object().cloned()),
                        };
                        let q = Query::check(&snap, raw, "").unwrap();
                        let ours = decide(&snap, &q);
                        let cedar = reference.decide(&snap, &q);
                        assert_eq!(ours.allowed, cedar.allowed, "{e} {s} {c} {p} {ctx:?}");
                        assert_eq!(ours.reasons, cedar.reasons, "{e} {s} {c} {p} {ctx:?}");
                        checked += 1;
                        allowed += usize::from(ours.allowed);
                        errors += usize::from(
                            ours.reasons
                                .iter()
                                .any(|r| r.message.contains("could not be evaluated")),
                        );
                    }
                }
            }
        }
    }
    (checked, allowed, errors)
}

// ---------------------------------------------------------------------------
// An extended schema with entities in Cedar's format across files.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use std::str::FromStr;
use vakt::problem::SourceFile;
use vakt::rules::snapshot::DataVersion;
use vakt::world::{Change, OrgNo};

/// A security team's own types: portfolios and projects, whose parents may be
/// Vakt's records; with tags and extension-typed attributes. With `actions`, also
/// an action and an action group of its own (then the shipped policies, which
/// apply to every action, do not validate: the generated comparison uses none).
fn sec_schema(actions: bool) -> String {
    let types = r#"
  entity Portfolio in [Vakt::Organization, Vakt::Team, Vakt::Employee, Portfolio] {
    label: String,
    owner?: Vakt::Organization,
  } tags String;
  entity Project in [Vakt::Organization, Vakt::Team, Portfolio, Project] {
    name: String,
    budget?: Long,
    addr?: ipaddr,
    rate?: decimal,
    start?: datetime,
    lead?: Vakt::Employee,
  } tags Long;
"#;
    let actions = if actions {
        r#"
  action audit;
  action review in [audit] appliesTo {
    principal: [Vakt::Employee, Project],
    resource: [Project, Portfolio],
  };
"#
    } else {
        ""
    };
    format!("namespace Sec {{{types}{actions}}}\n")
}

fn file(name: &str, text: impl Into<String>) -> SourceFile {
    SourceFile {
        name: name.into(),
        text: text.into(),
    }
}

/// The example world with the extended schema, `context.project` declared, the
/// policy of the issue, and `data` as extra data files.
fn extended(data: &[(&str, serde_json::Value)]) -> Sources {
    let mut src = Sources::embedded();
    for f in &mut src.schema {
        assert!(f.text.contains("mfa?: Bool,"));
        f.text = f
            .text
            .replace("mfa?: Bool,", "mfa?: Bool,\n    project?: Sec::Project,");
    }
    src.schema.push(file("sec.cedarschema", sec_schema(false)));
    src.policies.push(file(
        "sec.cedar",
        r#"@id("sec-project-client")
forbid (principal, action, resource)
when { context has project && context.project in context.client };
"#,
    ));
    for (name, json) in data {
        src.data.push(file(name, json.to_string()));
    }
    src
}

fn cedar_ent(ty: &str, id: &str) -> serde_json::Value {
    serde_json::json!({"type": ty, "id": id})
}

/// An entity in Cedar's JSON format.
fn cedar_entity(
    ty: &str,
    id: &str,
    attrs: serde_json::Value,
    parents: &[(&str, &str)],
) -> serde_json::Value {
    serde_json::json!({
        "uid": cedar_ent(ty, id),
        "attrs": attrs,
        "parents": parents.iter().map(|(t, i)| cedar_ent(t, i)).collect::<Vec<_>>(),
    })
}

const NORDLYS: &str = "310005053";
const NORDLYS_TROMSO: &str = "310006068";
const FJORDKRAFT: &str = "310007072";

/// Three files: `apollo` sits under an operational unit of Nordlys (a Vakt
/// record, whose parent is Nordlys); `hermes` under portfolio `north` (another
/// file), under portfolio `group` (a third file), under Nordlys; `zeus` under an
/// unrelated organisation.
fn project_files(group_parent: &str) -> Vec<(&'static str, serde_json::Value)> {
    let org = "Vakt::Organization";
    vec![
        (
            "projects.json",
            serde_json::json!([
                cedar_entity(
                    "Sec::Project",
                    "apollo",
                    serde_json::json!({"name": "Apollo"}),
                    &[(org, NORDLYS_TROMSO)]
                ),
                cedar_entity(
                    "Sec::Project",
                    "hermes",
                    serde_json::json!({"name": "Hermes"}),
                    &[("Sec::Portfolio", "north")]
                ),
                cedar_entity(
                    "Sec::Project",
                    "zeus",
                    serde_json::json!({"name": "Zeus"}),
                    &[(org, "310001015")]
                ),
            ]),
        ),
        (
            "portfolios.json",
            serde_json::json!([cedar_entity(
                "Sec::Portfolio",
                "north",
                serde_json::json!({"label": "North"}),
                &[("Sec::Portfolio", "group")]
            )]),
        ),
        (
            "groups.json",
            serde_json::json!([cedar_entity(
                "Sec::Portfolio",
                "group",
                serde_json::json!({"label": "Group"}),
                &[(org, group_parent)]
            )]),
        ),
    ]
}

/// Nordlys's request with `project` in the context, decided by both engines, which
/// must agree on the decision and every reason.
fn decide_both(snap: &Snapshot, raw: &RawRequest, project: Option<&str>) -> bool {
    let mut raw = raw.clone();
    if let Some(p) = project {
        raw.context = Some(
            serde_json::json!({"project": {"__entity": cedar_ent("Sec::Project", p)}})
                .as_object()
                .cloned()
                .unwrap(),
        );
    }
    let q = Query::check(snap, raw.clone(), "").unwrap();
    let ours = decide(snap, &q);
    let cedar = Reference::new(&snap.world).decide(snap, &q);
    assert_eq!(ours.allowed, cedar.allowed, "{raw:?}");
    assert_eq!(ours.reasons, cedar.reasons, "{raw:?}");
    ours.allowed
}

/// A request for Nordlys as client that the shipped policies allow.
fn allowed_for_nordlys(snap: &Snapshot) -> RawRequest {
    let packages = [
        "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet",
        "urn:altinn:accesspackage:ansvarlig-revisor",
        "urn:altinn:accesspackage:sykefravaer",
        "urn:altinn:accesspackage:a-ordning",
        "urn:altinn:accesspackage:merverdiavgift",
    ];
    for e in ["siri", "kari", "randi", "eva"] {
        for s in ["nm-egen", "tk-regnskap", "rr-regnskap", "ed-regnskap"] {
            for p in packages {
                let raw = RawRequest {
                    employee_id: e.into(),
                    system_user_id: s.into(),
                    client_org_number: NORDLYS.into(),
                    access_package: p.into(),
                    action: String::new(),
                    context: None,
                };
                let q = Query::check(snap, raw.clone(), "").unwrap();
                if decide(snap, &q).allowed {
                    return raw;
                }
            }
        }
    }
    panic!("no request for Nordlys is allowed in the example world");
}

#[test]
fn in_reaches_ancestors_across_files_and_through_vakts_records() {
    let snap = Snapshot::build(&extended(&project_files(NORDLYS))).unwrap();
    let raw = allowed_for_nordlys(&snap);
    // Allowed without a project, and with a project outside Nordlys.
    assert!(decide_both(&snap, &raw, None));
    assert!(decide_both(&snap, &raw, Some("zeus")));
    // apollo is in Nordlys through the unit's parent, a Vakt record; hermes through
    // two other files. Cedar applies the forbid to both, and so must Vakt.
    assert!(!decide_both(&snap, &raw, Some("apollo")));
    assert!(!decide_both(&snap, &raw, Some("hermes")));

    // A live change to a Vakt record: the unit moves to Fjordkraft. apollo is no
    // longer under Nordlys; the change is seen without reloading the entities.
    let unit = OrgNo::parse(NORDLYS_TROMSO).unwrap();
    let mut moved = snap.world.organization(unit).unwrap().clone();
    moved.parent_org_number = Some(OrgNo::parse(FJORDKRAFT).unwrap());
    let data = DataVersion {
        sequence: 2,
        in_flight: std::sync::Arc::new([]),
        identity: "re-parented".into(),
    };
    let changed = snap
        .apply([Change::Organization(unit, Some(moved))], data.clone())
        .unwrap();
    assert!(decide_both(&changed, &raw, Some("apollo")));
    assert!(!decide_both(&changed, &raw, Some("hermes")));
    // And back.
    let back = snap.world.organization(unit).unwrap().clone();
    let restored = changed
        .apply([Change::Organization(unit, Some(back))], data.clone())
        .unwrap();
    assert!(!decide_both(&restored, &raw, Some("apollo")));

    // A live change to a Cedar-format file: `group` moves out of Nordlys, so
    // hermes leaves it (read whole, as files of Cedar entities are).
    let regrouped = Snapshot::build(&extended(&project_files("310001015"))).unwrap();
    assert!(decide_both(&regrouped, &raw, Some("hermes")));
    assert!(!decide_both(&regrouped, &raw, Some("apollo")));
    // The same through the world's own API (how a database source replaces them).
    let json: Vec<(usize, serde_json::Value)> = project_files("310001015")
        .into_iter()
        .map(|(_, v)| v)
        .enumerate()
        .collect();
    let world = snap
        .world
        .with_cedar_entities(json, &schema_of(&extended(&[])))
        .unwrap();
    let replaced = snap.with_world(world, data);
    assert!(decide_both(&replaced, &raw, Some("hermes")));
}

/// The schema of `src`, parsed as Vakt parses it.
fn schema_of(src: &Sources) -> cedar_policy::Schema {
    let fragments = src.schema.iter().map(|f| {
        cedar_policy::SchemaFragment::from_cedarschema_str(&f.text)
            .unwrap()
            .0
    });
    cedar_policy::Schema::from_schema_fragments(fragments).unwrap()
}

#[test]
fn a_cycle_or_a_conflicting_duplicate_across_files_is_refused() {
    let org = "Vakt::Organization";
    let a = |parent: &str| {
        serde_json::json!([cedar_entity(
            "Sec::Portfolio",
            "a",
            serde_json::json!({"label": "A"}),
            &[("Sec::Portfolio", parent)]
        )])
    };
    let b = serde_json::json!([cedar_entity(
        "Sec::Portfolio",
        "b",
        serde_json::json!({"label": "B"}),
        &[("Sec::Portfolio", "a")]
    )]);
    // Each file alone is fine; together their parents form a cycle, which Cedar
    // refuses in one entity store.
    let err = Snapshot::build(&extended(&[("a.json", a("b")), ("b.json", b.clone())]))
        .err()
        .expect("a cycle across files is refused");
    let text = err.to_string();
    assert!(text.contains("is its own ancestor"), "{text}");
    assert!(text.contains("a.json") || text.contains("b.json"), "{text}");
    // Without the cycle it loads.
    assert!(Snapshot::build(&extended(&[("a.json", a("c")), ("b.json", b)])).is_ok());
    // The same entity twice, with other parents: which one counts would depend on
    // the order of the files.
    let twice = |parent: &str| {
        serde_json::json!([cedar_entity(
            "Sec::Portfolio",
            "x",
            serde_json::json!({"label": "X"}),
            &[(org, parent)]
        )])
    };
    let err = Snapshot::build(&extended(&[
        ("x1.json", twice(NORDLYS)),
        ("x2.json", twice(FJORDKRAFT)),
    ]))
    .err()
    .expect("a conflicting duplicate is refused");
    assert!(err.to_string().contains("given twice"), "{err}");
    // Given twice alike, it is the same entity.
    assert!(Snapshot::build(&extended(&[
        ("x1.json", twice(NORDLYS)),
        ("x2.json", twice(NORDLYS)),
    ]))
    .is_ok());
}

#[test]
fn a_live_change_cannot_put_units_two_levels_deep() {
    // Fjordkraft gets a parent while Nordlys's unit stays under Nordlys: fine.
    // Nordlys itself getting a parent would put its unit two levels deep, where the
    // unit's `in` would reach an organisation it does not inherit from.
    let snap = Snapshot::build(&Sources::embedded()).unwrap();
    let nordlys = OrgNo::parse(NORDLYS).unwrap();
    let mut o = snap.world.organization(nordlys).unwrap().clone();
    o.parent_org_number = Some(OrgNo::parse(FJORDKRAFT).unwrap());
    let data = DataVersion {
        sequence: 2,
        in_flight: std::sync::Arc::new([]),
        identity: "deep".into(),
    };
    let err = snap
        .apply([Change::Organization(nordlys, Some(o))], data)
        .err()
        .expect("a unit two levels deep is refused");
    assert!(
        err.iter()
            .any(|p| p.message.contains("units are one level deep")),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------
// Generated policies, hierarchies and requests.

/// Vakt's records a generated entity may sit under: organisations (units and legal
/// entities), teams and employees of the example world.
const CORE: &[(&str, &str)] = &[
    ("Vakt::Organization", NORDLYS),
    ("Vakt::Organization", NORDLYS_TROMSO),
    ("Vakt::Organization", FJORDKRAFT),
    ("Vakt::Organization", "310010103"),
    ("Vakt::Organization", "310011118"),
    ("Vakt::Organization", "310001015"),
    ("Vakt::Team", "tk-nord"),
    ("Vakt::Team", "tk-regnskap-team"),
    ("Vakt::Team", "nm-okonomi"),
    ("Vakt::Employee", "nina"),
    ("Vakt::Employee", "siri"),
];
const PORTFOLIOS: usize = 4;
const PROJECTS: usize = 6;

/// Candidate parent `i`: Vakt's records first, then portfolios, then projects; an
/// entity takes parents only from before itself, so the hierarchy is a DAG.
fn node(i: usize) -> (String, String) {
    if i < CORE.len() {
        (CORE[i].0.into(), CORE[i].1.into())
    } else if i < CORE.len() + PORTFOLIOS {
        ("Sec::Portfolio".into(), format!("f{}", i - CORE.len()))
    } else {
        (
            "Sec::Project".into(),
            format!("p{}", i - CORE.len() - PORTFOLIOS),
        )
    }
}

/// One generated entity: its file (of three), parents, attributes and tags.
#[derive(Debug, Clone)]
struct GenEntity {
    file: usize,
    parents: Vec<usize>,
    text: &'static str,
    number: i64,
    extras: bool,
}

/// The generated entities as three files in Cedar's JSON format.
fn gen_files(ents: &[GenEntity]) -> Vec<(usize, serde_json::Value)> {
    let mut files = vec![Vec::new(), Vec::new(), Vec::new()];
    for (k, e) in ents.iter().enumerate() {
        let me = CORE.len() + k;
        let (ty, id) = node(me);
        let project = ty == "Sec::Project";
        let parents: Vec<serde_json::Value> = e
            .parents
            .iter()
            .filter(|&&p| p < me)
            .map(|&p| node(p))
            // A project's parents are never employees.
            .filter(|(t, _)| !(project && t == "Vakt::Employee"))
            .map(|(t, i)| cedar_ent(&t, &i))
            .collect();
        let (attrs, tags) = if project {
            let mut a = serde_json::json!({"name": e.text});
            if e.extras {
                a["budget"] = e.number.into();
                let k = e.number.rem_euclid(12) as usize;
                let addr = ["10.1.2.3", "127.0.0.1", "192.168.0.0/16", "::1"][k % 4];
                let rate = ["0.25", "1.5", "-3.0001"][k % 3];
                let start = [
                    "2024-01-01",
                    "2024-06-01T12:30:00Z",
                    "1999-12-31T23:59:59.999+0100",
                ][k % 3];
                a["addr"] = serde_json::json!({"__extn": {"fn": "ip", "arg": addr}});
                a["rate"] = serde_json::json!({"__extn": {"fn": "decimal", "arg": rate}});
                a["start"] = serde_json::json!({"__extn": {"fn": "datetime", "arg": start}});
                let lead = ["nina", "siri", "nobody"][k % 3];
                a["lead"] = serde_json::json!({"__entity": cedar_ent("Vakt::Employee", lead)});
            }
            let tags = if e.extras {
                serde_json::json!({"risk": e.number, "level": 3})
            } else {
                serde_json::json!({})
            };
            (a, tags)
        } else {
            let mut a = serde_json::json!({"label": e.text});
            if e.extras {
                a["owner"] =
                    serde_json::json!({"__entity": cedar_ent("Vakt::Organization", NORDLYS)});
            }
            let tags = if e.extras {
                serde_json::json!({"tier": e.text, "region": "north"})
            } else {
                serde_json::json!({})
            };
            (a, tags)
        };
        files[e.file].push(serde_json::json!({
            "uid": cedar_ent(&ty, &id),
            "attrs": attrs,
            "parents": parents,
            "tags": tags,
        }));
    }
    files
        .into_iter()
        .enumerate()
        .map(|(i, f)| (i, serde_json::Value::Array(f)))
        .collect()
}

fn gen_entity() -> impl Strategy<Value = GenEntity> {
    let n = CORE.len() + PORTFOLIOS + PROJECTS;
    (
        0..3usize,
        prop::collection::vec(0..n, 0..4),
        prop::sample::select(vec!["Apollo", "apollo", "A*b", "", "north"]),
        prop::sample::select(vec![0i64, 1, 7, -2, i64::MAX, i64::MIN]),
        any::<bool>(),
    )
        .prop_map(|(file, parents, text, number, extras)| GenEntity {
            file,
            parents,
            text,
            number,
            extras,
        })
}

fn pick(xs: &[&'static str]) -> BoxedStrategy<String> {
    prop::sample::select(xs.to_vec())
        .prop_map(str::to_owned)
        .boxed()
}

/// Entity literals of every kind, existing or not.
const ENT_LITERALS: &[&str] = &[
    r#"Sec::Project::"p0""#,
    r#"Sec::Project::"p3""#,
    r#"Sec::Project::"p5""#,
    r#"Sec::Project::"ghost""#,
    r#"Sec::Portfolio::"f0""#,
    r#"Sec::Portfolio::"f2""#,
    r#"Vakt::Organization::"310005053""#,
    r#"Vakt::Organization::"310006068""#,
    r#"Vakt::Organization::"310010103""#,
    r#"Vakt::Organization::"310007072""#,
    r#"Vakt::Team::"tk-nord""#,
    r#"Vakt::Team::"nm-okonomi""#,
    r#"Vakt::Employee::"nina""#,
    r#"Vakt::Employee::"siri""#,
];

/// An expression that is usually an entity (sometimes not, or missing).
fn ent() -> BoxedStrategy<String> {
    prop_oneof![
        4 => pick(&["principal", "resource", "context.project", "context.client"]),
        4 => pick(ENT_LITERALS),
        2 => pick(&[
            "principal.lead",
            "resource.lead",
            "context.project.lead",
            "principal.owner",
            "resource.owner",
            "principal.organization",
            "context.n",
            "context.missing",
        ]),
    ]
    .boxed()
}

fn set() -> BoxedStrategy<String> {
    prop_oneof![
        pick(&[
            "principal.teams",
            "context.teams",
            "[]",
            "[1, 2]",
            "resource.accessPackages"
        ]),
        prop::collection::vec(ent(), 1..3).prop_map(|v| format!("[{}]", v.join(", "))),
    ]
    .boxed()
}

fn string() -> BoxedStrategy<String> {
    pick(&[
        "principal.name",
        "resource.name",
        "principal.label",
        "resource.label",
        "context.s",
        "context.project.name",
        r#"resource.getTag("tier")"#,
        r#""Apollo""#,
        r#""north""#,
        r#""""#,
    ])
}

fn long() -> BoxedStrategy<String> {
    let leaf = pick(&[
        "context.n",
        "principal.budget",
        "resource.budget",
        r#"principal.getTag("risk")"#,
        r#"context.project.getTag("level")"#,
        "0",
        "7",
        "9223372036854775807",
        "(-9223372036854775807 - 1)",
    ]);
    leaf.prop_recursive(2, 6, 2, |inner| {
        (
            inner.clone(),
            prop::sample::select(vec!["+", "-", "*"]),
            inner.clone(),
        )
            .prop_map(|(a, op, b)| format!("({a} {op} {b})"))
            .boxed()
    })
    .boxed()
}

/// Literal arguments for the extension constructors: valid and invalid.
fn ext_arg() -> BoxedStrategy<String> {
    prop_oneof![
        pick(&[
            r#""10.1.2.3""#,
            r#""127.0.0.1""#,
            r#""10.0.0.0/8""#,
            r#""::1""#,
            r#""224.0.0.1""#,
            r#""1.5""#,
            r#""0.25""#,
            r#""2024-01-01""#,
            r#""2024-06-01T12:30:00Z""#,
            r#""1d2h""#,
            r#""-3h""#,
            r#""nonsense""#,
        ]),
        pick(&["context.s", "context.addr", "context.n"]),
    ]
    .boxed()
}

/// The operators on Cedar's extension types, as boolean atoms.
fn extension() -> BoxedStrategy<String> {
    prop_oneof![
        (ext_arg(), ext_arg()).prop_map(|(a, b)| format!("ip({a}).isInRange(ip({b}))")),
        (
            ext_arg(),
            pick(&["isIpv4", "isIpv6", "isLoopback", "isMulticast"])
        )
            .prop_map(|(a, m)| format!("ip({a}).{m}()")),
        pick(&[
            r#"principal.addr.isInRange(ip("10.0.0.0/8"))"#,
            r#"resource.addr.isLoopback()"#,
        ]),
        (
            ext_arg(),
            pick(&[
                "lessThan",
                "lessThanOrEqual",
                "greaterThan",
                "greaterThanOrEqual"
            ]),
            ext_arg()
        )
            .prop_map(|(a, m, b)| format!("decimal({a}).{m}(decimal({b}))")),
        pick(&[
            r#"principal.rate.greaterThan(decimal("0.5"))"#,
            r#"resource.rate == decimal("1.5")"#,
        ]),
        (ext_arg(), pick(&["<", "<=", ">", ">=", "=="]), ext_arg())
            .prop_map(|(a, op, b)| format!("datetime({a}) {op} datetime({b})")),
        (ext_arg(), ext_arg()).prop_map(|(a, b)| format!(
            r#"datetime({a}).offset(duration({b})) > datetime("2024-01-01")"#
        )),
        (ext_arg(), long()).prop_map(|(a, n)| format!("duration({a}).toHours() > {n}")),
        pick(&[
            r#"principal.start.toDate() == datetime("2024-01-01")"#,
            r#"resource.start.durationSince(datetime("2020-01-01")) > duration("1h")"#,
            r#"principal.start.toTime() < duration("1d")"#,
            r#"resource.start.offset(duration("-1d")).toDate() <= datetime("2024-06-01")"#,
            r#"duration("90m").toMinutes() == 90"#,
            r#"datetime("2024-01-01").toMilliseconds() > 0"#,
        ]),
    ]
    .boxed()
}

/// A boolean atom: every operator, with operands that are sometimes of the wrong
/// type or missing, so policies fail to evaluate too.
fn atom() -> BoxedStrategy<String> {
    let entity_types = pick(&[
        "Sec::Project",
        "Sec::Portfolio",
        "Vakt::Employee",
        "Vakt::Organization",
    ]);
    let attrs = pick(&[
        "name",
        "lead",
        "budget",
        "label",
        "owner",
        "teams",
        "project",
        "missing",
        "n",
        r#""with space""#,
    ]);
    prop_oneof![
        6 => (ent(), ent()).prop_map(|(a, b)| format!("{a} in {b}")),
        4 => (ent(), set()).prop_map(|(a, b)| format!("{a} in {b}")),
        3 => (ent(), entity_types.clone()).prop_map(|(a, t)| format!("{a} is {t}")),
        2 => (ent(), entity_types, ent()).prop_map(|(a, t, b)| format!("{a} is {t} in {b}")),
        3 => (pick(&["principal", "resource", "context", "context.project", "principal.lead"]), attrs.clone())
            .prop_map(|(a, n)| format!("{a} has {n}")),
        1 => pick(&["context has project.name", "context has project.lead", "principal has lead.name"]),
        3 => (string(), pick(&["*", "A*", "*o*", "Apollo", r"A\*b", "", "**th"]))
            .prop_map(|(s, p)| format!("{s} like \"{p}\"")),
        2 => (ent(), string()).prop_map(|(e, t)| format!("{e}.hasTag({t})")),
        2 => (ent(), pick(&[r#""risk""#, r#""level""#, r#""tier""#, r#""none""#]), long())
            .prop_map(|(e, t, n)| format!("{e}.getTag({t}) == {n}")),
        1 => (ent(), string()).prop_map(|(e, t)| format!("{e}.getTag(\"tier\") == {t}")),
        5 => extension(),
        3 => (long(), pick(&["<", "<=", ">", ">="]), long()).prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        3 => (prop_oneof![ent(), string(), long()], pick(&["==", "!="]), prop_oneof![ent(), string(), long()])
            .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        2 => (set(), ent()).prop_map(|(s, e)| format!("{s}.contains({e})")),
        2 => (set(), pick(&["containsAll", "containsAny"]), set()).prop_map(|(a, m, b)| format!("{a}.{m}({b})")),
        1 => set().prop_map(|s| format!("{s}.isEmpty()")),
        1 => pick(&["true", "false", "context.flag", "context.n"]),
    ]
    .boxed()
}

/// A condition: atoms joined by `&&`, `||`, `!` and `if`, whose sides may fail (Cedar
/// short-circuits, so which side fails matters).
fn condition() -> BoxedStrategy<String> {
    atom()
        .prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} && {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} || {b})")),
                inner.clone().prop_map(|a| format!("!({a})")),
                (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(a, b, c)| format!("(if {a} then {b} else {c})")),
            ]
            .boxed()
        })
        .boxed()
}

fn scope_entity(var: &'static str) -> BoxedStrategy<String> {
    let lit = pick(ENT_LITERALS);
    prop_oneof![
        3 => Just(var.to_owned()),
        1 => lit.clone().prop_map(move |e| format!("{var} == {e}")),
        2 => lit.clone().prop_map(move |e| format!("{var} in {e}")),
        1 => pick(&["Sec::Project", "Vakt::Employee", "Sec::Portfolio"]).prop_map(move |t| format!("{var} is {t}")),
        1 => (pick(&["Sec::Project", "Vakt::Employee"]), lit).prop_map(move |(t, e)| format!("{var} is {t} in {e}")),
    ]
    .boxed()
}

fn policy() -> BoxedStrategy<String> {
    let action = pick(&[
        "action",
        "action",
        r#"action == Sec::Action::"review""#,
        r#"action in [Sec::Action::"audit"]"#,
        r#"action == Vakt::Action::"useSystemUser""#,
        r#"action in [Sec::Action::"review", Vakt::Action::"useSystemUser"]"#,
    ]);
    (
        pick(&["permit", "permit", "forbid"]),
        scope_entity("principal"),
        action,
        scope_entity("resource"),
        prop::collection::vec((pick(&["when", "when", "unless"]), condition()), 0..3),
    )
        .prop_map(|(effect, p, a, r, conds)| {
            let body: Vec<String> = conds
                .into_iter()
                .map(|(k, c)| format!("{k} {{ {c} }}"))
                .collect();
            format!("{effect} ({p}, {a}, {r}) {};", body.join(" "))
        })
        .boxed()
}

/// One request's principal, action, resource (by name) and context.
#[derive(Debug, Clone)]
struct GenRequest {
    principal: (&'static str, &'static str),
    action: (&'static str, &'static str),
    resource: (&'static str, &'static str),
    context: serde_json::Value,
}

const PRINCIPALS: &[(&str, &str)] = &[
    ("Vakt::Employee", "nina"),
    ("Vakt::Employee", "siri"),
    ("Vakt::Employee", "nobody"),
    ("Sec::Project", "p0"),
    ("Sec::Project", "p2"),
    ("Sec::Project", "p4"),
    ("Sec::Project", "p5"),
    ("Sec::Portfolio", "f1"),
    ("Sec::Portfolio", "f3"),
];
const RESOURCES: &[(&str, &str)] = &[
    ("Vakt::SystemUser", "nm-egen"),
    ("Vakt::SystemUser", "tk-regnskap"),
    ("Sec::Project", "p1"),
    ("Sec::Project", "p3"),
    ("Sec::Project", "p5"),
    ("Sec::Portfolio", "f0"),
    ("Sec::Portfolio", "f2"),
    ("Vakt::Organization", NORDLYS_TROMSO),
];
const ACTIONS: &[(&str, &str)] = &[
    ("Vakt::Action", "useSystemUser"),
    ("Sec::Action", "review"),
    ("Sec::Action", "audit"),
    ("Vakt::Action", "unknown"),
];

fn gen_request() -> impl Strategy<Value = GenRequest> {
    let ent_json = |xs: &'static [(&'static str, &'static str)]| {
        prop::sample::select(xs.to_vec())
            .prop_map(|(t, i)| serde_json::json!({"__entity": cedar_ent(t, i)}))
    };
    let projects: &'static [(&'static str, &'static str)] = &[
        ("Sec::Project", "p0"),
        ("Sec::Project", "p1"),
        ("Sec::Project", "p3"),
        ("Sec::Project", "p5"),
        ("Sec::Project", "ghost"),
        ("Sec::Portfolio", "f1"),
    ];
    let clients: &'static [(&'static str, &'static str)] = &[
        ("Vakt::Organization", NORDLYS),
        ("Vakt::Organization", NORDLYS_TROMSO),
        ("Vakt::Organization", "310010103"),
        ("Vakt::Organization", FJORDKRAFT),
        ("Vakt::Team", "tk-nord"),
    ];
    let context = (
        prop::option::of(ent_json(projects)),
        prop::option::of(ent_json(clients)),
        prop::option::of(prop::sample::select(vec![0i64, 3, -1, i64::MAX])),
        prop::option::of(prop::sample::select(vec![
            "Apollo",
            "10.1.2.3",
            "1.5",
            "2024-01-01",
            "1h",
        ])),
        prop::option::of(any::<bool>()),
        any::<bool>(),
    )
        .prop_map(|(project, client, n, s, flag, teams)| {
            let mut c = serde_json::Map::new();
            if let Some(p) = project {
                c.insert("project".into(), p);
            }
            if let Some(cl) = client {
                c.insert("client".into(), cl);
            }
            if let Some(n) = n {
                c.insert("n".into(), n.into());
            }
            if let Some(s) = s {
                c.insert("s".into(), s.into());
                c.insert("addr".into(), s.into());
            }
            if let Some(f) = flag {
                c.insert("flag".into(), f.into());
            }
            if teams {
                c.insert(
                    "teams".into(),
                    serde_json::json!([
                        {"__entity": cedar_ent("Vakt::Team", "tk-nord")},
                        {"__entity": cedar_ent("Vakt::Team", "nm-okonomi")},
                    ]),
                );
            }
            serde_json::Value::Object(c)
        });
    (
        prop::sample::select(PRINCIPALS.to_vec()),
        prop::sample::select(ACTIONS.to_vec()),
        prop::sample::select(RESOURCES.to_vec()),
        context,
    )
        .prop_map(|(principal, action, resource, context)| GenRequest {
            principal,
            action,
            resource,
            context,
        })
}

/// A live change after the first comparison.
#[derive(Debug, Clone)]
enum LiveChange {
    /// An operational unit moves to another legal entity.
    Unit(&'static str, &'static str),
    /// An employee's teams are replaced.
    Teams(&'static str, &'static [&'static str]),
    /// A Cedar-format entity (by index) gets new parents.
    Reparent(usize, Vec<usize>),
}

fn live_change() -> impl Strategy<Value = LiveChange> {
    prop_oneof![
        prop::sample::select(vec![
            (NORDLYS_TROMSO, FJORDKRAFT),
            (NORDLYS_TROMSO, "310010103"),
            ("310011118", NORDLYS),
        ])
        .prop_map(|(u, p)| LiveChange::Unit(u, p)),
        prop::sample::select(vec![
            ("nina", &["tk-regnskap-team"][..]),
            ("siri", &["tk-nord", "nm-okonomi"][..]),
        ])
        .prop_map(|(e, t)| LiveChange::Teams(e, t)),
        (
            0..PORTFOLIOS + PROJECTS,
            prop::collection::vec(0..CORE.len() + PORTFOLIOS + PROJECTS, 0..3)
        )
            .prop_map(|(k, ps)| LiveChange::Reparent(k, ps)),
    ]
}

#[derive(Debug, Clone)]
struct GenCase {
    entities: Vec<GenEntity>,
    policies: Vec<String>,
    requests: Vec<GenRequest>,
    change: LiveChange,
}

fn gen_case() -> impl Strategy<Value = GenCase> {
    (
        prop::collection::vec(gen_entity(), PORTFOLIOS + PROJECTS),
        prop::collection::vec(policy(), 1..5),
        prop::collection::vec(gen_request(), 6),
        live_change(),
    )
        .prop_map(|(entities, policies, requests, change)| GenCase {
            entities,
            policies,
            requests,
            change,
        })
}

fn uid(ty: &str, id: &str) -> cedar_policy::EntityUid {
    cedar_policy::EntityUid::from_type_name_and_id(
        cedar_policy::EntityTypeName::from_str(ty).unwrap(),
        cedar_policy::EntityId::new(id),
    )
}

/// What the generated comparison saw, for its vacuity checks.
#[derive(Default, Debug)]
struct Seen {
    requests: usize,
    allowed: usize,
    forbidden: usize,
    errors: usize,
    /// Generated entities with ancestors beyond their own file (through other files
    /// or Vakt's records), as Cedar closes them over the whole world.
    beyond_file: usize,
    entities: usize,
}

/// Compares both engines on every request of `case` over `snap`'s world.
fn compare_generated(
    snap: &Snapshot,
    set: &cedar_policy::PolicySet,
    case: &GenCase,
    seen: &mut Seen,
) -> Result<(), TestCaseError> {
    let reference = Reference::new(&snap.world);
    let whole = cedar_policy::Entities::from_entities(
        vakt::decision::reference::cedar_entities(&snap.world)
            .into_iter()
            .map(cedar_policy::Entity::from),
        None,
    )
    .unwrap();
    for e in snap.world.cedar_entities() {
        let u = cedar_policy::EntityUid::from(e.uid().clone());
        let all = whole.ancestors(&u).map_or(0, Iterator::count);
        seen.beyond_file += usize::from(all > e.ancestors().count());
        seen.entities += 1;
    }
    for r in &case.requests {
        let context = cedar_policy::Context::from_json_value(r.context.clone(), None).unwrap();
        let (ours, cedar) = reference.evaluate_both(
            &snap.world,
            set,
            &uid(r.principal.0, r.principal.1),
            &uid(r.action.0, r.action.1),
            &uid(r.resource.0, r.resource.1),
            &context,
        );
        prop_assert_eq!(
            &ours,
            &cedar,
            "\npolicies:\n{}\nrequest: {:?}\n",
            set.to_string(),
            r
        );
        seen.requests += 1;
        seen.allowed += usize::from(cedar.allowed);
        seen.forbidden += usize::from(!cedar.allowed && !cedar.satisfied.is_empty());
        seen.errors += usize::from(!cedar.errors.is_empty());
    }
    Ok(())
}

/// The number of generated cases: `VAKT_EQUIVALENCE_CASES`, 300 by default.
fn generated_cases() -> u32 {
    std::env::var("VAKT_EQUIVALENCE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

#[test]
fn generated_policies_over_a_cross_file_hierarchy_match_cedar() {
    let mut src = Sources::embedded();
    src.schema.push(file("sec.cedarschema", sec_schema(true)));
    // The shipped policies apply to every action and would not validate for the
    // security team's action; the generated policies are what is compared.
    src.policies = vec![file(
        "none.cedar",
        "@id(\"none\")\nforbid (principal, action == Vakt::Action::\"useSystemUser\", resource) when { false };\n",
    )];
    let base = Snapshot::build(&src).unwrap();
    let schema = schema_of(&src);
    let seed: u64 = std::env::var("PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7661_6b74);
    let mut runner = TestRunner::new(Config {
        cases: generated_cases(),
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    });
    let seen = std::cell::RefCell::new(Seen::default());
    let data = DataVersion {
        sequence: 2,
        in_flight: std::sync::Arc::new([]),
        identity: "generated".into(),
    };
    runner
        .run(&gen_case(), |case| {
            let mut seen = seen.borrow_mut();
            let mut text = String::new();
            for (i, p) in case.policies.iter().enumerate() {
                text.push_str(&format!("@id(\"p{i}\")\n{p}\n"));
            }
            let set = match cedar_policy::PolicySet::from_str(&text) {
                Ok(s) => s,
                Err(e) => {
                    return Err(TestCaseError::fail(format!(
                        "the grammar wrote an unparsable policy: {e}\n{text}"
                    )))
                }
            };
            let world = base
                .world
                .with_cedar_entities(gen_files(&case.entities), &schema)
                .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            let snap = base.with_world(world, data.clone());
            compare_generated(&snap, &set, &case, &mut seen)?;
            // Then a live change, and the same requests again.
            let changed = match &case.change {
                LiveChange::Unit(unit, parent) => {
                    let n = OrgNo::parse(unit).unwrap();
                    let mut o = snap.world.organization(n).unwrap().clone();
                    o.parent_org_number = Some(OrgNo::parse(parent).unwrap());
                    snap.apply([Change::Organization(n, Some(o))], data.clone())
                        .unwrap()
                }
                LiveChange::Teams(e, teams) => {
                    let mut emp = snap.world.employee(e).unwrap().clone();
                    emp.teams = teams.iter().map(|&t| t.into()).collect();
                    snap.apply([Change::Employee(emp.id.clone(), Some(emp))], data.clone())
                        .unwrap()
                }
                LiveChange::Reparent(k, parents) => {
                    let mut ents = case.entities.clone();
                    ents[*k].parents = parents.clone();
                    let world = snap
                        .world
                        .with_cedar_entities(gen_files(&ents), &schema)
                        .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                    snap.with_world(world, data.clone())
                }
            };
            compare_generated(&changed, &set, &case, &mut seen)
        })
        .unwrap();
    let seen = seen.into_inner();
    eprintln!("{seen:?}");
    // Every outcome was met, in bulk.
    let n = seen.requests;
    assert!(seen.allowed * 20 > n, "{seen:?}");
    assert!(seen.forbidden * 50 > n, "{seen:?}");
    // The hierarchies crossed files and Vakt's records in bulk.
    assert!(seen.beyond_file * 5 > seen.entities, "{seen:?}");
    assert!(seen.errors * 20 > n, "{seen:?}");
}
