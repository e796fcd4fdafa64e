-- 003_contracts.sql -- rental contracts (API.md "Fleet").
--
-- Double booking is made impossible by the database, not by a check in the
-- app: the exclusion constraint refuses two active contracts of one car
-- whose date ranges overlap, even when both inserts race (the second
-- waits on the first and then fails with 23P01, which the API turns into
-- 409).  Dates are inclusive: a contract ending on the 5th and one
-- starting on the 5th overlap.
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE contracts (
	id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	car_id		bigint NOT NULL REFERENCES cars (id),
	customer_id	bigint NOT NULL REFERENCES users (id),
	start_date	date NOT NULL,
	end_date	date NOT NULL,
	status		text NOT NULL DEFAULT 'active'
			CHECK (status IN ('active', 'cancelled', 'completed')),
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT contracts_dates_check CHECK (end_date >= start_date),
	CONSTRAINT contracts_no_overlap EXCLUDE USING gist (
	    car_id WITH =,
	    daterange(start_date, end_date, '[]') WITH &&)
	    WHERE (status = 'active')
);

-- The seeds' indexes (car-tracker Contract model).
CREATE INDEX contracts_customer_id_idx ON contracts (customer_id);
CREATE INDEX contracts_car_id_idx ON contracts (car_id);
CREATE INDEX contracts_start_date_idx ON contracts (start_date);
CREATE INDEX contracts_end_date_idx ON contracts (end_date);
CREATE INDEX contracts_dates_idx ON contracts (start_date, end_date);
CREATE INDEX contracts_car_dates_idx ON contracts (car_id, start_date, end_date);
-- Keyset pages, newest first: everyone's, and one customer's own.
CREATE INDEX contracts_page_idx ON contracts (created_at DESC, id DESC);
CREATE INDEX contracts_customer_page_idx
    ON contracts (customer_id, created_at DESC, id DESC);
