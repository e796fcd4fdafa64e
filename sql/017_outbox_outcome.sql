-- 017_outbox_outcome.sql -- how an outbox row's job finished: completed
-- or dead-lettered.  Until now finished_at said only that it finished,
-- and the drainer took any finished row for a job that ran: a dead
-- letter an operator retried (keel-queues retry-failed, POST
-- /api/queues/{name}/failed/retry) was then never run again.  Now only
-- a completed job "ran before" (lib/drain.c); a dead one runs when it is
-- retried, and the retry makes its row unfinished again (lib/outbox.c),
-- so the relay watches it and prune keeps it until it finishes anew.
-- NULL: not finished, or finished before this migration or by a purge
-- (keel-queues purge QUEUE all) -- either way it counts as having run,
-- as before; a retry of its dead letter still brings it back.
ALTER TABLE outbox ADD COLUMN outcome text
	CHECK (outcome IN ('completed', 'dead'));
