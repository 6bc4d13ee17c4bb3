//! The Cedar names Vakt's data maps onto: entity types, the default action and the
//! context attributes Vakt derives. The schema in schema/ must declare all of them.

use cedar_policy::{EntityId, EntityTypeName, EntityUid};
use std::str::FromStr;
use std::sync::OnceLock;

/// The action used when a request names none.
pub const DEFAULT_ACTION: &str = "useSystemUser";

/// The Entity Register role of a registered auditor.
pub const AUDITOR_ROLE: &str = "urn:altinn:external-role:ccr:revisor";

/// Context attributes Vakt sets itself; a caller may not send them.
pub const CTX_CLIENT: &str = "client";
pub const CTX_ACCESS_PACKAGE: &str = "accessPackage";
pub const CTX_PORTFOLIO_TEAMS: &str = "portfolioTeams";
pub const CTX_CLIENT_LINK: &str = "clientLink";
pub const DERIVED_CONTEXT: [&str; 4] = [
    CTX_CLIENT,
    CTX_ACCESS_PACKAGE,
    CTX_PORTFOLIO_TEAMS,
    CTX_CLIENT_LINK,
];

/// The entity type names, parsed once.
pub struct Types {
    pub employee: EntityTypeName,
    pub team: EntityTypeName,
    pub system_user: EntityTypeName,
    pub organization: EntityTypeName,
    pub access_package: EntityTypeName,
    pub action: EntityTypeName,
}

pub fn types() -> &'static Types {
    static TYPES: OnceLock<Types> = OnceLock::new();
    TYPES.get_or_init(|| {
        // Constant type names, not ids: parsing them cannot be steered by input.
        let t = |n: &str| EntityTypeName::from_str(n).expect("constant type name parses");
        Types {
            employee: t("Vakt::Employee"),
            team: t("Vakt::Team"),
            system_user: t("Vakt::SystemUser"),
            organization: t("Vakt::Organization"),
            access_package: t("Vakt::AccessPackage"),
            action: t("Vakt::Action"),
        }
    })
}

/// Builds an entity uid through the API: the id is never parsed as Cedar text.
pub fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

impl Types {
    /// True for the entity types whose records come from Vakt's data format.
    pub fn is_core(&self, ty: &EntityTypeName) -> bool {
        [
            &self.employee,
            &self.team,
            &self.system_user,
            &self.organization,
        ]
        .contains(&ty)
    }
}

/// The same entity types as `cedar-policy-core` holds them, for the evaluator.
pub struct CoreTypes {
    pub employee: cedar_policy_core::ast::EntityType,
    pub team: cedar_policy_core::ast::EntityType,
    pub system_user: cedar_policy_core::ast::EntityType,
    pub organization: cedar_policy_core::ast::EntityType,
    pub access_package: cedar_policy_core::ast::EntityType,
}

pub fn core_types() -> &'static CoreTypes {
    static CORE: OnceLock<CoreTypes> = OnceLock::new();
    CORE.get_or_init(|| {
        let t = types();
        let c = |n: &EntityTypeName| -> cedar_policy_core::ast::EntityType { n.as_ref().clone() };
        CoreTypes {
            employee: c(&t.employee),
            team: c(&t.team),
            system_user: c(&t.system_user),
            organization: c(&t.organization),
            access_package: c(&t.access_package),
        }
    })
}

/// A core entity uid, built through the API from a type and a raw id.
pub fn core_uid(
    ty: &cedar_policy_core::ast::EntityType,
    id: &str,
) -> cedar_policy_core::ast::EntityUID {
    cedar_policy_core::ast::EntityUID::from_components(
        ty.clone(),
        cedar_policy_core::ast::Eid::new(id),
        None,
    )
}

/// What a client link that lists no packages for a relationship carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LinkPackages {
    /// Nothing: a request through it is denied with
    /// `package-not-delegated-for-client` (Vakt does not guess).
    #[default]
    None,
    /// The system user's own packages, as an operator may choose for lists that
    /// carry no packages (the authentication API's delegated clients); every
    /// decision that relied on it says so.
    SystemUserPackages,
}
