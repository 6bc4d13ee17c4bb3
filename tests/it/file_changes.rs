//! A data file's change applied as a difference (issue 27, item 4): the changed
//! files' records against what those files held before, through the incremental
//! path, never rebuilding the world. The world each change leads to must be the
//! one a full load of the files gives (records, derived indexes, revision), for
//! records changed, added, removed and moved between files, and under a data
//! manifest once the files match it; and a change a full load refuses (a record
//! defined twice across files, a dangling reference, an invalid file) is refused,
//! the last good snapshot kept, each problem naming the file and line.

use std::path::Path;
use std::time::Duration;
use vakt::rules::snapshot::{Snapshot, SourcePaths};
use vakt::source::files::{FileSource, Refreshed};

const WORLD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/world");

fn paths(dir: &Path) -> SourcePaths {
    SourcePaths {
        data: Some(dir.to_path_buf()),
        ..Default::default()
    }
}

/// A copy of the example world, followed by a file source (no watcher: each
/// `refresh` is one look; nothing waits to settle).
struct Files {
    dir: tempfile::TempDir,
    source: FileSource,
    current: Snapshot,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(WORLD).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
        let (mut source, current) = FileSource::load(paths(dir.path())).unwrap();
        source.set_settle(Duration::ZERO);
        Self {
            dir,
            source,
            current,
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name` under a temporary name and renames it into place.
    fn write(&self, name: &str, text: &str) {
        let tmp = self.path(&format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path(name)).unwrap();
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    /// `name` with `from` replaced by `to` (once; it must be there).
    fn edit(&self, name: &str, from: &str, to: &str) {
        let text = self.read(name);
        assert!(text.contains(from), "{name} holds {from:?}");
        self.write(name, &text.replacen(from, to, 1));
    }

    /// The files are looked at again: the change must be applied as a
    /// difference, and give the world (and revision) a full load gives.
    fn applies(&mut self) {
        let (what, snap) = self
            .source
            .refresh(&self.current, false)
            .unwrap_or_else(|p| panic!("the change applies: {p}"));
        assert!(matches!(what, Refreshed::Data { .. }), "{what:?}");
        let snap = snap.expect("a new snapshot");
        let (_, full) = FileSource::load(paths(self.dir.path()))
            .unwrap_or_else(|p| panic!("a full load reads the files: {p}"));
        assert!(
            snap.world == full.world,
            "the world after the change is the one a full load gives: {:?} against {:?}",
            snap.world.counts(),
            full.world.counts()
        );
        assert_eq!(snap.revision, full.revision);
        assert_ne!(snap.revision, self.current.revision);
        self.current = snap;
    }

    /// The files are looked at again: the change must be refused, as a full
    /// load refuses the files; the problems, as the refresh gives them.
    fn refused(&mut self) -> String {
        let e = match self.source.refresh(&self.current, false) {
            Err(p) => p.to_string(),
            Ok((what, _)) => panic!("the change is refused, not {what:?}"),
        };
        assert!(
            FileSource::load(paths(self.dir.path())).is_err(),
            "a full load refuses the files too"
        );
        // The source did not take the change as applied (the last good
        // snapshot serves): the next look refuses it again.
        assert!(self.source.refresh(&self.current, false).is_err());
        e
    }

    /// Puts `name` back as `text` (after a refusal): nothing is left to apply.
    fn undo(&mut self, name: &str, text: &str) {
        self.write(name, text);
        let (what, snap) = self.source.refresh(&self.current, false).unwrap();
        assert!(
            matches!(what, Refreshed::Unchanged) && snap.is_none(),
            "{what:?}"
        );
    }
}

const NEW_FILE: &str = "\
organizations:
  - orgNumber: \"310030309\"
    name: Ny Kunde AS
    partyId: 50099001
systemUsers:
  - id: ny-agent
    integrationTitle: Ny agent
    systemId: \"310001015_regnskapsys\"
    reporteeOrgNo: \"310001015\"
    userType: agent
    accessPackages:
      - urn: urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet
    clients:
      - clientId: 0c6e8a52-6d7e-4c1e-9a3b-1f0b5d2e0a99
        clientOrganizationNumber: \"310030309\"
        access:
          - role: urn:altinn:external-role:ccr:regnskapsforer
            packages: [urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet]
teams:
  - id: ny-team
    organization: \"310001015\"
    name: Ny
    systemUsers: [ny-agent, tk-regnskap]
    clients: [\"310030309\"]
employees:
  - id: ny-ansatt
    organization: \"310001015\"
    name: Ny Ansatt
    active: true
    teams: [ny-team, tk-nord]
";

#[test]
fn records_changed_added_moved_and_removed_give_the_world_a_full_load_gives() {
    let mut f = Files::new();
    // One field of one record.
    f.edit(
        "employees.yaml",
        "name: Kari Nordmann\n    active: true",
        "name: Kari Nordmann\n    active: false",
    );
    f.applies();
    assert!(!f.current.world.employee("kari").unwrap().active);
    // A new file: an organisation, an agent system user with a client link, a
    // team granting it and an existing one, an employee in both teams.
    f.write("extra.yaml", NEW_FILE);
    f.applies();
    let ny = f.current.world.system_user("ny-agent").unwrap();
    assert_eq!(&ny.granted_to[..], [vakt::world::Id::from("ny-team")]);
    // A system user's client links changed with its record (one link removed).
    f.edit(
        "system-users.yaml",
        "clientOrganizationNumber: \"310015156\"",
        "clientOrganizationNumber: \"310015156\"\n        status: removed",
    );
    f.applies();
    // The team stops granting one system user and the organisation is given a
    // parent (it becomes a unit of an organisation that is not one).
    f.edit(
        "extra.yaml",
        "systemUsers: [ny-agent, tk-regnskap]",
        "systemUsers: [ny-agent]",
    );
    f.edit(
        "extra.yaml",
        "name: Ny Kunde AS\n",
        "name: Ny Kunde AS\n    parentOrgNumber: \"310015156\"\n    unitType: BEDR\n",
    );
    f.applies();
    // A record moved from one file to another in one change.
    let employees = f.read("employees.yaml");
    let ola = "  - id: ola\n    organization: \"310001015\"\n    name: Ola Hansen\n    active: true\n    kind: person\n    teams: [tk-nord]\n";
    assert!(employees.contains(ola));
    f.write("employees.yaml", &employees.replacen(ola, "", 1));
    f.write("extra.yaml", &format!("{}{ola}", f.read("extra.yaml")));
    f.applies();
    // Records taken out: one employee, then the whole new file (its team, system
    // user and organisation go too; nothing else names them).
    f.edit("extra.yaml", ola, "");
    f.applies();
    std::fs::remove_file(f.path("extra.yaml")).unwrap();
    f.applies();
    assert!(f.current.world.system_user("ny-agent").is_none());
    assert!(f.current.world.employee("ola").is_none());
    // Back as it was: the same world as at the start, changed records aside.
    f.write("extra.yaml", &format!("employees:\n{ola}"));
    f.applies();
}

#[test]
fn a_change_a_full_load_refuses_is_refused_naming_the_file_and_line() {
    let mut f = Files::new();
    // Defined twice: in a new file and in one that did not change.
    let kari = "employees:\n  - id: nils\n    organization: \"310001015\"\n    active: true\n  - id: kari\n    organization: \"310001015\"\n    active: true\n";
    f.write("more.yaml", kari);
    let e = f.refused();
    assert!(
        e.contains("more.yaml:5:") && e.contains("\"kari\" is defined twice"),
        "{e}"
    );
    std::fs::remove_file(f.path("more.yaml")).unwrap();
    let (what, _) = f.source.refresh(&f.current, false).unwrap();
    assert!(matches!(what, Refreshed::Unchanged), "{what:?}");
    // An invalid record in a new file: an unknown team, at its line.
    f.write(
        "more.yaml",
        "employees:\n  - id: nils\n    organization: \"310001015\"\n    active: true\n    teams: [no-such-team]\n",
    );
    let e = f.refused();
    assert!(
        e.contains("more.yaml:2:") && e.contains("\"no-such-team\" is not a known team"),
        "{e}"
    );
    // Not YAML at all.
    f.write(
        "more.yaml",
        "employees:\n  - id: nils\n   organization: [\n",
    );
    let e = f.refused();
    assert!(
        e.contains("more.yaml:") && e.contains("not valid YAML"),
        "{e}"
    );
    std::fs::remove_file(f.path("more.yaml")).unwrap();
    f.source.refresh(&f.current, false).unwrap();
    // A team taken out that an employee of another file still names.
    let teams = f.read("teams.yaml");
    let lonn = "  - id: tk-lonn\n    organization: \"310001015\"\n    name: Lønn og sykefravær\n    systemUsers: [tk-sykefravaer]\n    clients: [\"310017175\"]\n";
    assert!(teams.contains(lonn));
    f.write("teams.yaml", &teams.replacen(lonn, "", 1));
    let e = f.refused();
    assert!(e.contains("\"tk-lonn\" is not a known team"), "{e}");
    f.undo("teams.yaml", &teams);
    // A system user taken out that a team of another file still grants.
    let sus = f.read("system-users.yaml");
    let at = sus.find("  - id: tk-sykefravaer\n").unwrap();
    let end = at + 1 + sus[at + 1..].find("\n  - id: ").unwrap();
    f.write(
        "system-users.yaml",
        &format!("{}{}", &sus[..at], &sus[end + 1..]),
    );
    let e = f.refused();
    assert!(
        e.contains("\"tk-sykefravaer\" is not a known system user"),
        "{e}"
    );
    f.undo("system-users.yaml", &sus);
    // An organisation given a parent that is itself a unit.
    f.edit(
        "organizations.yaml",
        "name: Fjellsport AS\n",
        "name: Fjellsport AS\n    parentOrgNumber: \"310016160\"\n",
    );
    let e = f.refused();
    assert!(
        e.contains("organizations.yaml:") && e.contains("is itself an operational unit"),
        "{e}"
    );
}

#[test]
fn with_a_data_manifest_a_change_is_applied_as_a_difference_once_it_matches() {
    let mut f = Files::new();
    let manifest = f.path("SHA256SUMS");
    let write_manifest = |f: &Files| {
        let mut text = String::new();
        for name in [
            "employees.yaml",
            "organizations.yaml",
            "system-users.yaml",
            "teams.yaml",
        ] {
            let hash = vakt::world::sha256(&f.read(name));
            text.push_str(&format!("{}  {name}\n", hex::encode(hash)));
        }
        f.write("SHA256SUMS", &text);
    };
    write_manifest(&f);
    let paths = SourcePaths {
        data_manifest: Some(manifest.clone()),
        ..paths(f.dir.path())
    };
    let (mut source, current) = FileSource::load(paths.clone()).unwrap();
    source.set_settle(Duration::ZERO);
    f.source = source;
    f.current = current;
    f.edit(
        "employees.yaml",
        "name: Kari Nordmann\n    active: true",
        "name: Kari Nordmann\n    active: false",
    );
    // Not what the manifest says: not applied.
    let (what, snap) = f.source.refresh(&f.current, false).unwrap();
    assert!(
        matches!(what, Refreshed::Waiting { .. }) && snap.is_none(),
        "{what:?}"
    );
    write_manifest(&f);
    let (what, snap) = f.source.refresh(&f.current, false).unwrap();
    assert!(matches!(what, Refreshed::Data { .. }), "{what:?}");
    let snap = snap.unwrap();
    let (_, full) = FileSource::load(paths).unwrap();
    assert!(snap.world == full.world);
    assert_eq!(snap.revision, full.revision);
    assert!(!snap.world.employee("kari").unwrap().active);
}
