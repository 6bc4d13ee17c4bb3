-- The time of the last successful `vakt altinn sync`, written in the same
-- transaction as the data it synced, so a sidecar knows how old its copy of
-- Altinn is (`vakt serve --max-sync-age`; `Status.last_sync_unix`).
--
-- One row at most; no row: the data was never synced (a sidecar with
-- --max-sync-age set then denies every request: fail closed). Written with
-- `INSERT ... ON CONFLICT (one) DO UPDATE` (vakt::source::sync_stamp::SQL).
-- Sidecars read it in every poll's snapshot, with the position, so the stamp and
-- the data it came with are always seen together; the feed trigger only wakes
-- them at once when a sync that changed nothing else moves it.

CREATE TABLE vakt.sync_stamp (
  one       boolean PRIMARY KEY DEFAULT true CHECK (one),
  -- When the sync read Altinn; not in the future (a clock far ahead would keep
  -- stale data fresh for as long).
  synced_at timestamptz NOT NULL CHECK (synced_at <= now() + interval '5 minutes')
);

CREATE TRIGGER feed AFTER INSERT OR UPDATE OR DELETE ON vakt.sync_stamp
  FOR EACH ROW EXECUTE FUNCTION vakt.feed_record('sync_stamp', 'one');
ALTER TABLE vakt.sync_stamp ENABLE ALWAYS TRIGGER feed;
CREATE TRIGGER feed_truncate AFTER TRUNCATE ON vakt.sync_stamp
  FOR EACH STATEMENT EXECUTE FUNCTION vakt.feed_record('sync_stamp');
ALTER TABLE vakt.sync_stamp ENABLE ALWAYS TRIGGER feed_truncate;

ALTER TABLE vakt.sync_stamp OWNER TO vakt_owner;
REVOKE ALL ON vakt.sync_stamp FROM PUBLIC;
GRANT SELECT ON vakt.sync_stamp TO vakt_reader;
-- The sync writes it as vakt_writer, like the world's rows.
GRANT SELECT, INSERT, UPDATE, DELETE ON vakt.sync_stamp TO vakt_writer;
