/*
 * Plugins and control: loading plugins (dlopen, ABI check), the plugin API table, the
 * built-in control plugins (static, interactive, none) and signal handling.
 *
 * Only one plugin controls the device at a time; the built-in control plugin named by
 * --control takes control first. The first SIGINT/SIGTERM steals control and walks the
 * device down to EXITING; the second ends the process at once.
 */
#include "device/device_impl.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* ---- Control ---------------------------------------------------------------------------- */

static int api_take_control(fq_device *d, const char *plugin)
{
	int rc = 0;

	pthread_mutex_lock(&d->lock);
	if (d->controller != NULL && strcmp(d->controller, plugin) != 0)
		rc = FQ_ESTATE;
	else if (d->controller == NULL && (d->controller = strdup(plugin)) == NULL)
		rc = FQ_ENOMEM;
	pthread_mutex_unlock(&d->lock);
	return rc;
}

static void api_steal_control(fq_device *d, const char *plugin)
{
	char *copy = strdup(plugin);

	pthread_mutex_lock(&d->lock);
	free(d->controller);
	d->controller = copy;
	pthread_mutex_unlock(&d->lock);
}

static void api_release_control(fq_device *d, const char *plugin)
{
	pthread_mutex_lock(&d->lock);
	if (d->controller != NULL && strcmp(d->controller, plugin) == 0) {
		free(d->controller);
		d->controller = NULL;
	}
	pthread_mutex_unlock(&d->lock);
}

static int api_change_state(fq_device *d, const char *plugin, fq_transition t)
{
	bool mine;

	pthread_mutex_lock(&d->lock);
	mine = d->controller != NULL && strcmp(d->controller, plugin) == 0;
	pthread_mutex_unlock(&d->lock);
	if (!mine && t != FQ_TRANSITION_ERROR_FOUND)
		return FQ_EPERM;
	return fq_device_change_state(d, t);
}

static bool api_shutting_down(fq_device *d)
{
	return atomic_load(&d->shutting_down);
}

static uint64_t generation(fq_device *d)
{
	uint64_t g;

	pthread_mutex_lock(&d->lock);
	g = d->gen;
	pthread_mutex_unlock(&d->lock);
	return g;
}

/*
 * Wait until the state has changed since generation gen0 and is one that waits for a request
 * (RUNNING is not: after RUN this returns when RUNNING has ended), or timeout_ms passes.
 */
static fq_state settle(fq_device *d, uint64_t gen0, int timeout_ms)
{
	static const bool waits[FQ_STATE_COUNT] = {
	    [FQ_STATE_IDLE] = true,         [FQ_STATE_INITIALIZING_DEVICE] = true,
	    [FQ_STATE_INITIALIZED] = true,  [FQ_STATE_BOUND] = true,
	    [FQ_STATE_DEVICE_READY] = true, [FQ_STATE_READY] = true,
	    [FQ_STATE_EXITING] = true,      [FQ_STATE_ERROR] = true,
	};
	struct timespec dl;
	fq_state s;

	clock_gettime(CLOCK_REALTIME, &dl);
	if (timeout_ms >= 0) {
		dl.tv_sec += timeout_ms / 1000;
		dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (dl.tv_nsec >= 1000000000) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000;
		}
	}
	pthread_mutex_lock(&d->lock);
	while (!(d->gen > gen0 && waits[d->state])) {
		if (timeout_ms < 0)
			pthread_cond_wait(&d->cond, &d->lock);
		else if (pthread_cond_timedwait(&d->cond, &d->lock, &dl) == ETIMEDOUT)
			break;
	}
	s = d->state;
	pthread_mutex_unlock(&d->lock);
	return s;
}

/* Request t as `who` and wait until the device settles in the next waiting state. */
static int step(fq_device *d, const char *who, fq_transition t)
{
	uint64_t gen0 = generation(d);
	int rc = api_change_state(d, who, t);

	if (rc != 0)
		return rc;
	settle(d, gen0, -1);
	return 0;
}

