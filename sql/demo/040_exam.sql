-- demo/040_exam.sql -- a question bank of about 2,900 questions over seven
-- subjects, made here from arithmetic and small fact tables (computed
-- answers, capitals, element symbols, dates, SI units, irregular verbs),
-- and 42 tests of 10-20 of them each (35 published, one draft per
-- subject).  No attempts.  Needs 020_users (the demo staff member is the
-- author).  Safe to load again: a question is added only when no question
-- has its subject, topic and body, a test only when none has its title.

-- The options of a question: a[1] is the right one, put at index k.
CREATE FUNCTION pg_temp.demo_options(a text[], k integer) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
	SELECT jsonb_agg(a[1 + (i - k + 4) % 4] ORDER BY i)
	FROM generate_series(0, 3) AS i
$$;

CREATE TEMP TABLE demo_q (
	subject		text,
	topic		text,
	difficulty	text,
	body		text,
	opts		text[],		-- the right one first
	explanation	text,
	g		integer		-- spreads answers and dates
) ON COMMIT DROP;

-- Mathematics: arithmetic, algebra, percentages, geometry.
INSERT INTO demo_q
SELECT 'Mathematics', 'Arithmetic',
    CASE op WHEN 2 THEN 'medium' ELSE 'easy' END,
    format('What is %s %s %s?', a, (ARRAY['+', '-', '×'])[op + 1], b),
    ARRAY[c, c - 1, c + 1, c + 10]::text[],
    format('%s %s %s = %s.', a, (ARRAY['+', '-', '×'])[op + 1], b, c), g
FROM generate_series(1, 900) AS g,
    LATERAL (SELECT g % 3 AS op, 12 + (g * 37) % 88 AS a,
	3 + (g * 53) % 61 AS b) AS v,
    LATERAL (SELECT CASE op WHEN 0 THEN a + b WHEN 1 THEN a - b
	ELSE a * b END AS c) AS r;

INSERT INTO demo_q
SELECT 'Mathematics', 'Algebra', CASE WHEN a > 7 THEN 'hard' ELSE 'medium' END,
    format('Solve for x: %sx + %s = %s', a, b, a * x + b),
    ARRAY[x, x + 1, x + 2, x + 3]::text[],
    format('Subtract %s from both sides, then divide by %s: x = %s.', b, a,
	x), g
FROM generate_series(1, 400) AS g,
    LATERAL (SELECT 1 + g % 20 AS x, 2 + (g / 20) % 9 AS a,
	(g * 7) % 50 AS b) AS v;

INSERT INTO demo_q
SELECT 'Mathematics', 'Percentages', CASE WHEN p IN (15, 75) THEN 'medium'
    ELSE 'easy' END,
    format('What is %s%% of %s?', p, n),
    ARRAY[c, c + 1, c - 1, c * 10]::text[],
    format('%s%% of %s = %s × %s / 100 = %s.', p, n, p, n, c), g
FROM generate_series(1, 300) AS g,
    LATERAL (SELECT (ARRAY[5, 10, 15, 20, 25, 50, 75])[1 + g % 7] AS p,
	20 * (1 + (g / 7) % 43) AS n) AS v,
    LATERAL (SELECT p * n / 100 AS c) AS r;

INSERT INTO demo_q
SELECT 'Mathematics', 'Geometry', CASE WHEN g % 2 = 0 THEN 'easy'
    ELSE 'medium' END,
    format('A rectangle is %s cm long and %s cm wide. What is its %s?', w,
	h, CASE WHEN g % 2 = 0 THEN 'area' ELSE 'perimeter' END),
    CASE WHEN g % 2 = 0 THEN ARRAY[w * h || ' cm²', 2 * (w + h) || ' cm²',
	w * h + w || ' cm²', w + h || ' cm²']
    ELSE ARRAY[2 * (w + h) || ' cm', w * h || ' cm', w + h || ' cm',
	2 * w + h || ' cm'] END,
    CASE WHEN g % 2 = 0 THEN format('Area = length × width = %s cm².',
	w * h) ELSE format('Perimeter = 2 × (length + width) = %s cm.',
	2 * (w + h)) END, g
FROM generate_series(1, 300) AS g,
    LATERAL (SELECT 5 + g % 12 AS w, 7 + (g / 12) % 13 AS h) AS v;

