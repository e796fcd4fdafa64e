/* SPDX-License-Identifier: ISC */
/*
 * routes.c -- GET /routes: every route of every app, and the catch-all.
 *
 * The build writes routes.json from each app's own table (--routes), so
 * the list can't drift from the code.  lighttpd also sends every path no
 * other app claims here, which this app answers with API.md's JSON 404.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "keel/config.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/serve.h"

/* The file's array, as the build wrote it: loaded once per worker. */
static struct keel_buf	routes_text;

/* Reads path whole into routes_text; checks it is one JSON array. */
static enum keel_err
routes_load(const char *path)
{
	struct json_object	*doc = NULL;
	FILE			*f;
	char			 chunk[4096], why[128];
	size_t			 n;
	bool			 ok = false;

	if (routes_text.len > 0)
		return KEEL_OK;
	if ((f = fopen(path, "r")) == NULL) {
		snprintf(why, sizeof(why), "%s", strerror(errno));
		goto fail;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		keel_buf_append(&routes_text, chunk, n);
	if (ferror(f) || routes_text.len == 0)
		snprintf(why, sizeof(why), "unreadable or empty");
	else if (keel_json_parse(routes_text.data, routes_text.len, &doc,
	    why, sizeof(why)) != KEEL_OK)
		;	/* why says what is wrong */
	else if (!json_object_is_type(doc, json_type_array))
		snprintf(why, sizeof(why), "not an array");
	else
		ok = true;
	fclose(f);
	json_object_put(doc);
	if (ok)
		return KEEL_OK;
fail:
	keel_log_error("routes: can't read a JSON array from %s "
	    "(KEEL_ROUTES_FILE): %s", path, why);
	keel_buf_free(&routes_text);
	return KEEL_EINTERNAL;
}

static enum keel_err
routes_get(struct keel_req *req)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;
	enum keel_err	 er;

	if ((er = routes_load(req->cfg->routes_file)) != KEEL_OK)
		return er;
	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "data");
	keel_jw_raw(&w, routes_text.data, routes_text.len);
	keel_jw_obj_close(&w);
	keel_http_reply_buf(req, 200, &b);
	keel_buf_free(&b);
	return KEEL_OK;
}

static const struct keel_route routes_routes[] = {
	{ .method = "GET", .pattern = "/routes", .handler = routes_get,
	    .access = KEEL_ACCESS_ANYONE, .limit = KEEL_LIMIT_CLASS_NONE },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "routes",
	    .routes = routes_routes, .nroutes = KEEL_NELEM(routes_routes) };

	return keel_serve(argc, argv, &app);
}
