/*
 * The property store: text keys to text values in one array kept sorted by strcmp, under one
 * mutex. Stores hold tens to a few thousand keys and are read far more than written, so a
 * binary search over a sorted array beats a hash table here and gives fqc_props_key_at its
 * order for free.
 *
 * Subscribers are called after the mutex is released (so they may read the store) with
 * copies of the key and value (so a concurrent set cannot free them under the callback).
 * Each subscriber is a reference-counted node: fqc_props_unsubscribe waits until no other
 * thread is inside that subscriber's callback, so the caller may free the callback's argument
 * as soon as it returns (the device does). A callback that unsubscribes itself does not wait
 * for itself.
 */
#include "config/config_impl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct prop {
	char *key;
	char *value;
} prop;

typedef struct sub {
	int token;
	fqc_prop_fn fn;
	void *arg;
	int refs;         /* notifications holding this node (store lock) */
	bool removed;     /* unsubscribed: skip it (store lock) */
	bool orphan;      /* unsubscribed from its own callback: the last notifier frees it */
	struct sub *next; /* list of live subscribers, newest first */
} sub;

struct fqc_props {
	pthread_mutex_t lock;
	pthread_cond_t idle; /* signalled when a node's refs drop */
	prop *v;
	size_t n, cap;
	sub *subs;
	int next_token;
};

/* The subscriber callbacks this thread is inside (innermost first), so that unsubscribing one
 * of them from within does not wait for itself. */
typedef struct frame {
	sub *s;
	struct frame *outer;
} frame;
static _Thread_local frame *current_frames;

static bool in_callback(const sub *s)
{
	for (frame *f = current_frames; f != NULL; f = f->outer)
		if (f->s == s)
			return true;
	return false;
}

int fqc_props_new(fqc_props **out)
{
	fqc_props *p;

	if (out == NULL)
		return FQ_EINVAL;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return FQ_ENOMEM;
	if (pthread_mutex_init(&p->lock, NULL) != 0) {
		free(p);
		return FQ_ENOMEM;
	}
	if (pthread_cond_init(&p->idle, NULL) != 0) {
		pthread_mutex_destroy(&p->lock);
		free(p);
		return FQ_ENOMEM;
	}
	*out = p;
	return 0;
}

void fqc_props_free(fqc_props *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->n; i++) {
		free(p->v[i].key);
		free(p->v[i].value);
	}
	free(p->v);
	while (p->subs != NULL) {
		sub *s = p->subs;

		p->subs = s->next;
		free(s);
	}
	pthread_cond_destroy(&p->idle);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* Index of key, or of where it would go (*found tells which). Lock held. */
