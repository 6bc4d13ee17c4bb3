//! Altinn's answers (`crate::altinn`'s records as its APIs spell them) as the
//! sync's reads: a system user with its owner, its packages and its clients.

use super::{ClientRead, PartyRead, SystemUserRead};
use crate::altinn::{AuthorizedParty, ClientDto, SystemUser};

/// An organisation party as a [`PartyRead`]; `None` for a person, a deleted
/// party or one listed only for its subunits.
fn party(p: &AuthorizedParty, parent: Option<&str>) -> Option<PartyRead> {
    let n = p.organization_number.as_deref().filter(|n| !n.is_empty())?;
    if p.is_deleted {
        return None;
    }
    Some(PartyRead {
        org_number: n.to_owned(),
        name: p.name.clone().unwrap_or_default(),
        party_id: (p.party_id > 0).then_some(p.party_id),
        party_uuid: Some(p.party_uuid.clone()).filter(|u| !u.is_empty()),
        parent_org_number: parent.map(str::to_owned),
        unit_type: p.unit_type.clone().filter(|t| !t.is_empty()),
    })
}

/// What a system user's `authorizedparties` answer says of its owner: the
/// owner as a party, its packages and whether Altinn listed it at all.
pub fn owner_of<'a>(
    su: &SystemUser,
    parties: &'a [AuthorizedParty],
) -> Option<&'a AuthorizedParty> {
    parties
        .iter()
        .find(|p| p.organization_number.as_deref() == Some(su.reportee_org_no.as_str()))
}

/// One system user from the vendor's list, its `authorizedparties` answer and,
/// for an agent whose customer has a client administrator configured, its
/// complete client list (with roles). Without the client list, an agent's
/// clients are the parties other than its owner, with their packages and no
/// role (Altinn's answer names none).
pub fn system_user(
    su: &SystemUser,
    parties: &[AuthorizedParty],
    client_list: Option<&[ClientDto]>,
) -> SystemUserRead {
    let agent =
        su.user_type.eq_ignore_ascii_case("agent") || su.user_type == "client-party-system-user";
    let owner = owner_of(su, parties);
    let mut clients = Vec::new();
    // Subunits named under a party: organisations with their parent, so an
    // operational unit of a client is covered through its parent's link.
    let mut units = Vec::new();
    for p in parties {
        if p.organization_number.as_deref() == Some(su.reportee_org_no.as_str()) {
            continue;
        }
        let Some(read) = party(p, None) else { continue };
        for u in &p.subunits {
            units.extend(party(u, Some(&read.org_number)));
        }
        if !agent || client_list.is_some() || p.only_hierarchy_element_with_no_access {
            continue;
        }
        clients.push(ClientRead {
            party: read,
            client_id: None,
            access: vec![(None, p.authorized_access_packages.clone())],
        });
    }
    if let Some(list) = client_list {
        for c in list {
            let e = &c.client;
            let Some(n) = e
                .organization_identifier
                .as_deref()
                .filter(|n| !n.is_empty())
            else {
                continue;
            };
            if e.is_deleted {
                continue;
            }
            clients.push(ClientRead {
                party: PartyRead {
                    org_number: n.to_owned(),
                    name: e.name.clone().unwrap_or_default(),
                    party_id: e.party_id.filter(|id| *id > 0),
                    party_uuid: Some(e.id.clone()).filter(|u| !u.is_empty()),
                    parent_org_number: None,
                    unit_type: e.variant.clone().filter(|t| !t.is_empty()),
                },
                client_id: None,
                access: c
                    .access
                    .iter()
                    .map(|a| {
                        (
                            Some(a.role.urn.clone()),
                            a.packages.iter().map(|p| p.urn.clone()).collect(),
                        )
                    })
                    .collect(),
            });
        }
    }
    let mut owner_read = owner.and_then(|o| party(o, None));
    if let Some(o) = &mut owner_read {
        o.org_number.clone_from(&su.reportee_org_no);
    }
    for u in owner.iter().flat_map(|o| &o.subunits) {
        units.extend(party(u, Some(&su.reportee_org_no)));
    }
    // An agent's owner among its parties is a self-delegation.
    let owner_packages = owner
        .map(|o| o.authorized_access_packages.clone())
        .unwrap_or_default();
    SystemUserRead {
        id: su.id.clone(),
        integration_title: su.integration_title.clone(),
        system_id: su.system_id.clone(),
        reportee_org_no: su.reportee_org_no.clone(),
        user_type: if agent { "agent" } else { "standard" }.to_owned(),
        external_ref: Some(su.external_ref.clone()).filter(|r| !r.is_empty()),
        owner: owner_read,
        self_delegated: agent && owner.is_some_and(|o| !o.authorized_access_packages.is_empty()),
        owner_packages,
        clients,
        units,
    }
}
