/*
 * fq-shmmon: what the shmem transport has in shared memory on this machine, and clean-up of
 * what it leaves behind after a crash.
 *
 * The transport keeps no named objects: its segments are memfds ("fabriq-segment",
 * "fabriq-region") passed between processes over Unix sockets. So the monitor finds them the
 * way the kernel shows them: links in /proc/PID/fd and lines in /proc/PID/maps. It opens each
 * segment once through /proc/PID/fd/N (or /proc/PID/map_files), maps it read-only and reads
 * the header the owner keeps for monitors (src/transport/shmem/shm.h): owner, session, size,
 * bytes in use, the pids that mapped it, and the holder word of every block carved so far.
 *
 * Everything is read while the processes run, without any lock: figures are a snapshot that
 * may be a moment old, and a block being carved at that very moment ends the walk early
 * (reported as an incomplete walk). The monitor never writes to a segment.
 *
 * It also lists this user's live tcp:// endpoints of the transport: their data path is an
 * abstract Unix socket "@fabriq-shmem-<uid>-tcp-<port>", found in /proc/net/unix, and the
 * processes holding it are found by the socket's inode among their /proc/PID/fd links.
 *
 * With --cleanup it removes the socket files nobody listens on any more at the ipc paths
 * given with --ipc. That is all the transport can leave behind after a crash: a memfd goes
 * away with the last process that has it open or mapped, and an abstract socket with the
 * last process that has it open.
 *
 * Exit status: 0 success, 1 runtime failure, 2 usage error.
 */
#include "transport/shmem/shm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../common/tool_common.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE   2

#define SESSION_LEN sizeof(((shm_seg_hdr *)0)->session)

enum { OPT_VERSION = 256, OPT_SESSION, OPT_PID, OPT_WATCH, OPT_CLEANUP, OPT_IPC };

static const struct option long_options[] = {
    {"json", no_argument, NULL, 'j'},
    {"session", required_argument, NULL, OPT_SESSION},
    {"pid", required_argument, NULL, OPT_PID},
    {"watch", required_argument, NULL, OPT_WATCH},
    {"cleanup", no_argument, NULL, OPT_CLEANUP},
    {"ipc", required_argument, NULL, OPT_IPC},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: fq-shmmon [--json] [--session NAME] [--pid PID] [--watch SECONDS]\n"
	        "       fq-shmmon --cleanup [--ipc PATH]... [--json]\n"
	        "\n"
	        "Show the shared-memory segments of the shmem transport: per session and owner,\n"
	        "each segment with its users and the bytes held by each process; then this\n"
	        "user's live tcp:// endpoints of the transport and the processes holding them.\n"
	        "\n"
	        "  -j, --json            print JSON instead of text\n"
	        "      --session NAME    only segments of session NAME (and no endpoints)\n"
	        "      --pid PID         only segments that PID owns, uses or holds blocks of,\n"
	        "                        and endpoints that PID holds\n"
	        "      --watch SECONDS   show again every SECONDS (fractions allowed) until\n"
	        "                        interrupted\n"
	        "      --cleanup         remove the socket file at each --ipc PATH if nobody\n"
	        "                        listens on it\n"
	        "      --ipc PATH        with --cleanup: an ipc path to look at (ipc:// allowed;\n"
	        "                        repeatable)\n"
	        "  -h, --help            show this help and exit\n"
	        "      --version         show the version and exit\n"
	        "\n"
	        "After a crash the transport leaves nothing behind but the socket files of the\n"
	        "ipc:// paths it was bound to: memfd segments go away with their last holder,\n"
	        "and tcp:// endpoints are abstract sockets, which go away with their process.\n"
	        "\n"
	        "Exit status: 0 success, 1 runtime failure, 2 usage error.\n");
}

/* Room for element n of a growing array: the array (moved perhaps), or NULL when out of memory. */
static void *grow(void *arr, size_t *cap, size_t n, size_t elem)
{
	size_t ncap;
	void *grown;

	if (n < *cap)
		return arr;
	ncap = *cap == 0 ? 8 : *cap * 2;
	grown = realloc(arr, ncap * elem);
	if (grown != NULL)
		*cap = ncap;
	return grown;
}

/* ---- Processes -------------------------------------------------------------------------- */

/* How a process uses a segment. */
enum { USE_TABLE = 1, USE_FD = 2, USE_MAP = 4 };

struct user {
	pid_t pid;
	unsigned how; /* USE_* */
};

struct holder {
	pid_t pid;
	uint64_t blocks, bytes, freeing; /* freeing: blocks it is giving back */
};

struct proc {
	pid_t pid;
	bool alive; /* exists and has not exited (a zombie has: its owner reclaims) */
	char comm[64];
};

/* The pid of a /proc entry name, or 0. */
static pid_t parse_pid(const char *name)
{
	char *end;
	long v;

	if (*name < '1' || *name > '9')
		return 0;
	errno = 0;
	v = strtol(name, &end, 10);
	if (*end != '\0' || errno != 0 || v <= 0 || v > INT_MAX)
		return 0;
	return (pid_t)v;
}

/* Read a small /proc file into buf (NUL-terminated); false if it cannot be read. */
static bool read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return false;
	buf[n] = '\0';
	return true;
}

static void proc_load(struct proc *p, pid_t pid)
{
	char path[64], stat[512];
	const char *paren;
	size_t len;

	p->pid = pid;
	p->alive = false;
	p->comm[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!read_small(path, stat, sizeof(stat)))
		return;
	/* "pid (comm) S ...": the state follows the last ')' (comm may hold anything). */
	paren = strrchr(stat, ')');
	p->alive = paren != NULL && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X' &&
	           paren[2] != 'x';
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	if (read_small(path, p->comm, sizeof(p->comm))) {
		len = strlen(p->comm);
		if (len > 0 && p->comm[len - 1] == '\n')
			p->comm[len - 1] = '\0';
	}
}

/* ---- Segments --------------------------------------------------------------------------- */

