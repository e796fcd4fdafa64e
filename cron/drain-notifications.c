/* SPDX-License-Identifier: ISC */
/*
 * drain-notifications.c -- keel-drain-notifications: fans a
 * notification out to its users (DESIGN.md, "Notifications in real time").
 *
 * NOT YET CONSUMED: the notifications table and its stream arrive with
 * their resource, and the handler with them (a row in a kinds table
 * below).  Until then the queue, its policy, the cron entry and this
 * program exist; with no kind handled it leases nothing and says so, so
 * jobs written early wait on the queue, untouched, for the handler --
 * never completed as if they had been done.
 */
#include "config.h"

#include "keel/drain.h"

static const struct keel_drainer notifications_drainer = {
	.name = "keel-drain-notifications", .queue = "notifications",
};

int
main(int argc, char *argv[])
{
	return keel_drain_main(argc, argv, &notifications_drainer);
}
