-- 001_cars.sql -- the fleet's cars (seeds: car-tracker Car model and indexes).
CREATE TABLE cars (
	id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	license_plate	text NOT NULL
			CHECK (license_plate ~ '^[A-Z0-9][A-Z0-9 -]{0,14}[A-Z0-9]$'),
	manufacturer	text NOT NULL CHECK (length(manufacturer) BETWEEN 1 AND 100),
	model		text NOT NULL CHECK (length(model) BETWEEN 1 AND 100),
	category	text NOT NULL CHECK (category IN ('economy', 'compact',
			    'midsize', 'fullsize', 'suv', 'van', 'luxury', 'truck')),
	status		text NOT NULL DEFAULT 'available'
			CHECK (status IN ('available', 'rented', 'maintenance')),
	year		integer NOT NULL CHECK (year BETWEEN 1900 AND 2100),
	is_archived	boolean NOT NULL DEFAULT false,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now()
);

-- The seeds' indexes.
CREATE UNIQUE INDEX cars_license_plate_key ON cars (license_plate);
CREATE INDEX cars_status_idx ON cars (status);
CREATE INDEX cars_manufacturer_idx ON cars (manufacturer);
CREATE INDEX cars_category_idx ON cars (category);
CREATE INDEX cars_status_archived_idx ON cars (status, is_archived);
CREATE INDEX cars_manufacturer_model_idx ON cars (manufacturer, model);

-- Keyset pagination: newest first, id breaks ties (API.md "Lists").
CREATE INDEX cars_page_idx ON cars (is_archived, created_at DESC, id DESC);
