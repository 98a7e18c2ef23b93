/* Data-parallel training step time (pno/dist.h). Trains the 2D reference
 * configuration of docs/performance.md (64x64, width 32, modes 12x12, 4
 * layers, global batch 16, relative L2) on random in-memory data and
 * prints, on rank 0, the median step time (forward + backward on this
 * rank's rows, the gradient allreduce, AdamW), the time of that allreduce
 * alone and the bytes each rank sent per step (after the first: the
 * start's parameter broadcast is once per run). Run it alone and under `mpirun -np P`; bench/bench_mpi.sh
 * runs 1 and 2 ranks and prints the scaling efficiency t1 / (P tP).
 * usage: bench_mpi [steps] [threads per rank] */
#include "bench_util.h"
#include "pno/dist.h"
#include "pno/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { X = 64, BATCH = 16 };

/* This process's CPU time: the work a step costs, whatever else the
 * machine runs (wall times on a shared machine measure the neighbours). */
static double cpu_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

struct clock {
	double last, dt[4096];
	double cpu0, cpu;	/* CPU time at the first and the last step */
	int n;
	uint64_t bytes0, bytes;	/* sent at the first and the last step */
};

static void on_batch(void *ud, int epoch, int batch, int n_batches,
		     double loss)
{
	struct clock *c = ud;
	double now = bench_now();
	(void)epoch, (void)batch, (void)n_batches, (void)loss;
	if (c->last > 0 && c->n < 4096)
		c->dt[c->n++] = now - c->last;
	else
		c->bytes0 = pno_dist_bytes(), c->cpu0 = cpu_now();
	c->bytes = pno_dist_bytes();
	c->cpu = cpu_now();
	c->last = now;
}

int main(int argc, char **argv)
{
	if (pno_dist_init(&argc, &argv) != PNO_STATUS_OK) {
		fprintf(stderr, "bench_mpi: %s\n", pno_last_error());
		return 1;
	}
	int steps = argc > 1 ? atoi(argv[1]) : 20;
	int threads = argc > 2 ? atoi(argv[2]) : 1;
	if (steps < 3 || steps > 4000) {
		fprintf(stderr, "bench_mpi: steps in [3, 4000]\n");
		return 2;
	}
	pno_threads_set(threads);
	struct pno_fno_arch a = {.dims = 2, .in_ch = 1, .out_ch = 1, .width = 32,
				 .modes1 = 12, .modes2 = 12, .layers = 4,
				 .proj_hidden = 128};
	struct pno_dataset d = {.N = steps * BATCH, .Cin = 1, .Cout = 1,
				.dims = 2, .X = X, .Y = X};
	size_t n = (size_t)d.N * X * X;
	struct pno_fno m;
	d.in = pno_malloc(n * sizeof(float));
	d.out = pno_malloc(n * sizeof(float));
	if (!d.in || !d.out ||
	    pno_fno_init(&m, &a, X, X, BATCH, 1) != PNO_STATUS_OK) {
		fprintf(stderr, "bench_mpi: %s\n", pno_last_error());
		return 1;
	}
	pno_rng_normal(d.in, n, 1, 1, 0);
	pno_rng_normal(d.out, n, 1, 2, 0);

	struct clock c = {0};
	struct pno_train_opts o;
	struct pno_train_result r;
	pno_train_opts_default(&o);
	o.epochs = 1;
	o.batch = BATCH;
	o.n_train = d.N;
	o.n_val = o.n_test = 0;
	o.keep_best = 0;
	o.on_batch = on_batch;
	o.ud = &c;
	enum pno_status s = pno_train_fno(&m, &d, &o, &r);
	if (s != PNO_STATUS_OK) {
		fprintf(stderr, "bench_mpi: %s\n", pno_last_error());
		return 1;
	}
	/* the first interval includes the first step's warm-up */
	double med = bench_median(c.dt + 1, c.n - 1);
	/* the communication alone: the step's allreduce, 10 times */
	double ta[10];
	size_t nf = m.n_params + 2;
	float *g = pno_calloc(nf, sizeof *g);
	for (int k = 0; k < 10 && g; k++) {
		pno_dist_barrier();
		double t0 = bench_now();
		pno_dist_allreduce_sum_f32(g, nf);
		ta[k] = bench_now() - t0;
	}
	pno_free(g);
	/* CPU seconds per step summed over the ranks */
	double cpu = (c.cpu - c.cpu0) / (c.n > 0 ? c.n : 1);
	pno_dist_allreduce_sum_f64(&cpu, 1);
	if (pno_dist_is_root())
		printf("ranks %d  threads/rank %d  params %zu  global batch %d  "
		       "step %.4f s  cpu/step %.4f s  allreduce %.4f s  "
		       "sent/step %.0f bytes\n",
		       pno_dist_size(), pno_threads_get(), m.n_params, BATCH,
		       med, cpu, bench_median(ta, 10),
		       (double)(c.bytes - c.bytes0) / (c.n > 0 ? c.n : 1));
	pno_fno_free(&m);
	pno_dataset_free(&d);
	pno_dist_finalize();
	return 0;
}
