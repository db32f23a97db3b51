/* URLs are "scheme://rest"; each transport interprets rest for the schemes it serves. */
#include "core.h"

#include <string.h>

int fqi_url_parse(const char *text, fqi_url *out)
{
	const char *sep;
	size_t slen;

	if (text == NULL || out == NULL)
		return FQ_EINVAL;
	if (strlen(text) >= sizeof(out->text))
		return FQ_EADDRINVAL;
	sep = strstr(text, "://");
	if (sep == NULL)
		return FQ_EADDRINVAL;
	slen = (size_t)(sep - text);
	if (slen == 0 || slen >= sizeof(out->scheme) || sep[3] == '\0')
		return FQ_EADDRINVAL;
	strcpy(out->text, text);
	memcpy(out->scheme, text, slen);
	out->scheme[slen] = '\0';
	out->rest = out->text + slen + 3;
	return 0;
}
