//! Vakt's client for Altinn's APIs a vendor may call without a person logged
//! in: the system users of the vendor's systems, the parties and packages each
//! system user holds, and an agent's complete client list. It reads; it never
//! changes anything in Altinn.
//!
//! - `types`: the records as Altinn spells them ([`SystemUser`],
//!   [`AuthorizedParty`], [`ClientDto`]).
//! - `client`: [`Altinn`], the reads: every page or nothing, `next` links only
//!   on the base URL's origin, every answer bounded; tokens from
//!   [`Maskinporten`](crate::maskinporten::Maskinporten).
//! - `error`: [`AltinnError`]: unavailable, refused, invalid, misconfigured.
//!
//! No error or log line carries a token.

mod client;
mod error;
mod types;

pub use client::{
    Altinn, Limits, AUTHORIZED_PARTIES_PATH, AUTHORIZED_PARTIES_SCOPE, CLIENT_DELEGATIONS_PATH,
    CLIENT_DELEGATIONS_SCOPE, EXCHANGE_PATH, SYSTEM_USERS_PATH, SYSTEM_USERS_SCOPE,
};
pub use error::AltinnError;
pub use types::{
    AuthorizedParty, AuthorizedResourceInstance, ClientAccess, ClientDto, ClientEntity, ClientList,
    Links, PackageRef, Page, RoleRef, SystemUser,
};
