-- 007_study.sql -- students' own study plans and flashcards (API.md "Exam
-- prep"); every row belongs to one user and is only ever read by them.
CREATE TABLE study_plans (
	id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	user_id		bigint NOT NULL REFERENCES users (id),
	title		text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
	target_date	date,
	-- [{topic, testId?, done}]
	items		jsonb NOT NULL DEFAULT '[]'
			CHECK (jsonb_typeof(items) = 'array'),
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX study_plans_user_page_idx
    ON study_plans (user_id, created_at DESC, id DESC);

-- SM-2 scheduling state lives with the card.
CREATE TABLE flashcards (
	id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	user_id		bigint NOT NULL REFERENCES users (id),
	front		text NOT NULL CHECK (length(front) BETWEEN 1 AND 2000),
	back		text NOT NULL CHECK (length(back) BETWEEN 1 AND 2000),
	topic		text CHECK (length(topic) BETWEEN 1 AND 100),
	ease		real NOT NULL DEFAULT 2.5 CHECK (ease >= 1.3),
	interval_days	integer NOT NULL DEFAULT 0 CHECK (interval_days >= 0),
	repetitions	integer NOT NULL DEFAULT 0 CHECK (repetitions >= 0),
	due_at		timestamptz NOT NULL DEFAULT now(),
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX flashcards_user_due_idx ON flashcards (user_id, due_at, id);
CREATE INDEX flashcards_user_page_idx
    ON flashcards (user_id, created_at DESC, id DESC);
CREATE INDEX flashcards_user_topic_idx ON flashcards (user_id, topic);
