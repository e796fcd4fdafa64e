/* SPDX-License-Identifier: ISC */
/* serve.h -- the prefork process manager every app hands its routes to. */
#ifndef KEEL_SERVE_H
#define KEEL_SERVE_H

#include <signal.h>
#include <stddef.h>

#include "keel/router.h"

struct keel_config;

/*
 * What an app is: its name (for logs and /routes) and its route table.
 * An app on its own event loop (the stream app) also sets loop: each
 * worker then calls loop(cfg, lfd, waitmask) instead of serving FastCGI
 * on the listening socket lfd, and exits when it returns.  loop starts
 * with SIGTERM and SIGINT blocked and handles them itself (waitmask is
 * the mask that lets them in); its routes are then only listed.
 */
struct keel_app {
	const char		*name;
	const struct keel_route	*routes;
	size_t			 nroutes;
	void			(*loop)(const struct keel_config *cfg, int lfd,
				    const sigset_t *waitmask);
};

/*
 * Runs app until SIGTERM: reads the configuration (exits 1 on a bad
 * value, naming it), takes the FastCGI listening socket from fd 0 or binds
 * --socket PATH, forks KEEL_WORKERS workers (KEEL_PM=dynamic: as many as
 * keep KEEL_PM_MIN_SPARE..KEEL_PM_MAX_SPARE of them idle, at most
 * KEEL_PM_MAX_CHILDREN), respawns them (with backoff when one dies at
 * once), recycles each after KEEL_MAX_REQUESTS, and on SIGTERM stops
 * accepting, lets in-flight requests finish and exits.  On SIGHUP it
 * checks the binary at its path (--check, through KEEL_ENV_FILE) and
 * executes it in place, keeping the socket and the workers, which the new
 * image replaces one by one; a binary that fails the check changes
 * nothing.  A worker told to leave (roll or SIGTERM) is killed after
 * KEEL_SHUTDOWN_TIMEOUT.  --routes prints the route table as JSON lines
 * and exits; --check loads the configuration and exits 0 if it is valid.
 * Returns the process exit status.
 */
int	keel_serve(int argc, char *argv[], const struct keel_app *app);

/*
 * The unix socket keel_serve() was told to serve on (--socket), or NULL
 * when it took fd 0 (or before keel_serve() read its arguments).  Points
 * into argv: valid for the process's life, not to be freed.
 */
const char	*keel_serve_socket(void);

#endif /* KEEL_SERVE_H */