-- Physics: motion, forces, matter, units.
INSERT INTO demo_q
SELECT 'Physics', 'Motion', 'easy',
    format('A cyclist rides %s km in %s hours at a steady pace. What is '
	'the average speed?', v * t, t),
    ARRAY[v || ' km/h', v + 5 || ' km/h', v * t || ' km/h',
	v - 5 || ' km/h'],
    format('Speed = distance / time = %s / %s = %s km/h.', v * t, t, v), g
FROM generate_series(1, 200) AS g,
    LATERAL (SELECT 10 + g % 30 AS v, 2 + (g / 30) % 5 AS t) AS x;

INSERT INTO demo_q
SELECT 'Physics', 'Forces', CASE WHEN m * a > 60 THEN 'medium' ELSE 'easy'
    END,
    format('What net force gives a %s kg mass an acceleration of %s m/s²?',
	m, a),
    ARRAY[m * a || ' N', m * a + 1 || ' N', 2 * m * a || ' N',
	m * a - 1 || ' N'],
    format('F = m × a = %s × %s = %s N.', m, a, m * a), g
FROM generate_series(1, 200) AS g,
    LATERAL (SELECT 2 + g % 20 AS m, 1 + (g / 20) % 10 AS a) AS x;

INSERT INTO demo_q
SELECT 'Physics', 'Matter', 'medium',
    format('A block of %s cm³ has a mass of %s g. What is its density?',
	vol, vol * d),
    ARRAY[d || ' g/cm³', d + 1 || ' g/cm³', d + 2 || ' g/cm³',
	d * 10 || ' g/cm³'],
    format('Density = mass / volume = %s / %s = %s g/cm³.', vol * d, vol,
	d), g
FROM generate_series(1, 200) AS g,
    LATERAL (SELECT 1 + g % 12 AS d, 2 + (g / 12) % 17 AS vol) AS x;

WITH u (qty, unit) AS (VALUES ('force', 'newton'), ('energy', 'joule'),
    ('power', 'watt'), ('pressure', 'pascal'), ('electric charge', 'coulomb'),
    ('electric current', 'ampere'), ('electrical resistance', 'ohm'),
    ('frequency', 'hertz'), ('voltage', 'volt'), ('mass', 'kilogram'),
    ('thermodynamic temperature', 'kelvin'), ('capacitance', 'farad'),
    ('magnetic flux density', 'tesla'), ('amount of substance', 'mole')),
r AS (SELECT *, row_number() OVER (ORDER BY unit) - 1 AS i,
    count(*) OVER () AS n FROM u)
INSERT INTO demo_q
SELECT 'Physics', 'Units', 'easy', format('What is the SI unit of %s?', a.qty),
    ARRAY[a.unit, b.unit, c.unit, d.unit],
    format('%s is measured in %ss.', upper(left(a.qty, 1)) || substr(a.qty, 2),
	a.unit), a.i::integer
FROM r a
JOIN r b ON b.i = (a.i + 3) % a.n
JOIN r c ON c.i = (a.i + 7) % a.n
JOIN r d ON d.i = (a.i + 11) % a.n;

-- Chemistry: elements (symbols, names, atomic numbers) and moles.
CREATE TEMP TABLE demo_elements (n, name, symbol) ON COMMIT DROP AS
VALUES (1, 'Hydrogen', 'H'), (2, 'Helium', 'He'), (3, 'Lithium', 'Li'),
    (4, 'Beryllium', 'Be'), (5, 'Boron', 'B'), (6, 'Carbon', 'C'),
    (7, 'Nitrogen', 'N'), (8, 'Oxygen', 'O'), (9, 'Fluorine', 'F'),
    (10, 'Neon', 'Ne'), (11, 'Sodium', 'Na'), (12, 'Magnesium', 'Mg'),
    (13, 'Aluminium', 'Al'), (14, 'Silicon', 'Si'), (15, 'Phosphorus', 'P'),
    (16, 'Sulfur', 'S'), (17, 'Chlorine', 'Cl'), (18, 'Argon', 'Ar'),
    (19, 'Potassium', 'K'), (20, 'Calcium', 'Ca'), (24, 'Chromium', 'Cr'),
    (25, 'Manganese', 'Mn'), (26, 'Iron', 'Fe'), (27, 'Cobalt', 'Co'),
    (28, 'Nickel', 'Ni'), (29, 'Copper', 'Cu'), (30, 'Zinc', 'Zn'),
    (47, 'Silver', 'Ag'), (50, 'Tin', 'Sn'), (53, 'Iodine', 'I'),
    (78, 'Platinum', 'Pt'), (79, 'Gold', 'Au'), (80, 'Mercury', 'Hg'),
    (82, 'Lead', 'Pb'), (92, 'Uranium', 'U');

