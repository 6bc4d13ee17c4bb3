//! Freshness of the copy of Altinn (issue 26): the sync stamp written with the
//! data (a `# synced_at` line in the data manifest, or the row of
//! `vakt.sync_stamp`) is followed live by a serving sidecar, and past
//! `--max-sync-age` (a live setting) every decision is a deny `vakt:data-stale`
//! naming the sync's age; data without a stamp is denied under the limit (fail
//! closed). Status, `vakt status` and the metrics show the sync's age.

use crate::common;
use crate::postgres::{as_role, ok, serve, status};
use common::pg::{Cluster, WRITER};
use common::*;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vakt::proto::Decision;

const WORLD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/world");

/// A request the example world allows: Kari, through Tall og Kontroll's agent
/// system user, for its client Bakeri Brød AS.
fn decide(s: &Spawned) -> vakt::proto::AuthorizeResponse {
    s.with_client(|mut c| async move {
        c.authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
            .await
            .unwrap()
            .into_inner()
    })
}

/// The example world's files in `dir`, and a manifest `SHA256SUMS` listing them
/// with `stamp` as its first line when given; the manifest's path.
fn world_with_manifest(dir: &Path, stamp: Option<SystemTime>) -> std::path::PathBuf {
    let mut text = String::new();
    if let Some(at) = stamp {
        text.push_str(&vakt::world::stamp_line(at));
        text.push('\n');
    }
    let mut names: Vec<_> = std::fs::read_dir(WORLD)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let body = std::fs::read_to_string(&p).unwrap();
        let name = p.file_name().unwrap().to_str().unwrap().to_owned();
        std::fs::write(dir.join(&name), &body).unwrap();
        text.push_str(&format!(
            "{}  {name}\n",
            hex::encode(vakt::world::sha256(&body))
        ));
    }
    let sums = dir.join("SHA256SUMS");
    std::fs::write(&sums, text).unwrap();
    sums
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Asserts a deny `vakt:data-stale` whose reason says `says`.
#[track_caller]
fn assert_stale(r: &vakt::proto::AuthorizeResponse, says: &str) {
    assert_deny(r, &["vakt:data-stale"]);
    assert!(r.reasons[0].message.contains(says), "{r:#?}");
}

