//! The world Vakt decides over: organisations, system users with their client
//! links, teams and employees, held as compact records in persistent maps.
//!
//! Vakt keeps no Cedar `Entities` for the world: building one costs seconds and
//! gigabytes at a million entities, and every change would recompute it. The
//! evaluator reads the records in place instead (`entity`), and a decision looks
//! up only the handful it needs, so its cost does not grow with the world. The maps
//! are persistent: a changed world shares every untouched record with the one
//! before it, so a change costs a few path copies, not a rebuild, and a reader
//! holding the old world is never disturbed.
//!
//! # Layout
//!
//! - [`records`]: the world's compact records.
//! - `format`: the data format's records, read and written through the same
//!   types; every source decodes into them. `checks`: the one set of checks every
//!   record passes, from any source (field checks, reference checks).
//! - `entity`: the records as Cedar entities, for the evaluator and for export,
//!   and entities given in Cedar's own format.
//! - `state`: the world at one moment, its maps and look-ups; `change`: changing
//!   it record by record.
//! - `load`: reading data files (JSON and YAML through one section dispatch);
//!   `shapes`: recognising Altinn's and the Entity Register's response shapes in
//!   them; `build`: gathering records, checking them and building a world;
//!   `export`: writing a world out as data files; `manifest`: the data manifest
//!   that names the data files and their hashes.

mod build;
mod change;
mod checks;
mod entity;
mod export;
mod format;
mod load;
mod manifest;
pub mod records;
mod shapes;
mod state;

pub(crate) use build::organization_label;
pub use build::WorldBuilder;
pub use change::{Change, ChangeProblem, RecordKey};
pub(crate) use checks::Fields;
pub use export::{CEDAR_FILE, FILES};
pub use format::{
    AccessRecord, ClientRecord, ClientsRecord, DataFile, EmployeeRecord, OrganizationRecord,
    PackageRef, PartyIdValue, SystemUserRecord, TeamRecord,
};
pub use load::{list_data_dir, load_dir, load_streamed, ReadFile};
pub use manifest::{parse_manifest, read_listed, read_manifest, sha256, stamp_line, Manifest};
pub use records::{
    ClientId, ClientLink, ClientScope, Employee, EmployeeKind, Id, LinkAccess, OrgNo, Organization,
    Party, SystemUser, Team, UserType,
};

pub use state::{World, WorldCounts};
