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

/// One CSV cell: quoted when it must be, and a cell a spreadsheet would read as
/// a formula (`=`, `+`, `-`, `@`, tab or carriage return first) is prefixed with
/// `'`, so data cannot run in the reviewer's spreadsheet.
fn cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn row(out: &mut String, cells: [&str; 12]) {
    let line: Vec<String> = cells.iter().map(|c| cell(c)).collect();
    out.push_str(&line.join(","));
    out.push_str("\r\n");
}

/// The review as CSV (RFC 4180, CRLF line ends, a header row).
pub fn csv(r: &Review) -> String {
    let mut out = String::new();
    row(&mut out, CSV_COLUMNS);
    let join = |v: &[String]| v.join(";");
    for a in &r.access {
        row(
            &mut out,
            [
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
            ],
        );
    }
    for c in &r.conflicts {
        let mut sus = c.auditor_system_users.clone();
        sus.extend(c.other_system_users.iter().cloned());
        row(
            &mut out,
            [
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
            ],
        );
    }
    for d in &r.deactivated_in_teams {
        row(
            &mut out,
            [
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
            ],
        );
    }
    for u in &r.unused_system_users {
        row(
            &mut out,
            [
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
            ],
        );
    }
    for u in &r.unused_team_grants {
        row(
            &mut out,
            [
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
            ],
        );
    }
    for u in &r.unusable_clients {
        row(
            &mut out,
            [
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
            ],
        );
    }
    out
}

/// The review as one HTML file. The JSON goes inside a script element with every
/// `<` escaped, so no value can close the element or open another.
pub fn html(r: &Review) -> String {
    let json = serde_json::to_string(r)
        .unwrap_or_default()
        .replace('<', "\\u003c");
    TEMPLATE.replacen(MARKER, &json, 1)
}
