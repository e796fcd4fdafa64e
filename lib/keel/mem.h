/* SPDX-License-Identifier: ISC */
/* mem.h -- allocation wrappers, growable buffers and per-request arenas. */
#ifndef KEEL_MEM_H
#define KEEL_MEM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* The number of elements of an array (not a pointer): tables' sizes. */
#define KEEL_NELEM(a)	(sizeof(a) / sizeof((a)[0]))

/*
 * Out of memory is not a path callers handle: these log and abort, and the
 * supervisor respawns the worker (STYLE.md, "Errors").
 */
void	*keel_malloc(size_t n);
void	*keel_calloc(size_t nmemb, size_t size);
void	*keel_realloc(void *p, size_t n);
char	*keel_strdup(const char *s);
char	*keel_strndup(const char *s, size_t n);

/* A growable byte buffer, always NUL-terminated past len. */
struct keel_buf {
	char	*data;		/* owned; NULL until the first append */
	size_t	 len;		/* bytes used, excluding the NUL */
	size_t	 cap;		/* bytes allocated */
};

void	 keel_buf_append(struct keel_buf *b, const void *p, size_t n);
/* Makes room for extra more bytes (and the NUL) past b->len. */
void	 keel_buf_reserve(struct keel_buf *b, size_t extra);
void	 keel_buf_puts(struct keel_buf *b, const char *s);
void	 keel_buf_putc(struct keel_buf *b, char c);
void	 keel_buf_printf(struct keel_buf *b, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
void	 keel_buf_vprintf(struct keel_buf *b, const char *fmt, va_list ap)
	    __attribute__((format(printf, 2, 0)));
/* Empties b but keeps its memory for reuse. */
void	 keel_buf_reset(struct keel_buf *b);
/* Frees b's memory; b may be NULL. */
void	 keel_buf_free(struct keel_buf *b);
/* Appends the file at path to b; false when it can't be read. */
bool	 keel_buf_read_file(struct keel_buf *b, const char *path);

/*
 * An arena: many small allocations released at once.  Each request owns
 * one; lib resets it after the request, so nothing allocated from it may
 * outlive the request.
 */
struct keel_arena;

struct keel_arena *keel_arena_new(void);
/* Frees every block; a may be NULL. */
void	 keel_arena_free(struct keel_arena *a);
/* Releases every allocation but keeps the first block for reuse. */
void	 keel_arena_reset(struct keel_arena *a);
/* n bytes aligned for any type; never NULL. */
void	*keel_arena_alloc(struct keel_arena *a, size_t n);
char	*keel_arena_strdup(struct keel_arena *a, const char *s);
char	*keel_arena_strndup(struct keel_arena *a, const char *s, size_t n);
char	*keel_arena_printf(struct keel_arena *a, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/*
 * The strings up to the NULL, joined, in a's memory: the request path's
 * keys and names, where printf's parsing of its format was a tenth of a
 * cached GET's instructions.
 */
char	*keel_arena_cat(struct keel_arena *a, ...)
	    __attribute__((sentinel));

#endif /* KEEL_MEM_H */
