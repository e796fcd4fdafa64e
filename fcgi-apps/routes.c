/* SPDX-License-Identifier: ISC */
/*
 * routes.c -- GET /routes: every route of every app, and the catch-all.
 *
 * The build writes routes.json from each app's own table (--routes), so
 * the list can't drift from the code.  lighttpd also sends every path no
 * other app claims here, which this app answers with API.md's JSON 404.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/config.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/serve.h"

/* The file's array as compact JSON text: loaded once per worker. */
static char	*routes_text;

static enum keel_err
routes_load(const char *path)
{
	struct json_object	*doc;

	if (routes_text != NULL)
		return KEEL_OK;
	if ((doc = json_object_from_file(path)) == NULL ||
	    !json_object_is_type(doc, json_type_array)) {
		keel_log_error("routes: can't read a JSON array from %s "
		    "(KEEL_ROUTES_FILE)", path);
		json_object_put(doc);
		return KEEL_EINTERNAL;
	}
	routes_text = keel_strdup(json_object_to_json_string_ext(doc,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(doc);
	return KEEL_OK;
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
	keel_jw_raw(&w, routes_text, strlen(routes_text));
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
