-- demo/020_users.sql -- demo accounts, one per role and a few more
-- (README "Demo accounts").  The hashes are Argon2id (keel-admin
-- hash-password) of the documented demo passwords:
--	admin@keel.test		keel-admin-demo
--	staff@keel.test		keel-staff-demo
--	customer1..3@keel.test	keel-customer-demo
--	student1..3@keel.test	keel-student-demo
-- Safe to load again (emails are unique).  Never load demo data in
-- production: these passwords are public.
INSERT INTO users (email, username, name, role, password_hash)
VALUES
	('admin@keel.test', 'admin', 'Ada Admin', 'admin',
	 '$argon2id$v=19$m=65536,t=2,p=1$E60OyG2EnGHhC8CD7ZKrdQ$ruwbnnZGbAmSvB3UfpRYJ73Vb68sFd1v3fGL/G++uOc'),
	('staff@keel.test', 'staff', 'Sam Staff', 'staff',
	 '$argon2id$v=19$m=65536,t=2,p=1$r+49Swy/8Ui3ZppCtIojBw$lCtqF8rd1iACOq3SI/jqX7rAc1NToKj9hSYbVZ7AqlE'),
	('customer1@keel.test', 'customer1', 'Carla Customer', 'customer',
	 '$argon2id$v=19$m=65536,t=2,p=1$FyDstDzROk4rcO0KrmtmKQ$2gAk4nT/B96v50047Ntq58bcFdBRFQ0QDdBZ5HBi/eE'),
	('customer2@keel.test', 'customer2', 'Chris Client', 'customer',
	 '$argon2id$v=19$m=65536,t=2,p=1$FyDstDzROk4rcO0KrmtmKQ$2gAk4nT/B96v50047Ntq58bcFdBRFQ0QDdBZ5HBi/eE'),
	('customer3@keel.test', 'customer3', 'Cleo Renter', 'customer',
	 '$argon2id$v=19$m=65536,t=2,p=1$FyDstDzROk4rcO0KrmtmKQ$2gAk4nT/B96v50047Ntq58bcFdBRFQ0QDdBZ5HBi/eE'),
	('student1@keel.test', 'student1', 'Stella Student', 'student',
	 '$argon2id$v=19$m=65536,t=2,p=1$LPCoCKEUueS1MJuus7YJAA$IKw8CbEIPiMmC4D8chWbRwg5dYrgTmGAi57zVSgIyas'),
	('student2@keel.test', 'student2', 'Stan Learner', 'student',
	 '$argon2id$v=19$m=65536,t=2,p=1$LPCoCKEUueS1MJuus7YJAA$IKw8CbEIPiMmC4D8chWbRwg5dYrgTmGAi57zVSgIyas'),
	('student3@keel.test', 'student3', 'Sia Scholar', 'student',
	 '$argon2id$v=19$m=65536,t=2,p=1$LPCoCKEUueS1MJuus7YJAA$IKw8CbEIPiMmC4D8chWbRwg5dYrgTmGAi57zVSgIyas')
ON CONFLICT DO NOTHING;
