-- 012_flashcards_ease_floor.sql -- let a flashcard's ease reach SM-2's
-- floor, 1.3.  007's CHECK (ease >= 1.3) compares the real column with
-- the numeric 1.3 as doubles (real >= double precision), and real's
-- nearest value to 1.3 is 1.29999995...: the one value the floor stores
-- was refused (a review answered 422).  The same bound, compared as a
-- real.
ALTER TABLE flashcards
    DROP CONSTRAINT flashcards_ease_check,
    ADD CONSTRAINT flashcards_ease_check CHECK (ease >= real '1.3');
