-- 009_outbox_finished.sql -- an outbox row stays its job's source of truth
-- until the job has finished (done or dead-lettered), not only until it
-- was pushed (issue 9).  Redis acknowledges an enqueue before the write
-- is on disk (appendfsync everysec), so a crash can lose a job already
-- marked pushed; the relay asks Redis about every pushed, unfinished row
-- and pushes again the jobs it no longer knows.  The drainer marks a row
-- finished when its job completes or is dead-lettered; the relay also
-- does when Redis says so.
ALTER TABLE outbox ADD COLUMN finished_at timestamptz;
-- When the relay last found the job still waiting in Redis (NULL: never
-- asked), so each unfinished row is asked about once per period and a
-- long backlog can't hide the newest rows from the check.
ALTER TABLE outbox ADD COLUMN checked_at timestamptz;
-- Rows pushed before this migration ran under the old rule; their jobs
-- are counted as finished (asking Redis about week-old rows whose
-- completed jobs it has pruned would send them again).
UPDATE outbox SET finished_at = pushed_at WHERE pushed_at IS NOT NULL;
ALTER TABLE outbox ADD CHECK (finished_at IS NULL OR pushed_at IS NOT NULL);
-- The relay's check: pushed rows not finished, least recently asked first.
CREATE INDEX outbox_unfinished_idx ON outbox (coalesce(checked_at, pushed_at))
	WHERE pushed_at IS NOT NULL AND finished_at IS NULL;