struct segment {
	dev_t dev;
	ino_t ino;
	char session[SESSION_LEN + 1];
	uint64_t owner_id;
	pid_t owner_pid;
	uint32_t idx, kind, align;
	bool dedicated;
	bool complete; /* the block walk reached the carve mark */
	uint64_t size, used_bytes, blocks_out, carved;
	struct user *users;
	size_t n_users, cap_users;
	struct holder *holders;
	size_t n_holders, cap_holders;
};

/* An inode seen in some process: the segment it is, or -1 (not a readable fabriq segment). */
struct inode {
	dev_t dev;
	ino_t ino;
	long seg;
};

/* A mapping of a fabriq memfd seen in /proc/PID/maps, resolved once all fds are known. */
struct mapping {
	pid_t pid;
	dev_t dev;
	ino_t ino;
};

/*
 * A live tcp:// endpoint of this user: the listening abstract Unix socket that carries its
 * data path, and the processes that have it open (none found: they are not ours to see).
 */
struct endpoint {
	unsigned long inode;
	unsigned port;
	char name[64];
	pid_t *pids;
	size_t n_pids, cap_pids;
};

struct scan {
	struct segment *segs;
	size_t n_segs, cap_segs;
	struct endpoint *endpoints;
	size_t n_endpoints, cap_endpoints;
	struct inode *inodes;
	size_t n_inodes, cap_inodes;
	struct mapping *maps;
	size_t n_maps, cap_maps;
	struct proc *procs;
	size_t n_procs, cap_procs;
	unsigned skipped; /* segments of another layout version */
	bool oom;
};

static void scan_free(struct scan *s)
{
	for (size_t i = 0; i < s->n_segs; i++) {
		free(s->segs[i].users);
		free(s->segs[i].holders);
	}
	free(s->segs);
	for (size_t i = 0; i < s->n_endpoints; i++)
		free(s->endpoints[i].pids);
	free(s->endpoints);
	free(s->inodes);
	free(s->maps);
	free(s->procs);
	memset(s, 0, sizeof(*s));
}

/* What we know of `pid` (looked up once per scan). */
static const struct proc *proc_of(struct scan *s, pid_t pid)
{
	static struct proc fallback;
	struct proc *grown;

	for (size_t i = 0; i < s->n_procs; i++) {
		if (s->procs[i].pid == pid)
			return &s->procs[i];
	}
	grown = grow(s->procs, &s->cap_procs, s->n_procs, sizeof(*s->procs));
	if (grown == NULL) {
		s->oom = true;
		proc_load(&fallback, pid);
		return &fallback;
	}
	s->procs = grown;
	proc_load(&s->procs[s->n_procs], pid);
	return &s->procs[s->n_procs++];
}

static void user_add(struct scan *s, struct segment *sg, pid_t pid, unsigned how)
{
	struct user *grown;

	for (size_t i = 0; i < sg->n_users; i++) {
		if (sg->users[i].pid == pid) {
			sg->users[i].how |= how;
			return;
		}
	}
	grown = grow(sg->users, &sg->cap_users, sg->n_users, sizeof(*sg->users));
	if (grown == NULL) {
		s->oom = true;
		return;
	}
	sg->users = grown;
	sg->users[sg->n_users++] = (struct user){pid, how};
}

static void holder_add(struct scan *s, struct segment *sg, pid_t pid, uint64_t bytes, bool freeing)
{
	struct holder *h = NULL;

	for (size_t i = 0; i < sg->n_holders && h == NULL; i++) {
		if (sg->holders[i].pid == pid)
			h = &sg->holders[i];
	}
	if (h == NULL) {
		struct holder *grown =
		    grow(sg->holders, &sg->cap_holders, sg->n_holders, sizeof(*sg->holders));

		if (grown == NULL) {
			s->oom = true;
			return;
		}
		sg->holders = grown;
		h = &sg->holders[sg->n_holders++];
		*h = (struct holder){.pid = pid};
	}
	h->blocks++;
	h->bytes += bytes;
	if (freeing)
		h->freeing++;
}

static bool valid_align(uint32_t align)
{
	return align >= SHM_CACHE_LINE && align <= 4096 && (align & (align - 1)) == 0;
}

/*
 * Walk the blocks carved so far and count, per holder pid, the blocks held or being given
 * back and the data capacity of those that are data blocks. The owner carves under its own
 * lock and publishes the carve mark before it writes the new block's header, so a header
 * without its magic (or with a class that makes no sense) ends the walk.
 */
static void walk_blocks(struct scan *s, struct segment *sg, const unsigned char *base,
                        size_t mapped, uint64_t first_off, uint64_t bump)
{
	uint64_t off = first_off;

	sg->complete = true;
	if (sg->kind != SHM_SEG_POOL)
		return; /* a region is user memory: its messages are blocks in pool segments */
	if (sg->dedicated && sg->blocks_out == 0)
		return; /* its one block is back (and its pages with it: do not touch them) */
	if (!valid_align(sg->align) || first_off < SHM_HDR_BYTES || bump > mapped ||
	    first_off > bump) {
		sg->complete = false;
		return;
	}
	while (off + SHM_BLK_HDR <= bump) {
		const shm_blk *b = (const shm_blk *)(base + off);
		uint64_t w = atomic_load_explicit(&b->word, memory_order_acquire);
		uint32_t state = SHM_WORD_STATE(w);
		uint64_t step;

		if (b->magic != SHM_BLK_MAGIC) {
			sg->complete = false;
			return;
		}
		if (sg->dedicated) {
			step = bump - off; /* one block: the rest of the segment */
		} else if (b->cls == 0 || b->cls >= SHM_CLASSES) {
			sg->complete = false;
			return;
		} else {
			step = shm_block_bytes(sg->align, b->cls);
		}
		if (state == SHM_HELD || state == SHM_FREEING)
			holder_add(s, sg, SHM_WORD_PID(w), b->kind == SHM_BLK_DATA ? b->a : 0,
			           state == SHM_FREEING);
		off += step;
	}
}