-- Each element with three others, picked by rank.
CREATE TEMP TABLE demo_el4 ON COMMIT DROP AS
WITH r AS (SELECT *, row_number() OVER (ORDER BY n) - 1 AS i,
    count(*) OVER () AS c FROM demo_elements)
SELECT e.n, e.name, e.symbol, o1.name AS name1, o1.symbol AS symbol1,
    o2.name AS name2, o2.symbol AS symbol2, o3.name AS name3,
    o3.symbol AS symbol3
FROM r e
JOIN r o1 ON o1.i = (e.i + 5) % e.c
JOIN r o2 ON o2.i = (e.i + 11) % e.c
JOIN r o3 ON o3.i = (e.i + 17) % e.c;

INSERT INTO demo_q
SELECT 'Chemistry', 'Elements', CASE WHEN n > 30 THEN 'medium' ELSE 'easy'
    END,
    format('What is the chemical symbol for %s?', name),
    ARRAY[symbol, symbol1, symbol2, symbol3],
    format('%s is %s (atomic number %s).', name, symbol, n), n
FROM demo_el4
UNION ALL
SELECT 'Chemistry', 'Elements', CASE WHEN n > 30 THEN 'hard' ELSE 'medium'
    END,
    format('Which element has the symbol %s?', symbol),
    ARRAY[name, name1, name2, name3],
    format('%s is the symbol of %s.', symbol, name), n + 1
FROM demo_el4
UNION ALL
SELECT 'Chemistry', 'Periodic table', CASE WHEN n > 20 THEN 'hard'
    ELSE 'medium' END,
    format('What is the atomic number of %s?', name),
    ARRAY[n, n + 1, n + 2, n + 3]::text[],
    format('%s has %s protons.', name, n), n + 2
FROM demo_el4;

INSERT INTO demo_q
SELECT 'Chemistry', 'Moles', CASE WHEN c.mm > 40 THEN 'hard' ELSE 'medium'
    END,
    format('How many moles are there in %s g of %s (%s g/mol)?',
	c.mm * k, c.name, c.mm),
    ARRAY[k, k + 1, k + 2, k * 10]::text[],
    format('Moles = mass / molar mass = %s / %s = %s.', c.mm * k, c.mm, k),
    k + c.mm
FROM (VALUES ('water (H₂O)', 18), ('carbon dioxide (CO₂)', 44),
	('methane (CH₄)', 16), ('ammonia (NH₃)', 17), ('oxygen gas (O₂)', 32),
	('nitrogen gas (N₂)', 28), ('glucose (C₆H₁₂O₆)', 180),
	('sodium hydroxide (NaOH)', 40)) AS c (name, mm),
    generate_series(1, 30) AS k;

-- Biology: facts, and chromosome counts.
INSERT INTO demo_q
SELECT 'Biology', f.topic, f.difficulty, f.body,
    ARRAY[f.a, f.b, f.c, f.d], f.why, f.n
