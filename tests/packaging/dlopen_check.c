/*
 * libfabriq loaded with dlopen, as a plugin host or a language binding loads it: the load
 * must succeed (its thread-locals fit the static TLS room that is left for such libraries),
 * and messages of every size must go through the per-thread caches of a thread that the
 * library has not seen before. Usage: fq_dlopen_check PATH-TO-libfabriq.so [TRANSPORT...].
 * Exit 0 on success, 1 with a message otherwise.
 */
#include <fabriq/fabriq.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

static struct api {
	__typeof__(fq_transport_open) *transport_open;
	__typeof__(fq_transport_close) *transport_close;
	__typeof__(fq_msg_alloc) *msg_alloc;
	__typeof__(fq_msg_copy) *msg_copy;
	__typeof__(fq_msg_free) *msg_free;
	__typeof__(fq_strerror) *strerror;
} api;

/* Allocate, copy and free messages of several sizes on transport `name`. */
static int exercise(const char *name)
{
	static const size_t sizes[] = {0, 64, 300, 70000, 1 << 20};
	fq_transport *t = NULL;
	int rc = api.transport_open(&t, name, NULL);

	if (rc != 0) {
		printf("fq_transport_open(%s): %s\n", name, api.strerror(rc));
		return 1;
	}
	for (int round = 0; round < 100 && rc == 0; round++) {
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]) && rc == 0; i++) {
			fq_msg *m = NULL, *c = NULL;

			rc = api.msg_alloc(t, sizes[i], &m);
			if (rc == 0)
				rc = api.msg_copy(m, &c);
			api.msg_free(c);
			api.msg_free(m);
		}
	}
	if (rc != 0)
		printf("%s: messages: %s\n", name, api.strerror(rc));
	api.transport_close(t);
	return rc != 0;
}

static char **names; /* the transports to exercise */
static int n_names;

static int exercise_all(void)
{
	int failed = 0;

	for (int i = 0; i < n_names; i++)
		failed |= exercise(names[i]);
	return failed;
}

static void *thread_main(void *arg)
{
	int *failed = arg;

	*failed = exercise_all();
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t th;
	int failed = 1;
	void *lib;

	if (argc < 2) {
		printf("usage: fq_dlopen_check PATH-TO-libfabriq.so [TRANSPORT...]\n");
		return 1;
	}
	names = argv + 2;
	n_names = argc - 2;
	lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL) {
		printf("dlopen: %s\n", dlerror());
		return 1;
	}
	*(void **)&api.transport_open = dlsym(lib, "fq_transport_open");
	*(void **)&api.transport_close = dlsym(lib, "fq_transport_close");
	*(void **)&api.msg_alloc = dlsym(lib, "fq_msg_alloc");
	*(void **)&api.msg_copy = dlsym(lib, "fq_msg_copy");
	*(void **)&api.msg_free = dlsym(lib, "fq_msg_free");
	*(void **)&api.strerror = dlsym(lib, "fq_strerror");
	if (!api.transport_open || !api.transport_close || !api.msg_alloc || !api.msg_copy ||
	    !api.msg_free || !api.strerror) {
		printf("dlsym: the public API is missing\n");
		return 1;
	}
	if (exercise_all() != 0)
		return 1;
	if (pthread_create(&th, NULL, thread_main, &failed) != 0) {
		printf("pthread_create failed\n");
		return 1;
	}
	pthread_join(th, NULL);
	if (failed)
		return 1;
	printf("ok\n");
	return 0;
}
