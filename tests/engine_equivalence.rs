//! Vakt's compiled engine decides exactly as `cedar_policy::Authorizer` does: same
//! decision, same reasons, for every combination of employee, system user, client
//! and package in the example world, plus unknown ids and caller context.

use vakt::decide::{decide, decide_reference, Query, RawRequest};
use vakt::snapshot::{Snapshot, Sources};

#[test]
fn compiled_engine_matches_cedar_authorizer_on_the_example_world() {
    let snap = Snapshot::build(&Sources::embedded()).unwrap();
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
    let (mut checked, mut allowed) = (0, 0);
    for e in employees {
        for s in system_users {
            for (i, c) in orgs.iter().enumerate() {
                for (j, p) in packages.iter().enumerate() {
                    // Every context on a third of the combinations keeps the run short.
                    let ctxs: &[Option<serde_json::Value>] = if (i + j) % 3 == 0 {
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
                        let cedar = decide_reference(&snap, &q);
                        assert_eq!(ours.allowed, cedar.allowed, "{e} {s} {c} {p} {ctx:?}");
                        assert_eq!(ours.reasons, cedar.reasons, "{e} {s} {c} {p} {ctx:?}");
                        checked += 1;
                        allowed += usize::from(ours.allowed);
                    }
                }
            }
        }
    }
    // The comparison covered both outcomes in bulk.
    assert!(checked > 30_000, "{checked}");
    assert!(
        allowed > 50 && allowed < checked / 2,
        "{allowed} of {checked}"
    );
}
