//! The data format's records, the one set of types Vakt reads data files with and
//! writes them through (export, `vakt gen-world`, `vakt verify`'s witness worlds), and
//! that every source decodes into before its records are checked (`checks`): a
//! record from a file, from the database read whole, or from one change is the same
//! value. Field names follow Altinn's APIs (format in docs/data.md, "Data files").

use super::records::{ClientLink, ClientScope, Employee, OrgNo, Organization, SystemUser, Team};
use serde::{Deserialize, Serialize};

/// The sections of a data file, in the order records are checked.
pub(super) const SECTIONS: [&str; 4] = ["organizations", "systemUsers", "teams", "employees"];

/// One section of a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Organizations,
    SystemUsers,
    Teams,
    Employees,
}

impl Section {
    /// The section a top-level key names, if any.
    pub(super) fn of(key: &str) -> Option<Self> {
        match key {
            "organizations" => Some(Self::Organizations),
            "systemUsers" => Some(Self::SystemUsers),
            "teams" => Some(Self::Teams),
            "employees" => Some(Self::Employees),
            _ => None,
        }
    }
}

/// A whole data file in the compact format, for writing: every section, in the
/// order records are checked.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataFile {
    pub organizations: Vec<OrganizationRecord>,
    pub system_users: Vec<SystemUserRecord>,
    pub teams: Vec<TeamRecord>,
    pub employees: Vec<EmployeeRecord>,
}

/// Altinn-shaped records tolerate fields Vakt does not use, so a vendor can feed
/// what Altinn returns as it is.
// The `JsonSchema` derives here are `vakt schema data` (src/cli/schema.rs): the
// editors' schema comes from these very types, so it cannot drift from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationRecord {
    /// The organisation number, nine digits (checked against its mod-11 check digit).
    pub org_number: String,
    #[serde(default)]
    pub name: String,
    /// The legal entity an operational unit belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_org_number: Option<String>,
    /// The Entity Register's organisation form, when given (BEDR, AAFY, ORGL, AS, ...).
    /// Only an operational unit (BEDR, AAFY) inherits from its parent.
    #[serde(
        default,
        alias = "organizationForm",
        skip_serializing_if = "Option::is_none"
    )]
    pub unit_type: Option<String>,
    /// Altinn's party id for the organisation (Register's and `authorizedparties`'
    /// `partyId`; the `{instanceOwnerPartyId}` of an app's paths): a whole number
    /// from 1, written as Altinn's APIs write it, a JSON number. Its digits as a
    /// string are read too (Storage writes `instanceOwner.partyId` so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<PartyIdForm>")]
    pub party_id: Option<PartyIdValue>,
    /// Altinn's party UUID for the organisation (`partyUuid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "uuid"))]
    pub party_uuid: Option<String>,
}

/// A party id as written. Which values are party ids is the field checks' to say
/// (`checks`), so a bad one is refused with the same reason from every source; a
/// value of another JSON type (`true`, an object) is refused as it is read.
#[derive(Debug, Clone, PartialEq)]
pub enum PartyIdValue {
    /// A JSON number without a fraction or an exponent.
    Integer(i128),
    /// A JSON number with a fraction or an exponent, or too long for 64 bits.
    Fraction(f64),
    /// A string.
    Text(String),
}

impl From<i64> for PartyIdValue {
    fn from(n: i64) -> Self {
        Self::Integer(n.into())
    }
}

/// As written: a number as its digits, a string in quotes.
impl std::fmt::Display for PartyIdValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Integer(n) => write!(f, "{n}"),
            Self::Fraction(x) => match serde_json::Number::from_f64(*x) {
                Some(n) => write!(f, "{n}"),
                None => write!(f, "{x}"),
            },
            Self::Text(s) => write!(f, "{s:?}"),
        }
    }
}