FROM (VALUES
    (1, 'Cells', 'easy', 'Which organelle releases energy from food by aerobic respiration?', 'Mitochondrion', 'Ribosome', 'Nucleus', 'Golgi apparatus', 'Mitochondria carry out aerobic respiration.'),
    (2, 'Cells', 'easy', 'Where is most of a cell''s DNA kept?', 'The nucleus', 'The cell membrane', 'The cytoplasm', 'The vacuole', 'Chromosomes are in the nucleus.'),
    (3, 'Cells', 'medium', 'Which structure makes proteins in a cell?', 'Ribosome', 'Lysosome', 'Centriole', 'Vacuole', 'Ribosomes translate mRNA into proteins.'),
    (4, 'Cells', 'medium', 'Which of these do plant cells have and animal cells lack?', 'A cell wall', 'A nucleus', 'A cell membrane', 'Mitochondria', 'Plant cells have a cellulose cell wall.'),
    (5, 'Plants', 'easy', 'Which gas do plants take in for photosynthesis?', 'Carbon dioxide', 'Oxygen', 'Nitrogen', 'Hydrogen', 'Photosynthesis turns CO₂ and water into glucose.'),
    (6, 'Plants', 'easy', 'Which pigment makes leaves green?', 'Chlorophyll', 'Haemoglobin', 'Melanin', 'Carotene', 'Chlorophyll absorbs red and blue light.'),
    (7, 'Plants', 'medium', 'Which tissue carries water up a plant stem?', 'Xylem', 'Phloem', 'Cambium', 'Epidermis', 'Xylem carries water; phloem carries sugars.'),
    (8, 'Plants', 'medium', 'Through which pores does a leaf exchange gases?', 'Stomata', 'Root hairs', 'Lenticels', 'Petioles', 'Guard cells open and close the stomata.'),
    (9, 'Human body', 'easy', 'Which organ pumps blood around the body?', 'The heart', 'The liver', 'The lungs', 'The kidneys', 'The heart is a muscular pump.'),
    (10, 'Human body', 'easy', 'Which blood cells carry oxygen?', 'Red blood cells', 'White blood cells', 'Platelets', 'Plasma cells', 'Haemoglobin in red cells binds oxygen.'),
    (11, 'Human body', 'medium', 'Which organ filters urea out of the blood?', 'The kidneys', 'The pancreas', 'The spleen', 'The stomach', 'Kidneys make urine from filtered blood.'),
    (12, 'Human body', 'medium', 'Which hormone lowers the level of glucose in the blood?', 'Insulin', 'Adrenaline', 'Glucagon', 'Thyroxine', 'Insulin from the pancreas lowers blood glucose.'),
    (13, 'Human body', 'hard', 'In which part of the gut is most digested food absorbed?', 'The small intestine', 'The stomach', 'The large intestine', 'The oesophagus', 'Villi in the small intestine absorb nutrients.'),
    (14, 'Human body', 'medium', 'How many chambers does the human heart have?', '4', '2', '3', '6', 'Two atria and two ventricles.'),
    (15, 'Genetics', 'medium', 'Which molecule carries genetic information in most living things?', 'DNA', 'ATP', 'Glucose', 'Cellulose', 'Genes are sections of DNA.'),
    (16, 'Genetics', 'medium', 'Which base pairs with adenine in DNA?', 'Thymine', 'Uracil', 'Guanine', 'Cytosine', 'A pairs with T, and C with G.'),
    (17, 'Genetics', 'hard', 'Two carriers (Aa × Aa) have a child. What is the chance it is aa?', '1 in 4', '1 in 2', '3 in 4', '1 in 8', 'A Punnett square gives AA, Aa, Aa, aa.'),
    (18, 'Genetics', 'hard', 'What kind of cell division makes gametes?', 'Meiosis', 'Mitosis', 'Binary fission', 'Budding', 'Meiosis halves the chromosome number.'),
    (19, 'Ecology', 'easy', 'What is the first link of almost every food chain?', 'A producer', 'A herbivore', 'A carnivore', 'A decomposer', 'Producers such as plants make food from light.'),
    (20, 'Ecology', 'medium', 'Which organisms break down dead material and return nutrients to the soil?', 'Decomposers', 'Producers', 'Predators', 'Parasites', 'Bacteria and fungi are decomposers.'),
    (21, 'Ecology', 'medium', 'Which process returns carbon dioxide to the air?', 'Respiration', 'Photosynthesis', 'Transpiration', 'Osmosis', 'Respiration and combustion release CO₂.'),
    (22, 'Evolution', 'hard', 'Who proposed evolution by natural selection in 1859?', 'Charles Darwin', 'Gregor Mendel', 'Louis Pasteur', 'Isaac Newton', 'On the Origin of Species, 1859.'),
    (23, 'Cells', 'hard', 'Which process moves water across a partially permeable membrane?', 'Osmosis', 'Active transport', 'Diffusion of ions', 'Phagocytosis', 'Osmosis moves water down its concentration gradient.'),
    (24, 'Human body', 'easy', 'Which organ do we breathe with?', 'The lungs', 'The heart', 'The liver', 'The skin', 'Gas exchange happens in the alveoli of the lungs.')
) AS f (n, topic, difficulty, body, a, b, c, d, why);

INSERT INTO demo_q
SELECT 'Biology', 'Genetics', 'medium',
    format('The body cells of a species have %s chromosomes. How many are '
	'in each of its sperm or egg cells?', 2 * k),
    ARRAY[k, 2 * k, 4 * k, k + 1]::text[],
    format('Gametes are haploid: %s / 2 = %s.', 2 * k, k), k
