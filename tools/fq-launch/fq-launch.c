/*
 * fq-launch: run a topology of processes (usually fabriq devices) described by a small JSON
 * file, for demos, tests and benchmarks on one host:
 *
 *   {"description": "sampler -> sink", "duration_s": 10, "grace_s": 5,
 *    "templates": ["channels.json"], "env": {"FQ_LOG_LEVEL": "info"},
 *    "processes": [{"id": "sampler1", "command": ["fq-sampler", "--id", "sampler1", ...]},
 *                  {"id": "sink1", "command": [...], "env": {...}}]}
 *
 * Every run gets a unique session name and a fresh run folder (ipc addresses go there);
 * ${TOPOLOGY_DIR}, ${RUN_DIR}, ${SESSION} and ${ID} are substituted in commands, environment
 * values and template files. Each process runs in its own process group with its output
 * prefixed by its id; SIGINT/SIGTERM are forwarded once; after the duration every process
 * gets SIGTERM and, after the grace period, stragglers SIGKILL. A process that fails before
 * that stops the others (unless --keep-going). See docs/man/fq-launch.1.md.
 *
 * Exit status: 0 every process exited with 0, 1 some did not, 2 usage or topology error.
 */
#include <fabriq/fabriq.h>

#include <jansson.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_FAILED 1
#define EXIT_USAGE  2

#define LINE_MAX_BYTES 65536

/* One output stream of a process: a pipe and the start of a line not yet complete. */
typedef struct stream {
	int fd; /* -1 once closed */
	FILE *to;
	char *buf;
	size_t len;
} stream;

typedef enum proc_state { PROC_NEW, PROC_RUNNING, PROC_DONE } proc_state;

typedef struct proc {
	char *id;
	char **argv; /* substituted, NULL-terminated; argv[0] as written */
	size_t argc;
	char *path; /* the executable found */
	char **env; /* "NAME=value", substituted */
	size_t nenv;
	pid_t pid;
	proc_state state;
	int status;  /* waitpid status */
	bool killed; /* SIGKILL after the grace period */
	stream out, err;
} proc;

typedef struct launch {
	/* Command line. */
	char **bin_dirs;
	size_t nbin_dirs;
	double duration; /* < 0: from the topology */
	double grace;    /* < 0: from the topology */
	const char *run_parent;
	bool keep;
	bool keep_going;
	bool dry_run;
	const char *topology;

	/* Topology. */
	char *topology_dir;
	char *run_dir;
	char session[64];
	double duration_s;
	double grace_s;
	char **env; /* topology-wide "NAME=value" */
	size_t nenv;
	proc *procs;
	size_t nprocs;
	int id_width;
} launch;

static volatile sig_atomic_t sig_pipe_w = -1;

static void die_oom(void)
{
	fputs("fq-launch: out of memory\n", stderr);
	exit(EXIT_USAGE);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n == 0 ? 1 : n);

	if (p == NULL)
		die_oom();
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		die_oom();
	return p;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: fq-launch [OPTIONS] TOPOLOGY.json\n"
	        "\n"
	        "Start the processes of a topology file, prefix their output with their id, stop\n"
	        "them after the duration (or on SIGINT/SIGTERM) and report which ones failed.\n"
	        "\n"
	        "  -b, --bin-dir DIR    look commands up in DIR first (repeatable; DIR:DIR...)\n"
	        "  -d, --duration S     run for S seconds (0: until every process has exited);\n"
	        "                       overrides duration_s\n"
	        "  -g, --grace S        seconds between SIGTERM and SIGKILL (default 5);\n"
	        "                       overrides grace_s\n"
	        "  -r, --run-dir DIR    make the run folder in DIR (default $TMPDIR or /tmp)\n"
	        "  -k, --keep           keep the run folder afterwards\n"
	        "      --keep-going     do not stop the others when a process fails\n"
	        "  -n, --dry-run        print the commands as they would run, start nothing\n"
	        "  -h, --help           show this help and exit\n"
	        "      --version        show the version and exit\n"
	        "\n"
	        "Variables in commands, env values and templates: ${TOPOLOGY_DIR} ${RUN_DIR}\n"
	        "${SESSION} ${ID}. See fq-launch(1).\n"
	        "\n"
	        "Exit status: 0 every process exited with 0, 1 some did not, 2 usage or\n"
	        "topology error.\n");
}