/// Files: a manifest stamped an hour ago under a ten-minute limit denies a
/// request the data allows, saying how old the sync is; the status, `vakt status`
/// and the metrics show that age. A fresh stamp renamed into place (the data
/// unchanged) allows it again without a restart. The limit is live: shortened in
/// the configuration file and read on SIGHUP, the same data is denied again.
#[test]
fn a_stale_stamp_denies_and_a_fresh_one_renamed_in_allows_again() {
    let dir = tempfile::tempdir().unwrap();
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let sums = world_with_manifest(dir.path(), Some(hour_ago));
    let config = dir.path().join("vakt.toml");
    std::fs::write(&config, "max-sync-age = \"10m\"\n").unwrap();
    let s = Spawned::start(
        &[
            "--config",
            config.to_str().unwrap(),
            "--data",
            dir.path().to_str().unwrap(),
            "--data-manifest",
            sums.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
            // Long: only the watcher can see the new stamp in time.
            "--rescan-interval",
            "1h",
            "--decision-log",
            "off",
        ],
        false,
    );
    assert_stale(&decide(&s), "last synced from Altinn 36");
    assert_stale(
        &decide(&s),
        "s ago, more than the 600.0 s --max-sync-age allows",
    );
    let st = status(&s);
    assert!((st.last_sync_unix - unix(hour_ago)).abs() < 0.001, "{st:?}");
    assert!(
        (3600.0..3660.0).contains(&st.sync_age_seconds),
        "{}",
        st.sync_age_seconds
    );
    assert_eq!(st.max_sync_age_seconds, 600.0);
    let scrape = get(&admin_addr(&s), "/metrics").1;
    let at = sample(&scrape, "vakt_data_last_sync_timestamp_seconds").unwrap();
    assert!((at - unix(hour_ago)).abs() < 1.0, "{at}");
    let age = sample(&scrape, "vakt_data_sync_age_seconds").unwrap();
    assert!((3600.0..3660.0).contains(&age), "{age}");
    // `vakt status` shows the age and fails: the data may not be decided on.
    let out = vakt(&["status", "--address", &s.url()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("altinn sync"), "{text}");
    assert!(text.contains("s ago (denies past 600.0 s)"), "{text}");
    let json = vakt(&["status", "--address", &s.url(), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(v["sync_age_seconds"].as_f64().unwrap() >= 3600.0, "{v}");
    assert_eq!(v["max_sync_age_seconds"], 600.0);

    // The sync runs again and finds nothing new: the manifest alone is restamped,
    // renamed into place.
    let before = status(&s);
    let fresh = SystemTime::now();
    vakt::source::sync_stamp::write_files(&sums, fresh).unwrap();
    until(Duration::from_secs(5), "the fresh stamp to apply", || {
        decide(&s).decision() == Decision::Allow
    });
    assert_allow(&decide(&s));
    let st = status(&s);
    assert!((st.last_sync_unix - unix(fresh)).abs() < 0.001, "{st:?}");
    assert!(st.sync_age_seconds < 60.0, "{st:?}");
    assert_eq!(st.data_sequence, before.data_sequence + 1);
    // The data did not change: the revision names the same data.
    assert_eq!(st.revision, before.revision);
    let out = vakt(&["status", "--address", &s.url()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A shorter limit, read on SIGHUP, denies the same data again.
    std::fs::write(&config, "max-sync-age = \"1ms\"\n").unwrap();
    signal(s.pid(), libc::SIGHUP);
    until(Duration::from_secs(5), "the shorter limit to apply", || {
        decide(&s).decision() == Decision::Deny
    });
    assert_stale(&decide(&s), "more than the 0.0 s --max-sync-age allows");
    // And 0 turns the limit off.
    std::fs::write(&config, "max-sync-age = \"0s\"\n").unwrap();
    signal(s.pid(), libc::SIGHUP);
    until(Duration::from_secs(5), "the limit to be lifted", || {
        decide(&s).decision() == Decision::Allow
    });
    assert_eq!(status(&s).max_sync_age_seconds, 0.0);
    s.stop();
}

/// Data that carries no sync stamp (a manifest without one, or a data directory
/// without a manifest) was never synced: under --max-sync-age every request is
/// denied, and the status says so; without the limit the same request is
/// allowed. A stamp in the future beyond clock skew is refused too.
#[test]
fn data_without_a_stamp_is_denied_under_max_sync_age() {
    let dir = tempfile::tempdir().unwrap();
    let sums = world_with_manifest(dir.path(), None);
    let data = dir.path().to_str().unwrap();
    let limited = Spawned::start(
        &[
            "--data",
            data,
            "--data-manifest",
            sums.to_str().unwrap(),
            "--max-sync-age",
            "1h",
            "--decision-log",
            "off",
        ],
        false,
    );
    assert_stale(&decide(&limited), "never synced");
    let st = status(&limited);
    assert_eq!((st.last_sync_unix, st.sync_age_seconds), (0.0, 0.0));
    assert_eq!(st.max_sync_age_seconds, 3600.0);
    let out = vakt(&["status", "--address", &limited.url()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("never"), "{text}");
    // A stamp an hour ahead of this clock would keep the data fresh for an hour
    // longer than it is: denied until it is a real one.
    let ahead = SystemTime::now() + Duration::from_secs(3600);
    vakt::source::sync_stamp::write_files(&sums, ahead).unwrap();
    until(Duration::from_secs(10), "the stamp to apply", || {
        status(&limited).last_sync_unix > 0.0
    });
    assert_stale(&decide(&limited), "in the future");
    limited.stop();

    // The same data without the limit is decided on.
    let free = Spawned::start(
        &[
            "--data",
            data,
            "--data-manifest",
            sums.to_str().unwrap(),
            "--decision-log",
            "off",
        ],
        false,
    );
    assert_allow(&decide(&free));
    assert!(vakt(&["status", "--address", &free.url()]).status.success());
    free.stop();

    // A data directory without a manifest carries no stamp either.
    std::fs::remove_file(&sums).unwrap();
    let plain = Spawned::start(
        &[
            "--data",
            data,
            "--max-sync-age",
            "1h",
            "--decision-log",
            "off",
        ],
        false,
    );
    assert_stale(&decide(&plain), "never synced");
    plain.stop();
}

/// A bad stamp line is a problem naming the manifest's line: the sidecar does
/// not start on it, and `vakt validate` names it.
#[test]
fn a_bad_stamp_is_refused_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let sums = world_with_manifest(dir.path(), None);
    let text = std::fs::read_to_string(&sums).unwrap();
    std::fs::write(&sums, format!("# synced_at yesterday\n{text}")).unwrap();
    let out = vakt(&[
        "validate",
        "--data",
        dir.path().to_str().unwrap(),
        "--data-manifest",
        sums.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("SHA256SUMS:1:1"), "{err}");
    assert!(err.contains("RFC 3339"), "{err}");
}

/// PostgreSQL: the stamp row, written by the writer role in the sync's
/// transaction with `vakt::source::postgres::write::write_sync_stamp`, is followed live
/// (the heartbeat is an hour: the change feed's wake-up brings it). No row
/// denies under the limit; an old stamp denies naming its age; a fresh one
/// allows; a sync transaction that revokes a link and stamps denies for the
/// link, not for staleness; a rolled-back stamp is never seen.
#[test]
fn the_postgres_stamp_row_is_followed_live() {
    let pg = Cluster::start();
    let url = pg.create_db("stamp");
    ok(vakt(&["db", "migrate", "--database", &url]));
    ok(vakt(&["db", "import", WORLD, "--database", &url]));
    pg.logins();
    let s = serve(&url, &["--max-sync-age", "10m", "--poll-interval", "1h"]);
    assert_stale(&decide(&s), "never synced");
    assert_eq!(status(&s).last_sync_unix, 0.0);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let writer = as_role(&url, WRITER);
    // One sync: its statements, then the stamp, in one transaction.
    let sync = |statements: &'static [&'static str], at: SystemTime, commit: bool| {
        rt.block_on(async {
            let (mut client, conn) = tokio_postgres::connect(&writer, tokio_postgres::NoTls)
                .await
                .unwrap();
            let driver = tokio::spawn(conn);
            let tx = client.transaction().await.unwrap();
            for sql in statements {
                tx.batch_execute(sql).await.unwrap();
            }
            vakt::source::postgres::write::write_sync_stamp(&tx, at)
                .await
                .unwrap();
            if commit {
                tx.commit().await.unwrap();
            } else {
                tx.rollback().await.unwrap();
            }
            drop(client);
            let _ = driver.await;
        })
    };

    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    sync(&[], hour_ago, true);
    until(Duration::from_secs(2), "the old stamp to apply", || {
        status(&s).last_sync_unix > 0.0
    });
    assert_stale(&decide(&s), "last synced from Altinn 36");
    let st = status(&s);
    assert!((st.last_sync_unix - unix(hour_ago)).abs() < 0.001, "{st:?}");
    assert!((3600.0..3660.0).contains(&st.sync_age_seconds), "{st:?}");

    let fresh = SystemTime::now();
    sync(&[], fresh, true);
    until(Duration::from_secs(2), "the fresh stamp to apply", || {
        decide(&s).decision() == Decision::Allow
    });
    assert_allow(&decide(&s));

    // A stamp rolled back with its sync is never seen.
    sync(&[], hour_ago, false);
    std::thread::sleep(Duration::from_millis(300));
    assert!((status(&s).last_sync_unix - unix(fresh)).abs() < 0.001);
    assert_allow(&decide(&s));

    // A sync that removes the client link stamps with it: the link is gone, and
    // the data is fresh, so the deny is the link's.
    let later = SystemTime::now();
    sync(
        &["DELETE FROM vakt.client_link WHERE system_user_id = 'tk-regnskap' AND client_org_number = '310015156'"],
        later,
        true,
    );
    until(Duration::from_secs(2), "the sync to apply", || {
        decide(&s).decision() == Decision::Deny
    });
    assert_deny(&decide(&s), &["client-not-linked"]);
    assert!((status(&s).last_sync_unix - unix(later)).abs() < 0.001);

    // A stamp far in the future is refused by the table's constraint.
    let refused = pg.try_psql_as(
        WRITER,
        "stamp",
        "UPDATE vakt.sync_stamp SET synced_at = now() + interval '1 day'",
    );
    assert!(refused.is_err(), "{refused:?}");
    s.stop();
}
