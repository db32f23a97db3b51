/*
 * fq-info: what this fabriq build offers. Library version, the transports compiled in and
 * whether each can be used on this machine, whether the kernel offers SMC, the libfabric
 * providers found here with their limits (when built with libfabric), the option catalogue
 * (with the environment variable that sets each option) and the meaning of error numbers.
 * Text or JSON.
 *
 * Everything printed about fabriq comes from the public API, so the tool also shows what an
 * application linked against the same library would see. The provider list comes from
 * libfabric directly (fi_getinfo), as fi_info(1) would show it.
 */
#include <fabriq/fabriq.h>
#include <stdint.h>
#ifdef FQ_HAVE_DEVICE
#include <fabriq/device.h>
#endif

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef FQ_HAVE_LIBFABRIC
#include <rdma/fabric.h>
#include <rdma/fi_errno.h>
#endif

#include "../common/tool_common.h"

#define EXIT_USAGE 2

enum { OPT_VERSION = 256, OPT_STRERROR };

static const struct option long_options[] = {
    {"options", no_argument, NULL, 'o'},
    {"json", no_argument, NULL, 'j'},
    {"strerror", required_argument, NULL, OPT_STRERROR},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: fq-info [--json] [--options | --strerror N]\n"
	        "\n"
	        "Show the fabriq library version, the transports compiled in, whether the\n"
	        "kernel offers SMC and the libfabric providers found here.\n"
	        "\n"
	        "  -o, --options     list every option: component, type, default, environment\n"
	        "                    variable and help\n"
	        "      --strerror N  decode the error number N (e.g. -3)\n"
	        "  -j, --json        print JSON instead of text\n"
	        "  -h, --help        show this help and exit\n"
	        "      --version     show the version and exit\n"
	        "\n"
	        "Exit status: 0 success, 2 usage error.\n");
}

/* The unit a value of this type is written in, for the text listing. */
static const char *type_unit(fq_opt_type type)
{
	switch (type) {
	case FQ_OPT_SIZE:
		return " (bytes, K/M/G/T suffixes)";
	case FQ_OPT_DURATION:
		return " (ms)";
	default:
		return "";
	}
}

/* FQ_<COMPONENT>_<NAME>, upper-cased: the variable the library reads for this option. */
static void env_name(char *buf, size_t len, const char *component, const char *name)
{
	snprintf(buf, len, "FQ_%s_%s", component, name);
	for (char *p = buf; *p != '\0'; p++)
		*p = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
}

static void print_transports(bool json)
{
	size_t n = fq_transport_count();

	if (json)
		printf(",\n  \"transports\": [");
	else
		printf("transports:\n");
	for (size_t i = 0; i < n; i++) {
		const char *name = fq_transport_name_at(i);
		int rc = fq_transport_probe(name);

		if (json) {
			printf("%s\n    {\"name\": ", i == 0 ? "" : ",");
			json_string(stdout, name);
			printf(", \"usable\": %s, \"status\": ", rc == 0 ? "true" : "false");
			json_string(stdout, rc == 0 ? "usable" : fq_strerror(rc));
			printf(", \"error\": ");
			json_string(stdout, rc == 0 ? NULL : fq_err_name(rc));
			printf("}");
		} else {
			printf("    %s: %s\n", name, rc == 0 ? "usable" : fq_strerror(rc));
		}
	}
	if (json)
		printf("%s]", n > 0 ? "\n  " : "");
}

/* Whether the kernel can make SMC sockets, for the smc=try|require options (fq_smc_probe). */
static void print_smc(bool json)
{
	int rc = fq_smc_probe();
	const char *status;

	if (rc == 0)
		status = "offered by this kernel (AF_SMC or IPPROTO_SMC sockets can be made)";
	else if (rc == FQ_EUNAVAIL)
		status = "not offered by this kernel (no AF_SMC, no IPPROTO_SMC): smc=try "
		         "uses TCP, smc=require fails";
	else
		status = fq_strerror(rc);
	if (json) {
		printf(",\n  \"smc\": {\"offered\": %s, \"status\": ", rc == 0 ? "true" : "false");
		json_string(stdout, status);
		printf(", \"error\": ");
		json_string(stdout, rc == 0 ? NULL : fq_err_name(rc));
		printf("}");
	} else {
		printf("smc: %s\n", status);
	}
}

#ifdef FQ_HAVE_LIBFABRIC
/* FI_MR_* bits a provider demands, as "local|virt_addr" ("none" for 0) into buf. */
static const char *mr_mode_text(int mode, char *buf, size_t len)
{
	static const struct {
		int bit;
		const char *name;
	} bits[] = {
	    {FI_MR_LOCAL, "local"},         {FI_MR_RAW, "raw"},
	    {FI_MR_VIRT_ADDR, "virt_addr"}, {FI_MR_ALLOCATED, "allocated"},
	    {FI_MR_PROV_KEY, "prov_key"},   {FI_MR_MMU_NOTIFY, "mmu_notify"},
	    {FI_MR_RMA_EVENT, "rma_event"}, {FI_MR_ENDPOINT, "endpoint"},
	    {FI_MR_HMEM, "hmem"},
	};
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
		if ((mode & bits[i].bit) != 0 && used < len)
			used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? "|" : "",
			                         bits[i].name);
	}
	if (used == 0)
		snprintf(buf, len, "none");
	return buf;
}

