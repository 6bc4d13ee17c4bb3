//! Vakt's engine decides exactly as `cedar_policy::Authorizer` does over the same
//! world as a Cedar entity store: same decision, same reasons (error messages
//! included), for every combination of employee, system user, client and package
//! in the example world, plus unknown ids and caller context; with the shipped
//! policies, and with a set that uses every kind of expression and fails to
//! evaluate on purpose (tests/data/exotic.cedar).

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
