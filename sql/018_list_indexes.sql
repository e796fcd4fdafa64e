-- 018_list_indexes.sql -- keyset pages that a list's filter can't serve
-- from an index scanned whole, table-wide, on every page (measured on
-- 300,000 rows: 230-290 ms a page against 1-3 ms with the user's index).
-- Staff's attempts, newest start first, everyone's and one test's (the
-- test's board index is by score, not by start); and staff's contracts
-- of one status, a rare one ("cancelled") scanning every contract before.
CREATE INDEX test_attempts_page_idx
    ON test_attempts (started_at DESC, id DESC);
CREATE INDEX test_attempts_test_page_idx
    ON test_attempts (test_id, started_at DESC, id DESC);
CREATE INDEX contracts_status_page_idx
    ON contracts (status, created_at DESC, id DESC);
