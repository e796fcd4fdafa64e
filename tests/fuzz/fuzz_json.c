/* SPDX-License-Identifier: ISC */
/* fuzz_json.c -- libFuzzer driver: request bodies through a field table. */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "keel/json.h"
#include "keel/text.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const char *const kinds[] = { "a", "b", NULL };

enum { F_S, F_I, F_B, F_E, F_D, F_ID, F_L, F_V, F_O, F__MAX };

static const struct keel_field value = { .type = KEEL_FIELD_STRING,
	.min = 1, .max = 10 };

static const struct keel_field fields[F__MAX] = {
	[F_S] = { "s", KEEL_FIELD_STRING, 1, 0, 1, 10, NULL, NULL, NULL },
	[F_I] = { "i", KEEL_FIELD_INT, 1, 0, -5, 5, NULL, NULL, NULL },
	[F_B] = { "b", KEEL_FIELD_BOOL, 0, 1, 0, 0, NULL, NULL, NULL },
	[F_E] = { "e", KEEL_FIELD_ENUM, 0, 0, 0, 0, kinds, NULL, NULL },
	[F_D] = { "d", KEEL_FIELD_DATE, 0, 0, 0, 0, NULL, NULL, NULL },
	[F_ID] = { "id", KEEL_FIELD_ID, 0, 0, 0, 0, NULL, NULL, NULL },
	/* An array of objects of the fields above (an array in each too). */
	[F_L] = { .name = "l", .type = KEEL_FIELD_ARRAY, .max = 3,
	    .of = fields, .nof = F_O },
	/* An array of values, each a string like s. */
	[F_V] = { .name = "v", .type = KEEL_FIELD_ARRAY, .min = 1, .max = 3,
	    .of = &value, .nof = 1 },
	[F_O] = { .name = "o", .type = KEEL_FIELD_OBJECT, .max = 2 },
};

/* An accepted list of values: 1..3 non-empty valid strings. */
static int
values_ok(struct json_object *o)
{
	struct json_object	*it;
	size_t			 i, n = json_object_array_length(o);

	if (n < 1 || n > 3)
		return 0;
	for (i = 0; i < n; i++) {
		it = json_object_array_get_idx(o, i);
		if (!json_object_is_type(it, json_type_string) ||
		    json_object_get_string_len(it) == 0 ||
		    !keel_utf8_valid(json_object_get_string(it),
		    (size_t)json_object_get_string_len(it)))
			return 0;
	}
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	struct json_object	*doc, *errors;
	struct keel_value	 v[F__MAX];
	char			 err[160];
	int			 mode;

	if (keel_json_parse((const char *)data, n, &doc, err, sizeof(err)) !=
	    KEEL_OK)
		return 0;
	for (mode = KEEL_FIELDS_ALL; mode <= KEEL_FIELDS_SOME; mode++) {
		errors = json_object_new_object();
		if (keel_json_fields(doc, fields, F__MAX, mode, v, errors) ==
		    KEEL_OK) {
			/* Accepted values must honour the table. */
			if (v[F_I].present && (v[F_I].i < -5 || v[F_I].i > 5))
				__builtin_trap();
			if (v[F_S].present && !v[F_S].is_null &&
			    (strlen(v[F_S].s) == 0 ||
			    !keel_utf8_valid(v[F_S].s, strlen(v[F_S].s))))
				__builtin_trap();
			if (v[F_D].present && !keel_date_valid(v[F_D].s))
				__builtin_trap();
			if (v[F_L].present && !v[F_L].is_null &&
			    json_object_array_length(v[F_L].o) > 3)
				__builtin_trap();
			if (v[F_V].present && !values_ok(v[F_V].o))
				__builtin_trap();
			if (v[F_O].present && !v[F_O].is_null &&
			    json_object_object_length(v[F_O].o) > 2)
				__builtin_trap();
		}
		json_object_put(errors);
	}
	json_object_put(doc);
	return 0;
}
