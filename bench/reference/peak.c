/* The C liburing anchor for `uringbench -engine cpeak`: one thread keeps
 * -q requests in flight on a file, preparing at most -s per submission and,
 * once the queue is full, waiting for at least -c completions and reaping
 * every one that has arrived (the shape of fio's t/io_uring -d 32 -s 4 -c 4).
 * The ring is set up as t/io_uring sets it up for peak IOPS
 * (COOP_TASKRUN, SINGLE_ISSUER, DEFER_TASKRUN, each dropped where the kernel
 * refuses it, and a registered ring descriptor) unless -x asks for a plain one.
 *
 * Offsets and written data are uringbench's own: in-flight slot i draws from
 * splitmix64 stream i of the seed, a block is chosen with Lemire's
 * multiply-shift, sequential workloads take op n at block n mod -N, and every
 * written block holds a 16-byte header (offset, -g tag) then the seed's
 * pattern, so that uringbench reads back what this program wrote.
 *
 * Latency is per request, submit to reap: the clock is read once before each
 * io_uring_enter (every request it submits starts then) and once after each
 * enter that returns completions (every one reaped ends then).
 *
 *   gcc -O2 peak.c -luring
 *   peak -w randread -f FILE -b 4096 -N 65536 -q 32 -s 4 -c 4 -D -t 5
 *
 * Prints one line of key=value pairs: ops, seconds, ops_per_s, cpu_s (user +
 * system of the whole process over the measured loop, io-wq workers
 * included), p50, p99, p999, max (ns), enters, setup (the ring's setup
 * flags), regring (1: the ring descriptor is registered), written (up to 8
 * written offsets, comma-separated). -O K prints the first K offsets slot 0
 * would draw and exits (a check of the distribution). */
#define _GNU_SOURCE /* O_DIRECT */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif

enum kind { K_NOP, K_READ, K_WRITE };

struct slot {
	uint64_t rng;
	unsigned char *rbuf, *wbuf;
	long long off;
	uint64_t tsub;
	enum kind kind;
};