/* ---- Topology -------------------------------------------------------------------------- */

static int topo_error(launch *l, const char *where, const char *what)
{
	fprintf(stderr, "fq-launch: %s: %s: %s\n", l->topology, where, what);
	return -1;
}

/*
 * Substitute ${NAME} in text. `id` is NULL outside a process. Returns a malloc'ed string, or
 * NULL after reporting an unknown variable.
 */
static char *substitute(launch *l, const char *where, const char *text, const char *id)
{
	size_t cap = strlen(text) + 1, len = 0;
	char *out = xmalloc(cap);

	for (const char *p = text; *p != '\0';) {
		const char *val = NULL;
		size_t vlen, skip = 1;

		if (p[0] == '$' && p[1] == '{') {
			const char *end = strchr(p + 2, '}');
			size_t nlen = end != NULL ? (size_t)(end - p - 2) : 0;
			char name[64];

			if (end == NULL || nlen == 0 || nlen >= sizeof(name)) {
				topo_error(l, where, "'${' without a variable name and '}'");
				free(out);
				return NULL;
			}
			memcpy(name, p + 2, nlen);
			name[nlen] = '\0';
			if (strcmp(name, "TOPOLOGY_DIR") == 0)
				val = l->topology_dir;
			else if (strcmp(name, "RUN_DIR") == 0)
				val = l->run_dir;
			else if (strcmp(name, "SESSION") == 0)
				val = l->session;
			else if (strcmp(name, "ID") == 0 && id != NULL)
				val = id;
			if (val == NULL) {
				char msg[128];

				snprintf(msg, sizeof(msg), "unknown variable ${%s}", name);
				topo_error(l, where, msg);
				free(out);
				return NULL;
			}
			skip = nlen + 3;
		}
		vlen = val != NULL ? strlen(val) : 1;
		if (len + vlen + 1 > cap) {
			char *n;

			cap = (len + vlen + 1) * 2;
			n = realloc(out, cap);
			if (n == NULL)
				die_oom();
			out = n;
		}
		memcpy(out + len, val != NULL ? val : p, vlen);
		len += vlen;
		p += skip;
	}
	out[len] = '\0';
	return out;
}

/* Check that obj has only the keys listed (typos should not pass silently). */
static int check_keys(launch *l, const char *where, json_t *obj, const char *const *keys)
{
	const char *key;
	json_t *v;
	int rc = 0;

	json_object_foreach(obj, key, v)
	{
		bool known = false;

		for (const char *const *k = keys; *k != NULL; k++)
			known = known || strcmp(key, *k) == 0;
		if (!known) {
			char msg[256];

			snprintf(msg, sizeof(msg), "unknown key \"%s\"", key);
			rc = topo_error(l, where, msg);
		}
	}
	return rc;
}

static int read_env(launch *l, const char *where, json_t *obj, const char *id, char ***env,
                    size_t *nenv)
{
	const char *key;
	json_t *v;

	if (obj == NULL)
		return 0;
	if (!json_is_object(obj))
		return topo_error(l, where, "\"env\" must be an object of strings");
	*env = xmalloc(json_object_size(obj) * sizeof(**env));
	json_object_foreach(obj, key, v)
	{
		char *val;

		if (!json_is_string(v) || key[0] == '\0' || strchr(key, '=') != NULL)
			return topo_error(l, where, "\"env\" must map names to strings");
		val = substitute(l, where, json_string_value(v), id);
		if (val == NULL)
			return -1;
		(*env)[*nenv] = xmalloc(strlen(key) + strlen(val) + 2);
		sprintf((*env)[*nenv], "%s=%s", key, val);
		(*nenv)++;
		free(val);
	}
	return 0;
}

static double number_or(json_t *v, double dflt)
{
	return json_is_number(v) ? json_number_value(v) : dflt;
}

