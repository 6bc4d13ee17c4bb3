-- Vakt's world in PostgreSQL: the same model as the data files, in schema `vakt`.
--
-- Applied by `vakt db migrate` (in one transaction, under an advisory lock, and
-- recorded in vakt.schema_version). Never edit a migration that has shipped: add
-- the next one.
--
-- The constraints refuse what Vakt's loader refuses wherever SQL can say it: org
-- numbers with a bad mod-11 check digit, malformed ids, unknown access packages,
-- enum values, references to records that do not exist. What only Vakt can check
-- (an operational unit under another unit, a standard system user with client
-- links) is checked by each sidecar as it applies the change; a change that fails
-- stops the feed there, and it shows in `vakt status`.
--
-- Every write to these tables, by any SQL client, is recorded in vakt.feed_change
-- by triggers; sidecars follow that table (see the change feed below).

CREATE SCHEMA IF NOT EXISTS vakt;

-- A Norwegian organisation number: nine digits, the last a mod-11 check digit over
-- the first eight with weights 3,2,7,6,5,4,3,2 (a remainder giving 10 is invalid).
CREATE FUNCTION vakt.org_number_ok(n text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE WHEN n ~ '^[0-9]{9}$' THEN (
    SELECT CASE 11 - s % 11 WHEN 11 THEN 0 WHEN 10 THEN -1 ELSE 11 - s % 11 END
             = substr(n, 9, 1)::int
      FROM (SELECT sum(substr(n, i::int, 1)::int * w) AS s
              FROM unnest('{3,2,7,6,5,4,3,2}'::int[]) WITH ORDINALITY AS t(w, i)) AS weighted)
  ELSE false END
$$;

-- A record id (employee, team, system user): 1 to 256 bytes, no control or
-- invisible formatting characters, no leading or trailing white space.
CREATE FUNCTION vakt.id_ok(id text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT octet_length(id) BETWEEN 1 AND 256
     AND id !~ '[\x01-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]'
     AND id !~ '^\s' AND id !~ '\s$'
$$;

-- Organisations from the Entity Register.
CREATE TABLE vakt.organization (
  org_number        text PRIMARY KEY CHECK (vakt.org_number_ok(org_number)),
  name              text NOT NULL DEFAULT '',
  -- The Entity Register's parent. Only an operational unit (BEDR, AAFY) inherits
  -- from it, so it is not a foreign key: a sub-entity's parent may be unknown.
  parent_org_number text CHECK (vakt.org_number_ok(parent_org_number)
                                AND parent_org_number <> org_number),
  -- The organisation form, upper case (AS, BEDR, AAFY, ORGL, ...).
  unit_type         text CHECK (unit_type ~ '^[A-Z0-9]+$')
);
CREATE INDEX organization_parent ON vakt.organization (parent_org_number);

-- Altinn's access packages: filled from the binary's list by `vakt db migrate`.
CREATE TABLE vakt.access_package (
  urn text PRIMARY KEY CHECK (urn LIKE 'urn:altinn:accesspackage:%')
);

-- System users, as Altinn's system-user API describes them.
CREATE TABLE vakt.system_user (
  id                text PRIMARY KEY CHECK (vakt.id_ok(id)),
  integration_title text NOT NULL DEFAULT '',
  system_id         text NOT NULL DEFAULT '',
  owner_org_number  text NOT NULL REFERENCES vakt.organization,
  user_type         text NOT NULL CHECK (user_type IN ('standard', 'agent')),
  external_ref      text NOT NULL DEFAULT '',
  is_deleted        boolean NOT NULL DEFAULT false,
  -- Agents only: the system user also covers its owner.
  self_delegated    boolean NOT NULL DEFAULT false
                    CHECK (NOT self_delegated OR user_type = 'agent')
);
CREATE INDEX system_user_owner ON vakt.system_user (owner_org_number);

-- The access packages a system user holds.
CREATE TABLE vakt.system_user_package (
  system_user_id text NOT NULL REFERENCES vakt.system_user ON DELETE CASCADE ON UPDATE CASCADE,
  package        text NOT NULL REFERENCES vakt.access_package,
  PRIMARY KEY (system_user_id, package)
);

-- Clients linked to an agent system user by the customer's client administrator.
CREATE TABLE vakt.client_link (
  system_user_id    text NOT NULL REFERENCES vakt.system_user ON DELETE CASCADE ON UPDATE CASCADE,
  client_org_number text NOT NULL REFERENCES vakt.organization,
  -- Altinn's id for the delegation (usually a UUID), when known.
  client_id         text,
  status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'removed')),
  PRIMARY KEY (system_user_id, client_org_number)
);
CREATE INDEX client_link_client ON vakt.client_link (client_org_number);

