/* SPDX-License-Identifier: ISC */
/*
 * json.c -- strict JSON parsing and typed field extraction.
 *
 * Input tables (struct keel_field) say what each field must be; extraction
 * collects one message per bad field so a client learns every problem in
 * one round trip (API.md: "fields").  Strings are measured in characters
 * and must be valid UTF-8 without NUL bytes.
 */
#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "keel/json.h"
#include "keel/mem.h"
#include "keel/text.h"

/*
 * A validating scan of RFC 8259's grammar, run before json-c parses: json-c
 * is lenient even in strict mode (single quotes, NaN, raw control
 * characters in strings, "1.") and counts depth differently.  No
 * allocation; returns the offset of the first error, or -1 when s[0..n)
 * is exactly one JSON text (UTF-8 is checked separately).
 *
 * It counts the values as it goes and stops at the first past
 * KEEL_JSON_MAXVALUES, so what json-c builds next is bounded whatever the
 * body holds; a body past it costs a linear scan and no allocation.
 *
 * It also refuses two escapes json-c would read wrong: \u0000 in a name
 * (json-c's keys are C strings, so "front\u0000x" became "front"; a value
 * keeps its NUL and its field refuses it, field_from_json()), and a
 * UTF-16 surrogate escape not in a high-low pair (no Unicode scalar
 * value, RFC 8259 §8.2: "unpredictable"; json-c stored U+FFFD for it):
 * the body is then as unreadable as invalid UTF-8 is.
 */
struct scan {
	const char	*s;
	size_t		 n, i;
	int		 depth;
	size_t		 values;	/* seen so far, containers included */
	const char	*why;		/* an error's reason, NULL: malformed */
};

static void
scan_ws(struct scan *sc)
{
	while (sc->i < sc->n && strchr(" \t\r\n", sc->s[sc->i]) != NULL &&
	    sc->s[sc->i] != '\0')
		sc->i++;
}

static int
scan_lit(struct scan *sc, const char *lit)
{
	size_t	 len = strlen(lit);

	if (sc->n - sc->i < len || memcmp(sc->s + sc->i, lit, len) != 0)
		return -1;
	sc->i += len;
	return 0;
}

static int
scan_digits(struct scan *sc)
{
	size_t	 start = sc->i;

	while (sc->i < sc->n && sc->s[sc->i] >= '0' && sc->s[sc->i] <= '9')
		sc->i++;
	return sc->i > start ? 0 : -1;
}

/* number = [ minus ] int [ frac ] [ exp ] (RFC 8259 §6) */
static int
scan_number(struct scan *sc)
{
	if (sc->s[sc->i] == '-')
		sc->i++;
	if (sc->i < sc->n && sc->s[sc->i] == '0')
		sc->i++;
	else if (scan_digits(sc) == -1)
		return -1;
	if (sc->i < sc->n && sc->s[sc->i] == '.') {
		sc->i++;
		if (scan_digits(sc) == -1)
			return -1;
	}
	if (sc->i < sc->n && (sc->s[sc->i] == 'e' || sc->s[sc->i] == 'E')) {
		sc->i++;
		if (sc->i < sc->n && (sc->s[sc->i] == '+' || sc->s[sc->i] == '-'))
			sc->i++;
		if (scan_digits(sc) == -1)
			return -1;
	}
	return 0;
}

/* The XXXX of a \uXXXX at s[i] into *cp; -1 if they are not 4 hex digits. */
static int
scan_hex4(struct scan *sc, unsigned int *cp)
{
	unsigned char	 c;
	int		 k;

	*cp = 0;
	for (k = 0; k < 4; k++, sc->i++) {
		if (sc->i >= sc->n ||
		    !isxdigit(c = (unsigned char)sc->s[sc->i]))
			return -1;
		*cp = *cp << 4 | (unsigned int)(isdigit(c) ? c - '0' :
		    tolower(c) - 'a' + 10);
	}
	return 0;
}

/*
 * The rest of a \u escape whose u is at s[i - 1], esc the offset of its
 * backslash: a NUL in a name, or a surrogate not in a pair, is an error
 * (sc->why says which, sc->i points at the escape).
 */
