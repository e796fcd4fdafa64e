/* SPDX-License-Identifier: ISC */
/*
 * test_rcluster.c -- unit tests for rcluster.c: hash slots (values
 * checked against Redis 7's CLUSTER KEYSLOT), the key a command routes
 * by, MOVED/ASK parsing and the slot map.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keel/rcluster.h"

static unsigned
slot(const char *k)
{
	return keel_rc_slot(k, strlen(k));
}

static void
test_slot(void **state)
{
	(void)state;
	/* The specification's CRC16 check value, 0x31c3. */
	assert_int_equal(slot("123456789"), 0x31c3);
	assert_int_equal(slot("foo"), 12182);
	assert_int_equal(slot("bar"), 5061);
	assert_int_equal(slot("hello"), 866);
	assert_int_equal(slot(""), 0);
	/* Hash tags: the first '{' to the next '}', when not empty. */
	assert_int_equal(slot("{user1000}.following"),
	    slot("{user1000}.followers"));
	assert_int_equal(slot("keel:user-sess:{42}"), slot("42"));
	assert_int_equal(slot("keel:rl:api:u:{42}"), slot("keel:ryw:{42}"));
	assert_int_equal(slot("foo{bar}{zap}"), slot("bar"));
	assert_int_equal(slot("foo{{bar}}zap"), slot("{bar"));
	/* An empty tag or an unclosed one: the whole key. */
	assert_int_equal(slot("foo{}{bar}"), keel_rc_slot("foo{}{bar}", 10));
	assert_int_not_equal(slot("foo{}{bar}"), slot("bar"));
	assert_int_not_equal(slot("foo{bar"), slot("bar"));
	/* Length, not the NUL, bounds the key. */
	assert_int_equal(keel_rc_slot("foobar", 3), slot("foo"));
	assert_int_equal(keel_rc_slot("x{ab}", 4), slot("x{ab"));
}

#define KEY(...) do {							\
	const char *av[] = { __VA_ARGS__ };				\
	k = keel_rc_cmd_key((int)(sizeof(av) / sizeof(av[0])), av, NULL); \
} while (0)

static void
test_cmd_key(void **state)
{
	int	 k;

	(void)state;
	KEY("GET", "a");
	assert_int_equal(k, 1);
	KEY("PUBLISH", "keel:notify:1", "m");
	assert_int_equal(k, 1);
	KEY("PING");
	assert_int_equal(k, -1);
	KEY("SCRIPT", "LOAD", "return 1");
	assert_int_equal(k, -1);
	KEY("cluster", "slots");
	assert_int_equal(k, -1);
	KEY("EVALSHA", "abc", "2", "k1", "k2", "a1");
	assert_int_equal(k, 3);
	KEY("EVAL", "return 1", "0", "a1");
	assert_int_equal(k, -1);
	KEY("XREAD", "BLOCK", "100", "STREAMS", "keel:q:{e}:s", "$");
	assert_int_equal(k, 4);
	KEY("XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "streams", "s",
	    ">");
	assert_int_equal(k, 7);
	KEY("SCAN", "0", "MATCH", "keel:q:{email}:*", "COUNT", "1000");
	assert_int_equal(k, 3);
	/* A pattern whose slot isn't one: any node (none can do it all). */
	KEY("SCAN", "0", "MATCH", "keel:q:email:*", "COUNT", "1000");
	assert_int_equal(k, -1);
	KEY("SCAN", "0", "MATCH", "keel:{q*}:x");
	assert_int_equal(k, -1);
	KEY("SCAN", "0");
	assert_int_equal(k, -1);
}

