//! Writing a world out as data files, through the data format's own records
//! (`format`), so that loading the files gives the same world back.

use super::format::{EmployeeRecord, OrganizationRecord, SystemUserRecord, TeamRecord};
use super::state::World;
use serde::Serialize;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The files [`World::write_files`] writes, by section.
pub const FILES: [(&str, &str); 4] = [
    ("organizations", "organizations.json"),
    ("systemUsers", "system-users.json"),
    ("teams", "teams.json"),
    ("employees", "employees.json"),
];

/// Entities in Cedar's own format go to this file, when there are any.
pub const CEDAR_FILE: &str = "entities.json";

impl World {
    /// Writes the world into `dir` as data files (one per section, records sorted by
    /// key, one record per line), replacing files of the same names. Returns the
    /// files written.
    pub fn write_files(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        let mut orgs: Vec<_> = self.organizations().collect();
        orgs.sort_by_key(|o| o.org_number);
        let mut sus: Vec<_> = self.system_users().collect();
        sus.sort_by(|a, b| a.id.cmp(&b.id));
        let mut teams: Vec<_> = self.teams().collect();
        teams.sort_by(|a, b| a.id.cmp(&b.id));
        let mut employees: Vec<_> = self.employees().collect();
        employees.sort_by(|a, b| a.id.cmp(&b.id));
        let [orgs_file, sus_file, teams_file, employees_file] =
            FILES.map(|(section, name)| (section, dir.join(name)));
        write_section(&orgs_file, orgs.into_iter().map(OrganizationRecord::from))?;
        write_section(&sus_file, sus.into_iter().map(SystemUserRecord::from))?;
        write_section(&teams_file, teams.into_iter().map(TeamRecord::from))?;
        write_section(
            &employees_file,
            employees.into_iter().map(EmployeeRecord::from),
        )?;
        written.extend([orgs_file, sus_file, teams_file, employees_file].map(|(_, p)| p));
        let mut cedar: Vec<Value> = self
            .cedar_entities()
            .filter_map(|e| cedar_policy::Entity::from(e.clone()).to_json_value().ok())
            .collect();
        let path = dir.join(CEDAR_FILE);
        if !cedar.is_empty() {
            cedar.sort_by_key(|v| v["uid"].to_string());
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
            f.write_all(b"[\n")?;
            for (i, v) in cedar.iter().enumerate() {
                let sep = if i + 1 < cedar.len() { ",\n" } else { "\n" };
                serde_json::to_writer(&mut f, v)?;
                f.write_all(sep.as_bytes())?;
            }
            f.write_all(b"]\n")?;
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            written.push(path);
        } else if path.exists() {
            std::fs::remove_file(&path)?;
        }
        Ok(written)
    }
}

/// Writes `{"section": [record, ...]}` with one record per line.
fn write_section<R: Serialize>(
    (section, path): &(&str, PathBuf),
    records: impl Iterator<Item = R>,
) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    write!(f, "{{\"{section}\": [")?;
    let mut first = true;
    for r in records {
        f.write_all(if first { b"\n" } else { b",\n" })?;
        first = false;
        serde_json::to_writer(&mut f, &r)?;
    }
    f.write_all(b"\n]}\n")?;
    f.into_inner().map_err(|e| e.into_error())?.sync_all()
}
