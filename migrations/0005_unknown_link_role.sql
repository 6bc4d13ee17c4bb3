-- A client link's relationship may be unknown: `vakt altinn sync` learns a
-- client's packages from Altinn's `authorizedparties`, which does not name the
-- role behind them. Such a relationship is stored with a NULL role: its packages
-- count, but rule 8 finds no auditor basis in it (fail-closed). A role given is
-- still an Altinn role URN (the CHECK holds for NULL).
ALTER TABLE vakt.client_link_role ALTER COLUMN role DROP NOT NULL;
