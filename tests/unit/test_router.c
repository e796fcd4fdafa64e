/* SPDX-License-Identifier: ISC */
/*
 * test_router.c -- unit tests for keel_router_match(): literal and typed
 * segments, trailing slashes, HEAD, 404 and 405 with its Allow list.
 *
 * The table below has the shape of a real resource (cars.c) plus a root
 * route and a str parameter, so each test reads as one request against it.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keel/http.h"
#include "keel/mem.h"
#include "keel/router.h"

/* Handlers are never called by keel_router_match; these only differ. */
static enum keel_err
h_list(struct keel_req *req)
{
	(void)req;
	return KEEL_OK;
}

static enum keel_err
h_other(struct keel_req *req)
{
	(void)req;
	return KEEL_OK;
}

/* Designated: the router ignores the fields a route table adds later. */
#define R(m, p, h)	{ .method = (m), .pattern = (p), .handler = (h) }

static const struct keel_route routes[] = {
	R("GET",	"/",				h_list),
	R("GET",	"/api/cars",			h_list),
	R("POST",	"/api/cars",			h_other),
	R("GET",	"/api/cars/{id:int}",		h_list),
	R("PATCH",	"/api/cars/{id:int}",		h_other),
	R("DELETE",	"/api/cars/{id:int}",		h_other),
	R("GET",	"/api/queues/{name:str}/stats",	h_list),
	R("POST",	"/api/queues/{name:str}/failed/retry", h_other),
	R("GET",	"/api/users/{uid:int}/cars/{cid:int}", h_list),
	R("POST",	"/api/jobs",			h_other),
};
#define NROUTES	(sizeof(routes) / sizeof(routes[0]))

/* What one keel_router_match() call produced. */
struct match {
	struct keel_arena	*arena;
	struct keel_param	 params[KEEL_HTTP_MAXPARAMS];
	size_t			 nparams;
	const struct keel_route	*found;
	char			 allow[128];
};

static int
setup(void **state)
{
	struct match	*m;

	m = keel_calloc(1, sizeof(*m));
	m->arena = keel_arena_new();
	*state = m;
	return 0;
}

static int
teardown(void **state)
{
	struct match	*m = *state;

	keel_arena_free(m->arena);
	free(m);
	return 0;
}

static enum keel_route_match
route(struct match *m, const char *method, const char *path)
{
	m->nparams = (size_t)-1;
	return keel_router_match(routes, NROUTES, method, path, m->arena,
	    m->params, &m->nparams, &m->found, m->allow, sizeof(m->allow));
}

/* Asserts path routes to routes[want] with no parameters. */
static void
assert_routes_to(struct match *m, const char *method, const char *path,
    size_t want)
{
	assert_int_equal(route(m, method, path), KEEL_ROUTE_FOUND);
	assert_ptr_equal(m->found, &routes[want]);
}

static void
assert_not_found(struct match *m, const char *method, const char *path)
{
	assert_int_equal(route(m, method, path), KEEL_ROUTE_NOT_FOUND);
	assert_null(m->found);
}

static void
test_router_literal_match(void **state)
{
	struct match	*m = *state;

	assert_routes_to(m, "GET", "/api/cars", 1);
	assert_int_equal(m->nparams, 0);
}

static void
test_router_literal_match_picks_route_by_method(void **state)
{
	struct match	*m = *state;

	assert_routes_to(m, "POST", "/api/cars", 2);
	assert_ptr_equal(m->found->handler, h_other);
}

static void
test_router_literal_is_case_sensitive(void **state)
{
	assert_not_found(*state, "GET", "/api/Cars");
}

static void
test_router_literal_prefix_does_not_match(void **state)
{
	assert_not_found(*state, "GET", "/api/car");
	assert_not_found(*state, "GET", "/api/carsx");
}

/*
 * Regression (lib/router.c, match_path): the trailing-slash rule
 * strips the path "/" to "" before the first segment, so the pattern "/"
 * is left unconsumed and never matches; a route on "/" is always a 404.
 *
 */
static void
test_router_root_path_matches(void **state)
{
	assert_routes_to(*state, "GET", "/", 0);
}

static void
test_router_root_route_does_not_match_other_paths(void **state)
{
	struct match	*m = *state;

	assert_not_found(m, "GET", "/nope");
	assert_int_not_equal(route(m, "GET", "/api"), KEEL_ROUTE_FOUND);
}

