#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <execinfo.h>

static long n_alloc, fail_at_n, live;
static int failed;

static void *tu_alloc(void *ud, size_t size, size_t align)
{
	void *p = NULL;
	(void)ud;
	n_alloc++;
	if (fail_at_n > 0 && n_alloc == fail_at_n) {
		failed = 1;
		if (getenv("TU_ALLOC_TRACE")) { /* debugging aid: who failed? */
			void *bt[16];
			int nb = backtrace(bt, 16);
			fprintf(stderr, "injected failure of allocation %ld:\n", n_alloc);
			backtrace_symbols_fd(bt, nb, 2);
		}
		return NULL;
	}
	if (posix_memalign(&p, align, size) != 0)
		return NULL;
	live++;
	return p;
}

static void tu_free(void *ud, void *p)
{
	(void)ud;
	live--;
	free(p);
}

void tu_alloc_install(void)
{
	struct pno_allocator a = {tu_alloc, tu_free, NULL};
	pno_allocator_set(&a);
	tu_alloc_reset(0);
}

void tu_alloc_uninstall(void) { pno_allocator_set(NULL); }

void tu_alloc_reset(long fail_at)
{
	n_alloc = 0;
	fail_at_n = fail_at;
	failed = 0;
}

long tu_alloc_count(void) { return n_alloc; }
long tu_alloc_live(void) { return live; }
int tu_alloc_failed(void) { return failed; }

const char *tu_tmp_path(const char *name)
{
	static char buf[4][1024];
	static int slot;
	const char *dir = getenv("PNO_TEST_TMP");
	char *b = buf[slot++ & 3];
	if (!dir || !*dir)
		dir = "/tmp";
	snprintf(b, sizeof buf[0], "%s/%ld_%s", dir, (long)getpid(), name);
	return b;
}

double tu_max_abs_diff(const float *a, const float *b, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - (double)b[i]);
		if (d > m || isnan(d))
			m = isnan(d) ? INFINITY : d;
	}
	return m;
}

double tu_rel_l2(const float *a, const float *b, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - (double)b[i];
		num += d * d;
		den += (double)b[i] * b[i];
	}
	return sqrt(num) / (den > 0 ? sqrt(den) : 1.0);
}