static uint64_t mix(uint64_t z) {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t splitmix(uint64_t *s) {
	*s += 0x9e3779b97f4a7c15ULL;
	return mix(*s);
}

/* uringbench's newRNG(seed, stream): the state after one draw. */
static uint64_t new_rng(uint64_t seed, long stream) {
	uint64_t s = seed ^ mix((uint64_t)(stream + 1) * 0x9e3779b97f4a7c15ULL);
	splitmix(&s);
	return s;
}

static uint64_t below(uint64_t *s, uint64_t n) {
	return (uint64_t)(((unsigned __int128)splitmix(s) * n) >> 64);
}

static uint64_t now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static double cpu_s(void) {
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* A log-linear histogram: exact below 1024 ns, then 1024 buckets per power
 * of two (0.1% resolution, as uringbench's HDR histograms). */
#define SUB 1024
#define NBUCKETS (SUB + 54 * SUB)
static uint64_t hist[NBUCKETS], hist_n, hist_max;

static unsigned bucket(uint64_t v) {
	unsigned e;
	if (v < SUB) return v;
	e = 63 - __builtin_clzll(v);
	return SUB + (e - 10) * SUB + ((v >> (e - 10)) & (SUB - 1));
}

static uint64_t bucket_top(unsigned i) {
	unsigned e;
	if (i < SUB) return i;
	e = (i - SUB) / SUB + 10;
	return (((uint64_t)SUB + (i & (SUB - 1))) << (e - 10)) + (1ULL << (e - 10)) - 1;
}

static void record(uint64_t v) {
	hist[bucket(v)]++;
	hist_n++;
	if (v > hist_max) hist_max = v;
}

static uint64_t quantile(double q) {
	uint64_t want = (uint64_t)(q * hist_n + 0.999999), seen = 0, top;
	unsigned i;
	if (want < 1) want = 1;
	for (i = 0; i < NBUCKETS; i++) {
		seen += hist[i];
		if (seen >= want) break;
	}
	top = bucket_top(i);
	return top < hist_max ? top : hist_max;
}

/* uringbench's fillRandom over stream -1 of the seed. */
static void fill_pattern(unsigned char *b, size_t n, uint64_t seed) {
	uint64_t s = new_rng(seed, -1), w;
	size_t i;
	for (i = 0; i < n; i += 8) {
		w = splitmix(&s);
		memcpy(b + i, &w, n - i < 8 ? n - i : 8);
	}
}

static int usage(void) {
	fprintf(stderr, "usage: peak -w nop|randread|randwrite|read|write|randrw [-f file -b bs -N blocks] [-q depth] [-s submit] [-c complete] [-D] [-F] [-R] [-P idle_ms] [-x] [-S seed] [-g tag] [-t secs | -n ops] [-O k]\n");
	return 2;
}

int main(int argc, char **argv) {
	const char *w = "nop", *path = NULL;
	double secs = 5;
	unsigned long long limit = 0, issued = 0, done = 0, enters = 0, seq = 0, tag = 0;
	uint64_t seed = 1, nblocks = 0, t0, t, tstart;
	unsigned depth = 32, sbatch = 4, cbatch = 4, inflight = 0, nfree, i, head, reaped;
	int direct = 0, fixedbufs = 0, regfiles = 0, sqpoll_ms = -1, plain = 0, dump = 0, regring = 0;
	int c, fd = -1, sqefd, mixed = 0, sequential = 0, ret;
	size_t bs = 4096, slotsize;
	long long written[8];
	int nwritten = 0;
	enum kind kind0 = K_NOP;
	struct io_uring ring;
	struct io_uring_params params;
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	struct slot *slots;
	unsigned *freelist;
	unsigned char *mem, *pattern;
	struct iovec *iov;
	double cpu0, cpu1;

	while ((c = getopt(argc, argv, "w:f:b:N:q:s:c:DFRP:xS:g:t:n:O:")) != -1) {
		switch (c) {
		case 'w': w = optarg; break;
		case 'f': path = optarg; break;
		case 'b': bs = strtoull(optarg, NULL, 10); break;
		case 'N': nblocks = strtoull(optarg, NULL, 10); break;
		case 'q': depth = atoi(optarg); break;
		case 's': sbatch = atoi(optarg); break;
		case 'c': cbatch = atoi(optarg); break;
		case 'D': direct = 1; break;
		case 'F': fixedbufs = 1; break;
		case 'R': regfiles = 1; break;
		case 'P': sqpoll_ms = atoi(optarg); break;
		case 'x': plain = 1; break;
		case 'S': seed = strtoull(optarg, NULL, 10); break;
		case 'g': tag = strtoull(optarg, NULL, 10); break;
		case 't': secs = atof(optarg); break;
		case 'n': limit = strtoull(optarg, NULL, 10); break;
		case 'O': dump = atoi(optarg); break;
		default: return usage();
		}
	}
	if (!strcmp(w, "randread") || !strcmp(w, "read")) kind0 = K_READ;
	else if (!strcmp(w, "randwrite") || !strcmp(w, "write")) kind0 = K_WRITE;
	else if (!strcmp(w, "randrw")) mixed = 1;
	else if (strcmp(w, "nop")) return usage();
	sequential = !strcmp(w, "read") || !strcmp(w, "write");
	if (depth < 1 || sbatch < 1 || cbatch < 1) return usage();
	if (sbatch > depth) sbatch = depth;
	if (cbatch > depth) cbatch = depth;
	if (strcmp(w, "nop") && (!path || !bs || !nblocks)) return usage();
	if (dump) {
		uint64_t s = new_rng(seed, 0);
		for (c = 0; c < dump; c++) {
			if (mixed) splitmix(&s);
			printf("%llu\n", (unsigned long long)(below(&s, nblocks) * bs));
		}
		return 0;
	}

	if (path) {
		int flags = (kind0 == K_READ && !mixed) ? O_RDONLY : O_RDWR;
		if (direct) flags |= O_DIRECT;
		if ((fd = open(path, flags | O_CLOEXEC)) < 0) return fprintf(stderr, "open %s: %s\n", path, strerror(errno)), 1;
	}

	memset(&params, 0, sizeof(params));
	if (sqpoll_ms >= 0) {
		params.flags |= IORING_SETUP_SQPOLL;
		params.sq_thread_idle = sqpoll_ms;
	}
	if (!plain) params.flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	/* Drop what the kernel refuses, latest first, as t/io_uring does. */
	for (;;) {
		ret = io_uring_queue_init_params(depth, &ring, &params);
		if (ret != -EINVAL) break;
		if (params.flags & IORING_SETUP_DEFER_TASKRUN) params.flags &= ~IORING_SETUP_DEFER_TASKRUN;
		else if (params.flags & IORING_SETUP_SINGLE_ISSUER) params.flags &= ~IORING_SETUP_SINGLE_ISSUER;
		else if (params.flags & IORING_SETUP_COOP_TASKRUN) params.flags &= ~IORING_SETUP_COOP_TASKRUN;
		else break;
	}
	if (ret < 0) return fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-ret)), 1;
	/* A registered ring descriptor saves an fdget/fdput per enter (5.18+). */
	if (!plain) {
		ret = io_uring_register_ring_fd(&ring);
		if (ret < 0 && ret != -EINVAL) return fprintf(stderr, "io_uring_register_ring_fd: %s\n", strerror(-ret)), 1;
		regring = ret > 0;
	}

	/* randrw keeps a read half and a write half per slot: a read must not
	 * clobber the pattern a later write of the slot sends. */
	slotsize = mixed ? 2 * bs : bs;
	slots = calloc(depth, sizeof(*slots));
	freelist = calloc(depth, sizeof(*freelist));
	iov = calloc(depth, sizeof(*iov));
	pattern = malloc(bs ? bs : 1);
	mem = NULL;
	if (!slots || !freelist || !iov || !pattern) return fprintf(stderr, "out of memory\n"), 1;
	if (fd >= 0 && posix_memalign((void **)&mem, 4096, depth * slotsize)) return fprintf(stderr, "out of memory\n"), 1;
	if (fd >= 0) fill_pattern(pattern, bs, seed);
	for (i = 0; i < depth; i++) {
		slots[i].rng = new_rng(seed, i);
		freelist[i] = depth - 1 - i;
		if (fd < 0) continue;
		iov[i].iov_base = mem + i * slotsize;
		iov[i].iov_len = slotsize;
		slots[i].rbuf = mem + i * slotsize;
		slots[i].wbuf = mixed ? slots[i].rbuf + bs : slots[i].rbuf;
		if (kind0 == K_WRITE || mixed) memcpy(slots[i].wbuf, pattern, bs);
	}
	nfree = depth;
	if (fixedbufs && (ret = io_uring_register_buffers(&ring, iov, depth)) < 0)
		return fprintf(stderr, "io_uring_register_buffers: %s%s\n", strerror(-ret), ret == -ENOMEM ? " (RLIMIT_MEMLOCK: see ulimit -l)" : ""), 1;
	sqefd = fd;
	if (regfiles) {
		if ((ret = io_uring_register_files(&ring, &fd, 1)) < 0) return fprintf(stderr, "io_uring_register_files: %s\n", strerror(-ret)), 1;
		sqefd = 0;
	}

	cpu0 = cpu_s();
	tstart = t0 = t = now_ns();
	for (;;) {
		int more = limit ? issued < limit : t - tstart < (uint64_t)(secs * 1e9);
		unsigned prepped = 0, to_wait = 0;
		while (more && nfree && prepped < sbatch && (!limit || issued < limit)) {
			unsigned id;
			struct slot *s;
			if (!(sqe = io_uring_get_sqe(&ring))) break; /* SQPOLL has not consumed the last batch yet */
			id = freelist[--nfree];
			s = &slots[id];
			s->kind = mixed ? ((splitmix(&s->rng) & 1) == 0 ? K_READ : K_WRITE) : kind0;
			if (s->kind == K_NOP) {
				io_uring_prep_nop(sqe);
			} else {
				s->off = sequential ? (long long)((seq++ % nblocks) * bs) : (long long)(below(&s->rng, nblocks) * bs);
				if (s->kind == K_READ && fixedbufs) io_uring_prep_read_fixed(sqe, sqefd, s->rbuf, bs, s->off, id);
				else if (s->kind == K_READ) io_uring_prep_read(sqe, sqefd, s->rbuf, bs, s->off);
				else {
					memcpy(s->wbuf, &s->off, 8);
					memcpy(s->wbuf + 8, &tag, 8);
					if (fixedbufs) io_uring_prep_write_fixed(sqe, sqefd, s->wbuf, bs, s->off, id);
					else io_uring_prep_write(sqe, sqefd, s->wbuf, bs, s->off);
				}
				if (regfiles) sqe->flags |= IOSQE_FIXED_FILE;
			}
			io_uring_sqe_set_data64(sqe, id);
			prepped++;
			issued++;
		}
		if (!prepped && !inflight) break;
		/* Wait only when no further batch fits, or nothing more is to come. */
		if (!nfree || !more || (limit && issued >= limit) || !prepped) to_wait = inflight + prepped < cbatch ? inflight + prepped : cbatch;
		if (prepped) {
			t = now_ns();
			for (i = 0; i < prepped; i++) slots[freelist[nfree + prepped - 1 - i]].tsub = t;
		}
		ret = io_uring_submit_and_wait(&ring, to_wait);
		enters++;
		if (ret < 0 && ret != -EAGAIN && ret != -EINTR && ret != -EBUSY) return fprintf(stderr, "io_uring_submit_and_wait: %s\n", strerror(-ret)), 1;
		inflight += prepped;
		t = now_ns();
		reaped = 0;
		io_uring_for_each_cqe(&ring, head, cqe) {
			unsigned id = (unsigned)cqe->user_data;
			struct slot *s = &slots[id];
			int want = s->kind == K_NOP ? 0 : (int)bs;
			if (cqe->res != want) {
				if (cqe->res < 0) return fprintf(stderr, "%s at %lld: %s\n", s->kind == K_WRITE ? "write" : s->kind == K_READ ? "read" : "nop", s->off, strerror(-cqe->res)), 1;
				return fprintf(stderr, "short %s: %d of %d bytes at %lld\n", s->kind == K_WRITE ? "write" : "read", cqe->res, want, s->off), 1;
			}
			record(t - s->tsub);
			if (s->kind == K_WRITE && nwritten < 8) written[nwritten++] = s->off;
			freelist[nfree++] = id;
			reaped++;
		}
		io_uring_cq_advance(&ring, reaped);
		inflight -= reaped;
		done += reaped;
	}
	cpu1 = cpu_s();
	printf("ops=%llu seconds=%.6f ops_per_s=%.0f cpu_s=%.6f p50=%llu p99=%llu p999=%llu max=%llu enters=%llu setup=%#x regring=%d written=",
	       done, (t - t0) / 1e9, done / ((t - t0) / 1e9), cpu1 - cpu0,
	       (unsigned long long)quantile(0.5), (unsigned long long)quantile(0.99), (unsigned long long)quantile(0.999),
	       (unsigned long long)hist_max, enters, params.flags, regring);
	for (c = 0; c < nwritten; c++) printf("%s%lld", c ? "," : "", written[c]);
	printf("\n");
	return 0;
}
