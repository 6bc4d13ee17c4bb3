//! The shipped defaults compiled into the binary, so `vakt serve` runs with no
//! files: the policies, the schema, the access package list, the example world and
//! the policy test suites.

use crate::problem::SourceFile;

macro_rules! files {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../", $path)))),*]
    };
}

pub const POLICIES: &[(&str, &str)] = files![
    "policies/00-use-system-user.cedar",
    "policies/01-employee.cedar",
    "policies/02-system-user.cedar",
    "policies/03-tenant.cedar",
    "policies/04-team.cedar",
    "policies/05-package.cedar",
    "policies/06-client-coverage.cedar",
    "policies/07-portfolio.cedar",
    "policies/08-separation-of-duties.cedar",
];

/// The shipped policy test suites, so `vakt test` runs them from any directory.
pub const SUITES: &[(&str, &str)] = files![
    "policies/tests/cross_tenant_test.yaml",
    "policies/tests/rules_test.yaml",
    "policies/tests/scenarios_test.yaml",
    "policies/tests/separation_of_duties_test.yaml",
];

pub const SCHEMA: &[(&str, &str)] = files!["schema/vakt.cedarschema"];

pub const PACKAGES: (&str, &str) = (
    "schema/access-packages.json",
    include_str!("../../schema/access-packages.json"),
);

pub const WORLD: &[(&str, &str)] = files![
    "examples/world/organizations.yaml",
    "examples/world/system-users.yaml",
    "examples/world/teams.yaml",
    "examples/world/employees.yaml",
];

pub fn source_files(files: &[(&str, &str)]) -> Vec<SourceFile> {
    files
        .iter()
        .map(|(name, text)| SourceFile {
            name: (*name).to_owned(),
            text: (*text).to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file added to policies/ or examples/world/ must be embedded too, or
    /// `vakt serve` with no flags would silently run without it.
    #[test]
    fn embedded_lists_match_directories() {
        for (dir, ext, list) in [
            ("policies", "cedar", POLICIES),
            ("schema", "cedarschema", SCHEMA),
            ("examples/world", "yaml", WORLD),
            ("policies/tests", "yaml", SUITES),
        ] {
            let root = concat!(env!("CARGO_MANIFEST_DIR"), "/");
            let mut on_disk: Vec<String> = std::fs::read_dir(format!("{root}{dir}"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == ext))
                .map(|p| format!("{dir}/{}", p.file_name().unwrap().to_str().unwrap()))
                .collect();
            on_disk.sort();
            let mut embedded: Vec<String> = list.iter().map(|(n, _)| (*n).to_owned()).collect();
            embedded.sort();
            assert_eq!(embedded, on_disk, "{dir}");
        }
    }
}
