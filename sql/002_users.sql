-- 002_users.sql -- accounts of both products (API.md "Auth and users").
-- Sessions live in Redis, never here (DESIGN.md "Who owns which state").
CREATE TABLE users (
	id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	email		text NOT NULL CHECK (length(email) BETWEEN 3 AND 254
			    AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
	username	text NOT NULL
			CHECK (username ~ '^[A-Za-z0-9_.-]{3,32}$'),
	name		text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
	role		text NOT NULL
			CHECK (role IN ('admin', 'staff', 'customer', 'student')),
	-- Argon2id in libsodium's string form; NULL until an invited user
	-- sets a password, so such an account can't log in.
	password_hash	text CHECK (password_hash LIKE '$argon2id$%'),
	is_active	boolean NOT NULL DEFAULT true,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now()
);

-- Login by email or username, either case: one account per spelling.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE INDEX users_role_idx ON users (role);
-- Keyset pages of GET /api/users, all or by role, newest first.
CREATE INDEX users_page_idx ON users (created_at DESC, id DESC);
CREATE INDEX users_role_page_idx ON users (role, created_at DESC, id DESC);