-- The relationships a client link rests on (role URNs), in the order given.
CREATE TABLE vakt.client_link_role (
  system_user_id    text NOT NULL,
  client_org_number text NOT NULL,
  position          smallint NOT NULL CHECK (position >= 0),
  role              text NOT NULL CHECK (role LIKE 'urn:altinn:%'),
  PRIMARY KEY (system_user_id, client_org_number, position),
  FOREIGN KEY (system_user_id, client_org_number)
    REFERENCES vakt.client_link ON DELETE CASCADE ON UPDATE CASCADE
);

-- The packages delegated through each relationship. A relationship that lists
-- none carries none: Altinn accepts a call for a client only with a package
-- delegated for it.
CREATE TABLE vakt.client_link_role_package (
  system_user_id    text NOT NULL,
  client_org_number text NOT NULL,
  position          smallint NOT NULL,
  package           text NOT NULL REFERENCES vakt.access_package,
  PRIMARY KEY (system_user_id, client_org_number, position, package),
  FOREIGN KEY (system_user_id, client_org_number, position)
    REFERENCES vakt.client_link_role ON DELETE CASCADE ON UPDATE CASCADE
);

-- Teams in the end-user system.
CREATE TABLE vakt.team (
  id           text PRIMARY KEY CHECK (vakt.id_ok(id)),
  organization text NOT NULL REFERENCES vakt.organization,
  name         text NOT NULL DEFAULT '',
  -- True: the team may act for every client. False: only those in team_client.
  all_clients  boolean NOT NULL DEFAULT false
);
CREATE INDEX team_organization ON vakt.team (organization);

-- The system users a team may use.
CREATE TABLE vakt.team_system_user (
  team_id        text NOT NULL REFERENCES vakt.team ON DELETE CASCADE ON UPDATE CASCADE,
  system_user_id text NOT NULL REFERENCES vakt.system_user ON DELETE CASCADE ON UPDATE CASCADE,
  PRIMARY KEY (team_id, system_user_id)
);
CREATE INDEX team_system_user_su ON vakt.team_system_user (system_user_id);

-- A team's portfolio, when it is not every client; a listed parent covers its
-- operational units.
CREATE TABLE vakt.team_client (
  team_id           text NOT NULL REFERENCES vakt.team ON DELETE CASCADE ON UPDATE CASCADE,
  client_org_number text NOT NULL REFERENCES vakt.organization,
  PRIMARY KEY (team_id, client_org_number)
);

-- Employees and automated jobs of the system customers.
CREATE TABLE vakt.employee (
  id           text PRIMARY KEY CHECK (vakt.id_ok(id)),
  organization text NOT NULL REFERENCES vakt.organization,
  name         text NOT NULL DEFAULT '',
  active       boolean NOT NULL,
  kind         text NOT NULL DEFAULT 'person' CHECK (kind IN ('person', 'automation'))
);
CREATE INDEX employee_organization ON vakt.employee (organization);

CREATE TABLE vakt.employee_team (
  employee_id text NOT NULL REFERENCES vakt.employee ON DELETE CASCADE ON UPDATE CASCADE,
  team_id     text NOT NULL REFERENCES vakt.team ON DELETE CASCADE ON UPDATE CASCADE,
  PRIMARY KEY (employee_id, team_id)
);
CREATE INDEX employee_team_team ON vakt.employee_team (team_id);

-- Organisations an employee has an audit engagement for.
CREATE TABLE vakt.employee_audit_client (
  employee_id       text NOT NULL REFERENCES vakt.employee ON DELETE CASCADE ON UPDATE CASCADE,
  client_org_number text NOT NULL REFERENCES vakt.organization,
  PRIMARY KEY (employee_id, client_org_number)
);

-- Entities in Cedar's own JSON format, for entity types added to the schema beyond
-- Vakt's own; checked against the schema by each sidecar as it loads them.
CREATE TABLE vakt.cedar_entity (
  entity_type text NOT NULL,
  entity_id   text NOT NULL,
  entity      jsonb NOT NULL CHECK (jsonb_typeof(entity) = 'object'),
  PRIMARY KEY (entity_type, entity_id)
);

-- ---------------------------------------------------------------------------
-- The change feed.
--
-- Triggers record the key of every written record with the writer's top-level
-- transaction id. A sidecar's position is a whole pg_snapshot (xmin:xmax:xip):
-- each poll, in one REPEATABLE READ transaction under a newer snapshot, takes the
-- change rows of exactly the transactions visible now but not at the position,
-- and re-reads those keys. Transaction ids are handed out at the first write, not
-- at commit, so no single number can serve as the position; the snapshot pair is
-- gap-free whatever order transactions commit in.