/* Read the header and blocks of a memfd; false if it is not a fabriq segment. */
static bool segment_read(struct scan *s, int fd, const struct stat *st, struct segment *sg)
{
	size_t mapped = (size_t)st->st_size;
	const shm_seg_hdr *h;
	uint64_t first_off, bump;
	void *base;

	if (!S_ISREG(st->st_mode) || st->st_size < (off_t)SHM_HDR_BYTES)
		return false;
	base = mmap(NULL, mapped, PROT_READ, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return false;
	h = base;
	if (h->magic != SHM_SEG_MAGIC || (h->kind != SHM_SEG_POOL && h->kind != SHM_SEG_REGION)) {
		munmap(base, mapped);
		return false;
	}
	if (h->version != SHM_VERSION) {
		s->skipped++;
		munmap(base, mapped);
		return false;
	}
	memset(sg, 0, sizeof(*sg));
	sg->dev = st->st_dev;
	sg->ino = st->st_ino;
	memcpy(sg->session, h->session, SESSION_LEN);
	sg->session[SESSION_LEN] = '\0';
	sg->owner_id = h->owner_id;
	sg->owner_pid = (pid_t)h->owner_pid;
	sg->idx = h->idx;
	sg->kind = h->kind;
	sg->align = h->align;
	sg->dedicated = h->dedicated != 0;
	sg->size = h->size;
	sg->used_bytes = atomic_load_explicit(&h->used_bytes, memory_order_relaxed);
	sg->blocks_out = atomic_load_explicit(&h->blocks_out, memory_order_relaxed);
	first_off = h->first_off;
	bump = atomic_load_explicit(&h->bump, memory_order_acquire);
	sg->carved = bump > first_off ? bump - first_off : 0;
	for (unsigned i = 0; i < SHM_USERS; i++) {
		uint64_t v = atomic_load_explicit(&h->users[i], memory_order_relaxed);

		if (v != 0)
			user_add(s, sg, (pid_t)(uint32_t)v, USE_TABLE);
	}
	walk_blocks(s, sg, base, mapped, first_off, bump);
	munmap(base, mapped);
	return true;
}

static struct inode *inode_find(struct scan *s, dev_t dev, ino_t ino)
{
	for (size_t i = 0; i < s->n_inodes; i++) {
		if (s->inodes[i].dev == dev && s->inodes[i].ino == ino)
			return &s->inodes[i];
	}
	return NULL;
}

/* Fold a second copy of a segment's identity (another inode) into the first. */
static void segment_merge(struct scan *s, struct segment *into, struct segment *from)
{
	for (size_t i = 0; i < from->n_users; i++)
		user_add(s, into, from->users[i].pid, from->users[i].how);
	for (size_t i = 0; i < from->n_holders; i++) {
		const struct holder *h = &from->holders[i];
		struct holder *t = NULL;

		for (size_t j = 0; j < into->n_holders && t == NULL; j++) {
			if (into->holders[j].pid == h->pid)
				t = &into->holders[j];
		}
		if (t == NULL) {
			struct holder *grown = grow(into->holders, &into->cap_holders,
			                            into->n_holders, sizeof(*into->holders));

			if (grown == NULL) {
				s->oom = true;
				break;
			}
			into->holders = grown;
			t = &into->holders[into->n_holders++];
			*t = (struct holder){.pid = h->pid};
		}
		t->blocks += h->blocks;
		t->bytes += h->bytes;
		t->freeing += h->freeing;
	}
	into->complete = into->complete && from->complete;
	free(from->users);
	free(from->holders);
}

/*
 * The segment behind `path` (a /proc link to a memfd whose stat is *st), read on first sight
 * of its inode; NULL if it is not one (or not now). Segments are known by (owner, index): a
 * second inode with the same identity is folded into the first.
 */
static struct segment *segment_at(struct scan *s, const char *path, const struct stat *st)
{
	struct inode *known = inode_find(s, st->st_dev, st->st_ino);
	struct segment sg, *grown_segs;
	struct inode *grown_inodes;
	struct stat fst;
	long idx = -1;
	bool is_seg;
	int fd;

	if (known != NULL)
		return known->seg < 0 ? NULL : &s->segs[known->seg];
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL; /* gone, or not ours to read: perhaps another process lets us */
	if (fstat(fd, &fst) != 0 || fst.st_dev != st->st_dev || fst.st_ino != st->st_ino) {
		close(fd); /* the fd number was reused meanwhile: not the file we looked at */
		return NULL;
	}
	is_seg = segment_read(s, fd, &fst, &sg);
	close(fd);
	if (is_seg) {
		for (size_t i = 0; i < s->n_segs && idx < 0; i++) {
			if (s->segs[i].owner_id == sg.owner_id && s->segs[i].idx == sg.idx)
				idx = (long)i;
		}
		if (idx >= 0) {
			segment_merge(s, &s->segs[idx], &sg);
		} else {
			grown_segs = grow(s->segs, &s->cap_segs, s->n_segs, sizeof(*s->segs));
			if (grown_segs == NULL) {
				s->oom = true;
				free(sg.users);
				free(sg.holders);
				return NULL;
			}
			s->segs = grown_segs;
			idx = (long)s->n_segs;
			s->segs[s->n_segs++] = sg;
		}
	}
	grown_inodes = grow(s->inodes, &s->cap_inodes, s->n_inodes, sizeof(*s->inodes));
	if (grown_inodes == NULL) {
		s->oom = true;
	} else {
		s->inodes = grown_inodes;
		s->inodes[s->n_inodes++] = (struct inode){st->st_dev, st->st_ino, idx};
	}
	return idx < 0 ? NULL : &s->segs[idx];
}

/* "/memfd:fabriq-segment (deleted)" and the like: a memfd of the shmem transport's memory. */
static bool is_segment_name(const char *name)
{
	static const char *const names[] = {"/memfd:fabriq-segment", "/memfd:fabriq-region"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t len = strlen(names[i]);

		if (strncmp(name, names[i], len) == 0 &&
		    (name[len] == '\0' || strcmp(name + len, " (deleted)") == 0))
			return true;
	}
	return false;
}

/* ---- Endpoints -------------------------------------------------------------------------- */

/* __SO_ACCEPTCON in the Flags column of /proc/net/unix: the socket listens. */
#define UNIX_LISTENING 0x10000UL

/*
 * The listening sockets named "@fabriq-shmem-<uid>-tcp-<port>" (as the transport names the
 * data path of a tcp:// endpoint, uid being ours) in /proc/net/unix. The sockets accepted
 * from a listener carry its name too; they do not listen. Unreadable: no endpoints.
 */
static void load_endpoints(struct scan *s)
{
	char prefix[48], *line = NULL;
	size_t cap = 0, plen;
	FILE *f = fopen("/proc/net/unix", "re");

	if (f == NULL)
		return;
	plen =
	    (size_t)snprintf(prefix, sizeof(prefix), "@fabriq-shmem-%u-tcp-", (unsigned)geteuid());
	while (getline(&line, &cap, f) > 0) {
		unsigned long flags, type, inode, port;
		struct endpoint *grown;
		int name_at = 0;
		char *name, *nl, *end;
		bool known = false;

		/* Num RefCount Protocol Flags Type St Inode Path (the header line does not parse) */
		if (sscanf(line, "%*s %*s %*s %lx %lx %*x %lu %n", &flags, &type, &inode,
		           &name_at) != 3 ||
		    name_at == 0)
			continue;
		name = line + name_at;
		nl = strchr(name, '\n');
		if (nl != NULL)
			*nl = '\0';
		if (!(flags & UNIX_LISTENING) || type != SOCK_SEQPACKET ||
		    strncmp(name, prefix, plen) != 0 || name[plen] < '1' || name[plen] > '9' ||
		    strlen(name) >= sizeof(s->endpoints->name))
			continue;
		errno = 0;
		port = strtoul(name + plen, &end, 10);
		if (*end != '\0' || errno != 0 || port > 65535)
			continue;
		for (size_t i = 0; i < s->n_endpoints && !known; i++)
			known = s->endpoints[i].inode == inode;
		if (known)
			continue;
		grown =
		    grow(s->endpoints, &s->cap_endpoints, s->n_endpoints, sizeof(*s->endpoints));
		if (grown == NULL) {
			s->oom = true;
			break;
		}
		s->endpoints = grown;
		s->endpoints[s->n_endpoints] =
		    (struct endpoint){.inode = inode, .port = (unsigned)port};
		strcpy(s->endpoints[s->n_endpoints].name, name);
		s->n_endpoints++;
	}
	free(line);
	fclose(f);
}

/* `link` is an fd link of `pid`: if it is the socket of an endpoint, `pid` holds that one. */
static void endpoint_fd(struct scan *s, pid_t pid, const char *link)
{
	unsigned long inode;
	char *end;

	if (s->n_endpoints == 0 || strncmp(link, "socket:[", 8) != 0)
		return;
	errno = 0;
	inode = strtoul(link + 8, &end, 10);
	if (end == link + 8 || strcmp(end, "]") != 0 || errno != 0)
		return;
	for (size_t i = 0; i < s->n_endpoints; i++) {
		struct endpoint *e = &s->endpoints[i];
		pid_t *grown;
		bool known = false;

		if (e->inode != inode)
			continue;
		for (size_t j = 0; j < e->n_pids && !known; j++)
			known = e->pids[j] == pid;
		if (known)
			return;
		grown = grow(e->pids, &e->cap_pids, e->n_pids, sizeof(*e->pids));
		if (grown == NULL) {
			s->oom = true;
			return;
		}
		e->pids = grown;
		e->pids[e->n_pids++] = pid;
		return;
	}
}

/* ---- Scanning processes ----------------------------------------------------------------- */

/*
 * The segments `pid` has open, and the endpoints it holds; a process we may not look into
 * is skipped.
 */
static void scan_fds(struct scan *s, pid_t pid)
{
	char dir[64], path[PATH_MAX], link[PATH_MAX];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		struct segment *sg;
		struct stat st;
		ssize_t n;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n < 0)
			continue;
		link[n] = '\0';
		endpoint_fd(s, pid, link);
		if (!is_segment_name(link) || stat(path, &st) != 0)
			continue;
		sg = segment_at(s, path, &st);
		if (sg != NULL)
			user_add(s, sg, pid, USE_FD);
	}
	closedir(d);
}