static size_t find(const fqc_props *p, const char *key, bool *found)
{
	size_t lo = 0, hi = p->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(p->v[mid].key, key);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

int fqc_props_get(fqc_props *p, const char *key, char *buf, size_t len)
{
	bool found;
	size_t i, vlen;
	int rc = 0;

	if (p == NULL || key == NULL || (buf == NULL && len > 0))
		return FQ_EINVAL;
	pthread_mutex_lock(&p->lock);
	i = find(p, key, &found);
	if (!found) {
		rc = FQ_ENOENT;
	} else {
		vlen = strlen(p->v[i].value);
		if (vlen >= len) {
			rc = FQ_ERANGE;
			vlen = len > 0 ? len - 1 : 0;
		}
		if (len > 0) {
			memcpy(buf, p->v[i].value, vlen);
			buf[vlen] = '\0';
		}
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

char *fqc_props_dup(fqc_props *p, const char *key)
{
	bool found;
	size_t i;
	char *copy = NULL;

	if (p == NULL || key == NULL)
		return NULL;
	pthread_mutex_lock(&p->lock);
	i = find(p, key, &found);
	if (found)
		copy = strdup(p->v[i].value);
	pthread_mutex_unlock(&p->lock);
	return copy;
}

bool fqc_props_has(fqc_props *p, const char *key)
{
	bool found = false;

	if (p == NULL || key == NULL)
		return false;
	pthread_mutex_lock(&p->lock);
	(void)find(p, key, &found);
	pthread_mutex_unlock(&p->lock);
	return found;
}

/* Drop one reference taken by notify; free an orphaned node with the last one. Lock held. */
static void sub_release(fqc_props *p, sub *s)
{
	s->refs--;
	if (s->refs == 0 && s->orphan)
		free(s);
	else
		pthread_cond_broadcast(&p->idle);
}

/*
 * Call every subscriber with (key, value), which the caller owns. Takes a reference on each
 * node under the lock so that none is freed while its callback runs.
 */
static void notify(fqc_props *p, const char *key, const char *value)
{
	sub **snap = NULL;
	size_t n = 0, i = 0;

	pthread_mutex_lock(&p->lock);
	for (sub *s = p->subs; s != NULL; s = s->next)
		n++;
	if (n > 0)
		snap = malloc(n * sizeof(*snap));
	if (snap == NULL) {
		/* Out of memory for the snapshot: nobody hears of this change (rare, not fatal). */
		pthread_mutex_unlock(&p->lock);
		return;
	}
	for (sub *s = p->subs; s != NULL; s = s->next) {
		s->refs++;
		snap[i++] = s;
	}
	pthread_mutex_unlock(&p->lock);

	/* Oldest subscriber first: the list is newest first. */
	for (i = n; i-- > 0;) {
		sub *s = snap[i];
		bool skip;

		pthread_mutex_lock(&p->lock);
		skip = s->removed;
		pthread_mutex_unlock(&p->lock);
		if (!skip) {
			frame f = {s, current_frames};

			current_frames = &f;
			s->fn(key, value, s->arg);
			current_frames = f.outer;
		}
		pthread_mutex_lock(&p->lock);
		sub_release(p, s);
		pthread_mutex_unlock(&p->lock);
	}
	free(snap);
}

int fqc_props_set(fqc_props *p, const char *key, const char *value)
{
	char *k = NULL, *v;
	bool found, listeners;
	size_t i;

	if (p == NULL || key == NULL || value == NULL || key[0] == '\0')
		return FQ_EINVAL;
	v = strdup(value);
	if (v == NULL)
		return FQ_ENOMEM;
	pthread_mutex_lock(&p->lock);
	i = find(p, key, &found);
	if (found) {
		free(p->v[i].value);
		p->v[i].value = v;
	} else {
		k = strdup(key);
		if (k == NULL || (p->n == p->cap && p->cap > SIZE_MAX / 2 / sizeof(prop))) {
			pthread_mutex_unlock(&p->lock);
			free(k);
			free(v);
			return FQ_ENOMEM;
		}
		if (p->n == p->cap) {
			size_t cap = p->cap ? p->cap * 2 : 32;
			prop *grown = realloc(p->v, cap * sizeof(prop));

			if (grown == NULL) {
				pthread_mutex_unlock(&p->lock);
				free(k);
				free(v);
				return FQ_ENOMEM;
			}
			p->v = grown;
			p->cap = cap;
		}
		memmove(&p->v[i + 1], &p->v[i], (p->n - i) * sizeof(prop));
		p->v[i].key = k;
		p->v[i].value = v;
		p->n++;
	}
	listeners = p->subs != NULL;
	pthread_mutex_unlock(&p->lock);

	if (listeners) {
		/* Copies: the stored strings may be replaced by another thread meanwhile. */
		char *kc = strdup(key), *vc = strdup(value);

		if (kc != NULL && vc != NULL)
			notify(p, kc, vc);
		free(kc);
		free(vc);
	}
	return 0;
}

int fqc_props_delete(fqc_props *p, const char *key)
{
	bool found;
	size_t i;

	if (p == NULL || key == NULL)
		return FQ_EINVAL;
	pthread_mutex_lock(&p->lock);
	i = find(p, key, &found);
	if (found) {
		free(p->v[i].key);
		free(p->v[i].value);
		memmove(&p->v[i], &p->v[i + 1], (p->n - i - 1) * sizeof(prop));
		p->n--;
	}
	pthread_mutex_unlock(&p->lock);
	return found ? 0 : FQ_ENOENT;
}

int fqc_props_delete_prefix(fqc_props *p, const char *prefix)
{
	size_t plen, lo, hi;
	bool found;

	if (p == NULL || prefix == NULL)
		return FQ_EINVAL;
	plen = strlen(prefix);
	pthread_mutex_lock(&p->lock);
	/* Keys with the prefix are one run in strcmp order, starting where the prefix would go. */
	lo = find(p, prefix, &found);
	for (hi = lo; hi < p->n && strncmp(p->v[hi].key, prefix, plen) == 0; hi++) {
		free(p->v[hi].key);
		free(p->v[hi].value);
	}
	if (hi > lo) {
		memmove(&p->v[lo], &p->v[hi], (p->n - hi) * sizeof(prop));
		p->n -= hi - lo;
	}
	pthread_mutex_unlock(&p->lock);
	return (int)(hi - lo > INT32_MAX ? INT32_MAX : hi - lo);
}

int fqc_props_key_at(fqc_props *p, size_t i, char *buf, size_t len)
{
	size_t klen;
	int rc = 0;

	if (p == NULL || (buf == NULL && len > 0))
		return FQ_EINVAL;
	pthread_mutex_lock(&p->lock);
	if (i >= p->n) {
		rc = FQ_ENOENT;
	} else {
		klen = strlen(p->v[i].key);
		if (klen >= len) {
			rc = FQ_ERANGE;
			klen = len > 0 ? len - 1 : 0;
		}
		if (len > 0) {
			memcpy(buf, p->v[i].key, klen);
			buf[klen] = '\0';
		}
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

void fqc_strv_free(char **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int fqc_props_list(fqc_props *p, const char *prefix, char ***keys, char ***values, size_t *n)
{
	size_t plen, lo, hi, cnt, i;
	char **k = NULL, **v = NULL;
	bool found;
	int rc = 0;

	if (p == NULL || keys == NULL || n == NULL)
		return FQ_EINVAL;
	if (prefix == NULL)
		prefix = "";
	plen = strlen(prefix);
	*keys = NULL;
	if (values != NULL)
		*values = NULL;
	*n = 0;
	pthread_mutex_lock(&p->lock);
	lo = find(p, prefix, &found);
	for (hi = lo; hi < p->n && strncmp(p->v[hi].key, prefix, plen) == 0; hi++)
		;
	cnt = hi - lo;
	if (cnt > 0) {
		k = calloc(cnt, sizeof(*k));
		v = values != NULL ? calloc(cnt, sizeof(*v)) : NULL;
		if (k == NULL || (values != NULL && v == NULL))
			rc = FQ_ENOMEM;
		for (i = 0; rc == 0 && i < cnt; i++) {
			k[i] = strdup(p->v[lo + i].key);
			if (v != NULL)
				v[i] = strdup(p->v[lo + i].value);
			if (k[i] == NULL || (v != NULL && v[i] == NULL))
				rc = FQ_ENOMEM;
		}
	}
	pthread_mutex_unlock(&p->lock);
	if (rc != 0) {
		fqc_strv_free(k, k != NULL ? cnt : 0);
		fqc_strv_free(v, v != NULL ? cnt : 0);
		return rc;
	}
	*keys = k;
	if (values != NULL)
		*values = v;
	*n = cnt;
	return 0;
}

int fqc_props_subscribe(fqc_props *p, fqc_prop_fn fn, void *arg)
{
	sub *s;
	int token;

	if (p == NULL || fn == NULL)
		return FQ_EINVAL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return FQ_ENOMEM;
	s->fn = fn;
	s->arg = arg;
	pthread_mutex_lock(&p->lock);
	if (p->next_token == INT32_MAX) {
		/* Two billion subscriptions in one store: treat as exhausted, not as a wrap. */
		pthread_mutex_unlock(&p->lock);
		free(s);
		return FQ_ENOMEM;
	}
	token = s->token = p->next_token++;
	s->next = p->subs;
	p->subs = s;
	pthread_mutex_unlock(&p->lock);
	return token;
}

void fqc_props_unsubscribe(fqc_props *p, int token)
{
	sub **link, *s = NULL;

	if (p == NULL || token < 0)
		return;
	pthread_mutex_lock(&p->lock);
	for (link = &p->subs; *link != NULL; link = &(*link)->next) {
		if ((*link)->token == token) {
			s = *link;
			*link = s->next;
			break;
		}
	}
	if (s != NULL) {
		s->removed = true;
		if (in_callback(s)) {
			/* From its own callback: waiting would deadlock; the notifier frees it. */
			s->orphan = true;
		} else {
			while (s->refs > 0)
				pthread_cond_wait(&p->idle, &p->lock);
			free(s);
		}
	}
	pthread_mutex_unlock(&p->lock);
}
