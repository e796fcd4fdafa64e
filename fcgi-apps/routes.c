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

/*
 * The file's array, as the build wrote it: read once at start, before
 * the workers fork (they inherit it), so a missing or broken file stops
 * the app with its variable's name instead of answering 500.
 */
static struct keel_buf	routes_text;

/* Reads path whole into routes_text; checks it is one JSON array. */
static enum keel_err
routes_load(const char *path, char *why, size_t whysz)
{
	struct json_object	*doc = NULL;
	FILE			*f;
	char			 chunk[4096];
	size_t			 n;
	bool			 ok = false;

	if ((f = fopen(path, "r")) == NULL) {
		snprintf(why, whysz, "%s", strerror(errno));
		return KEEL_EINTERNAL;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		keel_buf_append(&routes_text, chunk, n);
	if (ferror(f) || routes_text.len == 0)
		snprintf(why, whysz, "unreadable or empty");
	else if (keel_json_parse(routes_text.data, routes_text.len, &doc,
	    why, whysz) != KEEL_OK)
		;	/* why says what is wrong */
	else if (!json_object_is_type(doc, json_type_array))
		snprintf(why, whysz, "not an array");
	else
		ok = true;
	fclose(f);
	json_object_put(doc);
	if (ok)
		return KEEL_OK;
	keel_buf_free(&routes_text);
	return KEEL_EINTERNAL;
}

static enum keel_err
routes_get(struct keel_req *req)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;

	/* main() loaded it, or the app would not have started. */
	if (routes_text.len == 0)
		return KEEL_EINTERNAL;
	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "data");
	keel_jw_raw(&w, routes_text.data, routes_text.len);
	keel_jw_obj_close(&w);
	keel_http_reply_buf(req, 200, &b);
	keel_buf_free(&b);
	return KEEL_OK;
}

/*
 * Whether argv asks for something that needs no routes file: --routes
 * (the build runs it to write the file), --config and --help.
 */
static bool
prints_only(int argc, char *argv[])
{
	static const char *const opts[] = { "--routes", "-r", "--config",
	    "-c", "--help", "-h" };
	size_t	 i;
	int	 a;

	for (a = 1; a < argc; a++)
		for (i = 0; i < KEEL_NELEM(opts); i++)
			if (strcmp(argv[a], opts[i]) == 0)
				return true;
	return false;
}

/*
 * KEEL_ROUTES_FILE, read before keel_serve() starts anything (--check
 * too, so a reload's check refuses a file gone bad).  A configuration
 * that doesn't load is left to keel_serve(), which names the variable.
 */
static void
routes_preload(void)
{
	struct keel_config	 cfg;
	char			 err[256], why[128];

	keel_log_init("routes", KEEL_LOG_INFO);
	if (!keel_config_load(&cfg, err, sizeof(err)))
		return;
	if (routes_load(cfg.routes_file, why, sizeof(why)) != KEEL_OK)
		keel_log_fatalx("configuration: KEEL_ROUTES_FILE: can't read "
		    "a JSON array from %s: %s", cfg.routes_file, why);
	keel_config_free(&cfg);
}

static const struct keel_route routes_routes[] = {
	{ .method = "GET", .pattern = "/routes", .handler = routes_get,
	    .access = KEEL_ACCESS_ANYONE, .limit = KEEL_LIMIT_CLASS_NONE,
	    .query = KEEL_QUERY_IGNORED },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "routes",
	    .routes = routes_routes, .nroutes = KEEL_NELEM(routes_routes) };

	if (!prints_only(argc, argv))
		routes_preload();
	return keel_serve(argc, argv, &app);
}