static const char *ep_type_text(enum fi_ep_type type)
{
	switch (type) {
	case FI_EP_MSG:
		return "msg";
	case FI_EP_RDM:
		return "rdm";
	case FI_EP_DGRAM:
		return "dgram";
	default:
		return "other";
	}
}

/*
 * The libfabric providers that offer reliable-datagram endpoints with messages and RMA (what
 * the ofi transport asks for), one line per provider name (libfabric lists one entry per
 * interface and variant; the first is shown). The hints accept every memory-registration mode
 * and FI_CONTEXT/FI_CONTEXT2, so mr_mode shows what the provider demands.
 */
static void print_providers(bool json)
{
	struct fi_info *hints = fi_allocinfo(), *info = NULL;
	uint32_t v = fi_version();
	char version[32], mr[128];
	int rc = -FI_ENOMEM;
	size_t shown = 0;

	snprintf(version, sizeof(version), "%u.%u", FI_MAJOR(v), FI_MINOR(v));
	if (hints != NULL) {
		hints->ep_attr->type = FI_EP_RDM;
		hints->caps = FI_MSG | FI_RMA;
		hints->mode = FI_CONTEXT | FI_CONTEXT2;
		hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED |
		                              FI_MR_PROV_KEY | FI_MR_ENDPOINT;
		rc = fi_getinfo(FI_VERSION(1, 17), NULL, NULL, 0, hints, &info);
		fi_freeinfo(hints);
	}
	if (rc == -FI_ENODATA) /* no provider matches: an empty list, not an error */
		rc = 0;
	if (json) {
		printf(",\n  \"libfabric\": {\"version\": ");
		json_string(stdout, version);
		printf(", \"error\": ");
		json_string(stdout, rc == 0 ? NULL : fi_strerror(-rc));
		printf("},\n  \"providers\": [");
	} else {
		printf("libfabric providers (libfabric %s; FI_EP_RDM with FI_MSG|FI_RMA):\n",
		       version);
		if (rc != 0)
			printf("    none: fi_getinfo: %s\n", fi_strerror(-rc));
	}
	for (struct fi_info *i = info; i != NULL; i = i->next) {
		const char *name = i->fabric_attr->prov_name;
		bool seen = false;

		for (struct fi_info *j = info; j != i && !seen; j = j->next)
			seen = strcmp(j->fabric_attr->prov_name, name) == 0;
		if (seen)
			continue;
		mr_mode_text(i->domain_attr->mr_mode, mr, sizeof(mr));
		if (json) {
			printf("%s\n    {\"name\": ", shown == 0 ? "" : ",");
			json_string(stdout, name);
			printf(", \"ep_type\": \"%s\", \"mr_mode\": ",
			       ep_type_text(i->ep_attr->type));
			json_string(stdout, mr);
			printf(
			    ", \"inject_size\": %zu, \"iov_limit\": %zu, \"rma_iov_limit\": %zu, "
			    "\"mr_iov_limit\": %zu, \"max_msg_size\": %zu}",
			    i->tx_attr->inject_size, i->tx_attr->iov_limit,
			    i->tx_attr->rma_iov_limit, i->domain_attr->mr_iov_limit,
			    i->ep_attr->max_msg_size);
		} else {
			printf("    %s: ep=%s mr_mode=%s inject=%zu iov=%zu rma_iov=%zu mr_iov=%zu "
			       "max_msg=%zu\n",
			       name, ep_type_text(i->ep_attr->type), mr, i->tx_attr->inject_size,
			       i->tx_attr->iov_limit, i->tx_attr->rma_iov_limit,
			       i->domain_attr->mr_iov_limit, i->ep_attr->max_msg_size);
		}
		shown++;
	}
	if (rc == 0 && shown == 0 && !json)
		printf("    none\n");
	if (json)
		printf("%s]", shown > 0 ? "\n  " : "");
	fi_freeinfo(info);
}
#else
static void print_providers(bool json)
{
	if (json)
		printf(",\n  \"libfabric\": null,\n  \"providers\": []");
	else
		printf("libfabric providers: not built in (FQ_TRANSPORT_OFI=OFF)\n");
}
#endif

/* The default report: version, transports, SMC, libfabric providers. */
static void print_summary(bool json)
{
	if (json) {
		printf("{\n  \"version\": ");
		json_string(stdout, fq_version());
		printf(",\n  \"header_version\": ");
		json_string(stdout, FQ_VERSION_STRING);
	} else {
		printf("fabriq %s\n", fq_version());
	}
	print_transports(json);
	print_smc(json);
	print_providers(json);
	if (json)
		printf("\n}\n");
}

