-- 019_attempt_snapshots.sql -- an attempt's questions as shown are stored
-- once per version of its test, not once per attempt.
--
-- sql/016 copied every question as shown onto each attempt (shown):
-- up to 5 MB a start for a test of 200 questions at the fields' maxima,
-- rebuilt and written again by every start of the same test, with
-- attempts unlimited.  The copy is kept, and what 016 says of it holds
-- (grading and review read the questions as the student was shown them,
-- whatever staff change later); it is now a row of attempt_snapshots,
-- shared by every attempt that was shown the same questions.
--
-- questions.revision: a number that changes whenever what a student is
-- shown of the question does (body, options, answer, explanation),
-- drawn from one sequence, so a pair (id, revision) names one version of
-- one question for good -- even an id reused after a delete gets a new
-- number.  Set by the trigger below on every insert and update, whatever
-- the writer (the question bank's app, the demo seed, a psql session)
-- put there, so no writer can forget it or set it back.  A row from
-- before this migration has 0: it has not changed since, so (id, 0)
-- names its one version.  Only a write with triggers off
-- (session_replication_role = replica, a restore run with
-- --disable-triggers over live rows) could change a question and keep
-- its revision: starts after it would get the snapshot from before it.
--
-- attempt_snapshots: key is sha256 of the test's questions' "id:revision"
-- in order, comma-separated; shown is what 016 put on the attempt, built
-- from those versions.  POST /api/tests/{id}/attempts (fcgi-apps/tests.c)
-- reads only the ids and revisions (no question text) to find the key,
-- builds the snapshot only when no row has that key yet, and stores on
-- the attempt the row's id (snapshot_id).  So a start of a test whose
-- snapshot exists costs a row reference and about a millisecond, and a
-- new snapshot is made once per edit of the test or of one of its
-- questions, by staff -- students can't add rows here.
--
-- Attempts that already hold shown keep it, read as before
-- (fcgi-apps/attempts.c reads shown, then the snapshot, then the bank):
-- moving them here would rewrite each of those rows under this
-- migration's lock on test_attempts, and could not key them by revision
-- anyway (the revisions they were built from are not known).  Rows with
-- neither (before 016, the demo seed, benchmarks) read the bank as now.
--
-- Rolling upgrade: reload keel-attempts before keel-tests (README,
-- "Rolling upgrades").  A new keel-tests starts attempts with a
-- snapshot_id and no shown; an old keel-attempts would grade those
-- against the live bank, so an edit in between would count.
CREATE SEQUENCE question_revisions;

-- A constant default: no rewrite of questions; the trigger numbers
-- every row written from now on.
ALTER TABLE questions ADD COLUMN revision bigint NOT NULL DEFAULT 0;

CREATE FUNCTION questions_revise() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'UPDATE' THEN
		IF (NEW.id, NEW.body, NEW.options, NEW.answer, NEW.explanation)
		    IS NOT DISTINCT FROM (OLD.id, OLD.body, OLD.options,
		    OLD.answer, OLD.explanation) THEN
			NEW.revision := OLD.revision;
			RETURN NEW;
		END IF;
	END IF;
	NEW.revision := nextval('question_revisions');
	RETURN NEW;
END
$$;

CREATE TRIGGER questions_revise BEFORE INSERT OR UPDATE ON questions
	FOR EACH ROW EXECUTE FUNCTION questions_revise();

CREATE TABLE attempt_snapshots (
	id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	key		bytea NOT NULL UNIQUE CHECK (length(key) = 32),
	shown		jsonb NOT NULL CHECK (jsonb_typeof(shown) = 'array'),
	created_at	timestamptz NOT NULL DEFAULT now()
);

-- NOT VALID: every existing row's snapshot_id is NULL, so there is
-- nothing to check, and the scan of test_attempts a validation makes is
-- skipped; new rows are checked all the same.
ALTER TABLE test_attempts ADD COLUMN snapshot_id bigint,
	ADD CONSTRAINT test_attempts_snapshot_id_fkey FOREIGN KEY (snapshot_id)
	    REFERENCES attempt_snapshots (id) NOT VALID;