/*
 * The segments `pid` has mapped, from /proc/PID/maps. A segment nobody has open any more is
 * read through /proc/PID/map_files if the kernel lets us; the others are matched by inode
 * once every process has been scanned.
 */
static void scan_maps(struct scan *s, pid_t pid)
{
	char path[64], *line = NULL;
	struct mapping *grown;
	size_t cap = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return;
	while (getline(&line, &cap, f) > 0) {
		unsigned long start, end, inode;
		unsigned maj, min;
		int name_at = 0;
		char *name, *nl;

		if (strstr(line, "/memfd:fabriq-") == NULL)
			continue;
		if (sscanf(line, "%lx-%lx %*s %*x %x:%x %lu %n", &start, &end, &maj, &min, &inode,
		           &name_at) < 5 ||
		    name_at == 0)
			continue;
		name = line + name_at;
		nl = strchr(name, '\n');
		if (nl != NULL)
			*nl = '\0';
		if (!is_segment_name(name))
			continue;
		if (inode_find(s, makedev(maj, min), (ino_t)inode) == NULL) {
			char files[96];
			struct stat st;

			snprintf(files, sizeof(files), "/proc/%d/map_files/%lx-%lx", (int)pid,
			         start, end);
			if (stat(files, &st) == 0 && st.st_ino == (ino_t)inode)
				segment_at(s, files, &st);
		}
		grown = grow(s->maps, &s->cap_maps, s->n_maps, sizeof(*s->maps));
		if (grown == NULL) {
			s->oom = true;
			break;
		}
		s->maps = grown;
		s->maps[s->n_maps++] = (struct mapping){pid, makedev(maj, min), (ino_t)inode};
	}
	free(line);
	fclose(f);
}