static int
scan_unicode(struct scan *sc, size_t esc, int name)
{
	unsigned int	 cp, lo;

	if (scan_hex4(sc, &cp) == -1)
		return -1;
	if (cp == 0 && name) {
		sc->why = "a name holds a NUL character (\\u0000)";
		goto fail;
	}
	if (cp >= 0xdc00 && cp <= 0xdfff)
		goto lone;
	if (cp < 0xd800 || cp > 0xdbff)
		return 0;
	/* A high surrogate: the low one must follow, escaped (§7). */
	if (sc->n - sc->i < 2 || sc->s[sc->i] != '\\' ||
	    sc->s[sc->i + 1] != 'u')
		goto lone;
	sc->i += 2;
	if (scan_hex4(sc, &lo) == -1)
		return -1;
	if (lo >= 0xdc00 && lo <= 0xdfff)
		return 0;
lone:
	sc->why = "a UTF-16 surrogate escape not in a high-low pair";
fail:
	sc->i = esc;
	return -1;
}

/*
 * string = quotation-mark *char quotation-mark (RFC 8259 §7); name: the
 * string is an object member's name.
 */
static int
scan_string(struct scan *sc, int name)
{
	unsigned char	 c;

	sc->i++;			/* the opening quote */
	while (sc->i < sc->n) {
		c = (unsigned char)sc->s[sc->i++];
		if (c == '"')
			return 0;
		if (c < 0x20)
			return -1;	/* control characters must be escaped */
		if (c != '\\')
			continue;
		if (sc->i >= sc->n)
			return -1;
		c = (unsigned char)sc->s[sc->i++];
		if (c == 'u') {
			if (scan_unicode(sc, sc->i - 2, name) == -1)
				return -1;
		} else if (strchr("\"\\/bfnrt", c) == NULL || c == '\0')
			return -1;
	}
	return -1;
}

static int	scan_value(struct scan *);

/* object or array: open, members separated by commas, close. */
static int
scan_container(struct scan *sc, char close)
{
	if (++sc->depth > KEEL_JSON_MAXDEPTH)
		return -1;
	sc->i++;
	scan_ws(sc);
	if (sc->i < sc->n && sc->s[sc->i] == close) {
		sc->i++;
		sc->depth--;
		return 0;
	}
	for (;;) {
		if (close == '}') {
			if (sc->i >= sc->n || sc->s[sc->i] != '"' ||
			    scan_string(sc, 1) == -1)
				return -1;
			scan_ws(sc);
			if (sc->i >= sc->n || sc->s[sc->i++] != ':')
				return -1;
		}
		if (scan_value(sc) == -1)
			return -1;
		scan_ws(sc);
		if (sc->i >= sc->n)
			return -1;
		if (sc->s[sc->i] == close) {
			sc->i++;
			sc->depth--;
			return 0;
		}
		if (sc->s[sc->i++] != ',')
			return -1;
		scan_ws(sc);
	}
}

static int
scan_value(struct scan *sc)
{
	scan_ws(sc);
	if (sc->i >= sc->n || ++sc->values > KEEL_JSON_MAXVALUES)
		return -1;
	switch (sc->s[sc->i]) {
	case '{':
		return scan_container(sc, '}');
	case '[':
		return scan_container(sc, ']');
	case '"':
		return scan_string(sc, 0);
	case 't':
		return scan_lit(sc, "true");
	case 'f':
		return scan_lit(sc, "false");
	case 'n':
		return scan_lit(sc, "null");
	default:
		if (sc->s[sc->i] == '-' ||
		    (sc->s[sc->i] >= '0' && sc->s[sc->i] <= '9'))
			return scan_number(sc);
		return -1;
	}
}

/*
 * Scans sc, fresh, to its end.  On an error sc says which bound was
 * passed (depth, values) or why (NULL: malformed).
 */
static long
json_scan(struct scan *sc)
{
	if (scan_value(sc) == 0) {
		scan_ws(sc);
		if (sc->i == sc->n)
			return -1;
	}
	return (long)sc->i;
}

