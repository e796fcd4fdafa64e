-- 005_leaderboards_notifications.sql -- the durable copy of the
-- leaderboards (Redis holds the sorted sets, DESIGN.md "Leaderboards") and
-- users' notifications (the seeds' LeaderboardEntry and Notification
-- composite indexes).
CREATE TABLE leaderboard_entries (
	id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	test_id		bigint REFERENCES tests (id),	-- NULL: global
	period		text NOT NULL CHECK (period IN ('all', 'week', 'month')),
	-- The period's first day (UTC); 1970-01-01 for 'all'.
	period_start	date NOT NULL,
	user_id		bigint NOT NULL REFERENCES users (id),
	score		bigint NOT NULL CHECK (score >= 0),
	attempts	integer NOT NULL CHECK (attempts >= 1),
	-- When the score was first reached: ties go to the earlier one.
	reached_at	timestamptz NOT NULL,
	updated_at	timestamptz NOT NULL DEFAULT now()
);

-- One entry per user and scope (a NULL test id is the global scope).
CREATE UNIQUE INDEX leaderboard_entries_scope_user_key ON leaderboard_entries
    (COALESCE(test_id, 0), period, period_start, user_id);
-- Rebuilds and pages read a scope in rank order.
CREATE INDEX leaderboard_entries_rank_idx ON leaderboard_entries
    (test_id, period, period_start, score DESC, reached_at);
CREATE INDEX leaderboard_entries_user_idx ON leaderboard_entries (user_id);

CREATE TABLE notifications (
	id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	user_id		bigint NOT NULL REFERENCES users (id),
	kind		text NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
	title		text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
	body		text NOT NULL DEFAULT '' CHECK (length(body) <= 5000),
	data		jsonb NOT NULL DEFAULT '{}'
			CHECK (jsonb_typeof(data) = 'object'),
	read_at		timestamptz,
	created_at	timestamptz NOT NULL DEFAULT now()
);

-- A user's list newest first (cursor), SSE replay by id, and the unread
-- filter.
CREATE INDEX notifications_user_page_idx
    ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX notifications_user_id_idx ON notifications (user_id, id);
CREATE INDEX notifications_user_unread_idx
    ON notifications (user_id, created_at DESC, id DESC) WHERE read_at IS NULL;
