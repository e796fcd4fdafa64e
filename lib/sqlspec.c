/* SPDX-License-Identifier: ISC */
/*
 * sqlspec.c -- a statement specialised to the filters a run leaves out
 * (sqlspec.h says why).
 *
 * One reader serves all three functions: it walks the SQL, copying
 * quoted text and identifiers through untouched, and at each "(" tries
 * to read an arm "( $N[::type] IS NULL OR <cond> )", <cond> running to
 * the parenthesis that closes it.  Reading only: it records the arms'
 * parameters, the LIMIT's and every parameter named.  Writing: it also
 * puts out the text with each arm and the LIMIT rewritten for a key.
 */
#include "config.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "keel/mem.h"
#include "keel/sqlspec.h"

struct scan {
	const char			*sql;
	const struct keel_sqlspec_key	*key;	/* NULL: read only */
	struct keel_buf			*out;	/* with key */
	uint32_t			 heads;
	uint32_t			 refs;	/* parameters named */
	int				 limit;	/* 0 none, -1 more than one */
	bool				 bad;
};

static bool
ident(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

static size_t
skip_ws(const char *s, size_t i, size_t to)
{
	while (i < to && isspace((unsigned char)s[i]))
		i++;
	return i;
}

/* The keyword kw (uppercase) at s[i] as a whole word: its end, else 0. */
static size_t
word_at(const char *s, size_t i, size_t to, const char *kw)
{
	size_t	 n = strlen(kw);

	if (i + n > to || strncasecmp(s + i, kw, n) != 0 ||
	    (i + n < to && ident(s[i + n])) || (i > 0 && ident(s[i - 1])))
		return 0;
	return i + n;
}

/* A parameter $N at s[i]: N (1..), its end in *end; else 0. */
static int
param_at(const char *s, size_t i, size_t to, size_t *end)
{
	long	 n = 0;

	if (i + 1 >= to || s[i] != '$' || !isdigit((unsigned char)s[i + 1]))
		return 0;
	for (i++; i < to && isdigit((unsigned char)s[i]); i++)
		if ((n = n * 10 + (s[i] - '0')) > KEEL_SQLSPEC_MAXPARAM)
			return -1;
	*end = i;
	return (int)n;
}

/* The end of the quoted text starting at s[i] ('...' or "..."), or 0. */
static size_t
quote_end(const char *s, size_t i, size_t to)
{
	char	 q = s[i];

	for (i++; i < to; i++)
		if (s[i] == q) {
			if (i + 1 < to && s[i + 1] == q) {
				i++;	/* '' or "": the quote itself */
				continue;
			}
			return i + 1;
		}
	return 0;
}

/* The ")" closing the "(" before s[i], or to when there is none. */
static size_t
close_at(const char *s, size_t i, size_t to)
{
	size_t	 e;
	int	 depth = 1;

	for (; i < to; i++) {
		if (s[i] == '\'' || s[i] == '"') {
			if ((e = quote_end(s, i, to)) == 0)
				return to;
			i = e - 1;
		} else if (s[i] == '(')
			depth++;
		else if (s[i] == ')' && --depth == 0)
			return i;
	}
	return to;
}

/* An arm read at a "(" (arm.open): where its parts are. */
struct arm {
	int	 param;		/* N of its $N */
	size_t	 head_end;	/* the end of "$N::type" */
	size_t	 cond;		/* <cond>'s start */
	size_t	 close;		/* its ")" */
};

/* Reads an arm at s[i] == '('; false when none is there. */
static bool
arm_at(const char *s, size_t i, size_t to, struct arm *a)
{
	size_t	 j, e;

	j = skip_ws(s, i + 1, to);
	if ((a->param = param_at(s, j, to, &j)) <= 0)
		return false;
	if (j + 1 < to && s[j] == ':' && s[j + 1] == ':') {
		/* The type: words up to IS ("double precision"), maybe []. */
		j += 2;
		for (;;) {
			e = skip_ws(s, j, to);
			if (e >= to || word_at(s, e, to, "IS") != 0 ||
			    !ident(s[e]))
				break;
			while (e < to && ident(s[e]))
				e++;
			while (e + 1 < to && s[e] == '[' && s[e + 1] == ']')
				e += 2;
			j = e;
		}
	}
	a->head_end = j;
	j = skip_ws(s, j, to);
	if ((j = word_at(s, j, to, "IS")) == 0 ||
	    (j = word_at(s, skip_ws(s, j, to), to, "NULL")) == 0 ||
	    (j = word_at(s, skip_ws(s, j, to), to, "OR")) == 0)
		return false;
	a->cond = skip_ws(s, j, to);
	a->close = close_at(s, a->cond, to);
	return a->close < to && a->close > a->cond;
}

static void
put(struct scan *sc, const char *p, size_t n)
{
	if (sc->out != NULL)
		keel_buf_append(sc->out, p, n);
}

static void
scan(struct scan *sc, size_t i, size_t to)
{
	const char	*s = sc->sql;
	struct arm	 a;
	size_t		 e, k;
	int		 n;
	char		 num[32];

	while (i < to && !sc->bad) {
		if (s[i] == '\'' && i > 0 && (s[i - 1] == 'E' ||
		    s[i - 1] == 'e') && (i < 2 || !ident(s[i - 2]))) {
			sc->bad = true;		/* E'...': backslash escapes */
			return;
		}
		if (s[i] == '\'' || s[i] == '"') {
			if ((e = quote_end(s, i, to)) == 0) {
				sc->bad = true;
				return;
			}
			put(sc, s + i, e - i);
			i = e;
			continue;
		}
		if ((s[i] == '-' && i + 1 < to && s[i + 1] == '-') ||
		    (s[i] == '/' && i + 1 < to && s[i + 1] == '*')) {
			sc->bad = true;		/* comments: not followed */
			return;
		}
		if (s[i] == '$') {
			if ((n = param_at(s, i, to, &e)) <= 0) {
				sc->bad = true;	/* $$ quotes, $99 */
				return;
			}
			sc->refs |= 1u << (n - 1);
			put(sc, s + i, e - i);
			i = e;
			continue;
		}
		if (s[i] == '(' && arm_at(s, i, to, &a)) {
			sc->heads |= 1u << (a.param - 1);
			if (sc->key == NULL)
				scan(sc, a.cond, a.close);
			else if (sc->key->nulls & (1u << (a.param - 1)))
				put(sc, "true", 4);
			else {
				put(sc, s + i, a.head_end - i);
				put(sc, " IS NOT NULL AND (", 18);
				scan(sc, a.cond, a.close);
				put(sc, "))", 2);
			}
			i = a.close + 1;
			continue;
		}
		if ((e = word_at(s, i, to, "LIMIT")) != 0) {
			k = skip_ws(s, e, to);
			if ((n = param_at(s, k, to, &k)) > 0) {
				sc->limit = sc->limit == 0 ? n : -1;
				if (sc->key != NULL && sc->key->limit >= 0) {
					snprintf(num, sizeof(num), "LIMIT %d",
					    sc->key->limit);
					put(sc, num, strlen(num));
				} else {
					put(sc, s + i, k - i);
					sc->refs |= 1u << (n - 1);
				}
				i = k;
				continue;
			}
		}
		put(sc, s + i, 1);
		i++;
	}
}

bool
keel_sqlspec_shape(const char *sql, struct keel_sqlspec_shape *sh)
{
	struct scan	 sc = { .sql = sql };

	scan(&sc, 0, strlen(sql));
	sh->heads = sc.bad ? 0 : sc.heads;
	sh->limit = sc.bad || sc.limit < 0 ? 0 : sc.limit;
	sh->unread = sc.bad;
	return !sc.bad && sc.heads != 0;
}

void
keel_sqlspec_key(const struct keel_sqlspec_shape *sh, size_t n,
    const char *const *v, struct keel_sqlspec_key *key)
{
	const char	*l;
	size_t		 i;
	int		 lim = 0;

	key->nulls = 0;
	for (i = 0; i < KEEL_SQLSPEC_MAXPARAM; i++)
		if ((sh->heads & (1u << i)) && (i >= n || v[i] == NULL))
			key->nulls |= 1u << i;
	key->limit = -1;
	if (sh->limit <= 0 || (size_t)sh->limit > n ||
	    (l = v[sh->limit - 1]) == NULL || *l == '\0')
		return;
	/* Plain decimal digits only: what is written in is what was sent. */
	for (; *l != '\0'; l++) {
		if (!isdigit((unsigned char)*l) ||
		    (lim = lim * 10 + (*l - '0')) > KEEL_SQLSPEC_MAXLIMIT)
			return;
	}
	key->limit = lim;
}

char *
keel_sqlspec_write(const char *sql, const struct keel_sqlspec_key *key,
    size_t n, uint32_t *unref)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct scan	 sc = { .sql = sql, .key = key, .out = &b };
	struct scan	 again = { 0 };
	size_t		 i;

	*unref = 0;
	scan(&sc, 0, strlen(sql));
	if (sc.bad || b.data == NULL) {
		keel_buf_free(&b);
		return NULL;
	}
	/* What the result still names: read it again. */
	again.sql = b.data;
	scan(&again, 0, strlen(b.data));
	for (i = 0; i < n && i < KEEL_SQLSPEC_MAXPARAM; i++)
		if (!(again.refs & (1u << i)))
			*unref |= 1u << i;
	return b.data;
}