enum keel_err
keel_json_parse(const char *buf, size_t len, struct json_object **out,
    char *err, size_t errlen)
{
	struct json_tokener	*tok;
	struct json_object	*obj;
	enum json_tokener_error	 jerr;
	struct scan		 sc = { buf, len, 0, 0, 0, NULL };
	long			 bad;

	*out = NULL;
	if (len == 0) {
		snprintf(err, errlen, "the body is empty");
		return KEEL_EINVAL;
	}
	if (memchr(buf, '\0', len) != NULL) {
		snprintf(err, errlen, "the body contains a NUL byte");
		return KEEL_EINVAL;
	}
	if (!keel_utf8_valid(buf, len)) {
		snprintf(err, errlen, "the body is not valid UTF-8");
		return KEEL_EINVAL;
	}
	if ((bad = json_scan(&sc)) != -1) {
		if (sc.depth > KEEL_JSON_MAXDEPTH)
			snprintf(err, errlen, "the JSON nests deeper than %d "
			    "levels", KEEL_JSON_MAXDEPTH);
		else if (sc.values > KEEL_JSON_MAXVALUES)
			snprintf(err, errlen, "the JSON holds more than %d "
			    "values", KEEL_JSON_MAXVALUES);
		else if (sc.why != NULL)
			snprintf(err, errlen, "%s at byte %ld", sc.why, bad);
		else
			snprintf(err, errlen, "malformed JSON at byte %ld",
			    bad);
		return KEEL_EINVAL;
	}
	/* json-c counts the innermost value as a level too. */
	if ((tok = json_tokener_new_ex(KEEL_JSON_MAXDEPTH + 1)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return KEEL_EINTERNAL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT |
	    JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, buf, (int)len);
	/* A bare top-level number may still "continue": say the text ended. */
	if (obj == NULL && json_tokener_get_error(tok) == json_tokener_continue)
		obj = json_tokener_parse_ex(tok, "", 1);
	jerr = json_tokener_get_error(tok);
	/*
	 * json_scan() vouched for the grammar and for nothing after the
	 * value; json-c failing now means it ran out of memory.  A NULL
	 * with success is the document `null` (json-c's null is NULL):
	 * the one value that starts with 'n'.
	 */
	sc.i = 0;
	scan_ws(&sc);
	if (jerr != json_tokener_success ||
	    (obj == NULL && buf[sc.i] != 'n')) {
		snprintf(err, errlen, "the JSON could not be parsed: %s",
		    jerr != json_tokener_success ?
		    json_tokener_error_desc(jerr) : "out of memory");
		json_object_put(obj);
		json_tokener_free(tok);
		return KEEL_EINVAL;
	}
	json_tokener_free(tok);
	*out = obj;
	return KEEL_OK;
}

static const char *
check_string(const struct keel_field *f, const char *s, size_t len)
{
	size_t	 chars;

	if (!keel_utf8_valid(s, len))
		return "must be valid UTF-8";
	chars = keel_utf8_chars(s);
	if (f->max > 0 && chars > (size_t)f->max)
		return "is too long";
	if (chars < (size_t)f->min)
		return f->min <= 1 ? "must not be empty" : "is too short";
	if (f->check != NULL && !f->check(s))
		return f->check_msg != NULL ? f->check_msg : "is not valid";
	return NULL;
}

static const char *
check_enum(const struct keel_field *f, const char *s)
{
	const char *const *v;

	for (v = f->values; *v != NULL; v++)
		if (strcmp(*v, s) == 0)
			return NULL;
	return "is not one of the allowed values";
}

static const char *
check_int(const struct keel_field *f, int64_t v)
{
	if (f->type == KEEL_FIELD_ID)
		return v >= 1 ? NULL : "must be a positive id";
	if ((f->min != 0 || f->max != 0) && (v < f->min || v > f->max))
		return "is out of range";
	return NULL;
}

/* An object whose members the handler checks. */
static const char *
check_object(const struct keel_field *f, struct json_object *o,
    struct keel_value *v)
{
	int64_t	 n;

	if (!json_object_is_type(o, json_type_object))
		return "must be an object";
	n = json_object_object_length(o);
	v->o = o;
	if (f->max > 0 && n > f->max)
		return "has too many members";
	if (n < f->min)
		return "has too few members";
	return NULL;
}

/*
 * The problems of one body, bounded whatever the body holds (a 1 MB body
 * of unknown names once made a 3 MB answer): at most KEEL_JSON_MAXERRORS
 * entries, each name cut to KEEL_JSON_MAXNAME bytes; the rest are only
 * counted, for keel_json_fields() to report as one more entry.
 */
struct errs {
	struct json_object	*o;		/* name -> message */
	size_t			 rest;		/* problems not listed */
};

/*
 * Adds msg for the member name of the object called prefix: prefix
 * NULL for the body, name NULL for the object itself (the body is
 * "body", an element "items[2]").  A name already listed keeps its
 * first message; the second is counted (two long names can share
 * their cut).
 */
static void
errs_add(struct errs *e, const char *prefix, const char *name,
    const char *msg)
{
	char		 full[256];
	const char	*more = "";
	size_t		 n = 0;

	if (name != NULL && (n = strlen(name)) > KEEL_JSON_MAXNAME) {
		/* Never in the middle of a character (the body is UTF-8). */
		n = KEEL_JSON_MAXNAME;
		while (n > 0 && ((unsigned char)name[n] & 0xc0) == 0x80)
			n--;
		more = KEEL_JSON_CUT;
	}
	if (name == NULL)
		snprintf(full, sizeof(full), "%s",
		    prefix != NULL ? prefix : "body");
	else
		snprintf(full, sizeof(full), "%s%s%.*s%s",
		    prefix != NULL ? prefix : "", prefix != NULL ? "." : "",
		    (int)n, name, more);
	if (json_object_object_get_ex(e->o, full, NULL) ||
	    json_object_object_length(e->o) >= KEEL_JSON_MAXERRORS) {
		e->rest++;
		return;
	}
	json_object_object_add(e->o, full, json_object_new_string(msg));
}

static bool	fields_from_json(struct json_object *,
		    const struct keel_field *, size_t, int,
		    struct keel_value *, struct errs *, const char *);

/* Validates one JSON value against f into v; a message, or NULL. */
static const char *
field_from_json(const struct keel_field *f, struct json_object *o,
    struct keel_value *v)
{
	const char	*msg;
	int64_t		 iv;

	v->present = true;
	v->type = f->type;
	if (o == NULL) {
		v->is_null = true;
		return f->nullable ? NULL : "must not be null";
	}
	switch (f->type) {
	case KEEL_FIELD_STRING:
	case KEEL_FIELD_ENUM:
	case KEEL_FIELD_DATE:
		if (!json_object_is_type(o, json_type_string))
			return "must be a string";
		v->s = json_object_get_string(o);
		/*
		 * json-c keeps a \u0000 in the string, and everything after
		 * it reads as C would: "2026-01-01\u0000junk" as a date,
		 * "rented\u0000x" as "rented".  Every kind, once, here.
		 */
		if (strlen(v->s) != (size_t)json_object_get_string_len(o))
			return "must not contain NUL characters";
		if (f->type == KEEL_FIELD_DATE)
			return keel_date_valid(v->s) ? NULL :
			    "must be a date (YYYY-MM-DD)";
		if (f->type == KEEL_FIELD_ENUM)
			return check_enum(f, v->s);
		return check_string(f, v->s,
		    (size_t)json_object_get_string_len(o));
	case KEEL_FIELD_INT:
	case KEEL_FIELD_ID:
		if (!json_object_is_type(o, json_type_int))
			return "must be an integer";
		/* json-c saturates past int64; errno says it did. */
		errno = 0;
		iv = json_object_get_int64(o);
		if (errno != 0 || iv == INT64_MAX || iv == INT64_MIN)
			return "is out of range";
		v->i = iv;
		msg = check_int(f, iv);
		return msg;
	case KEEL_FIELD_BOOL:
		if (!json_object_is_type(o, json_type_boolean))
			return "must be true or false";
		v->b = json_object_get_boolean(o);
		return NULL;
	case KEEL_FIELD_OBJECT:
		return check_object(f, o, v);
	case KEEL_FIELD_ARRAY:		/* array_from_json() */
	case KEEL_FIELD_TYPE__MAX:
		break;
	}
	return "has an unsupported type";
}

/*
 * Validates the array o against f into v, each element an object of
 * f->of (or a value of its one unnamed field); adds each problem to e,
 * named for its element ("items[2].topic", "options[1]") under prefix.
 * True when there was none.
 */
static bool
array_from_json(const struct keel_field *f, struct json_object *o,
    struct keel_value *v, struct errs *e, const char *prefix)
{
	struct keel_value	 ev[KEEL_FIELD_MAXOF];
	const char		*msg;
	char			 name[128];
	size_t			 i, n;
	bool			 ok = true;

	assert(f->nof <= KEEL_FIELD_MAXOF);
	v->present = true;
	v->type = f->type;
	if (!json_object_is_type(o, json_type_array)) {
		errs_add(e, prefix, f->name, "must be an array");
		return false;
	}
	n = json_object_array_length(o);
	if ((f->max > 0 && n > (size_t)f->max) || n < (size_t)f->min) {
		snprintf(name, sizeof(name), "must have %lld to %lld elements",
		    (long long)f->min, (long long)f->max);
		errs_add(e, prefix, f->name, name);
		return false;
	}
	v->o = o;
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s%s%s[%zu]",
		    prefix != NULL ? prefix : "", prefix != NULL ? "." : "",
		    f->name, i);
		if (f->nof == 1 && f->of->name == NULL) {
			/* Values, not objects: the element is the field. */
			if ((msg = field_from_json(f->of,
			    json_object_array_get_idx(o, i), ev)) != NULL) {
				ok = false;
				errs_add(e, name, NULL, msg);
			}
			continue;
		}
		if (!fields_from_json(json_object_array_get_idx(o, i), f->of,
		    f->nof, KEEL_FIELDS_ALL, ev, e, name))
			ok = false;
	}
	return ok;
}

