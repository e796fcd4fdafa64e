/* SPDX-License-Identifier: ISC */
/* err.h -- the one error enum every lib module returns. */
#ifndef KEEL_ERR_H
#define KEEL_ERR_H

/*
 * A lib call returns KEEL_OK or one of these.  The detailed message stays
 * in the handle that failed (keel_db_errstr() and the like), as hiredis
 * keeps err/errstr in its context.
 */
enum keel_err {
	KEEL_OK = 0,
	KEEL_EINVAL,		/* bad input: the client's fault */
	KEEL_ENOENT,		/* no such thing */
	KEEL_ECONFLICT,		/* a uniqueness or exclusion rule said no */
	KEEL_EUNAVAIL,		/* a dependency can't be reached */
	KEEL_ETIMEOUT,		/* a dependency took too long */
	KEEL_ETOOBIG,		/* a size bound was passed */
	KEEL_EINTERNAL,		/* a bug or an unexpected dependency answer */
	KEEL_ERR__MAX
};

/* A short static description of er; never NULL. */
const char	*keel_strerror(enum keel_err er);

#endif /* KEEL_ERR_H */
