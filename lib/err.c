/* SPDX-License-Identifier: ISC */
/* err.c -- keel_strerror(): the one table of error descriptions. */
#include "config.h"

#include "keel/err.h"

static const char *const errs[KEEL_ERR__MAX] = {
	[KEEL_OK] = "success",
	[KEEL_EINVAL] = "invalid input",
	[KEEL_ENOENT] = "not found",
	[KEEL_ECONFLICT] = "conflict",
	[KEEL_EUNAVAIL] = "dependency unavailable",
	[KEEL_ETIMEOUT] = "timed out",
	[KEEL_ETOOBIG] = "too large",
	[KEEL_EINTERNAL] = "internal error",
};

const char *
keel_strerror(enum keel_err er)
{
	if ((unsigned)er >= KEEL_ERR__MAX)
		return "unknown error";
	return errs[er];
}
