/* SPDX-License-Identifier: ISC */
/* serve.h -- the prefork process manager every app hands its routes to. */
#ifndef KEEL_SERVE_H
#define KEEL_SERVE_H

#include <stddef.h>

#include "keel/router.h"

/* What an app is: its name (for logs and /routes) and its route table. */
struct keel_app {
	const char		*name;
	const struct keel_route	*routes;
	size_t			 nroutes;
};

/*
 * Runs app until SIGTERM: reads the configuration (exits 1 on a bad
 * value, naming it), takes the FastCGI listening socket from fd 0 or binds
 * --socket PATH, forks KEEL_WORKERS workers, respawns them (with backoff
 * when one dies at once), recycles each after KEEL_MAX_REQUESTS, rolls
 * them one by one on SIGHUP, and on SIGTERM stops accepting, lets
 * in-flight requests finish and exits.  A worker told to leave (roll or
 * SIGTERM) is killed after KEEL_SHUTDOWN_TIMEOUT.  --routes prints the
 * route table as JSON lines and exits.  Returns the process exit status.
 */
int	keel_serve(int argc, char *argv[], const struct keel_app *app);

#endif /* KEEL_SERVE_H */
