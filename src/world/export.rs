//! Writing a world out as data files, in the format the loader reads, so that
//! loading the files gives the same world back.

use super::records::{ClientId, ClientLink, ClientScope, Employee, OrgNo, SystemUser, Team};
use super::state::World;
use serde_json::{json, Map as JsonMap, Value};
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
        let sections: [Box<dyn Iterator<Item = Value> + '_>; 4] = [
            Box::new(orgs.into_iter().map(|o| {
                let mut m = JsonMap::new();
                m.insert("orgNumber".into(), json!(o.org_number));
                m.insert("name".into(), json!(o.name));
                if let Some(p) = o.parent_org_number {
                    m.insert("parentOrgNumber".into(), json!(p));
                }
                if let Some(t) = &o.unit_type {
                    m.insert("unitType".into(), json!(t));
                }
                Value::Object(m)
            })),
            Box::new(sus.into_iter().map(system_user)),
            Box::new(teams.into_iter().map(team)),
            Box::new(employees.into_iter().map(employee)),
        ];
        for ((section, name), records) in FILES.iter().zip(sections) {
            let path = dir.join(name);
            write_section(&path, section, records)?;
            written.push(path);
        }
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
fn write_section(
    path: &Path,
    section: &str,
    records: impl Iterator<Item = Value>,
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

fn system_user(s: &SystemUser) -> Value {
    let mut links: Vec<(&OrgNo, &ClientLink)> = s.links.iter().collect();
    links.sort_by_key(|(n, _)| **n);
    let clients: Vec<Value> = links
        .into_iter()
        .map(|(n, l)| {
            let mut m = JsonMap::new();
            if l.client_id != ClientId::None {
                m.insert("clientId".into(), json!(l.client_id.to_text()));
            }
            m.insert("clientOrganizationNumber".into(), json!(n));
            m.insert(
                "access".into(),
                Value::Array(
                    l.access
                        .entries
                        .iter()
                        .map(|(role, packages)| json!({"role": role, "packages": packages}))
                        .collect(),
                ),
            );
            m.insert(
                "status".into(),
                json!(if l.active { "active" } else { "removed" }),
            );
            Value::Object(m)
        })
        .collect();
    let mut m = JsonMap::new();
    m.insert("id".into(), json!(s.id));
    m.insert("integrationTitle".into(), json!(s.integration_title));
    m.insert("systemId".into(), json!(s.system_id));
    m.insert("reporteeOrgNo".into(), json!(s.owner));
    m.insert("userType".into(), json!(s.user_type.as_str()));
    m.insert("externalRef".into(), json!(s.external_ref));
    m.insert("isDeleted".into(), json!(s.is_deleted));
    m.insert("selfDelegated".into(), json!(s.self_delegated));
    m.insert(
        "accessPackages".into(),
        Value::Array(
            s.access_packages
                .iter()
                .map(|p| json!({ "urn": p }))
                .collect(),
        ),
    );
    if !clients.is_empty() {
        m.insert("clients".into(), Value::Array(clients));
    }
    Value::Object(m)
}

fn team(t: &Team) -> Value {
    json!({
        "id": t.id,
        "organization": t.organization,
        "name": t.name,
        "systemUsers": t.system_users,
        "clients": match &t.clients {
            ClientScope::All => json!("all"),
            ClientScope::Listed(orgs) => json!(orgs),
        },
    })
}

fn employee(e: &Employee) -> Value {
    json!({
        "id": e.id,
        "organization": e.organization,
        "name": e.name,
        "active": e.active,
        "kind": e.kind.as_str(),
        "teams": e.teams,
        "auditClients": e.audit_clients,
    })
}
