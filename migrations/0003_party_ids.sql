-- Altinn's ids for an organisation as a party: Altinn's paths name a client by
-- party id (`/{org}/{app}/instances/{instanceOwnerPartyId}/…`) or party UUID, not
-- by org number, so a sidecar that checks outgoing Altinn requests must know both.
--
-- Both optional (NULL: not known), each given to one organisation at most. Adding
-- columns without a default rewrites no rows, so this is quick on a full table;
-- the unique indexes are built over the rows that have them. What the constraints
-- refuse, Vakt's own checks refuse too (Vakt does not rely on them).

ALTER TABLE vakt.organization
  -- Altinn's party id (`partyId`): a positive whole number.
  ADD COLUMN party_id   bigint CHECK (party_id > 0),
  -- Altinn's party UUID (`partyUuid`); the nil UUID names no party.
  ADD COLUMN party_uuid uuid CHECK (party_uuid <> '00000000-0000-0000-0000-000000000000');

ALTER TABLE vakt.organization
  ADD CONSTRAINT organization_party_id_key UNIQUE (party_id),
  ADD CONSTRAINT organization_party_uuid_key UNIQUE (party_uuid);
