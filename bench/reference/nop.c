/* The C liburing reference for `uringbench -workload nop`: prep `depth` NOPs,
 * io_uring_submit_and_wait for all of them, reap with io_uring_for_each_cqe +
 * io_uring_cq_advance; for -t seconds or -n ops. gcc -O2 nop.c -luring */
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
	double secs = 5, t0, t;
	unsigned long long limit = 0, done = 0;
	unsigned depth = 32, head, seen, i, n;
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	int c;
	while ((c = getopt(argc, argv, "t:n:q:")) != -1) {
		if (c == 't') secs = atof(optarg);
		else if (c == 'n') limit = strtoull(optarg, NULL, 10);
		else if (c == 'q') depth = atoi(optarg);
		else return 2;
	}
	if ((c = io_uring_queue_init(depth, &ring, 0)) < 0) return fprintf(stderr, "queue_init: %s\n", strerror(-c)), 1;
	for (t0 = t = now(); limit ? done < limit : t - t0 < secs; t = now()) {
		n = limit && limit - done < depth ? limit - done : depth;
		for (i = 0; i < n; i++) io_uring_prep_nop(io_uring_get_sqe(&ring));
		if ((c = io_uring_submit_and_wait(&ring, n)) < 0) return fprintf(stderr, "submit: %s\n", strerror(-c)), 1;
		seen = 0;
		io_uring_for_each_cqe(&ring, head, cqe) {
			if (cqe->res < 0) return fprintf(stderr, "nop: %s\n", strerror(-cqe->res)), 1;
			seen++;
		}
		io_uring_cq_advance(&ring, seen);
		done += seen;
	}
	printf("ops=%llu seconds=%.6f ops_per_s=%.0f\n", done, t - t0, done / (t - t0));
	return 0;
}
