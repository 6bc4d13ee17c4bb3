-- Roles, ownership and the feed's guard: no role that writes the world can hide a
-- write from the sidecars.
--
-- Before this migration any writer could skip the triggers (`SET LOCAL
-- vakt.bulk_load = 'on'`), delete or truncate the change rows, or disable the
-- triggers, and a sidecar kept reporting `live` on a world that missed the change.
--
-- - Three roles, created here if the cluster lacks them (roles are cluster-wide;
--   every database of the cluster that Vakt uses migrates to the same three):
--   `vakt_owner` owns every table and function in schema `vakt`; `vakt_writer`
--   may SELECT, INSERT, UPDATE and DELETE the world's tables and nothing else;
--   `vakt_reader` may read everything, which is all a sidecar needs. No role gets
--   a password or LOGIN here: grant them to login roles of your own.
-- - The change rows and the machinery (the feed tables, the epoch, the trigger
--   functions) are owned by vakt_owner and written only by its triggers and
--   functions. Only an owner can TRUNCATE, DISABLE TRIGGER or bulk load.
-- - The epoch (vakt.feed_epoch) moves whenever change rows may have been lost: a
--   TRUNCATE, UPDATE or DELETE of recent rows of vakt.feed_change, and a bulk
--   load (`vakt db import`). Sidecars compare it on every poll, together with the
--   cluster (system identifier, start time, database oid) and the state of the
--   feed's triggers and tables in the catalogue, and read the world again whole
--   when any of them changed. A trigger that is disabled or missing stops them.
--
-- Needs a superuser, or a role with CREATEROLE that owns the objects of 0001.

-- The three roles, if missing. Another database of the cluster may be creating
-- them at this moment (the migration lock is per database), so losing that race
-- is not an error.
DO $$
DECLARE
  r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['vakt_owner', 'vakt_writer', 'vakt_reader'] LOOP
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I NOLOGIN', r);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;
      END;
    END IF;
  END LOOP;
  -- Roles of these names made by someone else must not carry the owner's powers.
  FOREACH r IN ARRAY ARRAY['vakt_writer', 'vakt_reader'] LOOP
    IF pg_has_role(r, 'vakt_owner', 'MEMBER')
       OR (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = r) THEN
      RAISE EXCEPTION 'role % holds the privileges of vakt_owner or a superuser; it must not', r;
    END IF;
  END LOOP;
  -- A migrator that is not a superuser hands its objects to vakt_owner below, and
  -- runs later migrations as a member of it.
  IF NOT pg_has_role(current_user, 'vakt_owner', 'MEMBER') THEN
    EXECUTE format('GRANT vakt_owner TO %I', current_user);
  END IF;
END
$$;

-- Grants made before this migration are taken back: from now on access to the
-- schema goes through the three roles.
DO $$
DECLARE
  g record;
BEGIN
  FOR g IN
    SELECT DISTINCT c.oid::regclass AS tbl, a.grantee
      FROM pg_class c, aclexplode(c.relacl) a
     WHERE c.relnamespace = 'vakt'::regnamespace AND a.grantee <> c.relowner
  LOOP
    EXECUTE format('REVOKE ALL ON %s FROM %s', g.tbl,
                   CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END);
  END LOOP;
END
$$;

-- The row trigger again, without the session setting that let any writer skip it.
-- A bulk load now disables the triggers, which only an owner can, and moves the
-- epoch (vakt.feed_bulk_loaded).
CREATE OR REPLACE FUNCTION vakt.feed_record() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, vakt AS $$
DECLARE
  old_key text; old_sub text; new_key text; new_sub text;
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    INSERT INTO vakt.feed_change (kind, key) VALUES (TG_ARGV[0], NULL);
  ELSE
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
      old_key := to_jsonb(OLD) ->> TG_ARGV[1];
      IF TG_NARGS > 2 THEN old_sub := to_jsonb(OLD) ->> TG_ARGV[2]; END IF;
      INSERT INTO vakt.feed_change (kind, key, sub) VALUES (TG_ARGV[0], old_key, old_sub);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
      new_key := to_jsonb(NEW) ->> TG_ARGV[1];
      IF TG_NARGS > 2 THEN new_sub := to_jsonb(NEW) ->> TG_ARGV[2]; END IF;
      IF TG_OP = 'INSERT' OR new_key IS DISTINCT FROM old_key OR new_sub IS DISTINCT FROM old_sub THEN
        INSERT INTO vakt.feed_change (kind, key, sub) VALUES (TG_ARGV[0], new_key, new_sub);
      END IF;
    END IF;
  END IF;
  PERFORM pg_notify('vakt_feed', '');
  RETURN NULL;
END
$$;

-- One row: the database's own id (a copy restored elsewhere is caught by the
-- database oid the sidecars compare as well) and the epoch, which moves whenever
-- change rows may be missing. Sidecars that see it move read the world whole.
CREATE TABLE vakt.feed_epoch (
  one      boolean PRIMARY KEY DEFAULT true CHECK (one),
  instance uuid NOT NULL DEFAULT gen_random_uuid(),
  epoch    bigint NOT NULL DEFAULT 1,
  -- Why it last moved, and when, for people.
  reason   text NOT NULL DEFAULT 'created',
  at       timestamptz NOT NULL DEFAULT now()
);
INSERT INTO vakt.feed_epoch DEFAULT VALUES;