FROM generate_series(3, 50) AS k;

-- History: dates.
INSERT INTO demo_q
SELECT 'History', e.topic, CASE WHEN e.y < 1500 THEN 'hard' WHEN e.y < 1900
    THEN 'medium' ELSE 'easy' END,
    format('In which year %s?', e.what),
    ARRAY[e.y, e.y + 10, e.y - 25, e.y + 50]::text[],
    format('It happened in %s.', e.y), e.y
FROM (VALUES
    ('Medieval', 'did William the Conqueror win the Battle of Hastings', 1066),
    ('Medieval', 'was Magna Carta sealed', 1215),
    ('Medieval', 'did the Black Death reach England', 1348),
    ('Early modern', 'did Constantinople fall to the Ottomans', 1453),
    ('Early modern', 'did Columbus first reach the Americas', 1492),
    ('Early modern', 'did Martin Luther publish his Ninety-five Theses', 1517),
    ('Early modern', 'was the Spanish Armada defeated', 1588),
    ('Early modern', 'did the Mayflower sail to America', 1620),
    ('Early modern', 'did the Great Fire of London happen', 1666),
    ('Revolutions', 'was the US Declaration of Independence signed', 1776),
    ('Revolutions', 'was the Bastille stormed', 1789),
    ('Revolutions', 'was the Battle of Waterloo fought', 1815),
    ('Industrial age', 'did the Stockton and Darlington Railway open', 1825),
    ('Industrial age', 'was slavery abolished throughout the British Empire', 1833),
    ('Industrial age', 'did the American Civil War end', 1865),
    ('Industrial age', 'was the Suez Canal opened', 1869),
    ('Modern', 'did the Titanic sink', 1912),
    ('Modern', 'did the First World War begin', 1914),
    ('Modern', 'did the First World War end', 1918),
    ('Modern', 'did women in the UK first vote in a general election', 1918),
    ('Modern', 'did the Wall Street Crash happen', 1929),
    ('Modern', 'did the Second World War begin', 1939),
    ('Modern', 'did the Second World War end', 1945),
    ('Modern', 'was the United Nations founded', 1945),
    ('Modern', 'did India become independent', 1947),
    ('Modern', 'was the first Sputnik launched', 1957),
    ('Modern', 'did humans first land on the Moon', 1969),
    ('Modern', 'did the Berlin Wall fall', 1989),
    ('Modern', 'did Nelson Mandela become President of South Africa', 1994)
) AS e (topic, what, y);

-- Geography: capitals, both ways.
CREATE TEMP TABLE demo_capitals ON COMMIT DROP AS
WITH c (country, capital) AS (VALUES ('France', 'Paris'),
    ('Germany', 'Berlin'), ('Italy', 'Rome'), ('Spain', 'Madrid'),
    ('Portugal', 'Lisbon'), ('Netherlands', 'Amsterdam'),
    ('Belgium', 'Brussels'), ('Austria', 'Vienna'), ('Poland', 'Warsaw'),
    ('Sweden', 'Stockholm'), ('Norway', 'Oslo'), ('Finland', 'Helsinki'),
    ('Denmark', 'Copenhagen'), ('Ireland', 'Dublin'), ('Greece', 'Athens'),
    ('Hungary', 'Budapest'), ('Czechia', 'Prague'), ('Romania', 'Bucharest'),
    ('Turkey', 'Ankara'), ('Egypt', 'Cairo'), ('Kenya', 'Nairobi'),
    ('Nigeria', 'Abuja'), ('Morocco', 'Rabat'), ('Ghana', 'Accra'),
    ('Japan', 'Tokyo'), ('China', 'Beijing'), ('India', 'New Delhi'),
    ('Thailand', 'Bangkok'), ('Vietnam', 'Hanoi'), ('Indonesia', 'Jakarta'),
    ('Australia', 'Canberra'), ('New Zealand', 'Wellington'),
    ('Canada', 'Ottawa'), ('United States', 'Washington, D.C.'),
    ('Mexico', 'Mexico City'), ('Brazil', 'Brasília'),
    ('Argentina', 'Buenos Aires'), ('Chile', 'Santiago'), ('Peru', 'Lima'),
    ('Colombia', 'Bogotá')),
r AS (SELECT *, row_number() OVER (ORDER BY country) - 1 AS i,
    count(*) OVER () AS n FROM c)
