/* SPDX-License-Identifier: ISC */
/*
 * test_report.c -- report.c: DSNs, scrubbing, the event and envelope
 * format, sampling, back-off headers, and the spool's bound.
 */
#include "config.h"

#include <sys/stat.h>

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "keel/config.h"
#include "keel/mem.h"
#include "keel/report.h"

static const struct keel_report_meta meta = {
	.environment = "test", .release = "keel@9.9.9", .server = "host1",
	.prog = "keel-cars",
};
static const char id[] = "0123456789abcdef0123456789abcdef";

/* ev as event JSON, parsed. */
static struct json_object *
event_of(const struct keel_report_event *ev)
{
	struct keel_buf		 b = { NULL, 0, 0 };
	struct json_object	*o;

	keel_report_event_json(&b, ev, &meta, id, 1700000000.25);
	o = json_tokener_parse(b.data);
	assert_non_null(o);
	keel_buf_free(&b);
	return o;
}

/* The string at a dotted path of o ("request.headers.Cookie"), or NULL. */
static const char *
at(struct json_object *o, const char *path)
{
	char	 buf[256], *p, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", path);
	for (p = strtok_r(buf, ".", &save); p != NULL;
	    p = strtok_r(NULL, ".", &save))
		if (!json_object_object_get_ex(o, p, &o))
			return NULL;
	return json_object_get_string(o);
}

static void
test_dsn_parsed(void **state)
{
	struct keel_report_dsn	 d;
	char			 buf[512];

	(void)state;
	assert_true(keel_report_dsn_parse(
	    "https://abc123@o1.ingest.sentry.io/42", &d));
	assert_string_equal(d.key, "abc123");
	assert_string_equal(d.host, "o1.ingest.sentry.io");
	assert_string_equal(d.project, "42");
	keel_report_dsn_url(&d, buf, sizeof(buf));
	assert_string_equal(buf,
	    "https://o1.ingest.sentry.io/api/42/envelope/");
}

static void
test_dsn_with_port_path_and_old_secret(void **state)
{
	struct keel_report_dsn	 d;
	char			 buf[512];

	(void)state;
	assert_true(keel_report_dsn_parse(
	    "http://pub:sekrit@127.0.0.1:9000/sentry/7", &d));
	assert_string_equal(d.key, "pub");
	keel_report_dsn_url(&d, buf, sizeof(buf));
	assert_string_equal(buf, "http://127.0.0.1:9000/sentry/api/7/envelope/");
	keel_report_auth_header(&d, buf, sizeof(buf));
	assert_string_equal(buf, "Sentry sentry_version=7, sentry_key=pub, "
	    "sentry_client=keel/" PACKAGE_VERSION);
	assert_null(strstr(buf, "sekrit"));
}

static void
test_dsn_refused(void **state)
{
	struct keel_report_dsn	 d;

	(void)state;
	assert_false(keel_report_dsn_parse("ftp://k@h/1", &d));
	assert_false(keel_report_dsn_parse("https://h/1", &d));
	assert_false(keel_report_dsn_parse("https://k@h/", &d));
	assert_false(keel_report_dsn_parse("https://k@h/abc", &d));
	assert_false(keel_report_dsn_parse("https://@h/1", &d));
	assert_false(keel_report_dsn_parse("https://k@/1", &d));
}

static void
test_init_refuses_a_bad_dsn_naming_it(void **state)
{
	static char	 bad[] = "https://sentry.example/1";
	struct keel_config c;
	char		 err[256];

	(void)state;
	memset(&c, 0, sizeof(c));
	c.sentry_dsn = bad;
	assert_false(keel_report_init(&c, "t", err, sizeof(err)));
	assert_non_null(strstr(err, "SENTRY_DSN"));
	c.sentry_dsn = bad + sizeof(bad) - 1;	/* "": reports off */
	assert_true(keel_report_init(&c, "t", err, sizeof(err)));
	assert_false(keel_report_enabled());
}

