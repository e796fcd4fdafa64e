/* SPDX-License-Identifier: ISC */
/* fuzz_router.c -- libFuzzer driver: request paths against a route table. */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "keel/mem.h"
#include "keel/router.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static enum keel_err
nop(struct keel_req *req)
{
	(void)req;
	return KEEL_OK;
}

#define R(m, p)	{ .method = (m), .pattern = (p), .handler = nop }

static const struct keel_route routes[] = {
	R("GET", "/api/cars"),
	R("POST", "/api/cars"),
	R("GET", "/api/cars/{id:int}"),
	R("PATCH", "/api/cars/{id:int}"),
	R("GET", "/api/x/{a:str}/y/{b:int}"),
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	static struct keel_arena *a;
	struct keel_param	 params[KEEL_HTTP_MAXPARAMS];
	const struct keel_route	*found;
	char			 allow[128], *path;
	size_t			 np = 0;

	if (a == NULL)
		a = keel_arena_new();
	keel_arena_reset(a);
	path = keel_arena_strndup(a, (const char *)data, n);
	if (keel_router_match(routes, sizeof(routes) / sizeof(routes[0]),
	    "GET", path, a, params, &np, &found, allow, sizeof(allow)) ==
	    KEEL_ROUTE_FOUND && (found == NULL || np > KEEL_HTTP_MAXPARAMS))
		__builtin_trap();
	return 0;
}