CREATE TABLE vakt.feed_change (
  id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- for people; never a position
  xid  xid8 NOT NULL DEFAULT pg_current_xact_id(),
  -- organization | system_user | client_link | team | employee | cedar_entity
  kind text NOT NULL,
  -- The record's key; NULL: every record of the kind (a TRUNCATE or a bulk load).
  key  text,
  -- A client link's client org number.
  sub  text,
  at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX feed_change_xid ON vakt.feed_change (xid);
CREATE INDEX feed_change_at ON vakt.feed_change (at);

-- One row: every change row with xid up to pruned_max may have been deleted, so a
-- sidecar whose position is older reloads in full.
CREATE TABLE vakt.feed_meta (
  one        boolean PRIMARY KEY DEFAULT true CHECK (one),
  pruned_max xid8 NOT NULL DEFAULT '0'
);
INSERT INTO vakt.feed_meta DEFAULT VALUES;

-- TG_ARGV: the kind, the key column, and for client links the client column.
-- SECURITY DEFINER, so writers need no grant on the feed table.
CREATE FUNCTION vakt.feed_record() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, vakt AS $$
DECLARE
  old_key text; old_sub text; new_key text; new_sub text;
BEGIN
  -- `vakt db import` writes whole tables and records one marker per kind instead.
  IF current_setting('vakt.bulk_load', true) = 'on' THEN
    RETURN NULL;
  END IF;
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
  -- Delivered at commit, never on rollback; a wake-up only, never the data.
  PERFORM pg_notify('vakt_feed', '');
  RETURN NULL;
END
$$;

DO $$
DECLARE
  t record;
BEGIN
  FOR t IN SELECT * FROM (VALUES
      ('organization', 'organization', 'org_number', NULL),
      ('system_user', 'system_user', 'id', NULL),
      ('system_user_package', 'system_user', 'system_user_id', NULL),
      ('client_link', 'client_link', 'system_user_id', 'client_org_number'),
      ('client_link_role', 'client_link', 'system_user_id', 'client_org_number'),
      ('client_link_role_package', 'client_link', 'system_user_id', 'client_org_number'),
      ('team', 'team', 'id', NULL),
      ('team_system_user', 'team', 'team_id', NULL),
      ('team_client', 'team', 'team_id', NULL),
      ('employee', 'employee', 'id', NULL),
      ('employee_team', 'employee', 'employee_id', NULL),
      ('employee_audit_client', 'employee', 'employee_id', NULL),
      ('cedar_entity', 'cedar_entity', 'entity_type', 'entity_id')
    ) AS v(tbl, kind, keycol, subcol)
  LOOP
    EXECUTE format(
      'CREATE TRIGGER feed AFTER INSERT OR UPDATE OR DELETE ON vakt.%I
         FOR EACH ROW EXECUTE FUNCTION vakt.feed_record(%L, %L%s)',
      t.tbl, t.kind, t.keycol, CASE WHEN t.subcol IS NULL THEN '' ELSE format(', %L', t.subcol) END);
    -- ENABLE ALWAYS: the feed also records writes made with
    -- session_replication_role = replica (logical replication, some restore tools).
    EXECUTE format('ALTER TABLE vakt.%I ENABLE ALWAYS TRIGGER feed', t.tbl);
    EXECUTE format(
      'CREATE TRIGGER feed_truncate AFTER TRUNCATE ON vakt.%I
         FOR EACH STATEMENT EXECUTE FUNCTION vakt.feed_record(%L)', t.tbl, t.kind);
    EXECUTE format('ALTER TABLE vakt.%I ENABLE ALWAYS TRIGGER feed_truncate', t.tbl);
  END LOOP;
END
$$;

-- The data sequence of the calling transaction, for read-your-writes: an admin
-- tool calls it in the transaction that makes a change and passes the number as
-- min_data_sequence once it has committed. (It gives the transaction an id if it
-- has none yet.)
CREATE FUNCTION vakt.data_sequence() RETURNS bigint
LANGUAGE sql VOLATILE AS $$
  SELECT pg_current_xact_id()::text::bigint
$$;

-- Deletes change rows older than `keep` and records the highest transaction id
-- deleted. Any sidecar may run it; running it from several at once is harmless.
CREATE FUNCTION vakt.feed_prune(keep interval) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, vakt AS $$
  WITH gone AS (
    DELETE FROM vakt.feed_change WHERE at < now() - keep RETURNING xid
  ), mark AS (
    UPDATE vakt.feed_meta SET pruned_max = greatest(pruned_max, (SELECT max(xid) FROM gone))
     WHERE EXISTS (SELECT FROM gone)
  )
  SELECT count(*) FROM gone
$$;
