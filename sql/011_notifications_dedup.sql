-- 011_notifications_dedup.sql -- a notification made by a job names the
-- job (its idempotency key), so the job run twice -- a retry after a
-- crash between the insert and its acknowledgement -- inserts it once
-- (cron/drain-notifications.c).  NULL for notifications no job made.
-- Leaderboard entries need no such key: every writer recomputes them
-- from test_attempts (lib/board.c), so a job run twice changes nothing.
ALTER TABLE notifications ADD COLUMN dedup_key text
	CHECK (length(dedup_key) BETWEEN 1 AND 200);
CREATE UNIQUE INDEX notifications_dedup_key ON notifications (dedup_key)
	WHERE dedup_key IS NOT NULL;
