-- 015_outbox_request_id.sql -- the id of the request that wrote a job
-- (X-Request-Id: keel's own, or a trusted proxy's), so the drainer's log
-- lines and the email it sends carry it: one id follows a submit from
-- the request to the mail (lib/outbox.c, lib/drain.c, lib/mail.c).
-- NULL for jobs no request made (cron programs, the operator's CLI).
ALTER TABLE outbox ADD COLUMN request_id text
	CHECK (request_id ~ '^[A-Za-z0-9._:-]{1,64}$');
