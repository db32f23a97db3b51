/*
 * Helpers shared by the command-line tools (header only: each tool is one program).
 */
#ifndef FQ_TOOL_COMMON_H
#define FQ_TOOL_COMMON_H

#include <stdio.h>

/* Write s as a JSON string (null for NULL), escaping quotes, backslashes and controls. */
static inline void json_string(FILE *out, const char *s)
{
	if (s == NULL) {
		fputs("null", out);
		return;
	}
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", out);
			break;
		case '\\':
			fputs("\\\\", out);
			break;
		case '\b':
			fputs("\\b", out);
			break;
		case '\f':
			fputs("\\f", out);
			break;
		case '\n':
			fputs("\\n", out);
			break;
		case '\r':
			fputs("\\r", out);
			break;
		case '\t':
			fputs("\\t", out);
			break;
		default:
			if (*p < 0x20)
				fprintf(out, "\\u%04x", *p);
			else
				fputc(*p, out);
		}
	}
	fputc('"', out);
}

#endif /* FQ_TOOL_COMMON_H */