-- Moves the epoch. Only vakt_owner (and its triggers) may.
CREATE FUNCTION vakt.feed_epoch_move(why text) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, vakt AS $$
  UPDATE vakt.feed_epoch SET epoch = epoch + 1, reason = why, at = clock_timestamp()
  RETURNING epoch
$$;

-- A TRUNCATE or an UPDATE of the change rows: anything may be missing.
CREATE FUNCTION vakt.feed_tampered() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, vakt AS $$
BEGIN
  PERFORM vakt.feed_epoch_move(format('%s on vakt.feed_change', TG_OP));
  PERFORM pg_notify('vakt_feed', '');
  RETURN NULL;
END
$$;

-- A DELETE of change rows. Rows of transactions older than every running one
-- (what vakt.feed_prune removes) only raise pruned_max: a sidecar whose position
-- is older reads the world whole, the others lose nothing. Rows of newer
-- transactions (the deleting one's own, say) move the epoch, so every sidecar
-- reads the world whole; pruned_max would keep them re-reading until the oldest
-- running transaction ended.
CREATE FUNCTION vakt.feed_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, vakt AS $$
DECLARE
  horizon xid8 := pg_snapshot_xmin(pg_current_snapshot());
  old_max xid8;
  recent boolean;
BEGIN
  SELECT max(xid) FILTER (WHERE xid < horizon), bool_or(xid >= horizon)
    INTO old_max, recent
    FROM gone;
  IF old_max IS NOT NULL THEN
    UPDATE vakt.feed_meta SET pruned_max = greatest(pruned_max, old_max);
  END IF;
  IF recent THEN
    PERFORM vakt.feed_epoch_move('DELETE of recent rows of vakt.feed_change');
    PERFORM pg_notify('vakt_feed', '');
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER feed_truncated AFTER TRUNCATE ON vakt.feed_change
  FOR EACH STATEMENT EXECUTE FUNCTION vakt.feed_tampered();
CREATE TRIGGER feed_updated AFTER UPDATE ON vakt.feed_change
  FOR EACH STATEMENT EXECUTE FUNCTION vakt.feed_tampered();
CREATE TRIGGER feed_deleted AFTER DELETE ON vakt.feed_change
  REFERENCING OLD TABLE AS gone
  FOR EACH STATEMENT EXECUTE FUNCTION vakt.feed_deleted();
ALTER TABLE vakt.feed_change ENABLE ALWAYS TRIGGER feed_truncated;
ALTER TABLE vakt.feed_change ENABLE ALWAYS TRIGGER feed_updated;
ALTER TABLE vakt.feed_change ENABLE ALWAYS TRIGGER feed_deleted;

-- Pruning: the DELETE trigger above now records what went.
CREATE OR REPLACE FUNCTION vakt.feed_prune(keep interval) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, vakt AS $$
  WITH gone AS (DELETE FROM vakt.feed_change WHERE at < now() - keep RETURNING 1)
  SELECT count(*) FROM gone
$$;

-- Called by `vakt db import` in its transaction, after it wrote with the row
-- triggers disabled: every sidecar reads the world whole once it commits.
CREATE FUNCTION vakt.feed_bulk_loaded() RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, vakt AS $$
  SELECT vakt.feed_epoch_move('bulk load (vakt db import)');
  SELECT pg_notify('vakt_feed', '');
  SELECT epoch FROM vakt.feed_epoch
$$;

-- Everything in the schema belongs to vakt_owner.
ALTER SCHEMA vakt OWNER TO vakt_owner;
DO $$
DECLARE
  o record;
BEGIN
  FOR o IN
    SELECT c.oid::regclass AS name FROM pg_class c
     WHERE c.relnamespace = 'vakt'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
  LOOP
    EXECUTE format('ALTER TABLE %s OWNER TO vakt_owner', o.name);
  END LOOP;
  FOR o IN SELECT p.oid::regprocedure AS name FROM pg_proc p WHERE p.pronamespace = 'vakt'::regnamespace
  LOOP
    EXECUTE format('ALTER FUNCTION %s OWNER TO vakt_owner', o.name);
  END LOOP;
END
$$;

REVOKE ALL ON SCHEMA vakt FROM PUBLIC;
GRANT USAGE ON SCHEMA vakt TO vakt_writer, vakt_reader;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA vakt FROM PUBLIC;

-- Readers (sidecars, `vakt db export`): everything, read only.
GRANT SELECT ON ALL TABLES IN SCHEMA vakt TO vakt_reader;
GRANT EXECUTE ON FUNCTION vakt.data_sequence() TO vakt_reader;

-- Writers: the world's rows, and nothing of the feed. No TRUNCATE (an owner's
-- bulk operation), no TRIGGER or REFERENCES.
GRANT SELECT, INSERT, UPDATE, DELETE ON
  vakt.organization, vakt.system_user, vakt.system_user_package, vakt.client_link,
  vakt.client_link_role, vakt.client_link_role_package, vakt.team,
  vakt.team_system_user, vakt.team_client, vakt.employee, vakt.employee_team,
  vakt.employee_audit_client, vakt.cedar_entity
  TO vakt_writer;
GRANT SELECT ON vakt.access_package, vakt.schema_version TO vakt_writer;
-- The CHECK constraints call these as the writing role.
GRANT EXECUTE ON FUNCTION vakt.org_number_ok(text), vakt.id_ok(text), vakt.data_sequence()
  TO vakt_writer;