/*
 * keel_json_fields() for the object obj called prefix (NULL: the body):
 * true when it had no problem.  The table's own fields first, so their
 * problems are listed before any unknown name's.
 */
static bool
fields_from_json(struct json_object *obj, const struct keel_field *fields,
    size_t n, int mode, struct keel_value *vals, struct errs *e,
    const char *prefix)
{
	struct json_object	*o;
	const char		*msg;
	size_t			 i, given = 0;
	bool			 ok = true;

	memset(vals, 0, n * sizeof(*vals));
	if (!json_object_is_type(obj, json_type_object)) {
		errs_add(e, prefix, NULL, "must be a JSON object");
		return false;
	}
	for (i = 0; i < n; i++) {
		if (!json_object_object_get_ex(obj, fields[i].name, &o)) {
			if (mode == KEEL_FIELDS_ALL && fields[i].required) {
				errs_add(e, prefix, fields[i].name,
				    "is required");
				ok = false;
			}
			continue;
		}
		given++;
		if (fields[i].type == KEEL_FIELD_ARRAY && o != NULL) {
			if (!array_from_json(&fields[i], o, &vals[i], e,
			    prefix))
				ok = false;
		} else if ((msg = field_from_json(&fields[i], o, &vals[i])) !=
		    NULL) {
			errs_add(e, prefix, fields[i].name, msg);
			ok = false;
		}
	}
	/* Unknown fields are rejected: a typo must not pass silently. */
	json_object_object_foreach(obj, key, val) {
		(void)val;
		for (i = 0; i < n; i++)
			if (strcmp(fields[i].name, key) == 0)
				break;
		if (i == n) {
			errs_add(e, prefix, key, "is not a known field");
			ok = false;
		}
	}
	if (mode == KEEL_FIELDS_SOME && given == 0 && ok) {
		errs_add(e, prefix, NULL, "must change at least one field");
		ok = false;
	}
	return ok;
}

