-- 008_one_time_tokens.sql -- single-use password-reset and invitation
-- tokens (API.md "Auth and users").
--
-- They lived in Redis; they live here so that a token exists if and only
-- if the outbox row carrying its link does (one transaction), and so that
-- a reset can be requested while Redis is down (DESIGN.md "When a
-- dependency fails": writes commit, jobs wait in the outbox).  Only the
-- SHA-256 of a token is stored: a copy of the database holds no usable
-- link.  A token is taken by one UPDATE ... WHERE used_at IS NULL AND
-- expires_at > now(), so two concurrent confirms can't both use it (the
-- second waits on the row lock and then finds it used).
CREATE TABLE one_time_tokens (
	hash		text PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
	user_id		bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	purpose		text NOT NULL CHECK (purpose IN ('reset', 'invite')),
	created_at	timestamptz NOT NULL DEFAULT now(),
	expires_at	timestamptz NOT NULL,
	used_at		timestamptz,			-- NULL until used
	CHECK (expires_at > created_at),
	CHECK (used_at IS NULL OR used_at >= created_at)
);

-- A password set through one link kills the user's other live links; the
-- foreign key's cascade wants it too.
CREATE INDEX one_time_tokens_user_idx ON one_time_tokens (user_id);
-- Pruning dead tokens: DELETE ... WHERE expires_at < now() - interval ...
CREATE INDEX one_time_tokens_expires_idx ON one_time_tokens (expires_at);
