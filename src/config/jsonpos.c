/*
 * Where is fairMQOptions.devices[0].channels[1].sockets[0].sndBufSize in the file?
 *
 * jansson keeps no positions for the nodes it builds, so semantic errors (an unknown key, a
 * wrong type, a bad value) would have no line and column. This scanner walks the raw text
 * along a path of keys and indexes, skipping everything else, and returns the byte offset of
 * the member's key or value. It only runs on text jansson has already accepted and only when
 * something is reported, so it favours shortness over speed, and gives up (-1) rather than
 * guessing when the text does not look as expected.
 */
#include "config/config_impl.h"

#include <string.h>

typedef struct scanner {
	const char *s;
	size_t n, i;
} scanner;

static int peek(const scanner *c)
{
	return c->i < c->n ? (unsigned char)c->s[c->i] : -1;
}

static void skip_ws(scanner *c)
{
	while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\r' ||
	                       c->s[c->i] == '\n'))
		c->i++;
}

/* At '"': past the closing quote. */
static bool skip_string(scanner *c)
{
	if (peek(c) != '"')
		return false;
	for (c->i++; c->i < c->n; c->i++) {
		if (c->s[c->i] == '\\')
			c->i++;
		else if (c->s[c->i] == '"') {
			c->i++;
			return true;
		}
	}
	return false;
}

static bool skip_value(scanner *c)
{
	int ch;

	skip_ws(c);
	ch = peek(c);
	if (ch == '"')
		return skip_string(c);
	if (ch == '{' || ch == '[') {
		int close = ch == '{' ? '}' : ']';

		c->i++;
		skip_ws(c);
		if (peek(c) == close) {
			c->i++;
			return true;
		}
		for (;;) {
			if (close == '}') {
				skip_ws(c);
				if (!skip_string(c))
					return false;
				skip_ws(c);
				if (peek(c) != ':')
					return false;
				c->i++;
			}
			if (!skip_value(c))
				return false;
			skip_ws(c);
			ch = peek(c);
			c->i++;
			if (ch == close)
				return true;
			if (ch != ',')
				return false;
		}
	}
	/* A number or a literal: up to the next delimiter. */
	{
		size_t start = c->i;

		while (c->i < c->n && strchr(",]} \t\r\n", c->s[c->i]) == NULL)
			c->i++;
		return c->i > start;
	}
}

/* Does the raw string text [a, b) (between the quotes) spell key? Simple escapes decoded. */
static bool key_equals(const char *a, const char *b, const char *key)
{
	while (a < b) {
		char ch = *a++;

		if (ch == '\\' && a < b) {
			char e = *a++;
			const char *map = strchr("\"\"\\\\//b\bf\fn\nr\rt\t", e);

			/* \uXXXX: not in our keys; treat as a mismatch rather than decode it. */
			if (map == NULL || e == 'u')
				return false;
			ch = map[1];
		}
		if (*key == '\0' || *key != ch)
			return false;
		key++;
	}
	return *key == '\0';
}

long fqc_json_locate(const char *text, size_t len, const fqc_json_step *steps, size_t n,
                     bool at_key)
{
	scanner c = {text, len, 0};

	for (size_t k = 0; k < n; k++) {
		skip_ws(&c);
		if (steps[k].key != NULL) {
			bool found = false;

			if (peek(&c) != '{')
				return -1;
			c.i++;
			while (!found) {
				size_t kstart;

				skip_ws(&c);
				kstart = c.i;
				if (!skip_string(&c))
					return -1;
				found = key_equals(text + kstart + 1, text + c.i - 1, steps[k].key);
				skip_ws(&c);
				if (peek(&c) != ':')
					return -1;
				c.i++;
				if (found && at_key && k + 1 == n)
					return (long)kstart;
				if (!found) {
					if (!skip_value(&c))
						return -1;
					skip_ws(&c);
					if (peek(&c) != ',')
						return -1;
					c.i++;
				}
			}
		} else {
			if (peek(&c) != '[')
				return -1;
			c.i++;
			for (size_t idx = 0; idx < steps[k].index; idx++) {
				if (!skip_value(&c))
					return -1;
				skip_ws(&c);
				if (peek(&c) != ',')
					return -1;
				c.i++;
			}
			skip_ws(&c);
			if (peek(&c) == ']')
				return -1;
		}
	}
	skip_ws(&c);
	return c.i < c.n ? (long)c.i : -1;
}

void fqc_json_linecol(const char *text, size_t off, int *line, int *col)
{
	int l = 1, k = 1;

	for (size_t i = 0; i < off && text[i] != '\0'; i++) {
		if (text[i] == '\n') {
			l++;
			k = 1;
		} else if (((unsigned char)text[i] & 0xC0) != 0x80) {
			/* Columns count characters, as jansson's do, not UTF-8 continuation bytes. */
			k++;
		}
	}
	*line = l;
	*col = k;
}
