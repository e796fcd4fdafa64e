-- 010_attempt_questions.sql -- an attempt grades against what it started
-- with (issue 10).
--
-- question_ids: the test's questions, in order, copied when the attempt
-- starts (POST /api/tests/{id}/attempts), so a later PATCH of the test's
-- questionIds changes new attempts only.  An array on the row rather than
-- a table of its own: it is written once, read whole, and never queried
-- by question.
--
-- answer_key: each question's correct option when the attempt was graded,
-- {"<questionId>": <optionIndex>}, so the per-question correctness GET
-- /api/attempts/{id} shows is the one the score was computed from, even
-- after the question bank's answer is edited.  Written with the grade.
ALTER TABLE test_attempts
    ADD COLUMN question_ids bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN answer_key jsonb CHECK (answer_key IS NULL
	OR jsonb_typeof(answer_key) = 'object'),
    ADD CONSTRAINT test_attempts_graded_check
	CHECK ((submitted_at IS NULL) = (answer_key IS NULL)
	    AND (submitted_at IS NULL) = (answers IS NULL));