static void
test_secret_names(void **state)
{
	(void)state;
	assert_true(keel_report_secret_name("password"));
	assert_true(keel_report_secret_name("Authorization"));
	assert_true(keel_report_secret_name("Cookie"));
	assert_true(keel_report_secret_name("Set-Cookie"));
	assert_true(keel_report_secret_name("X-Api-Key"));
	assert_true(keel_report_secret_name("newPassword"));
	assert_true(keel_report_secret_name("sessionId"));
	assert_true(keel_report_secret_name("creditCardNumber"));
	assert_true(keel_report_secret_name("X-Hub-Signature"));
	assert_false(keel_report_secret_name("User-Agent"));
	assert_false(keel_report_secret_name("Content-Type"));
	assert_false(keel_report_secret_name("X-Request-Id"));
}

static void
test_secret_values(void **state)
{
	(void)state;
	assert_true(keel_report_secret_value("Bearer abc.def"));
	assert_true(keel_report_secret_value("basic dXNlcjpwdw=="));
	assert_true(keel_report_secret_value(
	    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"));
	assert_true(keel_report_secret_value("4111 1111 1111 1111"));
	assert_true(keel_report_secret_value("/reset?token=abc&x=1"));
	assert_true(keel_report_secret_value("a=1; session=xyz"));
	assert_false(keel_report_secret_value("curl/7.88.1"));
	assert_false(keel_report_secret_value("4111 1111 1111 1112"));
	assert_false(keel_report_secret_value("application/json"));
	assert_false(keel_report_secret_value("q=1&page=2"));
}

/* A stream ticket opens its user's stream: a Referer may carry one. */
static void
test_secret_stream_ticket(void **state)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	const char	*url = "https://keel.example/api/notifications/stream"
			    "?ticket=0123456789abcdefXYZ";

	(void)state;
	assert_true(keel_report_secret_value(url));
	assert_true(keel_report_secret_value("/api/x?lastEventId=3&ticket=t"));
	assert_string_equal(keel_report_scrub("Referer", url),
	    KEEL_REPORT_FILTERED);
	assert_true(keel_report_secret_name("X-Stream-Ticket"));
	keel_report_scrub_text(&b, "stream refused ticket=abc (expired)");
	assert_string_equal(b.data, "stream refused [Filtered] (expired)");
	keel_buf_free(&b);
}

static void
test_scrub_text_words(void **state)
{
	struct keel_buf	 b = { NULL, 0, 0 };

	(void)state;
	keel_report_scrub_text(&b, "smtp: 550 <bob@example.com> unknown, "
	    "auth Bearer abc123 failed; url /x?token=zz&a=1 (ok)");
	assert_string_equal(b.data, "smtp: 550 <[Filtered]> unknown, "
	    "auth Bearer [Filtered] failed; url [Filtered] (ok)");
	keel_buf_free(&b);
}

static void
test_secret_value_mail_address(void **state)
{
	(void)state;
	assert_true(keel_report_secret_value("Bob <bob@example.com>"));
	assert_false(keel_report_secret_value("user@localhost"));
	assert_false(keel_report_secret_value("keel@0.1.0"));
	assert_false(keel_report_secret_value("a @ b"));
}

static void
test_scrub_filters_by_name_or_value(void **state)
{
	(void)state;
	assert_string_equal(keel_report_scrub("password", "hunter2"),
	    KEEL_REPORT_FILTERED);
	assert_string_equal(keel_report_scrub("X-Other", "Bearer x"),
	    KEEL_REPORT_FILTERED);
	assert_string_equal(keel_report_scrub("Accept", "*/*"), "*/*");
}

struct seen {
	char	 names[8][64];
	char	 values[8][64];
	int	 n;
};

static void
collect(const char *name, const char *value, void *arg)
{
	struct seen	*s = arg;

	snprintf(s->names[s->n], sizeof(s->names[0]), "%s", name);
	snprintf(s->values[s->n], sizeof(s->values[0]), "%s", value);
	s->n++;
}

static void
test_headers_named_scrubbed_no_address(void **state)
{
	const char *const envp[] = {
		"REQUEST_METHOD=GET", "HTTP_USER_AGENT=curl/8",
		"HTTP_AUTHORIZATION=Bearer s3cr3t", "HTTP_COOKIE=sid=abc",
		"HTTP_X_FORWARDED_FOR=203.0.113.9", "REMOTE_ADDR=127.0.0.1",
		NULL,
	};
	struct seen	 s;

	(void)state;
	memset(&s, 0, sizeof(s));
	keel_report_headers(envp, 64, collect, &s);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.names[0], "User-Agent");
	assert_string_equal(s.values[0], "curl/8");
	assert_string_equal(s.names[1], "Authorization");
	assert_string_equal(s.values[1], KEEL_REPORT_FILTERED);
	assert_string_equal(s.names[2], "Cookie");
	assert_string_equal(s.values[2], KEEL_REPORT_FILTERED);
}

