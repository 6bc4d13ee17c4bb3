//! The sync's pure part: records from Altinn's answers, the diff, the guard.

use super::*;
use crate::rules::snapshot::{Snapshot, Sources};

const REGNSKAP: &str = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet";
const SYK: &str = "urn:altinn:accesspackage:sykefravaer";
const ACCOUNTANT: &str = "urn:altinn:external-role:ccr:regnskapsforer";

fn party(n: &str, id: i64) -> PartyRead {
    PartyRead {
        org_number: n.into(),
        name: format!("Org {n}"),
        party_id: Some(id),
        party_uuid: Some(format!("00000000-0000-4000-8000-{id:012}")),
        ..PartyRead::default()
    }
}

fn agent(id: &str, clients: &[(&str, Option<&str>, &[&str])]) -> SystemUserRead {
    SystemUserRead {
        id: id.into(),
        integration_title: id.into(),
        system_id: "310001015_regnskapsys".into(),
        reportee_org_no: "310001015".into(),
        user_type: "agent".into(),
        external_ref: Some(id.into()),
        owner: Some(party("310001015", 1)),
        clients: clients
            .iter()
            .enumerate()
            .map(|(i, (n, role, p))| ClientRead {
                party: party(n, 10 + i as i64),
                client_id: None,
                access: vec![(
                    role.map(str::to_owned),
                    p.iter().map(|s| (*s).to_owned()).collect(),
                )],
            })
            .collect(),
        ..SystemUserRead::default()
    }
}

fn standard(id: &str, packages: &[&str]) -> SystemUserRead {
    SystemUserRead {
        id: id.into(),
        integration_title: id.into(),
        system_id: "310001015_regnskapsys".into(),
        reportee_org_no: "310001015".into(),
        user_type: "standard".into(),
        owner: Some(party("310001015", 1)),
        owner_packages: packages.iter().map(|s| (*s).to_owned()).collect(),
        ..SystemUserRead::default()
    }
}

/// The records pass the world's checks (as `vakt validate` would run them).
fn world_of(s: &Synced) -> World {
    let mut src = Sources::embedded();
    src.data.clear();
    Snapshot::build_with(&src, |b| {
        b.add_records(
            "sync",
            s.organizations.clone(),
            s.system_users.clone(),
            vec![],
            vec![],
        )
    })
    .unwrap_or_else(|p| panic!("{p}"))
    .world
}

#[test]
fn records_carry_clients_packages_and_unknown_roles() {
    let read = AltinnRead {
        system_users: vec![
            agent(
                "a",
                &[
                    ("310015156", Some(ACCOUNTANT), &[REGNSKAP]),
                    ("310017175", None, &[SYK]),
                ],
            ),
            standard("s", &[SYK]),
        ],
    };
    let s = records(&read, &BTreeSet::new());
    assert_eq!(s.organizations.len(), 3);
    assert_eq!(s.organizations[0].party_id, Some(PartyIdValue::Integer(1)));
    let a = &s.system_users[0];
    assert_eq!(a.clients.len(), 2);
    // authorizedparties names no role: the entry carries none (not an invented one).
    assert_eq!(a.clients[1].access[0].role, None);
    assert!(!a.clients[1].access[0].packages.is_empty());
    let pk: Vec<&str> = a
        .access_packages
        .iter()
        .flatten()
        .map(|p| p.urn.as_str())
        .collect();
    assert_eq!(pk, [REGNSKAP, SYK]);
    let w = world_of(&s);
    assert_eq!(w.counts().client_links, 2);
    // Organisations defined elsewhere are not written again.
    let elsewhere = ["310001015".to_owned()].into_iter().collect();
    assert_eq!(records(&read, &elsewhere).organizations.len(), 2);
}

#[test]
fn diff_sees_absence_links_and_packages() {
    let before = AltinnRead {
        system_users: vec![
            agent(
                "a",
                &[
                    ("310015156", Some(ACCOUNTANT), &[REGNSKAP]),
                    ("310017175", Some(ACCOUNTANT), &[REGNSKAP]),
                ],
            ),
            standard("gone", &[SYK]),
        ],
    };
    let after = AltinnRead {
        system_users: vec![
            agent(
                "a",
                &[
                    ("310015156", Some(ACCOUNTANT), &[REGNSKAP, SYK]),
                    ("310019194", Some(ACCOUNTANT), &[REGNSKAP]),
                ],
            ),
            standard("new", &[SYK]),
        ],
    };
    let b = records(&before, &BTreeSet::new());
    // The world read back gives the same view as the records written.
    let held_before = held_in_world(&world_of(&b));
    assert_eq!(held_before, held_in_records(&b.system_users));
    let d = diff(
        &held_before,
        &held_in_records(&records(&after, &BTreeSet::new()).system_users),
    );
    assert_eq!(d.system_users_added, ["new"]);
    assert_eq!(d.system_users_removed, ["gone"]);
    assert_eq!(d.links_added, [("a".to_owned(), "310019194".to_owned())]);
    assert_eq!(d.links_removed, [("a".to_owned(), "310017175".to_owned())]);
    assert!(d
        .packages_added
        .contains(&("a".into(), "310015156".into(), SYK.into())));
    assert!(d
        .packages_added
        .contains(&("a".into(), "".into(), SYK.into())));
    assert_eq!(d.links_before, 2);
    let text = d.render();
    assert!(text.contains("- system user gone\n"), "{text}");
    assert!(text.contains("+ link a -> 310019194\n"), "{text}");
    assert!(text.contains("+ package a -> 310015156: "), "{text}");
    assert!(diff(&held_before, &held_before).is_empty());
    assert_eq!(diff(&held_before, &held_before).render(), "no changes\n");
}

#[test]
fn guard_refuses_mass_removals() {
    let links: Vec<(&str, Option<&str>, &[&str])> = vec![
        ("310015156", Some(ACCOUNTANT), &[REGNSKAP]),
        ("310017175", Some(ACCOUNTANT), &[REGNSKAP]),
        ("310019194", Some(ACCOUNTANT), &[REGNSKAP]),
        ("310020206", Some(ACCOUNTANT), &[REGNSKAP]),
        ("310001015", Some(ACCOUNTANT), &[REGNSKAP]),
    ];
    let held = |n: usize| {
        held_in_records(
            &records(
                &AltinnRead {
                    system_users: vec![agent("a", &links[..n])],
                },
                &BTreeSet::new(),
            )
            .system_users,
        )
    };
    // One of five is 20 %: allowed; two of five is not.
    assert_eq!(guard(&diff(&held(5), &held(4)), 0.2), Ok(()));
    let e = guard(&diff(&held(5), &held(3)), 0.2).unwrap_err();
    assert_eq!((e.removed, e.held), (2, 5));
    assert!(e.to_string().contains("--confirm-removals"), "{e}");
    // Everyone gone (an empty answer) is refused; nothing held is never refused.
    assert!(guard(&diff(&held(5), &BTreeMap::new()), 0.2).is_err());
    assert_eq!(guard(&diff(&BTreeMap::new(), &held(5)), 0.2), Ok(()));
    assert_eq!(guard(&diff(&held(5), &held(0)), 1.0), Ok(()));
}