enum keel_err
keel_json_fields(struct json_object *obj, const struct keel_field *fields,
    size_t n, int mode, struct keel_value *vals, struct json_object *errors)
{
	struct errs	 e = { errors, 0 };
	char		 msg[64];

	if (fields_from_json(obj, fields, n, mode, vals, &e, NULL))
		return KEEL_OK;
	if (e.rest > 0) {
		/* A client's own name "…" gives way, and is counted. */
		if (json_object_object_get_ex(errors, KEEL_JSON_CUT, NULL))
			e.rest++;
		snprintf(msg, sizeof(msg), "%zu more %s not listed", e.rest,
		    e.rest == 1 ? "problem is" : "problems are");
		json_object_object_add(errors, KEEL_JSON_CUT,
		    json_object_new_string(msg));
	}
	return KEEL_EINVAL;
}

/* True when s is an optional '-' and one or more digits only. */
static bool
int_syntax(const char *s)
{
	if (*s == '-')
		s++;
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

const char *
keel_field_check_text(const struct keel_field *f, const char *s,
    struct keel_value *v)
{
	int64_t	 iv;

	v->present = true;
	v->type = f->type;
	v->s = s;
	switch (f->type) {
	case KEEL_FIELD_STRING:
		return check_string(f, s, strlen(s));
	case KEEL_FIELD_ENUM:
		return check_enum(f, s);
	case KEEL_FIELD_DATE:
		return keel_date_valid(s) ? NULL : "must be a date (YYYY-MM-DD)";
	case KEEL_FIELD_INT:
	case KEEL_FIELD_ID:
		/* Text has no saturation to guard against (unlike json-c's
		 * numbers): every int64 is one, past it is out of range. */
		if (!keel_parse_int64(s, INT64_MIN, INT64_MAX, &iv))
			return int_syntax(s) ? "is out of range" :
			    "must be an integer";
		v->i = iv;
		return check_int(f, iv);
	case KEEL_FIELD_BOOL:
		if (strcmp(s, "true") == 0)
			v->b = true;
		else if (strcmp(s, "false") == 0)
			v->b = false;
		else
			return "must be true or false";
		return NULL;
	case KEEL_FIELD_ARRAY:		/* never a query parameter */
	case KEEL_FIELD_OBJECT:		/* never a query parameter */
	case KEEL_FIELD_TYPE__MAX:
		break;
	}
	return "has an unsupported type";
}

struct json_object *
keel_json_str(const char *s)
{
	return s == NULL ? NULL : json_object_new_string(s);
}

/* ------------------------------------------------------ the writer */

void
keel_jw_init(struct keel_jw *w, struct keel_buf *b)
{
	memset(w, 0, sizeof(*w));
	w->b = b;
}

/* Before a value: the comma between members, unless a key just led. */
static void
jw_value(struct keel_jw *w)
{
	if (w->after_key) {
		w->after_key = 0;
		return;
	}
	assert(w->depth == 0 || !w->is_obj[w->depth]);
	if (w->depth > 0 && w->nonempty[w->depth]++)
		keel_buf_putc(w->b, ',');
}

static void
jw_open(struct keel_jw *w, char c, int obj)
{
	jw_value(w);
	assert(w->depth < KEEL_JSON_MAXDEPTH);
	w->depth++;
	w->nonempty[w->depth] = 0;
	w->is_obj[w->depth] = (unsigned char)obj;
	keel_buf_putc(w->b, c);
}

static void
jw_close(struct keel_jw *w, char c)
{
	assert(w->depth > 0 && !w->after_key);
	w->depth--;
	keel_buf_putc(w->b, c);
}

void
keel_jw_obj_open(struct keel_jw *w)
{
	jw_open(w, '{', 1);
}

void
keel_jw_obj_close(struct keel_jw *w)
{
	jw_close(w, '}');
}

void
keel_jw_arr_open(struct keel_jw *w)
{
	jw_open(w, '[', 0);
}

void
keel_jw_arr_close(struct keel_jw *w)
{
	jw_close(w, ']');
}

/*
 * The index of the first byte of s[i..n) that a JSON string must escape
 * (a control, '"' or '\\'), or n.  Eight bytes per step: a car page is
 * ~4.7 kB of mostly plain text, and a byte-at-a-time test was the
 * largest share of an uncached list's instructions (callgrind).  The
 * tests are exact per byte (Bit Twiddling Hacks, "Determine if a word
 * has a byte less than n", n <= 128), bytes >= 0x80 never match.
 */
#define ONES	UINT64_C(0x0101010101010101)
#define HIGHS	UINT64_C(0x8080808080808080)
static inline size_t
jw_plain_span(const char *s, size_t i, size_t n)
{
	uint64_t	 x, q, bs;
	unsigned char	 c;

	for (; i + 8 <= n; i += 8) {
		memcpy(&x, s + i, 8);
		q = x ^ (ONES * '"');
		bs = x ^ (ONES * '\\');
		if ((((x - ONES * 0x20) | (q - ONES) | (bs - ONES)) &
		    ~x & HIGHS) != 0)
			break;
	}
	for (; i < n; i++) {
		c = (unsigned char)s[i];
		if (c < 0x20 || c == '"' || c == '\\')
			break;
	}
	return i;
}
#undef ONES
#undef HIGHS

/*
 * pre, then s[0..n) in quotes (nothing in it to escape), then post: one
 * reservation and one copy.  pre and post are NULL or one byte.
 */
static void
jw_put_quoted(struct keel_buf *b, const char *pre, const char *s, size_t n,
    const char *post)
{
	char	*p;

	keel_buf_reserve(b, n + 4);
	p = b->data + b->len;
	if (pre != NULL)
		*p++ = *pre;
	*p++ = '"';
	memcpy(p, s, n);
	p += n;
	*p++ = '"';
	if (post != NULL)
		*p++ = *post;
	*p = '\0';
	b->len = (size_t)(p - b->data);
}

/*
 * s[0..n) as a JSON string, escaped as json-c escapes with
 * JSON_C_TO_STRING_NOSLASHESCAPE: the two-character escapes for quote,
 * backslash, \b \f \n \r \t, \u00xx (lower-case hex) for the other
 * controls, every other byte (UTF-8 included) as it is.
 */
static void
jw_quote(struct keel_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t		 i = 0, run;
	unsigned char	 c;
	char		 esc[6];

	if (jw_plain_span(s, 0, n) == n) {
		/* Nothing to escape (most strings): one copy. */
		jw_put_quoted(b, NULL, s, n, NULL);
		return;
	}
	keel_buf_putc(b, '"');
	for (;;) {
		/* The plain run up to the next byte to escape, at once. */
		run = i;
		i = jw_plain_span(s, i, n);
		keel_buf_append(b, s + run, i - run);
		if (i == n)
			break;
		c = (unsigned char)s[i++];
		esc[0] = '\\';
		switch (c) {
		case '"':
			esc[1] = '"';
			break;
		case '\\':
			esc[1] = '\\';
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 0xf];
			keel_buf_append(b, esc, 6);
			continue;
		}
		keel_buf_append(b, esc, 2);
	}
	keel_buf_putc(b, '"');
}

