-- demo/050_attempts.sql -- forty more demo students and every demo
-- student's history of graded attempts at the published demo tests
-- (040_exam.sql), so the leaderboards, the attempt lists and the
-- notifications have something to show after scripts/up (which then runs
-- keel-leaderboard-rebuild to fill the boards from these rows).
--
-- Generated, deterministic (hashtext of ids, no random()): each student
-- has a skill of 45..94 %, takes about a third of the tests, some of them
-- twice, within the last 60 days; an answer is right when a hash of
-- (attempt, question) falls under the skill, else the next option.  The
-- rows are graded as POST /api/attempts/{id}/submit grades (score =
-- round(100 x correct / total), answer_key the bank's answers), on time.
-- Safe to load again: a student who has attempts gets none here.
--
--	student4..43@keel.test		keel-student-demo (020_users.sql's hash)
INSERT INTO users (email, username, name, role, password_hash)
SELECT 'student' || g || '@keel.test', 'student' || g,
    (ARRAY['Ana', 'Ben', 'Chloe', 'Dev', 'Eva', 'Finn', 'Gia', 'Hugo',
	'Iris', 'Jon'])[1 + g % 10] || ' ' ||
    (ARRAY['Novak', 'Okafor', 'Petrov', 'Quinn', 'Rossi', 'Sato',
	'Tanaka', 'Usman'])[1 + (g / 10) % 8],
    'student',
    '$argon2id$v=19$m=65536,t=2,p=1$LPCoCKEUueS1MJuus7YJAA$IKw8CbEIPiMmC4D8chWbRwg5dYrgTmGAi57zVSgIyas'
FROM generate_series(4, 43) g
ON CONFLICT DO NOTHING;

WITH student AS (
	SELECT u.id, 45 + abs(hashtext('skill:' || u.id)) % 50 AS skill
	FROM users u
	WHERE u.role = 'student' AND u.email LIKE 'student%@keel.test'
	    AND NOT EXISTS (SELECT 1 FROM test_attempts a
		WHERE a.user_id = u.id)
), pick AS (
	SELECT s.id AS user_id, s.skill, t.id AS test_id,
	    t.duration_minutes AS minutes, n,
	    date_trunc('minute', now()) - make_interval(
		days => 1 + abs(hashtext(s.id || ':' || t.id || ':' || n)) % 60,
		mins => abs(hashtext(t.id || ':' || s.id || ':' || n)) % 1440)
		AS started_at
	FROM student s
	CROSS JOIN tests t
	CROSS JOIN generate_series(1, 2) n
	WHERE t.published
	    AND abs(hashtext('take:' || s.id || ':' || t.id)) % 3 = 0
	    AND (n = 1 OR abs(hashtext('again:' || s.id || ':' || t.id)) % 3 = 0)
), graded AS (
	SELECT p.user_id, p.test_id, p.n, p.minutes, p.started_at,
	    array_agg(q.id ORDER BY tq.position) AS question_ids,
	    jsonb_object_agg(q.id::text, c.chosen) AS answers,
	    jsonb_object_agg(q.id::text, q.answer) AS answer_key,
	    count(*) FILTER (WHERE c.chosen = q.answer) AS correct,
	    count(*) AS total
	FROM pick p
	JOIN test_questions tq ON tq.test_id = p.test_id
	JOIN questions q ON q.id = tq.question_id
	CROSS JOIN LATERAL (SELECT CASE
	    WHEN abs(hashtext('ans:' || p.user_id || ':' || p.n || ':' ||
		q.id)) % 100 < p.skill THEN q.answer
	    ELSE (q.answer + 1) % jsonb_array_length(q.options) END
		AS chosen) c
	GROUP BY p.user_id, p.test_id, p.n, p.minutes, p.started_at
)
INSERT INTO test_attempts (test_id, user_id, started_at, expires_at,
    submitted_at, answers, score, correct, total, late, question_ids,
    answer_key)
SELECT test_id, user_id, started_at,
    started_at + make_interval(mins => minutes),
    started_at + make_interval(secs => 60 + abs(hashtext('took:' ||
	user_id || ':' || test_id || ':' || n)) % ((minutes - 1) * 60 + 1)),
    answers, round(100.0 * correct / total)::integer, correct, total,
    false, question_ids, answer_key
FROM graded
ORDER BY started_at;