static void
test_router_unknown_path_not_found(void **state)
{
	struct match	*m = *state;

	assert_not_found(m, "GET", "/api/trucks");
	assert_string_equal(m->allow, "");
}

static void
test_router_trailing_slash_ignored(void **state)
{
	assert_routes_to(*state, "GET", "/api/cars/", 1);
}

static void
test_router_trailing_slash_ignored_after_param(void **state)
{
	struct match	*m = *state;

	assert_routes_to(m, "GET", "/api/cars/42/", 3);
	assert_int_equal(m->nparams, 1);
	assert_string_equal(m->params[0].value, "42");
}

static void
test_router_double_trailing_slash_not_found(void **state)
{
	assert_not_found(*state, "GET", "/api/cars//");
}

static void
test_router_extra_segment_not_found(void **state)
{
	assert_not_found(*state, "GET", "/api/cars/42/wheels");
}

static void
test_router_missing_segment_not_found(void **state)
{
	assert_not_found(*state, "GET", "/api/queues/email");
	assert_not_found(*state, "GET", "/api/users/3/cars");
}

static void
test_router_empty_param_segment_not_found(void **state)
{
	assert_not_found(*state, "GET", "/api/queues//stats");
}

static void
test_router_int_param_accepted(void **state)
{
	struct match	*m = *state;

	assert_routes_to(m, "GET", "/api/cars/42", 3);
	assert_int_equal(m->nparams, 1);
	assert_string_equal(m->params[0].name, "id");
	assert_string_equal(m->params[0].value, "42");
}

static void
test_router_int_param_accepts_18_digits(void **state)
{
	struct match	*m = *state;

	assert_routes_to(m, "GET", "/api/cars/999999999999999999", 3);
	assert_string_equal(m->params[0].value, "999999999999999999");
}

static void
test_router_int_param_rejects_19_digits(void **state)
{
	assert_not_found(*state, "GET", "/api/cars/1000000000000000000");
}

static void
test_router_int_param_rejects_zero(void **state)
{
	assert_not_found(*state, "GET", "/api/cars/0");
}

static void
test_router_int_param_rejects_leading_zero(void **state)
{
	assert_not_found(*state, "GET", "/api/cars/042");
}

static void
test_router_int_param_rejects_negative(void **state)
{
	assert_not_found(*state, "GET", "/api/cars/-1");
}

static void
test_router_int_param_rejects_trailing_letters(void **state)
{
	assert_not_found(*state, "GET", "/api/cars/12a");
}

static void
test_router_int_param_rejects_non_digits(void **state)
{
	struct match	*m = *state;

	assert_not_found(m, "GET", "/api/cars/abc");
	assert_not_found(m, "GET", "/api/cars/+1");
	assert_not_found(m, "GET", "/api/cars/1.5");
	assert_not_found(m, "GET", "/api/cars/1e3");
	assert_not_found(m, "GET", "/api/cars/ 1");
}

static void
test_router_int_param_rejected_is_not_bad_method(void **state)
{
	struct match	*m = *state;

	/* A bad id is "no such path", not "wrong method" (router.h). */
	assert_not_found(m, "DELETE", "/api/cars/abc");
	assert_string_equal(m->allow, "");
}

static void
test_router_str_param_accepted(void **state)
{
	struct match	*m = *state;

	assert_routes_to(m, "GET", "/api/queues/email/stats", 6);
	assert_int_equal(m->nparams, 1);
	assert_string_equal(m->params[0].name, "name");
	assert_string_equal(m->params[0].value, "email");
}

static void
test_router_str_param_accepts_digits_and_utf8(void **state)
{
	struct match	*m = *state;

	assert_routes_to(m, "GET", "/api/queues/0/stats", 6);
	assert_string_equal(m->params[0].value, "0");
	assert_routes_to(m, "GET", "/api/queues/\xc3\xa9t\xc3\xa9/stats", 6);
	assert_string_equal(m->params[0].value, "\xc3\xa9t\xc3\xa9");
}

static void
test_router_two_params_in_order(void **state)
{
	struct match	*m = *state;

	assert_routes_to(m, "GET", "/api/users/7/cars/12", 8);
	assert_int_equal(m->nparams, 2);
	assert_string_equal(m->params[0].name, "uid");
	assert_string_equal(m->params[0].value, "7");
	assert_string_equal(m->params[1].name, "cid");
	assert_string_equal(m->params[1].value, "12");
}

