/* SPDX-License-Identifier: ISC */
/*
 * fuzz_report.c -- libFuzzer driver: a request's CGI parameters (one a
 * line) through the error report's scrubbing and serialisation; the
 * event must always be JSON, with every Authorization value filtered.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "keel/mem.h"
#include "keel/report.h"

#define MAXENV	32

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	static const struct keel_report_meta m = { .environment = "fuzz",
	    .release = "r", .server = "h", .prog = "p" };
	struct keel_report_event ev = { .type = "T", .value = "v",
	    .method = "GET", .route = "/r", .status = 500 };
	struct keel_buf		 b = { NULL, 0, 0 };
	struct json_object	*o, *req, *hdrs, *auth;
	const char		*envp[MAXENV + 1];
	char			*s, *line, *save = NULL;
	size_t			 k = 0;

	/* lighttpd hands over NUL-terminated text. */
	s = keel_strndup((const char *)data, n);
	for (line = strtok_r(s, "\n", &save); line != NULL && k < MAXENV;
	    line = strtok_r(NULL, "\n", &save))
		envp[k++] = line;
	envp[k] = NULL;
	ev.envp = envp;
	ev.value = k > 0 ? envp[0] : "v";
	keel_report_event_json(&b, &ev, &m, "0123456789abcdef0123456789abcdef",
	    1.5);
	if ((o = json_tokener_parse(b.data)) == NULL)
		__builtin_trap();		/* always JSON */
	if (json_object_object_get_ex(o, "request", &req) &&
	    json_object_object_get_ex(req, "headers", &hdrs) &&
	    json_object_object_get_ex(hdrs, "Authorization", &auth) &&
	    strcmp(json_object_get_string(auth), KEEL_REPORT_FILTERED) != 0)
		__builtin_trap();		/* never an Authorization */
	json_object_put(o);
	keel_buf_free(&b);
	free(s);
	return 0;
}
