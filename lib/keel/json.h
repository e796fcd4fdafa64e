/* SPDX-License-Identifier: ISC */
/* json.h -- json-c helpers: strict parsing and typed, validated fields. */
#ifndef KEEL_JSON_H
#define KEEL_JSON_H

/*
 * Decided once (STYLE.md): json-c parses (requests, stored documents);
 * output has one style, the streaming writer keel_jw_* below, which
 * handlers reach through resource.h.  json-c objects still cross this
 * header for parsing.
 */
#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/err.h"

struct keel_buf;

enum keel_field_type {
	KEEL_FIELD_STRING,	/* length bounds min..max, in characters */
	KEEL_FIELD_INT,		/* value bounds min..max */
	KEEL_FIELD_BOOL,
	KEEL_FIELD_ENUM,	/* one of values[] */
	KEEL_FIELD_DATE,	/* YYYY-MM-DD, a real calendar date */
	KEEL_FIELD_ID,		/* integer id >= 1 */
	KEEL_FIELD_ARRAY,	/* min..max objects, each through the table of
				   (or values, through its one unnamed field) */
	KEEL_FIELD_OBJECT,	/* a JSON object of min..max members; the
				   handler checks the members (bodies only) */
	KEEL_FIELD_TYPE__MAX
};

/*
 * One field of an input table.  Tables are arrays indexed by an enum
 * ending in __MAX (kcgi's validation tables), so a handler reads
 * vals[CAR_YEAR].i.
 */
struct keel_field {
	const char		*name;		/* JSON / query name */
	enum keel_field_type	 type;
	bool			 required;	/* in KEEL_FIELDS_ALL mode */
	bool			 nullable;	/* JSON null accepted */
	int64_t			 min, max;	/* see the type; 0,0 = none */
	const char *const	*values;	/* ENUM: NULL-terminated */
	/* STRING: extra check, true when s is acceptable; msg if not. */
	bool			(*check)(const char *s);
	const char		*check_msg;
	/* Query strings: the text an absent parameter stands for. */
	const char		*def;
	/*
	 * ARRAY: every element is an object of these fields, all required
	 * ones present (KEEL_FIELDS_ALL); a problem is named after the
	 * element: "items[2].topic".  nof <= KEEL_FIELD_MAXOF.  One field
	 * without a name (nof 1, of->name NULL): every element is a value
	 * of that field instead ("options": ["a", "b"]), named "options[1]"
	 * when wrong.
	 */
	const struct keel_field	*of;
	size_t			 nof;
};
#define KEEL_FIELD_MAXOF	8

/* An extracted value; strings live as long as the parsed document. */
struct keel_value {
	bool		 present;	/* the field was given */
	bool		 is_null;	/* given as JSON null */
	enum keel_field_type type;	/* its field's type, once present */
	const char	*s;		/* STRING, ENUM, DATE */
	int64_t		 i;		/* INT, ID */
	bool		 b;		/* BOOL */
	struct json_object *o;		/* ARRAY, OBJECT: owned by the
					   document */
};

enum { KEEL_FIELDS_ALL = 0, KEEL_FIELDS_SOME = 1 };

#define KEEL_JSON_MAXDEPTH	16
/*
 * Values in one document, containers and the document itself included
 * (not member names): json-c allocates an object per value, a hash table
 * per JSON object, so 1 MiB of "[{},{},...]" cost ~300 MB and a second.
 * The largest body a route takes holds ~400 (a study plan's 100 items).
 */
#define KEEL_JSON_MAXVALUES	4096

/*
 * Parses buf (len bytes) strictly (RFC 8259: no trailing data, no
 * comments, valid UTF-8, depth <= KEEL_JSON_MAXDEPTH, at most
 * KEEL_JSON_MAXVALUES values; no \u0000 in a name, every \u-escaped
 * UTF-16 surrogate in a pair).  On KEEL_OK *out is a new reference
 * (caller puts), or NULL for the document `null` (json-c's null:
 * json_object_is_type(NULL, json_type_null) is true, and its getters and
 * json_object_put() accept NULL).  KEEL_EINVAL with a reason in err.
 */
enum keel_err	 keel_json_parse(const char *buf, size_t len,
		    struct json_object **out, char *err, size_t errlen);