/* Every process we may look into; false if /proc cannot be read at all. */
static bool scan_all(struct scan *s)
{
	pid_t self = getpid();
	struct dirent *de;
	DIR *proc = opendir("/proc");

	if (proc == NULL) {
		fprintf(stderr, "fq-shmmon: /proc: %s\n", strerror(errno));
		return false;
	}
	load_endpoints(s);
	while ((de = readdir(proc)) != NULL) {
		pid_t pid = parse_pid(de->d_name);

		if (pid == 0 || pid == self)
			continue;
		scan_fds(s, pid);
		scan_maps(s, pid);
	}
	closedir(proc);
	for (size_t i = 0; i < s->n_maps; i++) {
		struct inode *in = inode_find(s, s->maps[i].dev, s->maps[i].ino);

		if (in != NULL && in->seg >= 0)
			user_add(s, &s->segs[in->seg], s->maps[i].pid, USE_MAP);
	}
	return true;
}

/* ---- Output ----------------------------------------------------------------------------- */

struct filter {
	const char *session; /* NULL: all */
	pid_t pid;           /* 0: all */
};

static bool segment_involves(const struct segment *sg, pid_t pid)
{
	if (sg->owner_pid == pid)
		return true;
	for (size_t i = 0; i < sg->n_users; i++) {
		if (sg->users[i].pid == pid)
			return true;
	}
	for (size_t i = 0; i < sg->n_holders; i++) {
		if (sg->holders[i].pid == pid)
			return true;
	}
	return false;
}

static bool segment_wanted(const struct segment *sg, const struct filter *f)
{
	if (f->session != NULL && strcmp(sg->session, f->session) != 0)
		return false;
	return f->pid == 0 || segment_involves(sg, f->pid);
}

/* Endpoints carry no session label: --session shows none. */
static bool endpoint_wanted(const struct endpoint *e, const struct filter *f)
{
	if (f->session != NULL)
		return false;
	for (size_t i = 0; i < e->n_pids && f->pid != 0; i++) {
		if (e->pids[i] == f->pid)
			return true;
	}
	return f->pid == 0;
}

/* Sort order: session, owner pid, owner id, index. */
static int segment_cmp(const void *pa, const void *pb)
{
	const struct segment *a = *(const struct segment *const *)pa;
	const struct segment *b = *(const struct segment *const *)pb;
	int c = strcmp(a->session, b->session);

	if (c != 0)
		return c;
	if (a->owner_pid != b->owner_pid)
		return a->owner_pid < b->owner_pid ? -1 : 1;
	if (a->owner_id != b->owner_id)
		return a->owner_id < b->owner_id ? -1 : 1;
	if (a->idx != b->idx)
		return a->idx < b->idx ? -1 : 1;
	return 0;
}

static int endpoint_cmp(const void *pa, const void *pb)
{
	const struct endpoint *a = *(const struct endpoint *const *)pa;
	const struct endpoint *b = *(const struct endpoint *const *)pb;

	if (a->port != b->port)
		return a->port < b->port ? -1 : 1;
	return (a->inode > b->inode) - (a->inode < b->inode);
}

static int pid_cmp(const void *pa, const void *pb)
{
	pid_t a = *(const pid_t *)pa, b = *(const pid_t *)pb;

	return (a > b) - (a < b);
}

static int user_cmp(const void *pa, const void *pb)
{
	const struct user *a = pa, *b = pb;

	return (a->pid > b->pid) - (a->pid < b->pid);
}

static int holder_cmp(const void *pa, const void *pb)
{
	const struct holder *a = pa, *b = pb;

	return (a->pid > b->pid) - (a->pid < b->pid);
}

static const char *kind_name(const struct segment *sg)
{
	if (sg->kind == SHM_SEG_REGION)
		return "region";
	return sg->dedicated ? "dedicated" : "pool";
}

static bool same_owner(const struct segment *a, const struct segment *b)
{
	return strcmp(a->session, b->session) == 0 && a->owner_pid == b->owner_pid &&
	       a->owner_id == b->owner_id;
}

/* "fq-cat" or "dead": how a pid is shown in text. */
static void text_pid(struct scan *s, pid_t pid)
{
	const struct proc *p = proc_of(s, pid);

	if (!p->alive)
		printf("%d dead", (int)pid);
	else
		printf("%d %s", (int)pid, p->comm[0] != '\0' ? p->comm : "?");
}

static void json_pid(struct scan *s, pid_t pid)
{
	const struct proc *p = proc_of(s, pid);

	printf("\"pid\": %d, \"comm\": ", (int)pid);
	json_string(stdout, p->comm[0] != '\0' ? p->comm : NULL);
	printf(", \"alive\": %s", p->alive ? "true" : "false");
}

static void text_segment(struct scan *s, const struct segment *sg)
{
	printf("    segment %" PRIu32 ": %s, %" PRIu64 " bytes, %" PRIu64 " used, %" PRIu64
	       " block%s out, %" PRIu64 " carved%s\n",
	       sg->idx, kind_name(sg), sg->size, sg->used_bytes, sg->blocks_out,
	       sg->blocks_out == 1 ? "" : "s", sg->carved,
	       sg->complete ? "" : " (walk incomplete: being carved)");
	for (size_t i = 0; i < sg->n_users; i++) {
		const struct user *u = &sg->users[i];
		const char *sep = "";

		printf("      user ");
		text_pid(s, u->pid);
		printf(":");
		if (u->how & USE_TABLE) {
			printf("%s registered", sep);
			sep = ",";
		}
		if (u->how & USE_FD) {
			printf("%s fd", sep);
			sep = ",";
		}
		if (u->how & USE_MAP)
			printf("%s mapped", sep);
		printf("\n");
	}
	for (size_t i = 0; i < sg->n_holders; i++) {
		const struct holder *h = &sg->holders[i];

		printf("      holder ");
		text_pid(s, h->pid);
		printf(": %" PRIu64 " block%s, %" PRIu64 " bytes", h->blocks,
		       h->blocks == 1 ? "" : "s", h->bytes);
		if (h->freeing != 0)
			printf(" (%" PRIu64 " being given back)", h->freeing);
		printf("\n");
	}
}

