//! The rules a decision is made under: the schema and the policy files (`policy`),
//! the access packages Vakt knows (`packages`), the Cedar names Vakt's data maps onto
//! (`model`), the shipped defaults compiled into the binary (`embedded`), and the
//! snapshot that holds them with the world as one value, swapped whole (`snapshot`).

pub mod embedded;
pub(crate) mod model;
pub(crate) mod packages;
pub(crate) mod policy;
pub mod snapshot;
