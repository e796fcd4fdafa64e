/* SPDX-License-Identifier: ISC */
/*
 * drain-leaderboard.c -- keel-drain-leaderboard: applies submitted
 * attempts to the leaderboards (DESIGN.md, "Leaderboards").
 *
 * NOT YET CONSUMED: the attempts and leaderboard tables arrive with the
 * exam resources, and their handler with them (a row in leaderboard_kinds
 * below).  Until then the queue, its policy, the cron entry and this
 * program exist; with no kind handled it leases nothing and says so, so
 * jobs written early wait on the queue, untouched, for the handler --
 * never completed as if they had been done.
 */
#include "config.h"

#include "keel/drain.h"

static const struct keel_drainer leaderboard_drainer = {
	.name = "keel-drain-leaderboard", .queue = "leaderboard",
};

int
main(int argc, char *argv[])
{
	return keel_drain_main(argc, argv, &leaderboard_drainer);
}