SELECT a.i, a.country, a.capital, b.country AS country1,
    b.capital AS capital1, x.country AS country2, x.capital AS capital2,
    y.country AS country3, y.capital AS capital3
FROM r a
JOIN r b ON b.i = (a.i + 7) % a.n
JOIN r x ON x.i = (a.i + 15) % a.n
JOIN r y ON y.i = (a.i + 23) % a.n;

INSERT INTO demo_q
SELECT 'Geography', 'Capital cities', CASE WHEN i % 3 = 0 THEN 'medium'
    ELSE 'easy' END,
    format('What is the capital of %s?', country),
    ARRAY[capital, capital1, capital2, capital3],
    format('%s is the capital of %s.', capital, country), i::integer
FROM demo_capitals
UNION ALL
SELECT 'Geography', 'Capital cities', CASE WHEN i % 3 = 0 THEN 'hard'
    ELSE 'medium' END,
    format('%s is the capital of which country?', capital),
    ARRAY[country, country1, country2, country3],
    format('%s is the capital of %s.', capital, country), i::integer + 1
FROM demo_capitals;

-- English: synonyms, antonyms, irregular verbs.
CREATE TEMP TABLE demo_words ON COMMIT DROP AS
WITH w (kind, word, pair) AS (VALUES
    ('Synonyms', 'happy', 'cheerful'), ('Synonyms', 'big', 'large'),
    ('Synonyms', 'quick', 'rapid'), ('Synonyms', 'begin', 'commence'),
    ('Synonyms', 'brave', 'courageous'), ('Synonyms', 'tired', 'weary'),
    ('Synonyms', 'angry', 'furious'), ('Synonyms', 'smart', 'clever'),
    ('Synonyms', 'old', 'ancient'), ('Synonyms', 'hard', 'difficult'),
    ('Synonyms', 'rich', 'wealthy'), ('Synonyms', 'quiet', 'silent'),
    ('Synonyms', 'funny', 'amusing'), ('Synonyms', 'shy', 'timid'),
    ('Synonyms', 'strange', 'peculiar'), ('Synonyms', 'tiny', 'minute'),
    ('Antonyms', 'ancient', 'modern'), ('Antonyms', 'generous', 'mean'),
    ('Antonyms', 'victory', 'defeat'), ('Antonyms', 'expand', 'contract'),
    ('Antonyms', 'accept', 'refuse'), ('Antonyms', 'scarce', 'plentiful'),
    ('Antonyms', 'hostile', 'friendly'), ('Antonyms', 'rigid', 'flexible'),
    ('Antonyms', 'innocent', 'guilty'), ('Antonyms', 'temporary', 'permanent'),
    ('Antonyms', 'transparent', 'opaque'), ('Antonyms', 'arrive', 'depart'),
    ('Antonyms', 'maximum', 'minimum'), ('Antonyms', 'increase', 'decrease'),
    ('Antonyms', 'shallow', 'deep'), ('Antonyms', 'cautious', 'reckless')),
r AS (SELECT *, row_number() OVER (PARTITION BY kind ORDER BY word) - 1 AS i,
    count(*) OVER (PARTITION BY kind) AS n FROM w)
SELECT a.kind, a.i, a.word, a.pair, b.pair AS pair1, c.pair AS pair2,
    d.pair AS pair3
FROM r a
JOIN r b ON b.kind = a.kind AND b.i = (a.i + 3) % a.n
JOIN r c ON c.kind = a.kind AND c.i = (a.i + 7) % a.n
JOIN r d ON d.kind = a.kind AND d.i = (a.i + 11) % a.n;

INSERT INTO demo_q
SELECT 'English', kind, CASE WHEN i % 2 = 0 THEN 'easy' ELSE 'medium' END,
    format('Which word is %s in meaning to "%s"?', CASE kind
	WHEN 'Synonyms' THEN 'closest' ELSE 'most nearly opposite' END, word),
    ARRAY[pair, pair1, pair2, pair3],
    format('"%s" %s "%s".', word, CASE kind WHEN 'Synonyms' THEN
	'means much the same as' ELSE 'is the opposite of' END, pair),
    i::integer
FROM demo_words;

INSERT INTO demo_q
SELECT 'English', 'Irregular verbs', CASE WHEN i % 3 = 0 THEN 'medium'
    ELSE 'easy' END,
    format('What is the simple past tense of "to %s"?', v),
    ARRAY[past, participle, CASE WHEN v LIKE '%e' THEN v || 'd'
	ELSE v || 'ed' END, 'had ' || participle],
    format('%s, %s, %s: "I %s" but "I have %s".', v, past, participle,
	past, participle), i
