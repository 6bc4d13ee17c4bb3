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
//! VAKT_EQUIVALENCE_CASES=100000 cargo test --release --test engine_equivalence generated
//! ```

use vakt::decide::{decide, Query, RawRequest};
use vakt::reference::Reference;
use vakt::snapshot::{Snapshot, Sources};

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
        text: include_str!("data/exotic.cedar").into(),
    });
    let (checked, allowed, errors) = compare(sources, 7);
    assert!(checked > 5_000, "{checked}");
    assert!(allowed > 10, "{allowed} of {checked}");
    // Unknown employees and system users, and the overflow, make policies fail.
    assert!(errors > 1_000, "{errors} of {checked}");
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
    let orgs: Vec<String> = vakt::embedded::WORLD
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
use vakt::snapshot::DataVersion;
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
