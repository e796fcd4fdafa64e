-- 004_exam.sql -- the exam-prep question bank, tests and attempts
-- (API.md "Exam prep"; the seeds' QuestionBank, Test and TestAttempt
-- composite indexes).
CREATE TABLE questions (
	id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	subject		text NOT NULL CHECK (length(subject) BETWEEN 1 AND 100),
	topic		text NOT NULL CHECK (length(topic) BETWEEN 1 AND 100),
	difficulty	text NOT NULL
			CHECK (difficulty IN ('easy', 'medium', 'hard')),
	body		text NOT NULL CHECK (length(body) BETWEEN 1 AND 10000),
	options		jsonb NOT NULL CHECK (jsonb_typeof(options) = 'array'
			    AND jsonb_array_length(options) BETWEEN 2 AND 6),
	answer		integer NOT NULL CHECK (answer >= 0),
	explanation	text CHECK (length(explanation) <= 10000),
	created_by	bigint REFERENCES users (id),
	is_archived	boolean NOT NULL DEFAULT false,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	-- The answer is an index into options.
	CONSTRAINT questions_answer_in_options
	    CHECK (answer < jsonb_array_length(options)),
	-- Text search for the q filter.
	search		tsvector GENERATED ALWAYS AS (to_tsvector('english',
			    topic || ' ' || body)) STORED
);

CREATE INDEX questions_filter_idx ON questions (subject, topic, difficulty);
CREATE INDEX questions_difficulty_idx ON questions (difficulty);
CREATE INDEX questions_page_idx
    ON questions (is_archived, created_at DESC, id DESC);
CREATE INDEX questions_search_idx ON questions USING gin (search);

CREATE TABLE tests (
	id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	title		text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
	subject		text NOT NULL CHECK (length(subject) BETWEEN 1 AND 100),
	duration_minutes integer NOT NULL
			CHECK (duration_minutes BETWEEN 1 AND 600),
	published	boolean NOT NULL DEFAULT false,
	created_by	bigint REFERENCES users (id),
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX tests_published_subject_idx ON tests (published, subject);
CREATE INDEX tests_page_idx ON tests (published, created_at DESC, id DESC);
CREATE INDEX tests_created_by_idx ON tests (created_by);

-- A test's questions, in order; a question appears once per test.
CREATE TABLE test_questions (
	test_id		bigint NOT NULL REFERENCES tests (id) ON DELETE CASCADE,
	question_id	bigint NOT NULL REFERENCES questions (id),
	position	integer NOT NULL CHECK (position >= 0),
	PRIMARY KEY (test_id, position),
	UNIQUE (test_id, question_id)
);

CREATE INDEX test_questions_question_idx ON test_questions (question_id);

CREATE TABLE test_attempts (
	id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	test_id		bigint NOT NULL REFERENCES tests (id),
	user_id		bigint NOT NULL REFERENCES users (id),
	started_at	timestamptz NOT NULL DEFAULT now(),
	expires_at	timestamptz NOT NULL,
	submitted_at	timestamptz,
	answers		jsonb CHECK (answers IS NULL
			    OR jsonb_typeof(answers) = 'object'),
	score		integer CHECK (score BETWEEN 0 AND 100),
	correct		integer CHECK (correct >= 0),
	total		integer CHECK (total >= 0),
	late		boolean NOT NULL DEFAULT false,
	CHECK (expires_at > started_at),
	CHECK (correct <= total),
	-- Submitted exactly when graded: no half-written attempt.
	CHECK ((submitted_at IS NULL) = (score IS NULL)
	    AND (submitted_at IS NULL) = (correct IS NULL)
	    AND (submitted_at IS NULL) = (total IS NULL))
);

CREATE INDEX test_attempts_user_started_idx
    ON test_attempts (user_id, started_at DESC, id DESC);
CREATE INDEX test_attempts_user_test_idx ON test_attempts (user_id, test_id);
CREATE INDEX test_attempts_test_score_idx
    ON test_attempts (test_id, score DESC, submitted_at);
CREATE INDEX test_attempts_submitted_idx
    ON test_attempts (submitted_at) WHERE submitted_at IS NOT NULL;
