-- demo/030_contracts.sql -- a few rentals of the demo cars by the demo
-- customers, past, current and future, one cancelled.  Needs 010_cars
-- and 020_users; safe to load again (the overlap constraint and the
-- NOT EXISTS keep it from doubling).
INSERT INTO contracts (car_id, customer_id, start_date, end_date, status)
SELECT c.id, u.id, current_date + d.start_off, current_date + d.end_off,
    d.status
FROM (VALUES
	('KEL-7955', 'customer1', -30, -23, 'completed'),
	('KEL-7955', 'customer1', -2, 5, 'active'),
	('HX90 VBV', 'customer2', -5, 9, 'active'),
	('DV83 XGM', 'customer3', 10, 14, 'active'),
	('4BCP528', 'customer2', 3, 6, 'cancelled')
) AS d (plate, username, start_off, end_off, status)
JOIN cars c ON c.license_plate = d.plate
JOIN users u ON u.username = d.username
WHERE NOT EXISTS (SELECT FROM contracts x WHERE x.car_id = c.id
    AND x.customer_id = u.id AND x.start_date = current_date + d.start_off);