void fqd_shutdown_sequence(fq_device *d, const char *who)
{
	for (int rounds = 0; rounds < 1000; rounds++) {
		fq_state s = fq_device_state(d);
		/* In a state that advances by itself, ask for the step after it right away: a
		 * cooperative hook that waits for a pending request then returns. */
		int base = fq_state_next(s, FQ_TRANSITION_AUTO);
		uint64_t gen0;
		int t = -1, rc;

		switch (base >= 0 ? (fq_state)base : s) {
		case FQ_STATE_EXITING:
		case FQ_STATE_ERROR:
			return;
		case FQ_STATE_IDLE:
			t = FQ_TRANSITION_END;
			break;
		case FQ_STATE_INITIALIZING_DEVICE:
			t = FQ_TRANSITION_COMPLETE_INIT;
			break;
		case FQ_STATE_INITIALIZED:
		case FQ_STATE_BOUND:
		case FQ_STATE_DEVICE_READY:
			t = FQ_TRANSITION_RESET_DEVICE;
			break;
		case FQ_STATE_READY:
			t = FQ_TRANSITION_RESET_TASK;
			break;
		case FQ_STATE_RUNNING:
			t = FQ_TRANSITION_STOP;
			break;
		default:
			break;
		}
		gen0 = generation(d);
		if (t < 0) {
			settle(d, gen0, 100);
			continue;
		}
		rc = api_change_state(d, who, (fq_transition)t);
		if (rc == FQ_EPERM)
			return; /* someone stole control from us */
		if (rc != 0) {
			settle(d, gen0, 100); /* another request is pending: let it finish */
			continue;
		}
		settle(d, gen0, -1);
	}
}

/* ---- Built-in control plugins ----------------------------------------------------------- */

/*
 * The terminal's settings before interactive control made it raw, for the signal handler:
 * a second signal exits at once and must not leave the user's terminal without echo.
 * Written before tty_raw is set, read by the handler only while it is set.
 */
static struct termios tty_saved;
static atomic_int tty_raw;

typedef struct control {
	fq_device *d;
	const fq_plugin_api *api;
	const char *name;
	pthread_t thread;
	bool started;
	int stop_pipe[2];
	bool raw_tty;
	struct termios saved;
} control;

static void *static_main(void *arg)
{
	static const fq_transition startup[] = {
	    FQ_TRANSITION_INIT_DEVICE, FQ_TRANSITION_COMPLETE_INIT, FQ_TRANSITION_BIND,
	    FQ_TRANSITION_CONNECT,     FQ_TRANSITION_INIT_TASK,     FQ_TRANSITION_RUN,
	};
	control *c = arg;

	for (size_t i = 0; i < sizeof(startup) / sizeof(startup[0]); i++) {
		if (step(c->d, c->name, startup[i]) != 0)
			return NULL; /* control was stolen (a signal), or the device failed */
	}
	/* RUNNING has ended (READY): shut down and exit. */
	fqd_shutdown_sequence(c->d, c->name);
	return NULL;
}

static void print_help(void)
{
	printf("[h] help, [c] check state, [p] list channels, [i] init device, [b] bind, "
	       "[x] connect, [j] init task, [r] run, [s] stop, [t] reset task, [d] reset device, "
	       "[q] end (shut down from any state)\n");
	fflush(stdout);
}

