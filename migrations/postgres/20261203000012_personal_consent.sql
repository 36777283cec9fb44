-- A member's consent that workspace automations (service keys with the
-- tokens:read_personal scope) may use their personal connection. Off for
-- every existing connection: consent is given, never assumed. Workspace
-- connections ignore it.
ALTER TABLE connections ADD COLUMN automations_allowed boolean NOT NULL DEFAULT false;
ALTER TABLE connections ADD COLUMN automations_changed_at timestamptz;