/*
 * What a 422 lists, bounded whatever the body: at most KEEL_JSON_MAXERRORS
 * names, each cut to KEEL_JSON_MAXNAME bytes (at a character) and marked
 * with KEEL_JSON_CUT; the problems past them are counted in one more
 * entry named KEEL_JSON_CUT ("12 more problems are not listed").
 */
#define KEEL_JSON_MAXERRORS	16
#define KEEL_JSON_MAXNAME	64	/* bytes */
#define KEEL_JSON_CUT		"\xe2\x80\xa6"	/* "…", U+2026 in UTF-8 */

/*
 * Extracts fields[0..n) from the object obj into vals.  Every problem is
 * added to errors (an object: field name -> message): wrong type, out of
 * range, unknown enum value, a string of any kind holding a NUL, missing
 * required field (mode ALL), unknown field, no field at all (mode SOME);
 * the table's fields first, then unknown names, within the bounds above.
 * Returns KEEL_OK when there was no problem, else KEEL_EINVAL.
 */
enum keel_err	 keel_json_fields(struct json_object *obj,
		    const struct keel_field *fields, size_t n, int mode,
		    struct keel_value *vals, struct json_object *errors);

/*
 * Validates one textual value s against field f (query strings, where
 * every value is text): ints parsed with keel_parse_int64, bools as
 * "true"/"false".  Returns NULL when acceptable, else a static message.
 */
const char	*keel_field_check_text(const struct keel_field *f,
		    const char *s, struct keel_value *v);

/* json_object_new_string, but NULL s gives JSON null (NULL). */
struct json_object *keel_json_str(const char *s);

/*
 * A streaming JSON writer into a struct keel_buf, for responses built
 * from rows: no object per value, so a page of 20 rows costs a few
 * appends instead of ~200 json-c allocations.  It writes what
 * json_object_to_json_string_ext(JSON_C_TO_STRING_PLAIN |
 * JSON_C_TO_STRING_NOSLASHESCAPE) writes for the same values, byte for
 * byte, so a response keeps its exact text whichever way it was built.
 * Commas are placed by the writer; the caller pairs open and close and
 * gives a key before each member of an object (programmer errors, caught
 * by assert).  The buffer is the caller's; nothing here allocates else.
 */
struct keel_jw {
	struct keel_buf	*b;
	int		 depth;
	int		 after_key;	/* a key was written; its value is next */
	unsigned char	 nonempty[KEEL_JSON_MAXDEPTH + 1];
	unsigned char	 is_obj[KEEL_JSON_MAXDEPTH + 1];
};

/* Starts writing into b (appends: b may already hold bytes). */
void		 keel_jw_init(struct keel_jw *w, struct keel_buf *b);
void		 keel_jw_obj_open(struct keel_jw *w);
void		 keel_jw_obj_close(struct keel_jw *w);
void		 keel_jw_arr_open(struct keel_jw *w);
void		 keel_jw_arr_close(struct keel_jw *w);
/* The key of the next member of the current object (escaped). */
void		 keel_jw_key(struct keel_jw *w, const char *key);
/* A string value, escaped; NULL s writes null. */
void		 keel_jw_str(struct keel_jw *w, const char *s);
void		 keel_jw_strn(struct keel_jw *w, const char *s, size_t n);
/*
 * One member of the current object: key (NUL-terminated, keylen bytes)
 * and v (vlen bytes) as a string, escaped, or with raw as JSON text as
 * it is; NULL v writes null.  The bytes of keel_jw_key() then
 * keel_jw_strn(), keel_jw_raw() or keel_jw_null(), in one reservation
 * when nothing needs escaping: a resource's rows are written with it.
 */
void		 keel_jw_member(struct keel_jw *w, const char *key,
		    size_t keylen, const char *v, size_t vlen, bool raw);
void		 keel_jw_int(struct keel_jw *w, int64_t v);
void		 keel_jw_bool(struct keel_jw *w, bool v);
void		 keel_jw_null(struct keel_jw *w);
/*
 * Text that is JSON already (a number formatted by the caller, a
 * document the application wrote or PostgreSQL built), as the next
 * value, unchecked: never client bytes.
 */
void		 keel_jw_raw(struct keel_jw *w, const char *json, size_t n);
/* A json-c value (NULL: null), serialised as keel_http_reply_json does. */
void		 keel_jw_obj(struct keel_jw *w, struct json_object *o);

#endif /* KEEL_JSON_H */