void
keel_jw_key(struct keel_jw *w, const char *key)
{
	size_t	 n = strlen(key);
	bool	 comma;

	assert(w->depth > 0 && w->is_obj[w->depth] && !w->after_key);
	comma = w->nonempty[w->depth]++ != 0;
	w->after_key = 1;
	if (jw_plain_span(key, 0, n) == n) {
		/* A column's name: ,"name": at once. */
		jw_put_quoted(w->b, comma ? "," : NULL, key, n, ":");
		return;
	}
	if (comma)
		keel_buf_putc(w->b, ',');
	jw_quote(w->b, key, n);
	keel_buf_putc(w->b, ':');
}

void
keel_jw_member(struct keel_jw *w, const char *key, size_t keylen,
    const char *v, size_t vlen, bool raw)
{
	char	*p;
	bool	 comma;

	if (v == NULL) {
		v = "null";
		vlen = 4;
		raw = true;
	}
	if (jw_plain_span(key, 0, keylen) != keylen ||
	    (!raw && jw_plain_span(v, 0, vlen) != vlen)) {
		/* Something to escape: the general writer. */
		keel_jw_key(w, key);
		if (raw)
			keel_jw_raw(w, v, vlen);
		else
			keel_jw_strn(w, v, vlen);
		return;
	}
	assert(w->depth > 0 && w->is_obj[w->depth] && !w->after_key);
	comma = w->nonempty[w->depth]++ != 0;
	/* ,"key":"v" and the NUL. */
	keel_buf_reserve(w->b, keylen + vlen + 8);
	p = w->b->data + w->b->len;
	if (comma)
		*p++ = ',';
	*p++ = '"';
	memcpy(p, key, keylen);
	p += keylen;
	*p++ = '"';
	*p++ = ':';
	if (!raw)
		*p++ = '"';
	memcpy(p, v, vlen);
	p += vlen;
	if (!raw)
		*p++ = '"';
	*p = '\0';
	w->b->len = (size_t)(p - w->b->data);
}