static void json_segment(struct scan *s, const struct segment *sg)
{
	printf("{\"index\": %" PRIu32 ", \"kind\": \"%s\", \"size\": %" PRIu64
	       ", \"align\": %" PRIu32 ", \"used_bytes\": %" PRIu64 ", \"blocks_out\": %" PRIu64
	       ", \"carved_bytes\": %" PRIu64 ", \"complete\": %s,\n",
	       sg->idx, kind_name(sg), sg->size, sg->align, sg->used_bytes, sg->blocks_out,
	       sg->carved, sg->complete ? "true" : "false");
	printf("           \"users\": [");
	for (size_t i = 0; i < sg->n_users; i++) {
		const struct user *u = &sg->users[i];

		printf("%s{", i == 0 ? "" : ", ");
		json_pid(s, u->pid);
		printf(", \"registered\": %s, \"fd\": %s, \"mapped\": %s}",
		       u->how & USE_TABLE ? "true" : "false", u->how & USE_FD ? "true" : "false",
		       u->how & USE_MAP ? "true" : "false");
	}
	printf("],\n           \"holders\": [");
	for (size_t i = 0; i < sg->n_holders; i++) {
		const struct holder *h = &sg->holders[i];

		printf("%s{", i == 0 ? "" : ", ");
		json_pid(s, h->pid);
		printf(", \"blocks\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"freeing\": %" PRIu64
		       "}",
		       h->blocks, h->bytes, h->freeing);
	}
	printf("]}");
}

/* The endpoints in `eps` (sorted): text lines after the segments, or the JSON member. */
static void print_endpoints(struct scan *s, struct endpoint **eps, size_t n, bool json)
{
	if (json)
		printf(",\n  \"endpoints\": [");
	for (size_t i = 0; i < n; i++) {
		const struct endpoint *e = eps[i];

		if (json) {
			printf("%s\n    {\"port\": %u, \"name\": ", i == 0 ? "" : ",", e->port);
			json_string(stdout, e->name);
			printf(", \"processes\": [");
			for (size_t j = 0; j < e->n_pids; j++) {
				printf("%s{", j == 0 ? "" : ", ");
				json_pid(s, e->pids[j]);
				printf("}");
			}
			printf("]}");
		} else {
			printf("endpoint tcp port %u", e->port);
			for (size_t j = 0; j < e->n_pids; j++) {
				printf("%s", j == 0 ? ": " : ", ");
				text_pid(s, e->pids[j]);
			}
			printf("\n");
		}
	}
	if (json)
		printf("%s]", n > 0 ? "\n  " : "");
}

/* One report of the segments in `sel` and the endpoints in `eps` (sorted), text or JSON. */
static void print_report(struct scan *s, struct segment **sel, size_t n, struct endpoint **eps,
                         size_t n_eps, bool json, bool watch)
{
	char when[64] = "";
	time_t now = time(NULL);
	struct tm tm;

	if (localtime_r(&now, &tm) != NULL)
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	if (json) {
		printf("{\n  \"version\": ");
		json_string(stdout, fq_version());
		printf(",\n  \"time\": %lld,\n  \"sessions\": [", (long long)now);
	} else if (watch) {
		printf("fq-shmmon %s\n", when);
	}
	if (!json && n == 0)
		printf("no shmem segments\n");
	for (size_t i = 0; i < n; i++) {
		const struct segment *sg = sel[i];
		bool new_session = i == 0 || strcmp(sel[i - 1]->session, sg->session) != 0;
		bool new_owner = new_session || !same_owner(sel[i - 1], sg);
		bool last_in_owner = i + 1 == n || !same_owner(sel[i + 1], sg);
		bool last_in_session = i + 1 == n || strcmp(sel[i + 1]->session, sg->session) != 0;

		if (json) {
			if (new_session) {
				printf("%s\n    {\"session\": ", i == 0 ? "" : ",");
				json_string(stdout, sg->session);
				printf(", \"owners\": [");
			}
			if (new_owner) {
				printf("%s\n      {", new_session ? "" : ",");
				json_pid(s, sg->owner_pid);
				printf(", \"id\": \"%016" PRIx64 "\", \"segments\": [",
				       sg->owner_id);
			}
			printf("%s\n          ", new_owner ? "" : ",");
			json_segment(s, sg);
			if (last_in_owner)
				printf("\n      ]}");
			if (last_in_session)
				printf("\n    ]}");
		} else {
			if (new_session) {
				printf("session ");
				json_string(stdout, sg->session);
				printf("\n");
			}
			if (new_owner) {
				printf("  owner ");
				text_pid(s, sg->owner_pid);
				printf(", id %016" PRIx64 "\n", sg->owner_id);
			}
			text_segment(s, sg);
		}
	}
	if (json)
		printf("%s]", n > 0 ? "\n  " : "");
	print_endpoints(s, eps, n_eps, json);
	if (json)
		printf("\n}\n");
	if (s->skipped != 0)
		fprintf(stderr,
		        "fq-shmmon: %u segment%s of another layout version (this fq-shmmon reads "
		        "version %u) not shown\n",
		        s->skipped, s->skipped == 1 ? "" : "s", SHM_VERSION);
}

