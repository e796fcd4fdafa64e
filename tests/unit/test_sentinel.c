/* SPDX-License-Identifier: ISC */
/*
 * test_sentinel.c -- unit tests for sentinel.c: the REDIS_SENTINELS
 * list, the sentinels' answer, the ROLE check, and the order they are
 * asked in (against a one-shot fake sentinel on loopback).
 */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "keel/sentinel.h"

static void
test_parse_list(void **state)
{
	struct keel_sentinel_addr	 a[4];

	(void)state;
	assert_int_equal(keel_sentinel_parse("10.0.0.1:26380", a, 4), 1);
	assert_string_equal(a[0].host, "10.0.0.1");
	assert_int_equal(a[0].port, 26380);
	assert_int_equal(keel_sentinel_parse(
	    " s1.example:5000, s2.example ,[::1]:26381,[fe80::1]", a, 4), 4);
	assert_string_equal(a[0].host, "s1.example");
	assert_int_equal(a[0].port, 5000);
	assert_string_equal(a[1].host, "s2.example");
	assert_int_equal(a[1].port, KEEL_SENTINEL_PORT);
	assert_string_equal(a[2].host, "::1");
	assert_int_equal(a[2].port, 26381);
	assert_string_equal(a[3].host, "fe80::1");
	assert_int_equal(a[3].port, KEEL_SENTINEL_PORT);
	/* Empty items are skipped, as in every comma list. */
	assert_int_equal(keel_sentinel_parse("a:1,,b:2,", a, 4), 2);
}