void
keel_jw_strn(struct keel_jw *w, const char *s, size_t n)
{
	jw_value(w);
	jw_quote(w->b, s, n);
}

void
keel_jw_str(struct keel_jw *w, const char *s)
{
	if (s == NULL)
		keel_jw_null(w);
	else
		keel_jw_strn(w, s, strlen(s));
}

void
keel_jw_int(struct keel_jw *w, int64_t v)
{
	char	 num[KEEL_TEXT_INT_MAX];

	jw_value(w);
	keel_buf_append(w->b, num, keel_text_int(num, v));
}

void
keel_jw_bool(struct keel_jw *w, bool v)
{
	jw_value(w);
	if (v)
		keel_buf_append(w->b, "true", 4);
	else
		keel_buf_append(w->b, "false", 5);
}

void
keel_jw_null(struct keel_jw *w)
{
	jw_value(w);
	keel_buf_append(w->b, "null", 4);
}

void
keel_jw_raw(struct keel_jw *w, const char *json, size_t n)
{
	jw_value(w);
	keel_buf_append(w->b, json, n);
}

void
keel_jw_obj(struct keel_jw *w, struct json_object *o)
{
	const char	*s;
	size_t		 len;

	jw_value(w);
	s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	keel_buf_append(w->b, s, len);
}
