/* SPDX-License-Identifier: ISC */
/*
 * test_addr.c -- unit tests for addr.c: client addresses (IPv6 /56,
 * X-Forwarded-For from trusted proxies only) and proxy lists.
 */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keel/addr.h"

/* The client address of remote and xff with trusted and bits, as want. */
static void
addr_is(const char *remote, const char *xff, const char *trusted, int bits,
    const char *want)
{
	struct keel_addr_rule	 rule = { .v6_prefix = bits };
	char			 out[KEEL_ADDR_MAX];

	assert_true(keel_addr_nets_parse(trusted, &rule.trusted,
	    &rule.ntrusted));
	assert_true(keel_addr_client(&rule, remote, xff, out));
	assert_string_equal(out, want);
	free(rule.trusted);
}

/* True when list parses as TRUSTED_PROXIES. */
static bool
nets_valid(const char *list)
{
	struct keel_net	*nets = NULL;
	size_t		 n;
	bool		 ok;

	ok = keel_addr_nets_parse(list, &nets, &n);
	free(nets);
	return ok;
}

static void
test_proxies(void **state)
{
	(void)state;
	assert_true(nets_valid(""));
	assert_true(nets_valid("127.0.0.1, 10.0.0.0/8, ::1, 2001:db8::/32"));
	assert_false(nets_valid("10.0.0.0/33"));
	assert_false(nets_valid("2001:db8::/129"));
	assert_false(nets_valid("proxy.example"));
}

static void
test_net_membership(void **state)
{
	struct keel_net	 net, ip;

	(void)state;
	assert_true(keel_addr_net_parse("10.1.0.0/16", 11, &net));
	assert_true(keel_addr_net_parse("10.1.255.3", 10, &ip));
	assert_true(keel_addr_in(ip.ip, &net));
	assert_true(keel_addr_net_parse("10.2.0.1", 8, &ip));
	assert_false(keel_addr_in(ip.ip, &net));
}

static void
test_addr_plain(void **state)
{
	(void)state;
	addr_is("192.0.2.7", NULL, "", 56, "192.0.2.7");
	addr_is("::ffff:192.0.2.7", NULL, "", 56, "192.0.2.7");
	/* One /56 is one client however its low bits rotate. */
	addr_is("2001:db8:0:ab12:1:2:3:4", NULL, "", 56,
	    "2001:db8:0:ab00::/56");
	addr_is("2001:db8:0:abff::9", NULL, "", 56, "2001:db8:0:ab00::/56");
	addr_is("2001:db8:0:ab12:1:2:3:4", NULL, "", 64,
	    "2001:db8:0:ab12::/64");
	addr_is("2001:db8::1", NULL, "", 128, "2001:db8::1/128");
	/* Not an address at all (a unix socket peer): made safe. */
	addr_is("un ix\n", NULL, "", 56, "un_ix_");
}

static void
test_addr_forwarded(void **state)
{
	const char	*t = "127.0.0.1, 10.1.0.0/16";

	(void)state;
	/* Untrusted peer: its X-Forwarded-For is a claim, ignored. */
	addr_is("192.0.2.7", "203.0.113.9", t, 56, "192.0.2.7");
	/* Trusted peer: the rightmost hop it did not add itself. */
	addr_is("127.0.0.1", "203.0.113.9", t, 56, "203.0.113.9");
	addr_is("127.0.0.1", "6.6.6.6, 203.0.113.9", t, 56, "203.0.113.9");
	addr_is("127.0.0.1", "6.6.6.6,203.0.113.9 , 10.1.2.3", t, 56,
	    "203.0.113.9");
	/* Only proxies: the leftmost is as far as we can see. */
	addr_is("127.0.0.1", "10.1.9.9, 10.1.2.3", t, 56, "10.1.9.9");
	/* Junk stops the walk at the last good hop. */
	addr_is("127.0.0.1", "203.0.113.9, junk", t, 56, "127.0.0.1");
	addr_is("127.0.0.1", "", t, 56, "127.0.0.1");
	addr_is("127.0.0.1", "2001:db8:0:ab12::5", t, 56,
	    "2001:db8:0:ab00::/56");
	addr_is("::1", "203.0.113.9", "::1", 56, "203.0.113.9");
}

static void
test_trusted_peer(void **state)
{
	struct keel_addr_rule	 rule = { .v6_prefix = 56 };

	(void)state;
	assert_false(keel_addr_trusted(&rule, "127.0.0.1"));
	assert_true(keel_addr_nets_parse("127.0.0.1, 10.0.0.0/8", &rule.trusted,
	    &rule.ntrusted));
	assert_true(keel_addr_trusted(&rule, "127.0.0.1"));
	assert_true(keel_addr_trusted(&rule, "10.9.8.7"));
	assert_false(keel_addr_trusted(&rule, "127.0.0.2"));
	assert_false(keel_addr_trusted(&rule, "/run/keel/cars.sock"));
	assert_false(keel_addr_trusted(&rule, ""));
	assert_false(keel_addr_trusted(&rule, NULL));
	free(rule.trusted);
}