impl Serialize for PartyIdValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Integer(n) => match i64::try_from(*n) {
                Ok(n) => s.serialize_i64(n),
                // Never in a world: only a record read with it, and refused.
                Err(_) => s.serialize_str(&n.to_string()),
            },
            Self::Fraction(x) => s.serialize_f64(*x),
            Self::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for PartyIdValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PartyIdValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a party id: a whole number, or its digits as a string")
            }
            fn visit_i64<E>(self, n: i64) -> Result<PartyIdValue, E> {
                Ok(PartyIdValue::Integer(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<PartyIdValue, E> {
                Ok(PartyIdValue::Integer(n.into()))
            }
            fn visit_i128<E>(self, n: i128) -> Result<PartyIdValue, E> {
                Ok(PartyIdValue::Integer(n))
            }
            fn visit_u128<E>(self, n: u128) -> Result<PartyIdValue, E> {
                Ok(PartyIdValue::Integer(
                    i128::try_from(n).unwrap_or(i128::MAX),
                ))
            }
            fn visit_f64<E>(self, x: f64) -> Result<PartyIdValue, E> {
                Ok(PartyIdValue::Fraction(x))
            }
            fn visit_str<E>(self, s: &str) -> Result<PartyIdValue, E> {
                Ok(PartyIdValue::Text(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<PartyIdValue, E> {
                Ok(PartyIdValue::Text(s))
            }
        }
        d.deserialize_any(V)
    }
}

// What the editors' schema says a party id is (never built: the record holds a
// `PartyIdValue`, so a bad one reaches the field checks).
/// Altinn's party id: a whole number from 1, or its digits as a string.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum PartyIdForm {
    Number(#[schemars(range(min = 1))] i64),
    Digits(#[schemars(regex(pattern = r"^[0-9]+$"))] String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemUserRecord {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_id: Option<String>,
    /// The owner's organisation number.
    pub reportee_org_no: String,
    /// `standard` or `agent` in any case, or Register's `first-party-system-user`
    /// and `client-party-system-user`. Missing is an error, never a default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
    /// `[{"urn": ...}]` as Altinn returns them, or bare URNs. Missing is an error
    /// (unless another file gives them), never "none".
    #[serde(
        default,
        deserialize_with = "package_refs",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Vec<PackageForm>")]
    pub access_packages: Option<Vec<PackageRef>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<String>,
    #[serde(default)]
    pub is_deleted: bool,
    /// Agents only: the system user also covers its owner.
    #[serde(default)]
    pub self_delegated: bool,
    /// Agents only: the client links, as the client-delegation API returns them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<ClientRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PackageRef {
    pub urn: String,
}

/// A package as Altinn writes it in different APIs: `{"urn": ...}` or the bare URN.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum PackageForm {
    Urn(String),
    Object { urn: String },
}

impl PackageForm {
    fn into_urn(self) -> String {
        match self {
            Self::Urn(u) | Self::Object { urn: u } => u,
        }
    }
}

fn package_refs<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<PackageRef>>, D::Error> {
    package_urns(d).map(|v| Some(v.into_iter().map(|urn| PackageRef { urn }).collect()))
}

fn package_urns<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<PackageForm>::deserialize(d).map(|v| v.into_iter().map(PackageForm::into_urn).collect())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub client_organization_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_organization_name: Option<String>,
    #[serde(default)]
    pub access: Vec<AccessRecord>,
    /// Vakt's own convenience, not Altinn's: `active` (the default) or `removed`, in
    /// any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AccessRecord {
    /// An Altinn role URN (`urn:altinn:...`): the relationship the packages are
    /// delegated through. Absent where it is unknown (`vakt altinn sync` when
    /// Altinn's answer names none): the packages count, but rule 8 sees no
    /// auditor basis in this entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// URNs, or `{"urn": ...}` objects.
    #[serde(default, deserialize_with = "package_urns")]
    #[schemars(with = "Vec<PackageForm>")]
    pub packages: Vec<String>,
}

/// Vakt's own records are strict: a misspelt field is an error, not a silent default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TeamRecord {
    pub id: String,
    pub organization: String,
    #[serde(default)]
    pub name: String,
    /// The ids of the system users the team may use.
    #[serde(default)]
    pub system_users: Vec<String>,
    /// `all`, or a list of organisation numbers; a listed parent covers its units.
    pub clients: ClientsRecord,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ClientsRecord {
    #[schemars(extend("enum" = ["all"]))]
    Keyword(String),
    List(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EmployeeRecord {
    pub id: String,
    pub organization: String,
    #[serde(default)]
    pub name: String,
    pub active: bool,
    /// `person` (the default) or `automation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["person", "automation", null]))]
    pub kind: Option<String>,
    #[serde(default)]
    pub teams: Vec<String>,
    /// Organisation numbers the employee has an audit engagement for.
    #[serde(default)]
    pub audit_clients: Vec<String>,
}

/// A record's id (`orgNumber` for an organisation), for messages.
pub(super) trait RecordId {
    fn id(&self) -> &str;
}

impl RecordId for OrganizationRecord {
    fn id(&self) -> &str {
        &self.org_number
    }
}

macro_rules! record_id {
    ($($t:ty),*) => {$(
        impl RecordId for $t {
            fn id(&self) -> &str {
                &self.id
            }
        }
    )*};
}

record_id!(SystemUserRecord, TeamRecord, EmployeeRecord);

// ---- Records from the world's compact ones, for writing them out. ----

impl From<&Organization> for OrganizationRecord {
    fn from(o: &Organization) -> Self {
        Self {
            org_number: o.org_number.to_string(),
            name: o.name.to_string(),
            parent_org_number: o.parent_org_number.map(|p| p.to_string()),
            unit_type: o.unit_type.as_ref().map(|t| t.to_string()),
            party_id: o.party_id().map(PartyIdValue::from),
            party_uuid: o.party_uuid().map(|u| u.hyphenated().to_string()),
        }
    }
}

impl From<&SystemUser> for SystemUserRecord {
    /// With its client links, by client org number.
    fn from(s: &SystemUser) -> Self {
        let mut links: Vec<(&OrgNo, &ClientLink)> = s.links.iter().collect();
        links.sort_by_key(|(n, _)| **n);
        Self {
            id: s.id.to_string(),
            integration_title: Some(s.integration_title.to_string()),
            system_id: Some(s.system_id.to_string()),
            reportee_org_no: s.owner.to_string(),
            user_type: Some(s.user_type.as_str().to_owned()),
            access_packages: Some(
                s.access_packages
                    .iter()
                    .map(|p| PackageRef { urn: p.to_string() })
                    .collect(),
            ),
            external_ref: Some(s.external_ref.to_string()),
            is_deleted: s.is_deleted,
            self_delegated: s.self_delegated,
            clients: links
                .into_iter()
                .map(|(n, l)| ClientRecord::of_link(*n, l))
                .collect(),
        }
    }
}

impl ClientRecord {
    /// The record of the link to client `n`.
    pub fn of_link(n: OrgNo, l: &ClientLink) -> Self {
        Self {
            client_id: l.client_id.to_text(),
            client_organization_number: n.to_string(),
            client_organization_name: None,
            access: l
                .access
                .entries
                .iter()
                .map(|(role, packages)| AccessRecord {
                    role: role.as_ref().map(ToString::to_string),
                    packages: packages.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            status: Some(if l.active { "active" } else { "removed" }.to_owned()),
        }
    }
}

impl From<&Team> for TeamRecord {
    fn from(t: &Team) -> Self {
        Self {
            id: t.id.to_string(),
            organization: t.organization.to_string(),
            name: t.name.to_string(),
            system_users: t.system_users.iter().map(ToString::to_string).collect(),
            clients: match &t.clients {
                ClientScope::All => ClientsRecord::Keyword("all".to_owned()),
                ClientScope::Listed(orgs) => {
                    ClientsRecord::List(orgs.iter().map(ToString::to_string).collect())
                }
            },
        }
    }
}

impl From<&Employee> for EmployeeRecord {
    fn from(e: &Employee) -> Self {
        Self {
            id: e.id.to_string(),
            organization: e.organization.to_string(),
            name: e.name.to_string(),
            active: e.active,
            kind: Some(e.kind.as_str().to_owned()),
            teams: e.teams.iter().map(ToString::to_string).collect(),
            audit_clients: e.audit_clients.iter().map(ToString::to_string).collect(),
        }
    }
}