static void
test_redirect(void **state)
{
	struct keel_rc_redirect	 rd;
	const char		*m;

	(void)state;
	m = "MOVED 3999 127.0.0.1:6381";
	assert_int_equal(keel_rc_redirect_parse(m, strlen(m), &rd),
	    KEEL_RC_MOVED);
	assert_int_equal(rd.slot, 3999);
	assert_string_equal(rd.host, "127.0.0.1");
	assert_int_equal(rd.port, 6381);
	m = "ASK 16383 10.0.0.2:7000";
	assert_int_equal(keel_rc_redirect_parse(m, strlen(m), &rd),
	    KEEL_RC_ASK);
	assert_int_equal(rd.slot, 16383);
	assert_string_equal(rd.host, "10.0.0.2");
	assert_int_equal(rd.port, 7000);
	/* An unknown endpoint: the node that answered (host ""). */
	m = "MOVED 1 :6380";
	assert_int_equal(keel_rc_redirect_parse(m, strlen(m), &rd),
	    KEEL_RC_MOVED);
	assert_string_equal(rd.host, "");
	assert_int_equal(rd.port, 6380);
	/* IPv6: the port follows the last ':'. */
	m = "MOVED 7 ::1:7001";
	assert_int_equal(keel_rc_redirect_parse(m, strlen(m), &rd),
	    KEEL_RC_MOVED);
	assert_string_equal(rd.host, "::1");
	assert_int_equal(rd.port, 7001);
	/* Not redirects, or malformed ones. */
	static const char *const bad[] = { "ERR wrong", "MOVED", "MOVED ",
	    "MOVED 16384 h:1", "MOVED x h:1", "MOVED 1 h", "MOVED 1 h:",
	    "MOVED 1 h:0", "MOVED 1 h:65536", "MOVED 1 h:1x", "MOVED 1",
	    "ASK 1 h:p", "NOSCRIPT No matching script", "MOVED1 h:1" };
	size_t	 i;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(keel_rc_redirect_parse(bad[i],
		    strlen(bad[i]), &rd), KEEL_RC_NONE);
	/* Length bounds the text. */
	m = "ASK 12 h:7000";
	assert_int_equal(keel_rc_redirect_parse(m, 11, &rd), KEEL_RC_ASK);
	assert_int_equal(rd.port, 70);
}

static void
test_map(void **state)
{
	struct keel_rc_map	*m;
	char			 host[32];
	int			 a, b, i;

	(void)state;
	m = malloc(sizeof(*m));
	keel_rc_map_reset(m);
	assert_int_equal(keel_rc_map_covered(m), 0);
	assert_int_equal(keel_rc_map_lookup(m, 0), -1);
	a = keel_rc_map_node(m, "127.0.0.1", 7000);
	b = keel_rc_map_node(m, "127.0.0.1", 7001);
	assert_int_equal(a, 0);
	assert_int_equal(b, 1);
	assert_int_equal(keel_rc_map_node(m, "127.0.0.1", 7000), a);
	keel_rc_map_assign(m, 0, 8191, a);
	keel_rc_map_assign(m, 8192, 99999, b);	/* clamped */
	assert_int_equal(keel_rc_map_covered(m), KEEL_RC_SLOTS);
	assert_int_equal(keel_rc_map_lookup(m, 8191), a);
	assert_int_equal(keel_rc_map_lookup(m, 8192), b);
	assert_int_equal(keel_rc_map_lookup(m, 16383), b);
	assert_int_equal(keel_rc_map_lookup(m, 16384), -1);
	/* A MOVED for one slot. */
	keel_rc_map_assign(m, 5, 5, b);
	assert_int_equal(keel_rc_map_lookup(m, 5), b);
	assert_int_equal(keel_rc_map_lookup(m, 4), a);
	/* An unknown node is ignored. */
	keel_rc_map_assign(m, 6, 6, 7);
	assert_int_equal(keel_rc_map_lookup(m, 6), a);
	/* Clearing the slots keeps the nodes. */
	keel_rc_map_clear_slots(m);
	assert_int_equal(keel_rc_map_covered(m), 0);
	assert_int_equal(keel_rc_map_node(m, "127.0.0.1", 7001), b);
	/* The table is bounded. */
	for (i = 2; i < KEEL_RC_NODES_MAX; i++) {
		snprintf(host, sizeof(host), "10.0.0.%d", i);
		assert_int_equal(keel_rc_map_node(m, host, 7000), i);
	}
	assert_int_equal(keel_rc_map_node(m, "10.9.9.9", 7000), -1);
	keel_rc_map_reset(m);
	assert_int_equal(keel_rc_map_node(m, "10.9.9.9", 7000), 0);
	free(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_slot),
		cmocka_unit_test(test_cmd_key),
		cmocka_unit_test(test_redirect),
		cmocka_unit_test(test_map),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
