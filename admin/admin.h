/* SPDX-License-Identifier: ISC */
/*
 * admin.h -- what keel-admin's files share: keel-admin.c's usage and
 * option check, and the commands that live in files of their own.
 */
#ifndef KEEL_ADMIN_H
#define KEEL_ADMIN_H

/* Prints keel-admin's usage on stderr and exits 2 (keel-admin.c). */
void	 admin_usage(void) __attribute__((noreturn));

/*
 * Sets *dst to val, or stops with the usage when an earlier --opt set
 * it (keel-admin.c).  val is not copied: it is one of argv's strings.
 */
void	 admin_option_once(const char **dst, const char *opt,
	    const char *val);

/*
 * keel-admin restored [--gap N] [--yes] [--force], argv[0] "restored"
 * (restore.c): makes Redis and memcached agree with a database restored
 * from a backup.  Returns the exit code: 0 done, 1 failed or refused, 2
 * the preview without --yes (nothing changed).
 */
int	 admin_restored(int argc, char *argv[]);

#endif /* KEEL_ADMIN_H */