static int read_process(launch *l, size_t i, json_t *o)
{
	static const char *const keys[] = {"id", "command", "env", NULL};
	proc *p = &l->procs[i];
	char where[64];
	json_t *id = json_object_get(o, "id"), *cmd = json_object_get(o, "command");

	snprintf(where, sizeof(where), "processes[%zu]", i);
	if (!json_is_object(o))
		return topo_error(l, where, "must be an object");
	if (check_keys(l, where, o, keys) != 0)
		return -1;
	if (!json_is_string(id) || json_string_length(id) == 0)
		return topo_error(l, where, "\"id\" must be a non-empty string");
	p->id = xstrdup(json_string_value(id));
	for (size_t j = 0; j < i; j++) {
		if (strcmp(l->procs[j].id, p->id) == 0)
			return topo_error(l, where, "two processes have this id");
	}
	if (!json_is_array(cmd) || json_array_size(cmd) == 0)
		return topo_error(l, where, "\"command\" must be a non-empty array of strings");
	p->argc = json_array_size(cmd);
	p->argv = calloc(p->argc + 1, sizeof(*p->argv));
	if (p->argv == NULL)
		die_oom();
	for (size_t j = 0; j < p->argc; j++) {
		json_t *a = json_array_get(cmd, j);

		if (!json_is_string(a))
			return topo_error(l, where,
			                  "\"command\" must be a non-empty array of strings");
		p->argv[j] = substitute(l, where, json_string_value(a), p->id);
		if (p->argv[j] == NULL)
			return -1;
	}
	if ((int)strlen(p->id) > l->id_width)
		l->id_width = (int)strlen(p->id);
	return read_env(l, where, json_object_get(o, "env"), p->id, &p->env, &p->nenv);
}

