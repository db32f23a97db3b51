/* Plugin loading: options, control, notifications; clear errors for the bad cases. */
#include "fq_test.h"
#include <fabriq/plugin.h>

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(plugin, .init = fqt_init, .fini = fqt_fini, .timeout = 60);

static void slurp(const char *path, char *out, size_t len)
{
	FILE *f = fopen(path, "r");

	cr_assert_not_null(f, "%s", path);
	out[fread(out, 1, len - 1, f)] = '\0';
	fclose(f);
}

/* Configure (and, when it succeeds, run) a device; its stderr goes into err. */
static int device_run(char *err, size_t len, int argc, char **argv)
{
	char path[128];
	fq_device *d;
	int saved, fd, rc;

	snprintf(path, sizeof(path), "%s/stderr", fqt_scratch_dir());
	fflush(stderr);
	saved = dup(2);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	dup2(fd, 2);
	close(fd);
	cr_assert_eq(fq_device_new(&d, NULL), 0);
	rc = fq_device_configure(d, argc, argv);
	if (rc == 0)
		rc = fq_device_run(d);
	fq_device_destroy(d);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	slurp(path, err, len);
	return rc;
}

Test(plugin, a_good_plugin_adds_options_observes_states_and_cannot_steal_control)
{
	char log[128], err[4096], text[4096], want[256];
	char *argv[] = {"fq-x",
	                "--id",
	                "p1",
	                "--control",
	                "static",
	                "-S",
	                FQ_TEST_PLUGIN_DIR,
	                "-P",
	                "testgood",
	                "--test-plugin-log",
	                log};

	snprintf(log, sizeof(log), "%s/states", fqt_scratch_dir());
	cr_assert_eq(device_run(err, sizeof(err), 11, argv), 0, "%s", err);
	slurp(log, text, sizeof(text));
	snprintf(want, sizeof(want), "take_control=%d\nchange_state=%d\n", FQ_ESTATE, FQ_EPERM);
	cr_assert(strncmp(text, want, strlen(want)) == 0, "%s", text);
	cr_assert_str_eq(text + strlen(want),
	                 "INITIALIZING DEVICE\nINITIALIZED\nBINDING\nBOUND\nCONNECTING\n"
	                 "DEVICE READY\nINITIALIZING TASK\nREADY\nRUNNING\nREADY\n"
	                 "RESETTING TASK\nDEVICE READY\nRESETTING DEVICE\nIDLE\nEXITING\nfini\n");
}

Test(plugin, a_plugin_option_is_unknown_without_the_plugin)
{
	char err[4096];
	char *argv[] = {"fq-x", "--id", "p2", "--test-plugin-log", "x"};

	cr_assert_eq(device_run(err, sizeof(err), 5, argv), FQ_EINVAL);
	cr_assert_not_null(strstr(err, "--test-plugin-log"), "%s", err);
}

Test(plugin, a_missing_plugin_is_a_clear_error)
{
	char err[4096];
	char *argv[] = {"fq-x", "--id", "p3", "-S", FQ_TEST_PLUGIN_DIR, "-P", "nosuch"};

	cr_assert_eq(device_run(err, sizeof(err), 7, argv), FQ_ENOENT);
	cr_assert_not_null(strstr(err, "fq-x: -P nosuch: plugin not found"), "%s", err);
}

Test(plugin, a_plugin_of_another_abi_version_is_refused_before_it_runs)
{
	char err[4096], want[128];
	char *argv[] = {"fq-x",     "--id",      "p4", "--plugin-search-path", FQ_TEST_PLUGIN_DIR,
	                "--plugin", "testbadabi"};

	cr_assert_eq(device_run(err, sizeof(err), 7, argv), FQ_EINVAL);
	snprintf(want, sizeof(want),
	         "built for plugin ABI version %u; this device speaks version %u",
	         FQ_PLUGIN_ABI_VERSION + 1, FQ_PLUGIN_ABI_VERSION);
	cr_assert_not_null(strstr(err, want), "%s", err);
}

Test(plugin, a_shared_object_without_a_descriptor_is_refused)
{
	char err[4096];
	char *argv[] = {"fq-x", "--id", "p5", "-S", FQ_TEST_PLUGIN_DIR, "-P", "testnot"};

	cr_assert_eq(device_run(err, sizeof(err), 7, argv), FQ_EINVAL);
	cr_assert_not_null(strstr(err, "is not a fabriq plugin"), "%s", err);
}

Test(plugin, a_plugin_that_fails_to_start_stops_the_device_without_hanging, .timeout = 10)
{
	/* The static control plugin starts first and has asked for INIT DEVICE by the time the
	 * failing plugin is started: fq_device_run must still return the plugin's error. */
	char err[4096];
	char *argv[] = {"fq-x",
	                "--id",
	                "p6",
	                "--control",
	                "static",
	                "-S",
	                FQ_TEST_PLUGIN_DIR,
	                "-P",
	                "testgood",
	                "--test-plugin-log",
	                "/nonexistent-dir/states"};

	cr_assert_eq(device_run(err, sizeof(err), 11, argv), FQ_EINVAL, "%s", err);
}