static void interactive_key(control *c, int key)
{
	static const struct {
		char key;
		fq_transition t;
	} keys[] = {
	    {'b', FQ_TRANSITION_BIND},         {'x', FQ_TRANSITION_CONNECT},
	    {'j', FQ_TRANSITION_INIT_TASK},    {'r', FQ_TRANSITION_RUN},
	    {'s', FQ_TRANSITION_STOP},         {'t', FQ_TRANSITION_RESET_TASK},
	    {'d', FQ_TRANSITION_RESET_DEVICE},
	};
	fq_device *d = c->d;

	switch (key) {
	case 'h':
		print_help();
		return;
	case 'c':
		printf("state: %s\n", fq_state_name(fq_device_state(d)));
		fflush(stdout);
		return;
	case 'p':
		/* The loop thread builds and frees the channels meanwhile. */
		pthread_mutex_lock(&d->chan_lock);
		for (size_t i = 0; i < d->nchans; i++)
			printf("%s: %zu sub-channel(s)\n", d->chans[i].name, d->chans[i].nsub);
		pthread_mutex_unlock(&d->chan_lock);
		fflush(stdout);
		return;
	case 'i':
		/* INIT DEVICE, then COMPLETE INIT: FairMQ's 'i'. */
		if (step(d, c->name, FQ_TRANSITION_INIT_DEVICE) == 0)
			step(d, c->name, FQ_TRANSITION_COMPLETE_INIT);
		return;
	case 'q':
		fqd_shutdown_sequence(d, c->name);
		return;
	default:
		break;
	}
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (keys[i].key == key) {
			fq_state s = fq_device_state(d);
			uint64_t gen0 = generation(d);
			int rc = api_change_state(d, c->name, keys[i].t);

			if (rc != 0)
				printf("%s is not possible in %s\n", fq_transition_name(keys[i].t),
				       fq_state_name(s));
			else if (keys[i].t != FQ_TRANSITION_RUN)
				settle(d, gen0, -1);
			fflush(stdout);
			return;
		}
	}
}

