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

#include "keel/config.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/serve.h"

/* The parsed file: configuration, loaded once per worker. */
static struct json_object *routes_doc;

static enum keel_err
routes_load(void)
{
	struct json_object	*doc;
	const char		*path = keel_config()->routes_file;

	if (routes_doc != NULL)
		return KEEL_OK;
	if ((doc = json_object_from_file(path)) == NULL ||
	    !json_object_is_type(doc, json_type_array)) {
		keel_log_error("routes: can't read a JSON array from %s "
		    "(KEEL_ROUTES_FILE)", path);
		json_object_put(doc);
		return KEEL_EINTERNAL;
	}
	routes_doc = doc;
	return KEEL_OK;
}

static enum keel_err
routes_get(struct keel_req *req)
{
	struct json_object	*body;
	enum keel_err		 er;

	if ((er = routes_load()) != KEEL_OK)
		return er;
	body = json_object_new_object();
	json_object_object_add(body, "data", json_object_get(routes_doc));
	keel_http_reply_json(req, 200, body);
	json_object_put(body);
	return KEEL_OK;
}

static const struct keel_route routes_routes[] = {
	{ "GET", "/routes", routes_get, KEEL_ACCESS_ANYONE },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { "routes", routes_routes,
	    sizeof(routes_routes) / sizeof(routes_routes[0]) };

	return keel_serve(argc, argv, &app);
}