static void
test_router_head_matches_get(void **state)
{
	struct match	*m = *state;

	assert_routes_to(m, "HEAD", "/api/cars/5", 3);
	assert_string_equal(m->params[0].value, "5");
}

static void
test_router_head_on_post_only_path_is_bad_method(void **state)
{
	struct match	*m = *state;

	assert_int_equal(route(m, "HEAD", "/api/jobs"),
	    KEEL_ROUTE_BAD_METHOD);
	assert_null(m->found);
	assert_string_equal(m->allow, "POST");
}

static void
test_router_bad_method_allow_lists_get_head_post(void **state)
{
	struct match	*m = *state;

	assert_int_equal(route(m, "PUT", "/api/cars"), KEEL_ROUTE_BAD_METHOD);
	assert_null(m->found);
	assert_string_equal(m->allow, "GET, HEAD, POST");
}

static void
test_router_bad_method_allow_on_param_path(void **state)
{
	struct match	*m = *state;

	assert_int_equal(route(m, "POST", "/api/cars/3"),
	    KEEL_ROUTE_BAD_METHOD);
	assert_string_equal(m->allow, "GET, HEAD, PATCH, DELETE");
}

static void
test_router_bad_method_allow_has_no_duplicates(void **state)
{
	static const struct keel_route dup[] = {
		R("GET",	"/x/{id:int}",	h_list),
		R("GET",	"/x/{slug:str}", h_other),
		R("POST",	"/x/{slug:str}", h_other),
		R("POST",	"/x/{id:int}",	h_list),
	};
	struct match	*m = *state;

	assert_int_equal(keel_router_match(dup, 4, "DELETE", "/x/9",
	    m->arena, m->params, &m->nparams, &m->found, m->allow,
	    sizeof(m->allow)), KEEL_ROUTE_BAD_METHOD);
	assert_string_equal(m->allow, "GET, HEAD, POST");
}

static void
test_router_bad_method_method_is_case_sensitive(void **state)
{
	struct match	*m = *state;

	assert_int_equal(route(m, "get", "/api/cars"), KEEL_ROUTE_BAD_METHOD);
	assert_string_equal(m->allow, "GET, HEAD, POST");
}

static void
test_router_bad_method_allow_truncated_safely(void **state)
{
	struct match	*m = *state;
	char		 small[8];

	memset(small, 'x', sizeof(small));
	assert_int_equal(keel_router_match(routes, NROUTES, "PUT",
	    "/api/cars/3", m->arena, m->params, &m->nparams, &m->found,
	    small, sizeof(small)), KEEL_ROUTE_BAD_METHOD);
	assert_true(memchr(small, '\0', sizeof(small)) != NULL);
	assert_int_equal(strncmp(small, "GET, HE", sizeof(small)), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f)	cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_router_literal_match),
		T(test_router_literal_match_picks_route_by_method),
		T(test_router_literal_is_case_sensitive),
		T(test_router_literal_prefix_does_not_match),
		T(test_router_root_path_matches),
		T(test_router_root_route_does_not_match_other_paths),
		T(test_router_unknown_path_not_found),
		T(test_router_trailing_slash_ignored),
		T(test_router_trailing_slash_ignored_after_param),
		T(test_router_double_trailing_slash_not_found),
		T(test_router_extra_segment_not_found),
		T(test_router_missing_segment_not_found),
		T(test_router_empty_param_segment_not_found),
		T(test_router_int_param_accepted),
		T(test_router_int_param_accepts_18_digits),
		T(test_router_int_param_rejects_19_digits),
		T(test_router_int_param_rejects_zero),
		T(test_router_int_param_rejects_leading_zero),
		T(test_router_int_param_rejects_negative),
		T(test_router_int_param_rejects_trailing_letters),
		T(test_router_int_param_rejects_non_digits),
		T(test_router_int_param_rejected_is_not_bad_method),
		T(test_router_str_param_accepted),
		T(test_router_str_param_accepts_digits_and_utf8),
		T(test_router_two_params_in_order),
		T(test_router_head_matches_get),
		T(test_router_head_on_post_only_path_is_bad_method),
		T(test_router_bad_method_allow_lists_get_head_post),
		T(test_router_bad_method_allow_on_param_path),
		T(test_router_bad_method_allow_has_no_duplicates),
		T(test_router_bad_method_method_is_case_sensitive),
		T(test_router_bad_method_allow_truncated_safely),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
