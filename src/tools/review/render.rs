//! The review as CSV (one table, a row per finding, its section named first) and
//! as one self-contained HTML file (the template `report.html` with the review's
//! JSON inside it: no network, no external scripts or fonts).

use super::Review;

/// The CSV columns, in order. Lists within a cell are separated by `;`.
pub const CSV_COLUMNS: [&str; 12] = [
    "section",
    "employee_id",
    "employee_name",
    "system_user_id",
    "client_org_number",
    "client_name",
    "access_package",
    "package_name",
    "team_ids",
    "link_roles",
    "detail",
    "last_used",
];

const TEMPLATE: &str = include_str!("report.html");
const MARKER: &str = "__VAKT_REVIEW_JSON__";

/// A cell a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab or
/// carriage return first) is prefixed with `'`, so data cannot run in the
/// reviewer's spreadsheet. The csv crate only quotes; this guard is ours.
fn defused(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}").into()
    } else {
        s.into()
    }
}

/// Rows of the CSV: RFC 4180 as the csv crate writes it (a cell quoted only when
/// it holds `,`, `"`, CR or LF, quotes doubled), CRLF line ends.
struct Rows(csv::Writer<Vec<u8>>);

impl Rows {
    fn new() -> Self {
        Self(
            csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .quote_style(csv::QuoteStyle::Necessary)
                .from_writer(Vec::new()),
        )
    }

    fn row(&mut self, cells: [&str; 12]) {
        // Writing to memory has no I/O to fail, and every row has the header's
        // twelve cells, so the writer has nothing to refuse.
        self.0
            .write_record(cells.iter().map(|c| defused(c).into_owned()))
            .expect("a twelve-cell row written to memory");
    }

    fn finish(self) -> String {
        let bytes = self.0.into_inner().expect("a CSV written to memory");
        // Every cell was a &str, and the writer adds only ASCII around them.
        String::from_utf8(bytes).expect("CSV of UTF-8 cells is UTF-8")
    }
}

/// The review as CSV (RFC 4180, CRLF line ends, a header row).
pub fn csv(r: &Review) -> String {
    let mut out = Rows::new();
    out.row(CSV_COLUMNS);
    let join = |v: &[String]| v.join(";");
    for a in &r.access {
        out.row([
            "access",
            &a.employee_id,
            &a.employee_name,
            &a.system_user_id,
            &a.client_org_number,
            &a.client_name,
            &a.access_package,
            a.package_name.as_deref().unwrap_or(""),
            &join(&a.teams),
            &join(&a.link_roles),
            a.user_type,
            "",
        ]);
    }
    for c in &r.conflicts {
        let mut sus = c.auditor_system_users.clone();
        sus.extend(c.other_system_users.iter().cloned());
        out.row([
            "conflict",
            &c.employee_id,
            &c.employee_name,
            &join(&sus),
            &c.client_org_number,
            &c.client_name,
            "",
            "",
            &join(&c.teams),
            "",
            &format!(
                "auditor path: {}; other path: {}",
                c.auditor_system_users.join(" "),
                c.other_system_users.join(" ")
            ),
            "",
        ]);
    }
    for d in &r.deactivated_in_teams {
        out.row([
            "deactivated_in_teams",
            &d.employee_id,
            &d.employee_name,
            "",
            "",
            "",
            "",
            "",
            &join(&d.teams),
            "",
            "deactivated",
            "",
        ]);
    }
    for u in &r.unused_system_users {
        out.row([
            "unused_system_user",
            "",
            "",
            &u.system_user_id,
            "",
            "",
            "",
            "",
            "",
            "",
            &u.system_user_title,
            u.last_used.as_deref().unwrap_or(""),
        ]);
    }
    for u in &r.unused_team_grants {
        out.row([
            "unused_team_grant",
            "",
            "",
            &u.system_user_id,
            "",
            "",
            "",
            "",
            &u.team_id,
            "",
            &u.team_name,
            u.last_used.as_deref().unwrap_or(""),
        ]);
    }
    for u in &r.unusable_clients {
        out.row([
            "unusable_client",
            "",
            "",
            &u.system_user_id,
            &u.client_org_number,
            &u.client_name,
            "",
            "",
            "",
            "",
            &u.why,
            "",
        ]);
    }
    out.finish()
}

/// The review as one HTML file. The JSON goes inside a script element with every
/// `<` escaped, so no value can close the element or open another.
pub fn html(r: &Review) -> String {
    let json = serde_json::to_string(r)
        .unwrap_or_default()
        .replace('<', "\\u003c");
    TEMPLATE.replacen(MARKER, &json, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written writer this replaced, kept here as the measure: the csv
    /// crate's output must match it byte for byte.
    fn by_hand(cells: [&str; 12]) -> String {
        let cell = |s: &str| {
            let s = defused(s).into_owned();
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s
            }
        };
        let line: Vec<String> = cells.iter().map(|c| cell(c)).collect();
        line.join(",") + "\r\n"
    }

    #[test]
    fn awkward_cells_round_trip_and_match_the_documented_quoting() {
        let awkward = "Acme, \"the\" firm\nline two";
        let cells = [
            "access", awkward, "", "=cmd()", "-1", "plain", "a\rb", " spaced ", "t1;t2", "@x",
            "\"", "",
        ];
        let mut rows = Rows::new();
        rows.row(CSV_COLUMNS);
        rows.row(cells);
        let text = rows.finish();
        let header = by_hand(CSV_COLUMNS);
        assert_eq!(text, header.clone() + &by_hand(cells));
        assert!(text.ends_with("\r\n"));

        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes());
        let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        assert_eq!(records.len(), 1);
        let read: Vec<&str> = records[0].iter().collect();
        assert_eq!(read[1], awkward, "comma, quote and newline survive");
        // Formula cells come back defused, everything else as written.
        let want: Vec<String> = cells.iter().map(|c| defused(c).into_owned()).collect();
        assert_eq!(read, want);
        assert_eq!(read[3], "'=cmd()");
    }
}