FROM (VALUES (1, 'go', 'went', 'gone'), (2, 'see', 'saw', 'seen'),
    (3, 'take', 'took', 'taken'), (4, 'write', 'wrote', 'written'),
    (5, 'eat', 'ate', 'eaten'), (6, 'begin', 'began', 'begun'),
    (7, 'drink', 'drank', 'drunk'), (8, 'swim', 'swam', 'swum'),
    (9, 'sing', 'sang', 'sung'), (10, 'ring', 'rang', 'rung'),
    (11, 'drive', 'drove', 'driven'), (12, 'ride', 'rode', 'ridden'),
    (13, 'rise', 'rose', 'risen'), (14, 'speak', 'spoke', 'spoken'),
    (15, 'break', 'broke', 'broken'), (16, 'choose', 'chose', 'chosen'),
    (17, 'freeze', 'froze', 'frozen'), (18, 'steal', 'stole', 'stolen'),
    (19, 'wake', 'woke', 'woken'), (20, 'fall', 'fell', 'fallen'),
    (21, 'give', 'gave', 'given'), (22, 'forget', 'forgot', 'forgotten'),
    (23, 'know', 'knew', 'known'), (24, 'grow', 'grew', 'grown'),
    (25, 'throw', 'threw', 'thrown'), (26, 'fly', 'flew', 'flown'),
    (27, 'draw', 'drew', 'drawn'), (28, 'bite', 'bit', 'bitten'),
    (29, 'hide', 'hid', 'hidden'), (30, 'shake', 'shook', 'shaken'))
    AS x (i, v, past, participle);

-- Into the bank, each once; the right option lands on index g % 4.
INSERT INTO questions (subject, topic, difficulty, body, options, answer,
    explanation, created_by, created_at, updated_at)
SELECT d.subject, d.topic, d.difficulty, d.body,
    pg_temp.demo_options(d.opts, d.g % 4), d.g % 4, d.explanation,
    (SELECT id FROM users WHERE username = 'staff'),
    now() - (d.g % 90) * interval '1 day' - (d.g * 7 % 1440) *
	interval '1 minute',
    now() - (d.g % 90) * interval '1 day' - (d.g * 7 % 1440) *
	interval '1 minute'
FROM (SELECT DISTINCT ON (subject, topic, body) * FROM demo_q
    ORDER BY subject, topic, body, g) AS d
WHERE NOT EXISTS (SELECT FROM questions q WHERE q.subject = d.subject
    AND q.topic = d.topic AND q.body = d.body);

-- Six tests a subject, the sixth a draft; 10-20 of its questions each,
-- picked by a hash of the title, in positions 0..n-1.
WITH t AS (
	INSERT INTO tests (title, subject, duration_minutes, published,
	    created_by, created_at, updated_at)
	SELECT format('%s practice test %s', s.subject, n), s.subject,
	    10 + (n * 7 + length(s.subject)) % 51, n < 6,
	    (SELECT id FROM users WHERE username = 'staff'),
	    now() - (60 - n * 10) * interval '1 day',
	    now() - (60 - n * 10) * interval '1 day'
	FROM (VALUES ('Mathematics'), ('Physics'), ('Chemistry'),
	    ('Biology'), ('History'), ('Geography'), ('English')) AS s (subject),
	    generate_series(1, 6) AS n
	WHERE NOT EXISTS (SELECT FROM tests x WHERE x.title =
	    format('%s practice test %s', s.subject, n))
	RETURNING id, title, subject
)
INSERT INTO test_questions (test_id, question_id, position)
SELECT t.id, p.id, p.pos
FROM t, LATERAL (
	SELECT q.id, (row_number() OVER (ORDER BY md5(q.id || t.title)) - 1)
	    ::integer AS pos
	FROM questions q
	WHERE q.subject = t.subject AND NOT q.is_archived
	ORDER BY md5(q.id || t.title)
	LIMIT 10 + (length(t.title) * 7 + t.id) % 11
) AS p;

-- Gone now rather than at the commit, so the file can run twice in one
-- transaction (test_question_bank.py checks it is idempotent that way).
DROP TABLE demo_q, demo_elements, demo_el4, demo_capitals, demo_words;
DROP FUNCTION pg_temp.demo_options(text[], integer);