/* The i-th option: libfabriq's catalogue, then the device options (asked for in order). */
static int option_at(size_t i, fq_opt_info *info)
{
	if (fq_option_at(i, info) == 0)
		return 0;
#ifdef FQ_HAVE_DEVICE
	static size_t ncore = SIZE_MAX;

	if (ncore == SIZE_MAX)
		ncore = i;
	return i >= ncore ? fq_device_option_at(i - ncore, info) : FQ_ENOENT;
#else
	return FQ_ENOENT;
#endif
}

/*
 * The catalogue as the library walks it, grouped by component in order of first appearance
 * (the library lists each component's table in one run, but grouping here does not rely on
 * that).
 */
static int load_options(fq_opt_info **out, size_t *count)
{
	fq_opt_info *opts = NULL;
	size_t n = 0, cap = 0;
	fq_opt_info info;

	while (option_at(n, &info) == 0) {
		if (n == cap) {
			size_t ncap = cap == 0 ? 32 : cap * 2;
			fq_opt_info *grown = realloc(opts, ncap * sizeof(*opts));

			if (grown == NULL) {
				free(opts);
				return -1;
			}
			opts = grown;
			cap = ncap;
		}
		opts[n++] = info;
	}
	*out = opts;
	*count = n;
	return 0;
}

static bool seen_component_before(const fq_opt_info *opts, size_t i)
{
	for (size_t j = 0; j < i; j++) {
		if (strcmp(opts[j].component, opts[i].component) == 0)
			return true;
	}
	return false;
}

static int print_options(bool json)
{
	fq_opt_info *opts;
	size_t n;
	bool first_group = true;
	char env[256];

	if (load_options(&opts, &n) != 0) {
		fprintf(stderr, "fq-info: out of memory\n");
		return EXIT_FAILURE;
	}
	if (json) {
		printf("{\n  \"version\": ");
		json_string(stdout, fq_version());
		printf(",\n  \"options\": {");
	}
	for (size_t g = 0; g < n; g++) {
		const char *component = opts[g].component;
		bool first = true;

		if (seen_component_before(opts, g))
			continue;
		if (json) {
			printf("%s\n    ", first_group ? "" : ",");
			json_string(stdout, component);
			printf(": [");
		} else {
			printf("%s%s:\n", first_group ? "" : "\n", component);
		}
		first_group = false;
		for (size_t i = g; i < n; i++) {
			const fq_opt_info *o = &opts[i];

			if (strcmp(o->component, component) != 0)
				continue;
			env_name(env, sizeof(env), o->component, o->name);
			if (json) {
				printf("%s\n      {\"name\": ", first ? "" : ",");
				json_string(stdout, o->name);
				printf(", \"type\": ");
				json_string(stdout, fq_opt_type_name(o->type));
				printf(", \"default\": ");
				json_string(stdout, o->default_value);
				printf(", \"env\": ");
				json_string(stdout, env);
				printf(", \"help\": ");
				json_string(stdout, o->help);
				printf("}");
			} else {
				printf("    %s: %s%s, default \"%s\"\n", o->name,
				       fq_opt_type_name(o->type), type_unit(o->type),
				       o->default_value ? o->default_value : "");
				printf("        environment: %s\n", env);
				if (o->help != NULL && *o->help != '\0')
					printf("        %s\n", o->help);
			}
			first = false;
		}
		if (json)
			printf("\n    ]");
	}
	if (json)
		printf("%s}\n}\n", first_group ? "" : "\n  ");
	free(opts);
	return EXIT_SUCCESS;
}

static int print_strerror(const char *arg, bool json)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (end == arg || *end != '\0' || errno == ERANGE || v < INT_MIN || v > INT_MAX) {
		fprintf(stderr, "fq-info: --strerror needs an integer, got '%s'\n", arg);
		return EXIT_USAGE;
	}
	if (json) {
		printf("{\"code\": %ld, \"name\": ", v);
		json_string(stdout, fq_err_name((int)v));
		printf(", \"message\": ");
		json_string(stdout, fq_strerror((int)v));
		printf("}\n");
	} else {
		printf("%ld %s: %s\n", v, fq_err_name((int)v), fq_strerror((int)v));
	}
	return EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
	bool json = false, options = false;
	const char *strerror_arg = NULL;
	int c;

	/* "+": stop at the first non-option, and a leading ':' is not wanted (we print usage). */
	while ((c = getopt_long(argc, argv, "+ojh", long_options, NULL)) != -1) {
		switch (c) {
		case 'o':
			options = true;
			break;
		case 'j':
			json = true;
			break;
		case OPT_STRERROR:
			strerror_arg = optarg;
			break;
		case 'h':
			usage(stdout);
			return EXIT_SUCCESS;
		case OPT_VERSION:
			printf("fq-info (fabriq) %s\n", fq_version());
			return EXIT_SUCCESS;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "fq-info: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (options && strerror_arg != NULL) {
		fprintf(stderr, "fq-info: --options and --strerror exclude each other\n");
		return EXIT_USAGE;
	}
	if (strerror_arg != NULL)
		return print_strerror(strerror_arg, json);
	if (options)
		return print_options(json);
	print_summary(json);
	return EXIT_SUCCESS;
}
