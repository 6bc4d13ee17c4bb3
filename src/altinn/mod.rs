//! Vakt's client for Altinn's APIs a vendor may call without a person logged
//! in: the system users of the vendor's systems, the parties and packages each
//! system user holds, and an agent's complete client list. It reads; it never
//! changes anything in Altinn.
//!
//! - `types`: the records as Altinn spells them ([`SystemUser`],
//!   [`AuthorizedParty`], [`ClientDto`]).

mod types;

pub use types::{
    AuthorizedParty, AuthorizedResourceInstance, ClientAccess, ClientDto, ClientEntity, ClientList,
    Links, PackageRef, Page, RoleRef, SystemUser,
};