static int load_topology(launch *l)
{
	static const char *const keys[] = {"description", "duration_s", "grace_s", "templates",
	                                   "env",         "processes",  NULL};
	json_error_t jerr;
	json_t *root = json_load_file(l->topology, JSON_REJECT_DUPLICATES, &jerr);
	json_t *procs, *v;
	int rc = -1;

	if (root == NULL) {
		fprintf(stderr, "fq-launch: %s:%d:%d: %s\n", l->topology, jerr.line, jerr.column,
		        jerr.text);
		return -1;
	}
	if (!json_is_object(root)) {
		topo_error(l, "top level", "must be an object");
		goto out;
	}
	if (check_keys(l, "top level", root, keys) != 0)
		goto out;
	v = json_object_get(root, "duration_s");
	if (v != NULL && (!json_is_number(v) || json_number_value(v) < 0)) {
		topo_error(l, "duration_s", "must be a number >= 0");
		goto out;
	}
	l->duration_s = l->duration >= 0 ? l->duration : number_or(v, 0);
	v = json_object_get(root, "grace_s");
	if (v != NULL && (!json_is_number(v) || json_number_value(v) < 0)) {
		topo_error(l, "grace_s", "must be a number >= 0");
		goto out;
	}
	l->grace_s = l->grace >= 0 ? l->grace : number_or(v, 5);
	v = json_object_get(root, "description");
	if (v != NULL && !json_is_string(v)) {
		topo_error(l, "description", "must be a string");
		goto out;
	}
	if (v != NULL && !l->dry_run)
		fprintf(stderr, "fq-launch: %s\n", json_string_value(v));
	if (read_env(l, "env", json_object_get(root, "env"), NULL, &l->env, &l->nenv) != 0)
		goto out;
	procs = json_object_get(root, "processes");
	if (!json_is_array(procs) || json_array_size(procs) == 0) {
		topo_error(l, "processes", "must be a non-empty array");
		goto out;
	}
	l->nprocs = json_array_size(procs);
	l->procs = calloc(l->nprocs, sizeof(*l->procs));
	if (l->procs == NULL)
		die_oom();
	for (size_t i = 0; i < l->nprocs; i++) {
		l->procs[i].out.fd = l->procs[i].err.fd = -1;
		if (read_process(l, i, json_array_get(procs, i)) != 0)
			goto out;
	}
	v = json_object_get(root, "templates");
	if (v != NULL && !json_is_array(v)) {
		topo_error(l, "templates", "must be an array of file names");
		goto out;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

/*
 * "templates": files next to the topology, copied into the run folder with the variables
 * substituted (channel configuration files whose ipc addresses must be in the run folder).
 */
static int write_templates(launch *l)
{
	json_error_t jerr;
	json_t *root = json_load_file(l->topology, 0, &jerr);
	json_t *list = root != NULL ? json_object_get(root, "templates") : NULL;
	json_t *v;
	size_t i;
	int rc = 0;

	json_array_foreach(list, i, v)
	{
		char where[64], src[PATH_MAX], dst[PATH_MAX];
		const char *name = json_is_string(v) ? json_string_value(v) : "";
		char *text = NULL, *out = NULL;
		size_t len = 0;
		FILE *f;

		snprintf(where, sizeof(where), "templates[%zu]", i);
		if (name[0] == '\0' || name[0] == '/' || strstr(name, "..") != NULL ||
		    strchr(name, '/') != NULL) {
			rc = topo_error(l, where, "must be a file name in the topology's folder");
			break;
		}
		snprintf(src, sizeof(src), "%s/%s", l->topology_dir, name);
		snprintf(dst, sizeof(dst), "%s/%s", l->run_dir, name);
		f = fopen(src, "r");
		if (f == NULL) {
			rc = topo_error(l, src, strerror(errno));
			break;
		}
		text = xmalloc(1);
		for (;;) {
			char chunk[4096];
			size_t n = fread(chunk, 1, sizeof(chunk), f);
			char *t;

			if (n == 0)
				break;
			t = realloc(text, len + n + 1);
			if (t == NULL)
				die_oom();
			text = t;
			memcpy(text + len, chunk, n);
			len += n;
		}
		fclose(f);
		text[len] = '\0';
		out = substitute(l, src, text, NULL);
		free(text);
		if (out == NULL) {
			rc = -1;
			break;
		}
		f = fopen(dst, "w");
		if (f == NULL || fputs(out, f) == EOF || fclose(f) != 0) {
			rc = topo_error(l, dst, strerror(errno));
			free(out);
			break;
		}
		free(out);
	}
	json_decref(root);
	return rc;
}

/* The executable for argv[0]: as given when it has a '/', else from --bin-dir, else PATH. */
static char *find_command(launch *l, const char *name)
{
	char path[PATH_MAX];
	const char *env_path = getenv("PATH");

	if (strchr(name, '/') != NULL)
		return access(name, X_OK) == 0 ? xstrdup(name) : NULL;
	for (size_t i = 0; i < l->nbin_dirs; i++) {
		snprintf(path, sizeof(path), "%s/%s", l->bin_dirs[i], name);
		if (access(path, X_OK) == 0)
			return xstrdup(path);
	}
	if (env_path == NULL)
		env_path = "/usr/local/bin:/usr/bin:/bin";
	for (const char *p = env_path; *p != '\0';) {
		size_t n = strcspn(p, ":");

		snprintf(path, sizeof(path), "%.*s/%s", (int)n, n == 0 ? "." : p, name);
		if (access(path, X_OK) == 0)
			return xstrdup(path);
		p += n;
		if (*p == ':')
			p++;
	}
	return NULL;
}

/* ---- Run folder ------------------------------------------------------------------------ */

static int make_run_dir(launch *l)
{
	const char *parent = l->run_parent;
	char tmpl[PATH_MAX];

	if (parent == NULL)
		parent = getenv("TMPDIR");
	if (parent == NULL || parent[0] == '\0')
		parent = "/tmp";
	snprintf(tmpl, sizeof(tmpl), "%s/fq-launch-XXXXXX", parent);
	if (mkdtemp(tmpl) == NULL) {
		fprintf(stderr, "fq-launch: cannot make a run folder in %s: %s\n", parent,
		        strerror(errno));
		return -1;
	}
	l->run_dir = xstrdup(tmpl);
	/* Unique per run and per host: the folder's random suffix and our pid. */
	snprintf(l->session, sizeof(l->session), "fql%s%ld", strrchr(tmpl, '-') + 1,
	         (long)getpid());
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(path) != 0)
		fprintf(stderr, "fq-launch: removing %s: %s\n", path, strerror(errno));
	return 0;
}

static void remove_run_dir(launch *l)
{
	if (l->run_dir == NULL)
		return;
	if (l->keep) {
		fprintf(stderr, "fq-launch: run folder kept: %s\n", l->run_dir);
		return;
	}
	nftw(l->run_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- Processes ------------------------------------------------------------------------- */

static void on_signal(int sig)
{
	int saved = errno;
	unsigned char c = (unsigned char)sig;

	if (sig_pipe_w >= 0)
		(void)!write(sig_pipe_w, &c, 1);
	errno = saved;
}

static int start_process(launch *l, proc *p)
{
	int out[2], err[2];
	sigset_t none;

	if (pipe2(out, O_CLOEXEC) != 0)
		return -1;
	if (pipe2(err, O_CLOEXEC) != 0) {
		close(out[0]);
		close(out[1]);
		return -1;
	}
	fflush(NULL);
	p->pid = fork();
	if (p->pid < 0) {
		close(out[0]);
		close(out[1]);
		close(err[0]);
		close(err[1]);
		return -1;
	}
	if (p->pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);

		/* Own process group: a terminal's Ctrl-C reaches only us, and we forward it once. */
		setpgid(0, 0);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (devnull >= 0)
			dup2(devnull, STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		dup2(err[1], STDERR_FILENO);
		setenv("FQ_LAUNCH_SESSION", l->session, 1);
		setenv("FQ_LAUNCH_RUN_DIR", l->run_dir, 1);
		setenv("FQ_LAUNCH_ID", p->id, 1);
		/* The devices' --session (shmem segments are labelled with it). */
		setenv("FQ_DEVICE_SESSION", l->session, 1);
		for (size_t i = 0; i < l->nenv; i++)
			putenv(l->env[i]);
		for (size_t i = 0; i < p->nenv; i++)
			putenv(p->env[i]);
		execv(p->path, p->argv);
		fprintf(stderr, "fq-launch: %s: %s\n", p->path, strerror(errno));
		_exit(127);
	}
	setpgid(p->pid, p->pid); /* also here: no race with an early signal */
	close(out[1]);
	close(err[1]);
	p->out = (stream){.fd = out[0], .to = stdout, .buf = xmalloc(LINE_MAX_BYTES)};
	p->err = (stream){.fd = err[0], .to = stderr, .buf = xmalloc(LINE_MAX_BYTES)};
	p->state = PROC_RUNNING;
	return 0;
}

static void emit(launch *l, proc *p, stream *s, const char *line, size_t n)
{
	fprintf(s->to, "%-*s | %.*s\n", l->id_width, p->id, (int)n, line);
	fflush(s->to);
}

/* Read what is there; print complete lines (and overlong or final pieces) with the id. */
static void drain(launch *l, proc *p, stream *s)
{
	ssize_t n = read(s->fd, s->buf + s->len, LINE_MAX_BYTES - s->len);
	size_t start = 0;

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		if (s->len > 0)
			emit(l, p, s, s->buf, s->len);
		close(s->fd);
		s->fd = -1;
		s->len = 0;
		return;
	}
	s->len += (size_t)n;
	for (size_t i = 0; i < s->len; i++) {
		if (s->buf[i] == '\n') {
			emit(l, p, s, s->buf + start, i - start);
			start = i + 1;
		}
	}
	memmove(s->buf, s->buf + start, s->len - start);
	s->len -= start;
	if (s->len == LINE_MAX_BYTES) {
		emit(l, p, s, s->buf, s->len);
		s->len = 0;
	}
}

static void signal_all(launch *l, int sig)
{
	for (size_t i = 0; i < l->nprocs; i++) {
		proc *p = &l->procs[i];

		if (p->state != PROC_RUNNING)
			continue;
		/* The process group, so that what a process started goes too. */
		if (kill(-p->pid, sig) != 0)
			kill(p->pid, sig);
		if (sig == SIGKILL)
			p->killed = true;
	}
}

static bool failed(const proc *p)
{
	return p->state != PROC_DONE || !WIFEXITED(p->status) || WEXITSTATUS(p->status) != 0;
}

static void describe(const proc *p, char *buf, size_t len)
{
	if (p->state == PROC_NEW)
		snprintf(buf, len, "not started");
	else if (p->state == PROC_RUNNING)
		snprintf(buf, len, "still running");
	else if (WIFEXITED(p->status))
		snprintf(buf, len, "exit %d%s", WEXITSTATUS(p->status),
		         WEXITSTATUS(p->status) == 127 ? " (could not run the command)" : "");
	else if (WIFSIGNALED(p->status) && p->killed)
		snprintf(buf, len, "killed (SIGKILL) after the grace period");
	else if (WIFSIGNALED(p->status))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(p->status),
		         strsignal(WTERMSIG(p->status)));
	else
		snprintf(buf, len, "status %d", p->status);
}

/* Reap what has exited; returns how many are still running. */
static size_t reap(launch *l, bool *a_failure)
{
	size_t running = 0;

	for (size_t i = 0; i < l->nprocs; i++) {
		proc *p = &l->procs[i];
		int status;
		pid_t r;

		if (p->state != PROC_RUNNING)
			continue;
		r = waitpid(p->pid, &status, WNOHANG);
		if (r == p->pid) {
			char what[128];

			p->status = status;
			p->state = PROC_DONE;
			describe(p, what, sizeof(what));
			fprintf(stderr, "fq-launch: %s (pid %ld): %s\n", p->id, (long)p->pid, what);
			if (failed(p))
				*a_failure = true;
		} else {
			running++;
		}
	}
	return running;
}

static int run(launch *l)
{
	int sp[2];
	struct sigaction sa = {.sa_handler = on_signal};
	int64_t start = now_ms(), stop_at = -1, kill_at = -1, end_output_at = -1;
	bool stopping = false, a_failure = false;
	struct pollfd *fds = xmalloc((2 * l->nprocs + 1) * sizeof(*fds));
	proc **fd_proc = xmalloc(2 * l->nprocs * sizeof(*fd_proc));
	stream **fd_stream = xmalloc(2 * l->nprocs * sizeof(*fd_stream));
	size_t running = 0;

	if (pipe2(sp, O_CLOEXEC | O_NONBLOCK) != 0) {
		perror("fq-launch: pipe");
		return EXIT_USAGE;
	}
	sig_pipe_w = sp[1];
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	fprintf(stderr, "fq-launch: session %s, run folder %s\n", l->session, l->run_dir);
	for (size_t i = 0; i < l->nprocs; i++) {
		if (start_process(l, &l->procs[i]) != 0) {
			fprintf(stderr, "fq-launch: %s: cannot start: %s\n", l->procs[i].id,
			        strerror(errno));
			a_failure = true;
			break;
		}
		running++;
		fprintf(stderr, "fq-launch: started %s (pid %ld)\n", l->procs[i].id,
		        (long)l->procs[i].pid);
	}
	if (a_failure) {
		stopping = true;
		signal_all(l, SIGTERM);
		kill_at = now_ms() + (int64_t)(l->grace_s * 1000);
	} else if (l->duration_s > 0) {
		stop_at = start + (int64_t)(l->duration_s * 1000);
	}

	for (;;) {
		size_t nfds = 0;
		int64_t now = now_ms(), deadline = -1;
		int timeout;

		fds[nfds++] = (struct pollfd){.fd = sp[0], .events = POLLIN};
		for (size_t i = 0; i < l->nprocs; i++) {
			stream *ss[2] = {&l->procs[i].out, &l->procs[i].err};

			for (int k = 0; k < 2; k++) {
				if (ss[k]->fd < 0)
					continue;
				fd_proc[nfds - 1] = &l->procs[i];
				fd_stream[nfds - 1] = ss[k];
				fds[nfds++] = (struct pollfd){.fd = ss[k]->fd, .events = POLLIN};
			}
		}
		if (running == 0 && (nfds == 1 || (end_output_at >= 0 && now >= end_output_at)))
			break;
		if (!stopping && stop_at >= 0 && now >= stop_at) {
			fprintf(stderr, "fq-launch: %.1f s are up: stopping every process\n",
			        l->duration_s);
			stopping = true;
			signal_all(l, SIGTERM);
			kill_at = now + (int64_t)(l->grace_s * 1000);
		}
		if (stopping && kill_at >= 0 && now >= kill_at && running > 0) {
			fprintf(stderr, "fq-launch: grace period over: killing what still runs\n");
			signal_all(l, SIGKILL);
			kill_at = -1;
		}
		deadline = stopping ? kill_at : stop_at;
		if (running == 0)
			deadline = end_output_at;
		timeout = deadline < 0 ? -1 : (int)(deadline > now ? deadline - now : 0);
		if (poll(fds, nfds, timeout) < 0 && errno != EINTR) {
			perror("fq-launch: poll");
			break;
		}
		if (fds[0].revents & POLLIN) {
			unsigned char sigs[64];
			ssize_t n = read(sp[0], sigs, sizeof(sigs));

			for (ssize_t i = 0; i < n; i++) {
				if (sigs[i] == SIGCHLD)
					continue;
				if (!stopping) {
					fprintf(stderr, "fq-launch: %s: stopping every process\n",
					        strsignal(sigs[i]));
					stopping = true;
					signal_all(l, sigs[i]);
					kill_at = now_ms() + (int64_t)(l->grace_s * 1000);
				} else {
					fprintf(stderr,
					        "fq-launch: %s again: killing every process\n",
					        strsignal(sigs[i]));
					signal_all(l, SIGKILL);
				}
			}
		}
		for (size_t i = 1; i < nfds; i++) {
			if (fds[i].revents & (POLLIN | POLLHUP | POLLERR))
				drain(l, fd_proc[i - 1], fd_stream[i - 1]);
		}
		if (running > 0) {
			bool newly_failed = false;

			running = reap(l, &newly_failed);
			if (newly_failed) {
				a_failure = true;
				if (!stopping && !l->keep_going && running > 0) {
					fprintf(
					    stderr,
					    "fq-launch: a process failed: stopping the others\n");
					stopping = true;
					signal_all(l, SIGTERM);
					kill_at = now_ms() + (int64_t)(l->grace_s * 1000);
				}
			}
			/* Output still buffered in the pipes comes out; pipes a grandchild keeps
			 * open are not waited for beyond a second. */
			if (running == 0)
				end_output_at = now_ms() + 1000;
		}
	}
	sig_pipe_w = -1;
	close(sp[0]);
	close(sp[1]);
	free(fds);
	free(fd_proc);
	free(fd_stream);

	{
		size_t nfailed = 0;

		fprintf(stderr, "fq-launch: after %.1f s:\n", (double)(now_ms() - start) / 1000);
		for (size_t i = 0; i < l->nprocs; i++) {
			char what[128];

			describe(&l->procs[i], what, sizeof(what));
			fprintf(stderr, "  %-*s  %s%s\n", l->id_width, l->procs[i].id,
			        failed(&l->procs[i]) ? "FAILED: " : "ok: ", what);
			nfailed += failed(&l->procs[i]);
		}
		if (nfailed > 0) {
			fprintf(stderr, "fq-launch: %zu of %zu processes failed:", nfailed,
			        l->nprocs);
			for (size_t i = 0; i < l->nprocs; i++) {
				if (failed(&l->procs[i]))
					fprintf(stderr, " %s", l->procs[i].id);
			}
			fputc('\n', stderr);
			return EXIT_FAILED;
		}
		fprintf(stderr, "fq-launch: all %zu processes succeeded\n", l->nprocs);
	}
	return 0;
}

/* Free an array of n malloc'ed strings and the array. */
static void free_strings(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void free_launch(launch *l)
{
	for (size_t i = 0; i < l->nprocs; i++) {
		proc *p = &l->procs[i];

		free_strings(p->argv, p->argc);
		free_strings(p->env, p->nenv);
		free(p->id);
		free(p->path);
		free(p->out.buf);
		free(p->err.buf);
		if (p->out.fd >= 0)
			close(p->out.fd);
		if (p->err.fd >= 0)
			close(p->err.fd);
	}
	free(l->procs);
	free_strings(l->env, l->nenv);
	free_strings(l->bin_dirs, l->nbin_dirs);
	free(l->topology_dir);
	free(l->run_dir);
}

static void add_bin_dirs(launch *l, const char *arg)
{
	char *copy = xstrdup(arg), *save = NULL;

	for (char *d = strtok_r(copy, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
		char **n = realloc(l->bin_dirs, (l->nbin_dirs + 1) * sizeof(*n));

		if (n == NULL)
			die_oom();
		l->bin_dirs = n;
		l->bin_dirs[l->nbin_dirs++] = xstrdup(d);
	}
	free(copy);
}

static bool parse_seconds(const char *text, double *out)
{
	char *end;
	double v = strtod(text, &end);

	if (end == text || *end != '\0' || !(v >= 0) || v > 1e9)
		return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	enum { OPT_VERSION = 256, OPT_KEEP_GOING };
	static const struct option longopts[] = {
	    {"bin-dir", required_argument, NULL, 'b'},
	    {"duration", required_argument, NULL, 'd'},
	    {"grace", required_argument, NULL, 'g'},
	    {"run-dir", required_argument, NULL, 'r'},
	    {"keep", no_argument, NULL, 'k'},
	    {"keep-going", no_argument, NULL, OPT_KEEP_GOING},
	    {"dry-run", no_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, OPT_VERSION},
	    {NULL, 0, NULL, 0},
	};
	launch l = {.duration = -1, .grace = -1};
	char real[PATH_MAX];
	int c, status;

	while ((c = getopt_long(argc, argv, "+b:d:g:r:knh", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			add_bin_dirs(&l, optarg);
			break;
		case 'd':
		case 'g':
			if (!parse_seconds(optarg, c == 'd' ? &l.duration : &l.grace)) {
				fprintf(stderr,
				        "fq-launch: --%s: '%s' is not a number of seconds\n",
				        c == 'd' ? "duration" : "grace", optarg);
				free_launch(&l);
				return EXIT_USAGE;
			}
			break;
		case 'r':
			l.run_parent = optarg;
			break;
		case 'k':
			l.keep = true;
			break;
		case OPT_KEEP_GOING:
			l.keep_going = true;
			break;
		case 'n':
			l.dry_run = true;
			break;
		case 'h':
			usage(stdout);
			free_launch(&l);
			return 0;
		case OPT_VERSION:
			printf("fq-launch (fabriq) %s\n", FQ_VERSION_STRING);
			free_launch(&l);
			return 0;
		default:
			usage(stderr);
			free_launch(&l);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		free_launch(&l);
		return EXIT_USAGE;
	}
	l.topology = argv[optind];
	if (realpath(l.topology, real) == NULL) {
		fprintf(stderr, "fq-launch: %s: %s\n", l.topology, strerror(errno));
		free_launch(&l);
		return EXIT_USAGE;
	}
	*strrchr(real, '/') = '\0';
	l.topology_dir = xstrdup(real[0] != '\0' ? real : "/");
	/* The run folder first: commands may name it. A dry run shows a placeholder. */
	if (l.dry_run) {
		l.run_dir = xstrdup("/tmp/fq-launch-XXXXXX");
		snprintf(l.session, sizeof(l.session), "fqlXXXXXX%ld", (long)getpid());
	} else if (make_run_dir(&l) != 0) {
		free_launch(&l);
		return EXIT_USAGE;
	}
	status = load_topology(&l) == 0 ? 0 : EXIT_USAGE;
	for (size_t i = 0; status == 0 && i < l.nprocs; i++) {
		proc *p = &l.procs[i];

		p->path = find_command(&l, p->argv[0]);
		if (p->path == NULL) {
			fprintf(stderr, "fq-launch: %s: command not found: %s (searched %sPATH)\n",
			        p->id, p->argv[0], l.nbin_dirs > 0 ? "--bin-dir and " : "");
			status = EXIT_USAGE;
		}
	}
	if (status == 0 && l.dry_run) {
		for (size_t i = 0; i < l.nprocs; i++) {
			printf("%s:", l.procs[i].id);
			for (size_t j = 0; j < l.procs[i].nenv; j++)
				printf(" %s", l.procs[i].env[j]);
			printf(" %s", l.procs[i].path);
			for (size_t j = 1; j < l.procs[i].argc; j++)
				printf(" %s", l.procs[i].argv[j]);
			putchar('\n');
		}
	} else if (status == 0) {
		status = write_templates(&l) == 0 ? run(&l) : EXIT_USAGE;
	}
	if (!l.dry_run)
		remove_run_dir(&l);
	free_launch(&l);
	return status;
}
