//! Altinn's records as its APIs answer them, field names as Altinn spells them:
//! the vendor's system-user list, a system user's authorized parties, and access
//! management's client-delegation list (`ClientDto`). Unknown members are
//! ignored (Altinn adds fields); C#'s nullable lists may come as `null` and read
//! as empty.

use serde::{Deserialize, Deserializer, Serialize};

/// A `null` read as the type's default: ASP.NET writes a nullable list or
/// string that was never set as `null`.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One page of Altinn's paginated answers: `{"links": {"next": URL|null},
/// "data": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    #[serde(default, deserialize_with = "null_as_default")]
    pub links: Links,
    pub data: Vec<T>,
}

/// A page's links: `next` is an opaque URL, absent or `null` on the last page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    #[serde(default)]
    pub next: Option<String>,
}

/// A system user as the vendor's list
/// (`GET authentication/api/v1/systemuser/vendor/bysystem/{systemId}`) answers
/// it: Altinn's `SystemUserExternalDTO`. Since November 2025 it carries no
/// `accessPackages`; packages come from `authorizedparties` or the client list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemUser {
    /// The system user's id (a UUID; also its party UUID in access management).
    pub id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub integration_title: String,
    /// The system in Altinn's system register (`{vendor org}_{name}`).
    pub system_id: String,
    /// The same as `systemId` (to be deprecated by Altinn).
    #[serde(default, deserialize_with = "null_as_default")]
    pub product_name: String,
    /// The owner: the customer's organisation number.
    pub reportee_org_no: String,
    /// When it was created, as Altinn writes it (ISO 8601, UTC).
    #[serde(default, deserialize_with = "null_as_default")]
    pub created: String,
    /// Always false in the vendor's list: deleted system users are left out.
    #[serde(default)]
    pub is_deleted: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub supplier_name: String,
    /// The vendor's organisation number (Altinn's spelling: `supplierOrgno`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub supplier_orgno: String,
    /// The vendor's reference, given when the system user was requested; the
    /// owner's org number when none was. Names the system user in a
    /// Maskinporten grant.
    #[serde(default, deserialize_with = "null_as_default")]
    pub external_ref: String,
    /// `"standard"` or `"agent"` (see [`SystemUser::kind`]).
    pub user_type: String,
}

impl SystemUser {
    /// What kind of system user this is, read as `vakt validate` reads
    /// `userType` (Register's spellings too); `None` for a kind Vakt does not
    /// know, which a caller must not guess at.
    pub fn kind(&self) -> Option<crate::world::UserType> {
        match self.user_type.as_str() {
            "standard" | "first-party-system-user" => Some(crate::world::UserType::Standard),
            "agent" | "client-party-system-user" => Some(crate::world::UserType::Agent),
            _ => None,
        }
    }

    /// The `externalRef` to name in a Maskinporten grant: `None` when it is
    /// empty or the owner's org number (Altinn's default, which Maskinporten
    /// assumes when the grant names none).
    pub fn grant_external_ref(&self) -> Option<&str> {
        let r = self.external_ref.as_str();
        (!r.is_empty() && r != self.reportee_org_no).then_some(r)
    }
}

/// A party a system user (or person) may act for, as
/// `GET accessmanagement/api/v1/enduser/authorizedparties` answers it:
/// Altinn's `AuthorizedPartyExternal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizedParty {
    /// The party's UUID (what the client-delegation list's `party` takes).
    pub party_uuid: String,
    #[serde(default)]
    pub name: Option<String>,
    /// For organisations.
    #[serde(default)]
    pub organization_number: Option<String>,
    /// For a subunit: its parent's party UUID.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// For persons.
    #[serde(default)]
    pub person_id: Option<String>,
    #[serde(default)]
    pub date_of_birth: Option<String>,
    /// Altinn's legacy party id.
    pub party_id: i64,
    /// `"Organization"`, `"Person"`, `"SelfIdentified"`, `"None"`.
    #[serde(rename = "type", default)]
    pub party_type: Option<String>,
    #[serde(default)]
    pub unit_type: Option<String>,
    #[serde(default)]
    pub is_deleted: bool,
    /// Listed only because a subunit has access: no access of its own.
    #[serde(default)]
    pub only_hierarchy_element_with_no_access: bool,
    /// Access-package URNs (`urn:altinn:accesspackage:…`), with
    /// `includeAccessPackages=true`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub authorized_access_packages: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub authorized_resources: Vec<String>,
    /// Role codes or URNs, with `includeRoles=true`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub authorized_roles: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub authorized_instances: Vec<AuthorizedResourceInstance>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub subunits: Vec<AuthorizedParty>,
}

/// One resource instance of an [`AuthorizedParty`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizedResourceInstance {
    #[serde(default)]
    pub resource_id: Option<String>,
    #[serde(default)]
    pub instance_id: Option<String>,
}