/* One scan and its report. */
static int monitor_once(const struct filter *f, bool json, bool watch)
{
	struct scan s = {0};
	struct segment **sel = NULL;
	struct endpoint **eps = NULL;
	size_t n = 0, n_eps = 0;
	int rc = EXIT_SUCCESS;

	if (!scan_all(&s)) {
		scan_free(&s);
		return EXIT_RUNTIME;
	}
	if (s.n_segs > 0)
		sel = calloc(s.n_segs, sizeof(*sel));
	if (s.n_endpoints > 0)
		eps = calloc(s.n_endpoints, sizeof(*eps));
	if (s.oom || (s.n_segs > 0 && sel == NULL) || (s.n_endpoints > 0 && eps == NULL)) {
		fprintf(stderr, "fq-shmmon: out of memory\n");
		free(sel);
		free(eps);
		scan_free(&s);
		return EXIT_RUNTIME;
	}
	for (size_t i = 0; i < s.n_segs; i++) {
		struct segment *sg = &s.segs[i];

		if (sg->n_users > 1)
			qsort(sg->users, sg->n_users, sizeof(*sg->users), user_cmp);
		if (sg->n_holders > 1)
			qsort(sg->holders, sg->n_holders, sizeof(*sg->holders), holder_cmp);
		if (segment_wanted(sg, f))
			sel[n++] = sg;
	}
	if (n > 1)
		qsort(sel, n, sizeof(*sel), segment_cmp);
	for (size_t i = 0; i < s.n_endpoints; i++) {
		struct endpoint *e = &s.endpoints[i];

		if (e->n_pids > 1)
			qsort(e->pids, e->n_pids, sizeof(*e->pids), pid_cmp);
		if (endpoint_wanted(e, f))
			eps[n_eps++] = e;
	}
	if (n_eps > 1)
		qsort(eps, n_eps, sizeof(*eps), endpoint_cmp);
	print_report(&s, sel, n, eps, n_eps, json, watch);
	if (s.oom) {
		fprintf(stderr, "fq-shmmon: out of memory\n");
		rc = EXIT_RUNTIME;
	}
	if (fflush(stdout) != 0) {
		fprintf(stderr, "fq-shmmon: standard output: %s\n", strerror(errno));
		rc = EXIT_RUNTIME;
	}
	free(sel);
	free(eps);
	scan_free(&s);
	return rc;
}

static int monitor(const struct filter *f, bool json, double watch)
{
	struct timespec pause = {(time_t)watch, (long)((watch - (double)(time_t)watch) * 1e9)};

	for (;;) {
		int rc = monitor_once(f, json, watch > 0);

		if (rc != EXIT_SUCCESS || watch <= 0)
			return rc;
		if (!json)
			printf("\n");
		nanosleep(&pause, NULL);
	}
}

/* ---- Clean-up --------------------------------------------------------------------------- */

enum probe { PROBE_STALE, PROBE_IN_USE, PROBE_GONE, PROBE_ERROR };

/*
 * Does a socket of this network namespace carry the name `path` (/proc/net/unix)? A process
 * that has bound the path but not yet called listen() refuses connections too; its socket is
 * listed, a stale file's is not. A socket bound to a relative name is taken to be this one
 * when the last components agree (keeping a stale file is the safe mistake). Unknown (the
 * file cannot be read): false, and the refused connection decides.
 */
static bool bound_somewhere(const char *path)
{
	const char *base = strrchr(path, '/');
	char *line = NULL;
	size_t cap = 0;
	bool found = false;
	FILE *f = fopen("/proc/net/unix", "re");

	if (f == NULL)
		return false;
	base = base != NULL ? base + 1 : path;
	while (!found && getline(&line, &cap, f) > 0) {
		int name_at = 0;
		char *name, *nl;
		size_t len, blen = strlen(base);

		/* Num RefCount Protocol Flags Type St Inode Path */
		if (sscanf(line, "%*s %*s %*s %*s %*s %*s %*s %n", &name_at) != 0 || name_at == 0)
			continue;
		name = line + name_at;
		nl = strchr(name, '\n');
		if (nl != NULL)
			*nl = '\0';
		len = strlen(name);
		if (strcmp(name, path) == 0)
			found = true;
		else if (name[0] != '/' && name[0] != '@' && len >= blen &&
		         strcmp(name + len - blen, base) == 0 &&
		         (len == blen || name[len - blen - 1] == '/'))
			found = true;
	}
	free(line);
	fclose(f);
	return found;
}

/*
 * Is somebody listening at `path`? A connect that is refused means the file outlived its
 * listener (the library probes the same way before it takes over a stale path), unless a
 * live socket is bound to it and about to listen. The probe does not block: a full backlog
 * counts as in use.
 */
static enum probe probe_socket(const char *path, int *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	enum probe result;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		*err = ENAMETOOLONG;
		return PROBE_ERROR;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err = errno;
		return PROBE_ERROR;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		result = PROBE_IN_USE;
	} else {
		switch (errno) {
		case ECONNREFUSED:
			result = bound_somewhere(path) ? PROBE_IN_USE : PROBE_STALE;
			break;
		case EAGAIN:
		case EINPROGRESS:
		case EPROTOTYPE: /* a listener of another socket type: not ours to remove */
			result = PROBE_IN_USE;
			break;
		case ENOENT:
			result = PROBE_GONE;
			break;
		default:
			*err = errno;
			result = PROBE_ERROR;
		}
	}
	close(fd);
	return result;
}

enum outcome { OUT_REMOVED, OUT_IN_USE, OUT_ERROR };

struct cleanup_report {
	bool json;
	unsigned count[3]; /* by outcome */
};

static void report_path(struct cleanup_report *r, enum outcome what, const char *path,
                        const char *error)
{
	static const char *const text[] = {"removed", "in use", "error"};
	static const char *const json[] = {"removed", "in_use", "error"};
	unsigned seen = r->count[OUT_REMOVED] + r->count[OUT_IN_USE] + r->count[OUT_ERROR];

	if (r->json) {
		printf("%s\n    {\"path\": ", seen == 0 ? "" : ",");
		json_string(stdout, path);
		printf(", \"result\": \"%s\", \"error\": ", json[what]);
		json_string(stdout, error);
		printf("}");
	} else if (what == OUT_ERROR) {
		fprintf(stderr, "fq-shmmon: %s: %s\n", path, error);
	} else {
		printf("%s %s\n", text[what], path);
	}
	r->count[what]++;
}

