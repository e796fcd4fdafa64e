/* SPDX-License-Identifier: ISC */
/*
 * sse.c -- Server-Sent Events framing and notification messages.
 *
 * An event's fields end at the first CR or LF (the EventSource parsing
 * rules), so every data line is one line of JSON: json-c escapes control
 * characters inside strings, and items are re-serialised plain, whatever
 * wrote them (json-c's publish, PostgreSQL's json_build_object).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "keel/mem.h"
#include "keel/sse.h"

#define LAST_ID_DIGITS	18	/* below INT64_MAX whatever the digits */

bool
keel_sse_event(struct keel_buf *b, int64_t id, const char *event,
    const char *data)
{
	if (strpbrk(data, "\r\n") != NULL || strpbrk(event, "\r\n") != NULL)
		return false;
	if (id >= 0)
		keel_buf_printf(b, "id: %jd\n", (intmax_t)id);
	keel_buf_printf(b, "event: %s\ndata: %s\n\n", event, data);
	return true;
}

bool
keel_sse_last_id(const char *s, int64_t *out)
{
	int64_t	 v = 0;
	size_t	 n;

	if (s == NULL)
		return false;
	for (n = 0; s[n] != '\0'; n++) {
		if (s[n] < '0' || s[n] > '9' || n == LAST_ID_DIGITS)
			return false;
		v = v * 10 + (s[n] - '0');
	}
	if (n == 0)
		return false;
	*out = v;
	return true;
}

/* o's member name as an integer within [min, INT64_MAX], into *out. */
static bool
member_int(struct json_object *o, const char *name, int64_t min,
    int64_t *out)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(o, name, &v) ||
	    !json_object_is_type(v, json_type_int))
		return false;
	*out = json_object_get_int64(v);
	return *out >= min;
}

static char *
plain(struct json_object *o)
{
	return keel_strdup(json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* s as a JSON object (the caller puts it), or NULL. */
static struct json_object *
parse_object(const char *s, size_t len)
{
	struct json_tokener	*tok;
	struct json_object	*o;

	if ((tok = json_tokener_new()) == NULL)
		return NULL;
	o = json_tokener_parse_ex(tok, s, (int)len);
	if (o != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
	    tok->char_offset != (int)len ||
	    !json_object_is_type(o, json_type_object))) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

bool
keel_sse_msg_parse(const char *s, size_t len, struct keel_sse_msg *out)
{
	struct json_object	*o, *item;
	bool			 ok;

	memset(out, 0, sizeof(*out));
	if (len > INT32_MAX || (o = parse_object(s, len)) == NULL)
		return false;
	ok = member_int(o, "userId", 1, &out->uid) &&
	    member_int(o, "prev", 0, &out->prev) &&
	    json_object_object_get_ex(o, "notification", &item) &&
	    json_object_is_type(item, json_type_object) &&
	    member_int(item, "id", 1, &out->id) && out->prev < out->id;
	if (ok)
		out->item = plain(item);
	else
		memset(out, 0, sizeof(*out));
	json_object_put(o);
	return ok;
}

void
keel_sse_msg_free(struct keel_sse_msg *m)
{
	free(m->item);
	m->item = NULL;
}

char *
keel_sse_item(const char *s, size_t len)
{
	struct json_object	*o;
	char			*out;

	if (len > INT32_MAX || (o = parse_object(s, len)) == NULL)
		return NULL;
	out = plain(o);
	json_object_put(o);
	return out;
}