static void
test_headers_bounded(void **state)
{
	const char *const envp[] = { "HTTP_A=1", "HTTP_B=2", "HTTP_C=3",
	    NULL };
	struct seen	 s;

	(void)state;
	memset(&s, 0, sizeof(s));
	keel_report_headers(envp, 2, collect, &s);
	assert_int_equal(s.n, 2);
}

static void
test_event_fields(void **state)
{
	const char *const envp[] = { "HTTP_AUTHORIZATION=Bearer tok123",
	    "HTTP_ACCEPT=*/*", NULL };
	const struct keel_report_event ev = {
		.type = "InternalError", .value = "boom", .app = "cars",
		.route = "/api/cars/{id:int}", .method = "GET", .status = 500,
		.user_id = 17, .request_id = "00112233aabbccdd", .envp = envp,
	};
	struct json_object	*o = event_of(&ev);

	(void)state;
	assert_string_equal(at(o, "event_id"), id);
	assert_string_equal(at(o, "platform"), "c");
	assert_string_equal(at(o, "level"), "error");
	assert_string_equal(at(o, "environment"), "test");
	assert_string_equal(at(o, "release"), "keel@9.9.9");
	assert_string_equal(at(o, "logger"), "cars");
	assert_string_equal(at(o, "tags.route"), "/api/cars/{id:int}");
	assert_string_equal(at(o, "tags.request_id"), "00112233aabbccdd");
	assert_string_equal(at(o, "tags.status"), "500");
	assert_string_equal(at(o, "request.url"), "/api/cars/{id:int}");
	assert_string_equal(at(o, "request.headers.Accept"), "*/*");
	assert_string_equal(at(o, "request.headers.Authorization"),
	    KEEL_REPORT_FILTERED);
	json_object_put(o);
}

static void
test_event_user_is_id_only(void **state)
{
	const struct keel_report_event ev = { .type = "T", .value = "v",
	    .user_id = 42 };
	struct json_object	*o = event_of(&ev), *user;

	(void)state;
	assert_true(json_object_object_get_ex(o, "user", &user));
	assert_int_equal(json_object_object_length(user), 1);
	assert_string_equal(at(o, "user.id"), "42");
	json_object_put(o);
}

static void
test_event_anonymous_has_no_user(void **state)
{
	const struct keel_report_event ev = { .type = "T", .value = "v" };
	struct json_object	*o = event_of(&ev);

	(void)state;
	assert_null(at(o, "user"));
	assert_string_equal(at(o, "logger"), "keel-cars");
	json_object_put(o);
}

static void
test_event_long_value_cut(void **state)
{
	char			*big = malloc(100000);
	struct keel_report_event ev = { .type = "T" };
	struct json_object	*o;

	(void)state;
	memset(big, 'a', 99999);
	big[99999] = '\0';
	ev.value = big;
	o = event_of(&ev);
	assert_true(strlen(at(o, "exception.values")) < 9000);
	json_object_put(o);
	free(big);
}

static void
test_event_tag_scrubbed_by_key(void **state)
{
	const struct keel_report_tag tags[] = { { .key = "token",
	    .value = "abc" }, { .key = "queue", .value = "email" } };
	const struct keel_report_event ev = { .type = "T", .value = "v",
	    .tags = tags, .ntags = 2 };
	struct json_object	*o = event_of(&ev);

	(void)state;
	assert_string_equal(at(o, "tags.token"), KEEL_REPORT_FILTERED);
	assert_string_equal(at(o, "tags.queue"), "email");
	json_object_put(o);
}