static void *interactive_main(void *arg)
{
	control *c = arg;
	bool eof = false;

	print_help();
	while (fq_device_state(c->d) != FQ_STATE_EXITING &&
	       fq_device_state(c->d) != FQ_STATE_ERROR) {
		struct pollfd p[2] = {{.fd = c->stop_pipe[0], .events = POLLIN},
		                      {.fd = STDIN_FILENO, .events = POLLIN}};
		char ch;

		if (poll(p, eof ? 1 : 2, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents != 0)
			break;
		if (eof || !(p[1].revents & (POLLIN | POLLHUP)))
			continue;
		if (read(STDIN_FILENO, &ch, 1) != 1) {
			eof = true; /* input closed: keep running until a signal or the end */
			continue;
		}
		if (ch != '\n' && ch != '\r' && ch != ' ')
			interactive_key(c, ch);
	}
	return NULL;
}

static int control_init(const fq_plugin_api *api, void **state, const char *name,
                        void *(*main_fn)(void *))
{
	control *c = calloc(1, sizeof(*c));
	bool took;
	int rc;

	if (c == NULL)
		return FQ_ENOMEM;
	c->d = api->device;
	c->api = api;
	c->name = name;
	c->stop_pipe[0] = c->stop_pipe[1] = -1;
	rc = api->take_control(c->d, name);
	took = rc == 0;
	if (rc == 0 && pipe2(c->stop_pipe, O_CLOEXEC) != 0)
		rc = FQ_ENOMEM;
	if (rc == 0 && main_fn == interactive_main && isatty(STDIN_FILENO)) {
		/* Keys act at once, without Enter. */
		struct termios raw;

		if (tcgetattr(STDIN_FILENO, &c->saved) == 0) {
			raw = c->saved;
			raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
			tty_saved = c->saved;
			atomic_store(&tty_raw, 1);
			c->raw_tty = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
			if (!c->raw_tty)
				atomic_store(&tty_raw, 0);
		}
	}
	if (rc == 0 && main_fn != NULL) {
		rc = pthread_create(&c->thread, NULL, main_fn, c) == 0 ? 0 : FQ_ENOMEM;
		c->started = rc == 0;
	}
	if (rc != 0) {
		if (c->raw_tty) {
			atomic_store(&tty_raw, 0);
			tcsetattr(STDIN_FILENO, TCSANOW, &c->saved);
		}
		if (c->stop_pipe[0] >= 0) {
			close(c->stop_pipe[0]);
			close(c->stop_pipe[1]);
		}
		if (took)
			api->release_control(c->d, name);
		free(c);
		return rc;
	}
	*state = c;
	return 0;
}

static void control_fini(void *state)
{
	control *c = state;

	if (c == NULL)
		return;
	if (c->started) {
		(void)!write(c->stop_pipe[1], "x", 1);
		pthread_join(c->thread, NULL);
	}
	if (c->raw_tty) {
		atomic_store(&tty_raw, 0);
		tcsetattr(STDIN_FILENO, TCSANOW, &c->saved);
	}
	close(c->stop_pipe[0]);
	close(c->stop_pipe[1]);
	c->api->release_control(c->d, c->name);
	free(c);
}

static int static_init(const fq_plugin_api *api, void **state)
{
	return control_init(api, state, "control", static_main);
}

static int interactive_init(const fq_plugin_api *api, void **state)
{
	return control_init(api, state, "control", interactive_main);
}

static int none_init(const fq_plugin_api *api, void **state)
{
	(void)api;
	*state = NULL;
	return 0;
}

static const fq_plugin_desc builtin_static = {
    sizeof(fq_plugin_desc),
    FQ_PLUGIN_ABI_VERSION,
    "control",
    "1",
    "fabriq",
    "",
    NULL,
    0,
    static_init,
    control_fini,
};
static const fq_plugin_desc builtin_interactive = {
    sizeof(fq_plugin_desc), FQ_PLUGIN_ABI_VERSION, "control", "1", "fabriq", "", NULL, 0,
    interactive_init,       control_fini,
};
static const fq_plugin_desc builtin_none = {
    sizeof(fq_plugin_desc),
    FQ_PLUGIN_ABI_VERSION,
    "control",
    "1",
    "fabriq",
    "",
    NULL,
    0,
    none_init,
    NULL,
};

/* ---- Plugin loading --------------------------------------------------------------------- */

static int add_plugin(fq_device *d, const char *name, const char *path, void *dl,
                      const fq_plugin_desc *desc)
{
	fqd_plugin *p = realloc(d->plugins, (d->nplugins + 1) * sizeof(*p));

	if (p == NULL)
		return FQ_ENOMEM;
	d->plugins = p;
	p = &d->plugins[d->nplugins];
	memset(p, 0, sizeof(*p));
	p->name = strdup(name);
	p->path = path ? strdup(path) : NULL;
	p->dl = dl;
	p->desc = desc;
	if (p->name == NULL)
		return FQ_ENOMEM;
	d->nplugins++;
	return 0;
}

/* Find and open plugin `name`; reports to err. */
static int load_one(fq_device *d, const char *name, FILE *err)
{
	char path[4096];
	void *dl = NULL;
	const fq_plugin_desc *desc;
	int rc;

	if (strchr(name, '/') != NULL) {
		snprintf(path, sizeof(path), "%s", name);
		dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	} else {
		for (size_t i = 0; i < d->nsearch_paths && dl == NULL; i++) {
			snprintf(path, sizeof(path), "%s/libfabriq-plugin-%s.so",
			         d->search_paths[i], name);
			if (access(path, F_OK) == 0)
				dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		}
		if (dl == NULL) {
			snprintf(path, sizeof(path), "%s/libfabriq-plugin-%s.so", FQ_PLUGIN_DIR,
			         name);
			if (access(path, F_OK) == 0)
				dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		}
		if (dl == NULL) {
			snprintf(path, sizeof(path), "libfabriq-plugin-%s.so", name);
			dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		}
	}
	if (dl == NULL) {
		fprintf(err, "%s: -P %s: plugin not found or not loadable (%s); searched %s%s%s\n",
		        d->program, name, dlerror(), d->nsearch_paths ? "the -S folders, " : "",
		        FQ_PLUGIN_DIR, " and the dynamic loader's path");
		return FQ_ENOENT;
	}
	desc = dlsym(dl, FQ_PLUGIN_SYMBOL);
	if (desc == NULL) {
		fprintf(err, "%s: -P %s: %s is not a fabriq plugin (no symbol %s)\n", d->program,
		        name, path, FQ_PLUGIN_SYMBOL);
		dlclose(dl);
		return FQ_EINVAL;
	}
	if (desc->abi_version != FQ_PLUGIN_ABI_VERSION) {
		fprintf(err,
		        "%s: -P %s: %s was built for plugin ABI version %u; this device speaks "
		        "version %u: rebuild the plugin against this fabriq\n",
		        d->program, name, path, desc->abi_version, FQ_PLUGIN_ABI_VERSION);
		dlclose(dl);
		return FQ_EINVAL;
	}
	if (desc->size < sizeof(fq_plugin_desc) || desc->name == NULL || desc->init == NULL) {
		fprintf(err,
		        "%s: -P %s: %s has an incomplete descriptor (size %zu, expected %zu)\n",
		        d->program, name, path, desc->size, sizeof(fq_plugin_desc));
		dlclose(dl);
		return FQ_EINVAL;
	}
	if (desc->noptions > 0) {
		/* The section title must live as long as the options: the plugin's own name. */
		rc = fqc_opts_add(d->opts, desc->name, desc->options, desc->noptions);
		if (rc != 0) {
			fprintf(err, "%s: -P %s: its options clash with the device's: %s\n",
			        d->program, name, fq_strerror(rc));
			dlclose(dl);
			return rc;
		}
	}
	rc = add_plugin(d, name, path, dl, desc);
	if (rc != 0)
		dlclose(dl);
	return rc;
}

int fqd_plugins_load(fq_device *d, int argc, char **argv, FILE *err)
{
	char **names = NULL;
	size_t n = 0;
	int rc = fqc_scan_plugins(argc, argv, &names, &n, &d->search_paths, &d->nsearch_paths);

	if (rc != 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		int r = load_one(d, names[i], err);

		if (r != 0 && rc == 0)
			rc = r;
	}
	fqc_strv_free(names, n);
	return rc;
}

static void api_init(fq_device *d)
{
	fq_plugin_api *a = &d->api;

	a->size = sizeof(*a);
	a->abi_version = FQ_PLUGIN_ABI_VERSION;
	a->device = d;
	a->take_control = api_take_control;
	a->steal_control = api_steal_control;
	a->release_control = api_release_control;
	a->change_state = api_change_state;
	a->get_state = fq_device_state;
	a->wait_state = fq_device_wait_state;
	a->subscribe_state = fq_device_subscribe_state;
	a->unsubscribe_state = fq_device_unsubscribe_state;
	a->get_property = fq_device_get_property;
	a->set_property = fq_device_set_property;
	a->property_key_at = fq_device_property_key_at;
	a->subscribe_property = fq_device_subscribe_property;
	a->unsubscribe_property = fq_device_unsubscribe_property;
	a->shutting_down = api_shutting_down;
}

int fqd_plugins_start(fq_device *d)
{
	char ctl[32] = "dynamic";
	const fq_plugin_desc *builtin;
	int rc;

	api_init(d);
	fqc_props_get(d->props, "control", ctl, sizeof(ctl));
	if (strcmp(ctl, "static") == 0)
		builtin = &builtin_static;
	else if (strcmp(ctl, "none") == 0)
		builtin = &builtin_none;
	else if (strcmp(ctl, "interactive") == 0 || isatty(STDIN_FILENO))
		builtin = &builtin_interactive;
	else
		builtin = &builtin_static; /* "dynamic" without a terminal: nobody to type */
	/* The control plugin goes first: it takes control before any other plugin can. */
	rc = add_plugin(d, "control", NULL, NULL, builtin);
	if (rc != 0)
		return rc;
	{
		fqd_plugin ctlp = d->plugins[d->nplugins - 1];

		memmove(&d->plugins[1], &d->plugins[0], (d->nplugins - 1) * sizeof(d->plugins[0]));
		d->plugins[0] = ctlp;
	}
	for (size_t i = 0; i < d->nplugins; i++) {
		fqd_plugin *p = &d->plugins[i];

		rc = p->desc->init(&d->api, &p->state);
		if (rc != 0) {
			fq_log(FQ_LOG_ERROR, FQD_SUBSYS, "%s: plugin %s failed to start: %s",
			       fq_device_id(d), p->name, fq_strerror(rc));
			return rc;
		}
		p->started = true;
	}
	return 0;
}

void fqd_plugins_stop(fq_device *d)
{
	for (size_t i = d->nplugins; i-- > 0;) {
		fqd_plugin *p = &d->plugins[i];

		if (p->started && p->desc->fini != NULL)
			p->desc->fini(p->state);
		p->started = false;
	}
}

void fqd_plugins_free(fq_device *d)
{
	for (size_t i = 0; i < d->nplugins; i++) {
		if (d->plugins[i].dl != NULL)
			dlclose(d->plugins[i].dl);
		free(d->plugins[i].name);
		free(d->plugins[i].path);
	}
	free(d->plugins);
	d->plugins = NULL;
	d->nplugins = 0;
	fqc_strv_free(d->search_paths, d->nsearch_paths);
	d->search_paths = NULL;
	d->nsearch_paths = 0;
}

/* ---- Signals ---------------------------------------------------------------------------- */

/* One device per process handles signals (FairMQ's rule too). */
static int signal_pipe[2] = {-1, -1};
static struct sigaction old_int, old_term;
static pthread_t signal_thread;
static fq_device *signal_device;

/*
 * What the handler shares: lock-free atomics only (C11 7.14.1.1: a handler may touch no other
 * static object), since SIGINT and SIGTERM may run the handler in two threads at once.
 * first_signal_ms is 0 until the first signal's time is recorded.
 */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2 && ATOMIC_LLONG_LOCK_FREE == 2,
               "the signal handler needs lock-free atomics");
