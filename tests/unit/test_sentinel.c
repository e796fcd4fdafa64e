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
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <hiredis/hiredis.h>

#include "keel/config.h"
#include "keel/redis.h"
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
	assert_null(keel_sentinel_new("", "m", NULL));
	assert_null(keel_sentinel_new("host:0", "m", NULL));
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
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if ((c = accept(fd, NULL, NULL)) >= 0 &&
		    read(c, buf, sizeof(buf)) > 0 &&
		    write(c, answer, sizeof(answer) - 1) > 0)
			close(c);
		_exit(0);
	}
	close(fd);
	snprintf(list, sizeof(list), "127.0.0.1:%d,127.0.0.1:%d", dead,
	    live);
	s = keel_sentinel_new(list, "keel", NULL);
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

/*
 * A fake that is both the sentinel and the server it names (one port,
 * one connection at a time): it answers get-master-addr-by-name with
 * its own address (and writes a byte to *asked for each), AUTH with OK
 * for the password "s3cret" only, ROLE with role, anything else with
 * other.  Returns its pid; the port in *port.
 */
static pid_t
fake(const char *role, const char *other, int *port, int *asked)
{
	char	 addr[64], buf[1024], num[8];
	int	 fd, c, p[2];
	ssize_t	 n;
	pid_t	 pid;

	fd = listener(port);
	assert_int_equal(pipe(p), 0);
	snprintf(num, sizeof(num), "%d", *port);
	snprintf(addr, sizeof(addr), "*2\r\n$9\r\n127.0.0.1\r\n$%zu\r\n"
	    "%s\r\n", strlen(num), num);
	if ((pid = fork()) == 0) {
		/* A failed assertion skips the kill: die with the test. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(p[0]);
		while ((c = accept(fd, NULL, NULL)) >= 0) {
			while ((n = read(c, buf, sizeof(buf) - 1)) > 0) {
				buf[n] = '\0';
				if (strstr(buf, "AUTH"))
					(void)!write(c, strstr(buf, "s3cret") ?
					    "+OK\r\n" : "-WRONGPASS invalid "
					    "password\r\n", strstr(buf,
					    "s3cret") ? 5 : 29);
				else if (strstr(buf,
				    "get-master-addr-by-name")) {
					(void)!write(p[1], "s", 1);
					(void)!write(c, addr, strlen(addr));
				} else if (strstr(buf, "ROLE"))
					(void)!write(c, role, strlen(role));
				else
					(void)!write(c, other, strlen(other));
			}
			close(c);
		}
		_exit(0);
	}
	close(fd);
	close(p[1]);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	*asked = p[0];
	return pid;
}

/* Times the fake was asked where the master is, since the last call. */
static int
asked(int fd)
{
	char	 buf[64];
	ssize_t	 n;
	int	 total = 0;

	usleep(20000);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		total += (int)n;
	return total;
}

static struct keel_redis *
redis_via(int port, struct keel_config *cfg, char *list, size_t n)
{
	static char	 url[] = "redis://ignored:1/0", name[] = "keel";

	memset(cfg, 0, sizeof(*cfg));
	snprintf(list, n, "127.0.0.1:%d", port);
	cfg->redis_url = url;
	cfg->redis_sentinels = list;
	cfg->redis_sentinel_master = name;
	return keel_redis_open(cfg);
}

static void
test_redis_refuses_a_master_that_is_not_one(void **state)
{
	static const char slave[] = "*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1"
	    "\r\n:6379\r\n$9\r\nconnected\r\n:0\r\n";
	struct keel_config	 cfg;
	struct keel_redis	*r;
	const char		*ping[] = { "PING" };
	char			 list[64];
	int			 port, fd, st;
	pid_t			 pid;

	(void)state;
	pid = fake(slave, "+PONG\r\n", &port, &fd);
	r = redis_via(port, &cfg, list, sizeof(list));
	assert_int_equal(keel_redis_cmd(r, 1, ping, NULL, NULL),
	    KEEL_EUNAVAIL);
	assert_non_null(strstr(keel_redis_errstr(r), "not one"));
	assert_int_equal(asked(fd), 1);
	/* Never kept: the next command asks the sentinels again. */
	assert_int_equal(keel_redis_cmd(r, 1, ping, NULL, NULL),
	    KEEL_EUNAVAIL);
	assert_int_equal(asked(fd), 1);
	keel_redis_close(r);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	close(fd);
}

static void
test_redis_readonly_drops_the_connection(void **state)
{
	static const char master[] = "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n";
	struct keel_config	 cfg;
	struct keel_redis	*r;
	const char		*set[] = { "SET", "k", "v" };
	char			 list[64];
	int			 port, fd, st;
	pid_t			 pid;

	(void)state;
	pid = fake(master, "-READONLY You can't write against a read only "
	    "replica.\r\n", &port, &fd);
	r = redis_via(port, &cfg, list, sizeof(list));
	/* Unavailable (a 503), not a reply handed up (a 500) ... */
	assert_int_equal(keel_redis_cmd(r, 3, set, NULL, NULL),
	    KEEL_EUNAVAIL);
	assert_non_null(strstr(keel_redis_errstr(r), "READONLY"));
	assert_int_equal(asked(fd), 1);
	/* ... and the connection is gone: the next asks again. */
	assert_int_equal(keel_redis_cmd(r, 3, set, NULL, NULL),
	    KEEL_EUNAVAIL);
	assert_int_equal(asked(fd), 1);
	keel_redis_close(r);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	close(fd);
}

static void
test_sentinels_own_password(void **state)
{
	static const char master[] = "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n";
	struct keel_sentinel	*s;
	char			 list[64], host[KEEL_SENTINEL_HOST_MAX];
	char			 err[128];
	int			 port, fd, st, p;
	pid_t			 pid;

	(void)state;
	pid = fake(master, "+PONG\r\n", &port, &fd);
	snprintf(list, sizeof(list), "127.0.0.1:%d", port);
	s = keel_sentinel_new(list, "keel", "s3cret");
	assert_int_equal(keel_sentinel_master(s, 500, host, sizeof(host), &p,
	    err, sizeof(err)), KEEL_OK);
	assert_int_equal(p, port);
	assert_int_equal(asked(fd), 1);
	keel_sentinel_free(s);
	/* A wrong one: that sentinel can't say (and isn't asked). */
	s = keel_sentinel_new(list, "keel", "wrong");
	assert_int_equal(keel_sentinel_master(s, 500, host, sizeof(host), &p,
	    err, sizeof(err)), KEEL_EUNAVAIL);
	assert_non_null(strstr(err, "AUTH: WRONGPASS"));
	assert_int_equal(asked(fd), 0);
	keel_sentinel_free(s);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	close(fd);
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
		cmocka_unit_test(test_redis_refuses_a_master_that_is_not_one),
		cmocka_unit_test(test_redis_readonly_drops_the_connection),
		cmocka_unit_test(test_sentinels_own_password),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
