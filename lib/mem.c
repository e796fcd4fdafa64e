/* SPDX-License-Identifier: ISC */
/*
 * mem.c -- allocation wrappers, growable buffers and arenas.
 *
 * An arena is a list of blocks; allocations bump a pointer in the newest
 * block and a request's whole arena is reset in one call.  Large requests
 * get a block of their own.  Reset keeps the first block, so a worker in
 * steady state allocates nothing from malloc for small requests.
 */
#include "config.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/log.h"
#include "keel/mem.h"

static void __attribute__((noreturn))
oom(size_t n)
{
	keel_log_fatalx("out of memory allocating %zu bytes", n);
}

void *
keel_malloc(size_t n)
{
	void	*p;

	if ((p = malloc(n == 0 ? 1 : n)) == NULL)
		oom(n);
	return p;
}

void *
keel_calloc(size_t nmemb, size_t size)
{
	void	*p;

	if ((p = calloc(nmemb == 0 ? 1 : nmemb, size == 0 ? 1 : size)) == NULL)
		oom(nmemb * size);
	return p;
}

void *
keel_realloc(void *p, size_t n)
{
	void	*q;

	if ((q = realloc(p, n == 0 ? 1 : n)) == NULL)
		oom(n);
	return q;
}

char *
keel_strdup(const char *s)
{
	return keel_strndup(s, strlen(s));
}

char *
keel_strndup(const char *s, size_t n)
{
	char	*p;

	p = keel_malloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static void
buf_reserve(struct keel_buf *b, size_t extra)
{
	size_t	 need;

	need = b->len + extra + 1;
	if (need <= b->cap)
		return;
	if (b->cap == 0)
		b->cap = 256;
	while (b->cap < need)
		b->cap *= 2;
	b->data = keel_realloc(b->data, b->cap);
}

void
keel_buf_reserve(struct keel_buf *b, size_t extra)
{
	buf_reserve(b, extra);
}

void
keel_buf_append(struct keel_buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
keel_buf_puts(struct keel_buf *b, const char *s)
{
	keel_buf_append(b, s, strlen(s));
}

void
keel_buf_putc(struct keel_buf *b, char c)
{
	/* No memcpy call for one byte: JSON writes a few per value. */
	if (b->len + 2 > b->cap)
		buf_reserve(b, 1);
	b->data[b->len++] = c;
	b->data[b->len] = '\0';
}

void
keel_buf_vprintf(struct keel_buf *b, const char *fmt, va_list ap)
{
	va_list	 ap2;
	int	 n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

void
keel_buf_printf(struct keel_buf *b, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	keel_buf_vprintf(b, fmt, ap);
	va_end(ap);
}

void
keel_buf_reset(struct keel_buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

void
keel_buf_free(struct keel_buf *b)
{
	if (b == NULL)
		return;
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

bool
keel_buf_read_file(struct keel_buf *b, const char *path)
{
	char	 chunk[8192];
	ssize_t	 n;
	int	 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return false;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		keel_buf_append(b, chunk, (size_t)n);
	close(fd);
	return n == 0;
}

#define ARENA_BLOCK	(16 * 1024)	/* bytes in an ordinary block */
#define ARENA_ALIGN	16

struct arena_block {
	struct arena_block	*next;	/* older block */
	size_t			 used;	/* bytes used in data */
	size_t			 size;	/* bytes in data */
	_Alignas(ARENA_ALIGN) unsigned char data[];
};

struct keel_arena {
	struct arena_block	*head;	/* newest block */
	struct arena_block	*first;	/* the block reset keeps */
};

static struct arena_block *
block_new(size_t size)
{
	struct arena_block	*bl;

	bl = keel_malloc(sizeof(*bl) + size);
	bl->next = NULL;
	bl->used = 0;
	bl->size = size;
	return bl;
}

struct keel_arena *
keel_arena_new(void)
{
	struct keel_arena	*a;

	a = keel_malloc(sizeof(*a));
	a->head = a->first = block_new(ARENA_BLOCK);
	return a;
}

void
keel_arena_free(struct keel_arena *a)
{
	struct arena_block	*bl, *next;

	if (a == NULL)
		return;
	for (bl = a->head; bl != NULL; bl = next) {
		next = bl->next;
		free(bl);
	}
	free(a);
}

void
keel_arena_reset(struct keel_arena *a)
{
	struct arena_block	*bl, *next;

	for (bl = a->head; bl != NULL; bl = next) {
		next = bl->next;
		if (bl != a->first)
			free(bl);
	}
	a->head = a->first;
	a->first->next = NULL;
	a->first->used = 0;
}

void *
keel_arena_alloc(struct keel_arena *a, size_t n)
{
	struct arena_block	*bl;
	size_t			 off;
	void			*p;

	if (n > SIZE_MAX - ARENA_BLOCK)
		oom(n);
	n = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	bl = a->head;
	off = bl->used;
	if (off + n > bl->size) {
		if (n > ARENA_BLOCK / 4) {
			/* A large allocation gets its own block behind head. */
			bl = block_new(n);
			bl->next = a->head->next;
			a->head->next = bl;
			bl->used = n;
			return bl->data;
		}
		bl = block_new(ARENA_BLOCK);
		bl->next = a->head;
		a->head = bl;
		off = 0;
	}
	p = bl->data + off;
	bl->used = off + n;
	return p;
}

char *
keel_arena_strndup(struct keel_arena *a, const char *s, size_t n)
{
	char	*p;

	p = keel_arena_alloc(a, n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
keel_arena_strdup(struct keel_arena *a, const char *s)
{
	return keel_arena_strndup(a, s, strlen(s));
}

char *
keel_arena_cat(struct keel_arena *a, ...)
{
	va_list		 ap;
	const char	*s;
	size_t		 n = 0, len;
	char		*p, *out;

	va_start(ap, a);
	while ((s = va_arg(ap, const char *)) != NULL)
		n += strlen(s);
	va_end(ap);
	out = p = keel_arena_alloc(a, n + 1);
	va_start(ap, a);
	while ((s = va_arg(ap, const char *)) != NULL) {
		len = strlen(s);
		memcpy(p, s, len);
		p += len;
	}
	va_end(ap);
	*p = '\0';
	return out;
}

char *
keel_arena_printf(struct keel_arena *a, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;
	char	*p;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return keel_arena_strdup(a, "");
	p = keel_arena_alloc(a, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}