static void
test_envelope_layout(void **state)
{
	struct keel_buf		 b = { NULL, 0, 0 };
	struct json_object	*h;
	char			*l1, *l2, *l3;

	(void)state;
	keel_report_envelope(&b, id, "https://k@h/1", 1700000000.5, "event",
	    "{\"a\":1}", 7);
	l1 = b.data;
	l2 = strchr(l1, '\n') + 1;
	l3 = strchr(l2, '\n') + 1;
	assert_memory_equal(l2, "{\"type\":\"event\",\"length\":7}\n", 28);
	assert_string_equal(l3, "{\"a\":1}\n");
	l2[-1] = '\0';
	h = json_tokener_parse(l1);
	assert_string_equal(at(h, "event_id"), id);
	assert_string_equal(at(h, "dsn"), "https://k@h/1");
	assert_string_equal(at(h, "sent_at"), "2023-11-14T22:13:20.500Z");
	json_object_put(h);
	keel_buf_free(&b);
}

static void
test_envelope_len_splits_a_batch(void **state)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	size_t		 first;

	(void)state;
	keel_report_envelope(&b, id, "https://k@h/1", 1, "transaction",
	    "{\"a\":\"x\ny\"}", 12);
	first = b.len;
	keel_report_envelope(&b, id, "https://k@h/1", 1, "event", "{}", 2);
	assert_int_equal(keel_report_envelope_len(b.data, b.len), first);
	assert_int_equal(keel_report_envelope_len(b.data + first,
	    b.len - first), b.len - first);
	assert_int_equal(keel_report_envelope_len(b.data, first - 3), 0);
	assert_int_equal(keel_report_envelope_len("{}\n{\"type\":\"e\"}\n",
	    17), 0);
	keel_buf_free(&b);
}

static void
test_txn_fields(void **state)
{
	const struct keel_report_txn t = { .app = "cars",
	    .route = "/api/cars", .method = "GET", .status = 404,
	    .request_id = "00112233aabbccdd", .start = 10, .end = 10.5 };
	struct keel_buf		 b = { NULL, 0, 0 };
	struct json_object	*o;

	(void)state;
	keel_report_txn_json(&b, &t, &meta, id);
	o = json_tokener_parse(b.data);
	assert_string_equal(at(o, "type"), "transaction");
	assert_string_equal(at(o, "transaction"), "GET /api/cars");
	assert_string_equal(at(o, "contexts.trace.span_id"),
	    "00112233aabbccdd");
	assert_string_equal(at(o, "contexts.trace.status"), "not_found");
	json_object_put(o);
	keel_buf_free(&b);
}

static void
test_sampled_by_request_id(void **state)
{
	(void)state;
	assert_true(keel_report_sampled("00000000ffffffff", 0.1));
	assert_false(keel_report_sampled("ffffffff00000000", 0.1));
	assert_true(keel_report_sampled("ffffffff00000000", 1.0));
	assert_false(keel_report_sampled("00000000ffffffff", 0.0));
	assert_false(keel_report_sampled("zz", 0.5));
}

static void
test_backoff_headers(void **state)
{
	(void)state;
	assert_int_equal(keel_report_backoff(200, NULL, NULL), 0);
	assert_int_equal(keel_report_backoff(429, NULL, NULL), 60);
	assert_int_equal(keel_report_backoff(429, NULL, "7"), 7);
	assert_int_equal(keel_report_backoff(200,
	    "60:transaction:key, 2700:default;error;security:organization",
	    NULL), 2700);
	assert_int_equal(keel_report_backoff(429, "30::organization", "5"),
	    30);
	assert_int_equal(keel_report_backoff(503, NULL, "999999999"), 86400);
}

/* ------------------------------------------------------------ the spool */

static struct keel_config	 cfg;
static char			 dir[] = "/tmp/keel-test-report-XXXXXX";

static int
spool_setup(void **state)
{
	static char	 dsn[] = "http://key@127.0.0.1:1/3", env[] = "test",
			 rel[] = "r1";
	char		 err[256];

	(void)state;
	assert_non_null(mkdtemp(dir));
	memset(&cfg, 0, sizeof(cfg));
	cfg.sentry_dsn = dsn;
	cfg.sentry_environment = env;
	cfg.sentry_release = rel;
	cfg.sentry_sample_rate = 1;
	cfg.sentry_traces_sample_rate = 1;
	cfg.report_spool = dir;
	cfg.report_spool_max = 4;
	cfg.report_spool_bytes = 1 << 20;
	assert_true(keel_report_init(&cfg, "test", err, sizeof(err)));
	return 0;
}

