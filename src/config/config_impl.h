/*
 * Helpers shared by the files of src/config/ (not used outside it).
 */
#ifndef FQC_CONFIG_IMPL_H
#define FQC_CONFIG_IMPL_H

#include "config/config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Print "PROGRAM: " fmt "\n" to err (nothing when err is NULL). */
void fqc_report(FILE *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The program name for reports (copied into buf). */
void fqc_program(char *buf, size_t len);

/* Strict decimal integer: optional '-', digits, nothing else. false on overflow or junk. */
bool fqc_parse_i64(const char *text, int64_t *out);
/* 1/0 true/false yes/no on/off (any case). */
bool fqc_parse_bool(const char *text, bool *out);

/* [A-Za-z0-9_#-]+ */
bool fqc_channel_name_ok(const char *name);

/* One step of a path into a JSON document: a member (key != NULL) or an array element. */
typedef struct fqc_json_step {
	const char *key;
	size_t index;
} fqc_json_step;
/*
 * Byte offset in text of the value at the path (or of the last member's key, with at_key),
 * or -1 when the text does not have it. For reports only: text must be valid JSON.
 */
long fqc_json_locate(const char *text, size_t len, const fqc_json_step *steps, size_t n,
                     bool at_key);
/* 1-based line and column (in characters) of a byte offset. */
void fqc_json_linecol(const char *text, size_t off, int *line, int *col);

#endif /* FQC_CONFIG_IMPL_H */