static void
test_last_hop_trusted(void **state)
{
	struct keel_addr_rule	 rule = { .v6_prefix = 56 };

	(void)state;
	assert_false(keel_addr_last_hop_trusted(&rule, "127.0.0.1"));
	assert_true(keel_addr_nets_parse("127.0.0.1, 10.0.0.0/8", &rule.trusted,
	    &rule.ntrusted));
	assert_true(keel_addr_last_hop_trusted(&rule, "127.0.0.1"));
	assert_true(keel_addr_last_hop_trusted(&rule, "6.6.6.6, 10.1.2.3 "));
	/* A client's own entries come first: only the last one counts. */
	assert_false(keel_addr_last_hop_trusted(&rule, "127.0.0.1, 6.6.6.6"));
	assert_false(keel_addr_last_hop_trusted(&rule, "10.1.2.3,"));
	assert_false(keel_addr_last_hop_trusted(&rule, "10.1.2.3, junk"));
	assert_false(keel_addr_last_hop_trusted(&rule, ""));
	assert_false(keel_addr_last_hop_trusted(&rule, NULL));
	free(rule.trusted);
}

/*
 * Whether the client of remote and xff, with trusted, is this host;
 * other: another forwarding header came too.
 */
static bool
local_other(const char *remote, const char *xff, const char *trusted,
    bool other)
{
	struct keel_addr_rule	 rule = { .v6_prefix = 56 };
	bool			 r;

	assert_true(keel_addr_nets_parse(trusted, &rule.trusted,
	    &rule.ntrusted));
	r = keel_addr_client_local(&rule, remote, xff, other);
	free(rule.trusted);
	return r;
}

static bool
local(const char *remote, const char *xff, const char *trusted)
{
	return local_other(remote, xff, trusted, false);
}

static void
test_client_local(void **state)
{
	(void)state;
	assert_true(local("127.0.0.1", NULL, ""));
	assert_true(local("127.3.2.1", NULL, ""));
	assert_true(local("::1", NULL, ""));
	assert_true(local("::ffff:127.0.0.1", NULL, ""));
	assert_false(local("192.0.2.7", NULL, ""));
	assert_false(local("::2", NULL, ""));
	assert_false(local("/run/keel/metrics.sock", NULL, ""));
	assert_false(local(NULL, NULL, ""));
	/* A local proxy forwarding someone else: not local. */
	assert_false(local("127.0.0.1", "203.0.113.9", "127.0.0.1"));
	assert_false(local("::1", "2001:db8::5", "::1"));
	/* ... forwarding a local client, or no one: local. */
	assert_true(local("127.0.0.1", "127.0.0.1", "127.0.0.1"));
	assert_true(local("127.0.0.1", "", "127.0.0.1"));
	/* Forwarded by a proxy not trusted: whose request can't be known
	 * (a local HAProxy without TRUSTED_PROXIES), and a claim of being
	 * local is no proof of it. */
	assert_false(local("127.0.0.1", "203.0.113.9", ""));
	assert_false(local("127.0.0.1", "127.0.0.1", ""));
	assert_false(local("192.0.2.7", "127.0.0.1", "127.0.0.1"));
}

static void
test_client_local_forwarded_otherwise(void **state)
{
	size_t	 i;

	(void)state;
	/* Forwarded, X-Real-IP, X-Forwarded-Host/-Proto from loopback:
	 * forwarded by something naming its client in a way we don't
	 * read, trusted or not, with or without X-Forwarded-For. */
	assert_false(local_other("127.0.0.1", NULL, "", true));
	assert_false(local_other("::1", NULL, "", true));
	assert_false(local_other("127.0.0.1", NULL, "127.0.0.1", true));
	assert_false(local_other("127.0.0.1", "127.0.0.1", "127.0.0.1",
	    true));
	assert_true(local_other("127.0.0.1", NULL, "", false));
	for (i = 0; keel_addr_forward_headers[i] != NULL; i++)
		continue;
	assert_int_equal(i, 4);
	assert_string_equal(keel_addr_forward_headers[0], "Forwarded");
	assert_string_equal(keel_addr_forward_headers[1], "X-Real-IP");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_trusted_peer),
		cmocka_unit_test(test_proxies),
		cmocka_unit_test(test_net_membership),
		cmocka_unit_test(test_addr_plain),
		cmocka_unit_test(test_addr_forwarded),
		cmocka_unit_test(test_last_hop_trusted),
		cmocka_unit_test(test_client_local),
		cmocka_unit_test(test_client_local_forwarded_otherwise),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