/// One client of an agent system user, as access management's client list
/// (`GET accessmanagement/api/v1/enduser/clientdelegations/agents/accesspackages`)
/// answers it: Altinn's `ClientDto`. `src/world/shapes.rs` reads the same JSON
/// from a file, wrapped as `{"systemUserId": …, "clients": <answer>}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientDto {
    pub client: ClientEntity,
    /// What the client gave the agent: packages per role.
    #[serde(default, deserialize_with = "null_as_default")]
    pub access: Vec<ClientAccess>,
}

/// The client party (Altinn's `CompactEntityDto`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientEntity {
    /// The client's party UUID.
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// `"Organisasjon"`, `"Person"`, …
    #[serde(rename = "type", default)]
    pub entity_type: Option<String>,
    /// The organisation form (`"AS"`, `"BEDR"`, …).
    #[serde(default)]
    pub variant: Option<String>,
    /// Altinn's legacy party id (Altinn's spelling: `partyid`).
    #[serde(rename = "partyid", default)]
    pub party_id: Option<i64>,
    #[serde(default)]
    pub organization_identifier: Option<String>,
    #[serde(default)]
    pub person_identifier: Option<String>,
    #[serde(default)]
    pub is_deleted: bool,
    #[serde(default)]
    pub deleted_at: Option<String>,
}

/// One role the client holds toward the owner, and the packages given through
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientAccess {
    pub role: RoleRef,
    #[serde(default, deserialize_with = "null_as_default")]
    pub packages: Vec<PackageRef>,
}

/// A role: its URN (`urn:altinn:external-role:ccr:revisor`) and code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRef {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    pub urn: String,
}

/// An access package: its URN (`urn:altinn:accesspackage:ansvarlig-revisor`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageRef {
    #[serde(default)]
    pub id: Option<String>,
    pub urn: String,
    #[serde(default)]
    pub area_id: Option<String>,
}

/// An agent's complete client list, in the shape Vakt's data files take it
/// (`src/world/shapes.rs`): `{"systemUserId": …, "clients": {"links": …,
/// "data": [...]}}`, so a sync can write what it read as a data file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientList {
    pub system_user_id: String,
    pub clients: Page<ClientDto>,
}

impl ClientList {
    /// The whole list of `system_user_id`'s clients as one page (no `next`).
    pub fn new(system_user_id: &str, clients: Vec<ClientDto>) -> Self {
        Self {
            system_user_id: system_user_id.to_owned(),
            clients: Page {
                links: Links::default(),
                data: clients,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vendor_list_page_reads_as_altinn_writes_it() {
        let page: Page<SystemUser> = serde_json::from_str(
            r#"{"links": {"next": null}, "data": [{
                "id": "e27d9b5f-1c6a-4a38-9e04-7f3b1d5c9a86",
                "integrationTitle": "Fjordkraft SAP", "systemId": "310007072_sap",
                "productName": "", "reporteeOrgNo": "310007072",
                "created": "2025-04-28T10:05:36.218477Z", "isDeleted": false,
                "supplierName": "", "supplierOrgno": "310007072",
                "externalRef": "fi-sap", "userType": "standard",
                "accessPackages": [{"urn": "urn:altinn:accesspackage:regnskapsforer-lonn"}]
            }]}"#,
        )
        .unwrap();
        assert_eq!(page.links.next, None);
        let su = &page.data[0];
        assert_eq!(su.supplier_orgno, "310007072");
        assert_eq!(su.kind(), Some(crate::world::UserType::Standard));
        assert_eq!(su.grant_external_ref(), Some("fi-sap"));
        let empty: Page<SystemUser> = serde_json::from_str(r#"{"links": {}, "data": []}"#).unwrap();
        assert!(empty.data.is_empty());
    }

    #[test]
    fn an_authorized_party_reads_with_null_lists() {
        let p: AuthorizedParty = serde_json::from_str(
            r#"{"partyUuid": "47d1f9b3-8e5c-4a2d-9b60-e4c2a8f6d3b7", "name": "Fjordfisk AS",
                "organizationNumber": "310021210", "parentId": null, "partyId": 51718820,
                "type": "Organization", "unitType": "AS", "isDeleted": false,
                "onlyHierarchyElementWithNoAccess": false,
                "authorizedAccessPackages": ["urn:altinn:accesspackage:regnskapsforer-lonn"],
                "authorizedResources": null, "authorizedRoles": null,
                "authorizedInstances": [], "subunits": null}"#,
        )
        .unwrap();
        assert_eq!(p.authorized_access_packages.len(), 1);
        assert!(p.authorized_roles.is_empty() && p.subunits.is_empty());
        assert_eq!(p.party_type.as_deref(), Some("Organization"));
    }
}
