-- 006_outbox.sql -- jobs written in the same transaction as the change that
-- causes them (DESIGN.md, "Jobs, outbox and cron").  The app pushes a row
-- to its Redis stream right after commit; the relay pushes what was left.
CREATE TABLE outbox (
	id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	queue		text NOT NULL CHECK (queue ~ '^[a-z][a-z0-9_-]{0,31}$'),
	kind		text NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
	payload		jsonb NOT NULL,
	idempotency_key	text NOT NULL CHECK (length(idempotency_key)
			    BETWEEN 1 AND 200),
	available_at	timestamptz NOT NULL DEFAULT now(),	-- delayed jobs
	created_at	timestamptz NOT NULL DEFAULT now(),
	pushed_at	timestamptz			-- NULL until on the stream
);

-- One job per idempotency key, ever: a retried request can't enqueue twice.
CREATE UNIQUE INDEX outbox_idempotency_key_key ON outbox (idempotency_key);
-- The relay's scan: only rows still waiting, oldest first.
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE pushed_at IS NULL;