/*
 * Remove the socket file at `path` if nobody listens on it. Anything but a socket there is
 * left alone and reported; nothing there is fine (as rm -f).
 */
static void clean_path(struct cleanup_report *r, const char *path)
{
	struct stat before, after;
	enum probe p;
	int err = 0;

	if (lstat(path, &before) != 0) {
		if (errno != ENOENT) /* nothing there is what clean-up wants (as rm -f) */
			report_path(r, OUT_ERROR, path, strerror(errno));
		return;
	}
	if (!S_ISSOCK(before.st_mode)) {
		report_path(r, OUT_ERROR, path, "not a socket; left alone");
		return;
	}
	p = probe_socket(path, &err);
	if (p == PROBE_IN_USE) {
		report_path(r, OUT_IN_USE, path, NULL);
		return;
	}
	if (p == PROBE_ERROR) {
		report_path(r, OUT_ERROR, path, strerror(err));
		return;
	}
	if (p == PROBE_GONE)
		return;
	/* Only the file we probed: a listener that took over the path since keeps its own. */
	if (lstat(path, &after) != 0 || after.st_dev != before.st_dev ||
	    after.st_ino != before.st_ino)
		return;
	if (unlink(path) != 0) {
		if (errno != ENOENT)
			report_path(r, OUT_ERROR, path, strerror(errno));
		return;
	}
	report_path(r, OUT_REMOVED, path, NULL);
}

static int cleanup(char **ipc, size_t n_ipc, bool json)
{
	struct cleanup_report r = {.json = json};
	unsigned seen;

	if (json) {
		printf("{\n  \"version\": ");
		json_string(stdout, fq_version());
		printf(",\n  \"paths\": [");
	}
	/* The transport leaves nothing else behind (see the comment at the top). */
	for (size_t i = 0; i < n_ipc; i++) {
		const char *path = ipc[i];

		if (strncmp(path, "ipc://", 6) == 0)
			path += 6;
		clean_path(&r, path);
	}
	seen = r.count[OUT_REMOVED] + r.count[OUT_IN_USE] + r.count[OUT_ERROR];
	if (json)
		printf("%s],\n  \"removed\": %u,\n  \"in_use\": %u,\n  \"errors\": %u\n}\n",
		       seen > 0 ? "\n  " : "", r.count[OUT_REMOVED], r.count[OUT_IN_USE],
		       r.count[OUT_ERROR]);
	else if (seen == 0)
		printf("nothing to clean up\n");
	if (fflush(stdout) != 0) {
		fprintf(stderr, "fq-shmmon: standard output: %s\n", strerror(errno));
		return EXIT_RUNTIME;
	}
	return r.count[OUT_ERROR] == 0 ? EXIT_SUCCESS : EXIT_RUNTIME;
}

/* ---- Main ------------------------------------------------------------------------------- */

static bool parse_seconds(const char *text, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	/* !(v > 0) also rejects NaN; the upper bound keeps the conversion to timespec exact. */
	if (end == text || *end != '\0' || errno == ERANGE || !(v > 0) || v > 1e9)
		return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	struct filter f = {0};
	bool json = false, clean = false, watch_given = false;
	double watch = 0;
	char **ipc;
	size_t n_ipc = 0;
	int c;

	/* Every --ipc consumes an argv element: argc bounds the list. */
	ipc = calloc((size_t)argc, sizeof(*ipc));
	if (ipc == NULL) {
		fprintf(stderr, "fq-shmmon: out of memory\n");
		return EXIT_RUNTIME;
	}
	while ((c = getopt_long(argc, argv, "+jh", long_options, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case OPT_SESSION:
			if (strlen(optarg) >= SESSION_LEN) {
				fprintf(stderr,
				        "fq-shmmon: --session: a session label has at most %zu "
				        "bytes, got '%s'\n",
				        SESSION_LEN - 1, optarg);
				free(ipc);
				return EXIT_USAGE;
			}
			f.session = optarg;
			break;
		case OPT_PID:
			f.pid = parse_pid(optarg);
			if (f.pid == 0) {
				fprintf(stderr,
				        "fq-shmmon: --pid needs a process id > 0, got '%s'\n",
				        optarg);
				free(ipc);
				return EXIT_USAGE;
			}
			break;
		case OPT_WATCH:
			if (!parse_seconds(optarg, &watch)) {
				fprintf(stderr, "fq-shmmon: --watch needs seconds > 0, got '%s'\n",
				        optarg);
				free(ipc);
				return EXIT_USAGE;
			}
			watch_given = true;
			break;
		case OPT_CLEANUP:
			clean = true;
			break;
		case OPT_IPC:
			ipc[n_ipc++] = optarg;
			break;
		case 'h':
			usage(stdout);
			free(ipc);
			return EXIT_SUCCESS;
		case OPT_VERSION:
			printf("fq-shmmon (fabriq) %s\n", fq_version());
			free(ipc);
			return EXIT_SUCCESS;
		default:
			usage(stderr);
			free(ipc);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "fq-shmmon: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		free(ipc);
		return EXIT_USAGE;
	}
	if (n_ipc > 0 && !clean) {
		fprintf(stderr, "fq-shmmon: --ipc is for --cleanup\n");
		free(ipc);
		return EXIT_USAGE;
	}
	if (clean && (watch_given || f.session != NULL || f.pid != 0)) {
		fprintf(stderr, "fq-shmmon: --cleanup excludes --watch, --session and --pid\n");
		free(ipc);
		return EXIT_USAGE;
	}
	c = clean ? cleanup(ipc, n_ipc, json) : monitor(&f, json, watch);
	free(ipc);
	return c;
}