static void
test_parse_refuses(void **state)
{
	struct keel_sentinel_addr	 a[2];
	char				 big[400];

	(void)state;
	assert_int_equal(keel_sentinel_parse("", a, 2), -1);
	assert_int_equal(keel_sentinel_parse(" , ", a, 2), -1);
	assert_int_equal(keel_sentinel_parse("a:1,b:2,c:3", a, 2), -1);
	assert_int_equal(keel_sentinel_parse("host:", a, 2), -1);
	assert_int_equal(keel_sentinel_parse(":26379", a, 2), -1);
	assert_int_equal(keel_sentinel_parse("host:0", a, 2), -1);
	assert_int_equal(keel_sentinel_parse("host:65536", a, 2), -1);
	assert_int_equal(keel_sentinel_parse("host:12x", a, 2), -1);
	assert_int_equal(keel_sentinel_parse("host:-1", a, 2), -1);
	assert_int_equal(keel_sentinel_parse("::1:26379", a, 2), -1);
	assert_int_equal(keel_sentinel_parse("[::1", a, 2), -1);
	assert_int_equal(keel_sentinel_parse("[]:1", a, 2), -1);
	assert_int_equal(keel_sentinel_parse("[::1]26379", a, 2), -1);
	assert_int_equal(keel_sentinel_parse("a b:1", a, 2), -1);
	memset(big, 'h', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(keel_sentinel_parse(big, a, 2), -1);
	assert_null(keel_sentinel_new("", "m"));
	assert_null(keel_sentinel_new("host:0", "m"));
}

/* A reply node, as hiredis builds them. */
static redisReply *
str(int type, const char *s)
{
	redisReply	*r = calloc(1, sizeof(*r));

	r->type = type;
	r->str = strdup(s);
	r->len = strlen(s);
	return r;
}

static redisReply *
arr(size_t n, ...)
{
	redisReply	*r = calloc(1, sizeof(*r));
	va_list		 ap;
	size_t		 i;

	r->type = REDIS_REPLY_ARRAY;
	r->elements = n;
	r->element = calloc(n + 1, sizeof(*r->element));
	va_start(ap, n);
	for (i = 0; i < n; i++)
		r->element[i] = va_arg(ap, redisReply *);
	va_end(ap);
	return r;
}

static void
test_master_reply(void **state)
{
	redisReply	*r, nil = { .type = REDIS_REPLY_NIL };
	char		 host[KEEL_SENTINEL_HOST_MAX], small[4];
	int		 port = 0;

	(void)state;
	r = arr(2, str(REDIS_REPLY_STRING, "10.1.2.3"),
	    str(REDIS_REPLY_STRING, "6380"));
	assert_true(keel_sentinel_master_reply(r, host, sizeof(host), &port));
	assert_string_equal(host, "10.1.2.3");
	assert_int_equal(port, 6380);
	/* The host must fit. */
	assert_false(keel_sentinel_master_reply(r, small, sizeof(small),
	    &port));
	freeReplyObject(r);
	/* nil: the sentinel doesn't know that name. */
	assert_false(keel_sentinel_master_reply(&nil, host, sizeof(host),
	    &port));
	assert_false(keel_sentinel_master_reply(NULL, host, sizeof(host),
	    &port));
	r = str(REDIS_REPLY_ERROR, "ERR unknown command");
	assert_false(keel_sentinel_master_reply(r, host, sizeof(host), &port));
	freeReplyObject(r);
	r = arr(2, str(REDIS_REPLY_STRING, "h"),
	    str(REDIS_REPLY_STRING, "70000"));
	assert_false(keel_sentinel_master_reply(r, host, sizeof(host), &port));
	freeReplyObject(r);
	r = arr(1, str(REDIS_REPLY_STRING, "h"));
	assert_false(keel_sentinel_master_reply(r, host, sizeof(host), &port));
	freeReplyObject(r);
	r = arr(2, str(REDIS_REPLY_STRING, ""),
	    str(REDIS_REPLY_STRING, "6379"));
	assert_false(keel_sentinel_master_reply(r, host, sizeof(host), &port));
	freeReplyObject(r);
}

static void
test_role(void **state)
{
	redisReply	*r;

	(void)state;
	r = arr(3, str(REDIS_REPLY_STRING, "master"),
	    str(REDIS_REPLY_STRING, "0"), arr(0));
	assert_true(keel_sentinel_role_is_master(r));
	freeReplyObject(r);
	r = arr(2, str(REDIS_REPLY_STRING, "slave"),
	    str(REDIS_REPLY_STRING, "127.0.0.1"));
	assert_false(keel_sentinel_role_is_master(r));
	freeReplyObject(r);
	r = arr(2, str(REDIS_REPLY_STRING, "sentinel"), arr(0));
	assert_false(keel_sentinel_role_is_master(r));
	freeReplyObject(r);
	r = arr(1, str(REDIS_REPLY_STRING, "masters"));
	assert_false(keel_sentinel_role_is_master(r));
	freeReplyObject(r);
	r = str(REDIS_REPLY_ERROR, "NOAUTH Authentication required.");
	assert_false(keel_sentinel_role_is_master(r));
	freeReplyObject(r);
	assert_false(keel_sentinel_role_is_master(NULL));
}

/* A listening loopback socket; its port in *port. */
static int
listener(int *port)
{
	struct sockaddr_in	 sin;
	socklen_t		 len = sizeof(sin);
	int			 fd;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

static void
test_asks_in_turn_and_remembers(void **state)
{
	static const char answer[] =
	    "*2\r\n$9\r\n127.0.0.9\r\n$4\r\n6390\r\n";
	struct keel_sentinel	*s;
	char			 list[64], host[KEEL_SENTINEL_HOST_MAX];
	char			 err[128], buf[256];
	int			 fd, c, dead, live, port, st;
	pid_t			 pid;

	(void)state;
	/* A port nothing listens on any more ... */
	close(listener(&dead));
	/* ... and a fake sentinel that answers once. */
	fd = listener(&live);
	if ((pid = fork()) == 0) {
		if ((c = accept(fd, NULL, NULL)) >= 0 &&
		    read(c, buf, sizeof(buf)) > 0 &&
		    write(c, answer, sizeof(answer) - 1) > 0)
			close(c);
		_exit(0);
	}
	close(fd);
	snprintf(list, sizeof(list), "127.0.0.1:%d,127.0.0.1:%d", dead,
	    live);
	s = keel_sentinel_new(list, "keel");
	assert_non_null(s);
	assert_int_equal(keel_sentinel_first(s), 0);
	assert_int_equal(keel_sentinel_master(s, 500, host, sizeof(host),
	    &port, err, sizeof(err)), KEEL_OK);
	assert_string_equal(host, "127.0.0.9");
	assert_int_equal(port, 6390);
	/* The one that answered is asked first from now on. */
	assert_int_equal(keel_sentinel_first(s), 1);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	/* Neither answers now: unavailable, with the reason. */
	assert_int_equal(keel_sentinel_master(s, 200, host, sizeof(host),
	    &port, err, sizeof(err)), KEEL_EUNAVAIL);
	assert_non_null(strstr(err, "sentinel 127.0.0.1:"));
	assert_int_equal(keel_sentinel_first(s), 1);
	keel_sentinel_free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_list),
		cmocka_unit_test(test_parse_refuses),
		cmocka_unit_test(test_master_reply),
		cmocka_unit_test(test_role),
		cmocka_unit_test(test_asks_in_turn_and_remembers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
