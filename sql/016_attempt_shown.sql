-- 016_attempt_shown.sql -- an attempt keeps its questions as its student
-- was shown them, so a later edit of the question bank changes neither
-- its grade nor its review.
--
-- shown: the attempt's questions in question_ids' order, each
-- {"id", "body", "options", "answer", "explanation"} as it was when the
-- attempt started (POST /api/tests/{id}/attempts, fcgi-apps/tests.c).
-- The submit grades against it (an option index means what it meant on
-- the student's screen, even if staff reordered or removed options
-- since), and GET /api/attempts/{id} shows its body and options, and its
-- explanation once submitted (fcgi-apps/attempts.c).  jsonb on the row,
-- as question_ids is: written once, read whole, never queried by
-- question.
--
-- NULL: an attempt started before this migration, or written by
-- something other than tests.c (the demo seed, benchmarks, tests' own
-- rows).  Those are read as before, from the bank as it is now -- no
-- backfill: a copy made today would be no closer to what their students
-- saw than the live rows, and leaving them NULL keeps this migration
-- short under its lock on test_attempts: a new nullable column and one
-- read of the table to check the constraint, no rewrite of its rows.
ALTER TABLE test_attempts ADD COLUMN shown jsonb
	CONSTRAINT test_attempts_shown_check CHECK (shown IS NULL
	    OR (jsonb_typeof(shown) = 'array'
		AND jsonb_array_length(shown) = cardinality(question_ids)));