static atomic_int signals_seen;
static _Atomic long long first_signal_ms;

static void on_signal(int sig)
{
	int saved_errno = errno; /* the interrupted code may be about to read it */
	struct timespec now;
	long long ms;

	(void)sig;
	/* Both calls are async-signal-safe; ms is never 0, which means "not recorded yet". */
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000 + 1;
	if (atomic_fetch_add(&signals_seen, 1) == 0) {
		atomic_store(&first_signal_ms, ms);
		(void)!write(signal_pipe[1], "s", 1);
	} else {
		long long first = atomic_load(&first_signal_ms);

		/*
		 * The second signal: exit now. One that comes within half a second of the first
		 * (or while the first is still being handled) is the same request delivered twice
		 * (timeout(1) and shells signal the process and then its group), not an impatient
		 * user.
		 */
		if (first != 0 && ms - first >= 500) {
			if (atomic_load(&tty_raw))
				tcsetattr(STDIN_FILENO, TCSANOW,
				          &tty_saved); /* async-signal-safe */
			_exit(130);
		}
	}
	errno = saved_errno;
}

static void *signal_main(void *arg)
{
	fq_device *d = arg;
	char c;

	for (;;) {
		ssize_t n = read(signal_pipe[0], &c, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n != 1 || c == 'q')
			return NULL;
		fq_log(FQ_LOG_INFO, FQD_SUBSYS,
		       "%s: signal received, shutting down (again: exit now)", fq_device_id(d));
		atomic_store(&d->shutting_down, true);
		api_steal_control(d, "signal handler");
		fqd_shutdown_sequence(d, "signal handler");
	}
}

int fqd_signals_start(fq_device *d)
{
	struct sigaction sa;
	bool catch = true;

	fq_device_get_bool(d, "catch-signals", &catch);
	if (!catch || signal_device != NULL)
		return 0;
	if (pipe2(signal_pipe, O_CLOEXEC) != 0)
		return FQ_ENOMEM;
	atomic_store(&signals_seen, 0);
	atomic_store(&first_signal_ms, 0);
	signal_device = d;
	if (pthread_create(&signal_thread, NULL, signal_main, d) != 0) {
		close(signal_pipe[0]);
		close(signal_pipe[1]);
		signal_device = NULL;
		return FQ_ENOMEM;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	/* In one thread, neither signal interrupts the handler of the other. */
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGINT);
	sigaddset(&sa.sa_mask, SIGTERM);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	return 0;
}

void fqd_signals_stop(fq_device *d)
{
	if (signal_device != d)
		return;
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	(void)!write(signal_pipe[1], "q", 1);
	pthread_join(signal_thread, NULL);
	close(signal_pipe[0]);
	close(signal_pipe[1]);
	signal_device = NULL;
}