static int
spool_teardown(void **state)
{
	char	 cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int
files_in(const char *sub)
{
	char		 path[256];
	struct dirent	*de;
	DIR		*d;
	int		 n = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	assert_non_null(d = opendir(path));
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static long
size_of(const char *sub)
{
	char		 path[256];
	struct stat	 sb;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	return stat(path, &sb) == 0 ? (long)sb.st_size : 0;
}

static void
test_spool_bound_drops_and_counts(void **state)
{
	const struct keel_report_event ev = { .type = "T", .value = "v" };
	const struct keel_report_txn t = { .request_id = "0000000000000000",
	    .start = 1, .end = 2 };
	struct keel_report_item	 it;
	int			 i;

	(void)state;
	/* Held in memory, written as one file. */
	for (i = 0; i < 3; i++) {
		memset(&it, 0, sizeof(it));
		assert_true(keel_report_build_txn(&it, &t));
		keel_report_spool(&it);
	}
	assert_int_equal(files_in("new"), 0);
	assert_int_equal(keel_report_flush(), KEEL_OK);
	assert_int_equal(files_in("new"), 1);
	/* Transactions take at most half of the spool, uncounted. */
	for (i = 0; i < 2; i++) {
		memset(&it, 0, sizeof(it));
		assert_true(keel_report_build_txn(&it, &t));
		keel_report_spool(&it);
		keel_report_flush();
	}
	assert_int_equal(files_in("new"), 2);
	assert_int_equal(size_of("dropped"), 0);
	/* Errors fill the rest, then are dropped and counted. */
	for (i = 0; i < 4; i++)
		keel_report_send(&ev);
	assert_int_equal(files_in("new"), 4);
	assert_int_equal(files_in("tmp"), 0);
	assert_int_equal(size_of("dropped"), 2);
}

static void
test_spool_no_txn_during_backoff(void **state)
{
	const struct keel_report_txn t = { .request_id = "0000000000000000",
	    .start = 1, .end = 2 };
	struct keel_report_item	 it;
	int			 before = files_in("new");

	(void)state;
	keel_report_backoff_for(60);
	assert_true(keel_report_backoff_left() > 58);
	memset(&it, 0, sizeof(it));
	assert_true(keel_report_build_txn(&it, &t));
	keel_report_spool(&it);
	keel_report_flush();
	assert_int_equal(files_in("new"), before);
	keel_report_backoff_for(0);
	assert_true(keel_report_backoff_left() == 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dsn_parsed),
		cmocka_unit_test(test_dsn_with_port_path_and_old_secret),
		cmocka_unit_test(test_dsn_refused),
		cmocka_unit_test(test_init_refuses_a_bad_dsn_naming_it),
		cmocka_unit_test(test_secret_names),
		cmocka_unit_test(test_secret_values),
		cmocka_unit_test(test_secret_stream_ticket),
		cmocka_unit_test(test_scrub_filters_by_name_or_value),
		cmocka_unit_test(test_scrub_text_words),
		cmocka_unit_test(test_secret_value_mail_address),
		cmocka_unit_test(test_headers_named_scrubbed_no_address),
		cmocka_unit_test(test_headers_bounded),
		cmocka_unit_test(test_event_fields),
		cmocka_unit_test(test_event_user_is_id_only),
		cmocka_unit_test(test_event_anonymous_has_no_user),
		cmocka_unit_test(test_event_long_value_cut),
		cmocka_unit_test(test_event_tag_scrubbed_by_key),
		cmocka_unit_test(test_envelope_layout),
		cmocka_unit_test(test_envelope_len_splits_a_batch),
		cmocka_unit_test(test_txn_fields),
		cmocka_unit_test(test_sampled_by_request_id),
		cmocka_unit_test(test_backoff_headers),
	};
	const struct CMUnitTest spool[] = {
		cmocka_unit_test(test_spool_bound_drops_and_counts),
		cmocka_unit_test(test_spool_no_txn_during_backoff),
	};

	return cmocka_run_group_tests(tests, NULL, NULL) |
	    cmocka_run_group_tests(spool, spool_setup, spool_teardown);
}
