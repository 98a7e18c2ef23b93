/* pno bench over several processes (mpirun): who makes which data, who
 * runs which cell, and the results' way back to rank 0. The division of
 * work is in bench.h; every function is a no-op for one process. */
#include "bench.h"
#include "cli.h"

#include "pno/core.h"
#include "pno/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* exit status <-> the status pno_dist_agree carries */
static enum pno_status rc_status(int rc)
{
	return rc == 0 ? PNO_STATUS_OK : rc == 2 ? PNO_STATUS_INVALID :
	       rc == 130 ? PNO_STATUS_CANCELLED : PNO_STATUS_IO;
}

static int status_rc(enum pno_status s)
{
	return s == PNO_STATUS_OK ? 0 : s == PNO_STATUS_INVALID ? 2 :
	       s == PNO_STATUS_CANCELLED ? 130 : 1;
}

int bench_agree(int rc, const char *what)
{
	char msg[256];
	if (pno_dist_size() == 1)
		return rc;
	snprintf(msg, sizeof msg, "%s %s", what, rc == 130 ? "interrupted" :
		 "failed (its message is above)");
	enum pno_status s = pno_dist_agree(rc_status(rc), msg);
	if (s != PNO_STATUS_OK && !rc)
		fprintf(stderr, "pno bench: %s\n", pno_last_error());
	return status_rc(s);
}

static int dist_error(const char *what)
{
	fprintf(stderr, "pno bench: %s: %s\n", what, pno_last_error());
	return 1;
}

/* What a PDE's data step decided, as bytes. */
struct data_msg {
	char hash[65];
	char error[256];
	int32_t ok, reused;
	double seconds;
};

int bench_share_data(struct bench *b)
{
	int P = pno_dist_size(), me = pno_dist_rank();
	if (P == 1)
		return 0;
	for (int i = 0; i < b->n_pdes; i++) {
		struct bench_pde *p = &b->pdes[i];
		struct data_msg m;
		memset(&m, 0, sizeof m);
		if (i % P == me) {
			snprintf(m.hash, sizeof m.hash, "%s", p->data_hash);
			snprintf(m.error, sizeof m.error, "%s", p->data_error);
			m.ok = p->data_ok;
			m.reused = p->data_reused;
			m.seconds = p->gen_seconds;
		}
		if (pno_dist_bcast(&m, sizeof m, i % P) != PNO_STATUS_OK)
			return dist_error("sharing the data outcome");
		snprintf(p->data_hash, sizeof p->data_hash, "%s", m.hash);
		snprintf(p->data_error, sizeof p->data_error, "%s", m.error);
		p->data_ok = m.ok;
		p->data_reused = m.reused;
		p->gen_seconds = m.seconds;
	}
	return 0;
}

int bench_deal_cells(struct bench *b)
{
	int P = pno_dist_size(), me = pno_dist_rank(), rc = 0;
	if (P == 1)
		return 0;
	int32_t *st = pno_calloc((size_t)b->n_cells, sizeof *st);
	if (!st) {
		fprintf(stderr, "pno bench: out of memory\n");
		rc = 1;
	}
	/* all ranks must know before the broadcast whether it happens */
	if ((rc = bench_agree(rc, "dealing the cells")))
		goto done;
	for (int i = 0; i < b->n_cells; i++)
		st[i] = (int32_t)b->cells[i].state;
	if (pno_dist_bcast(st, (size_t)b->n_cells * sizeof *st, 0) !=
	    PNO_STATUS_OK) {
		rc = dist_error("sharing the cell states");
		goto done;
	}
	for (int i = 0, k = 0; i < b->n_cells; i++) {
		struct bench_cell *c = &b->cells[i];
		c->rank = 0;
		if (st[i] == BENCH_CELL_PENDING)
			c->rank = k++ % P;
		else if (me != 0)	/* rank 0 holds its documents */
			c->state = (enum bench_cell_state)st[i];
	}
done:
	pno_free(st);
	return rc;
}

/* Rank 0: the cells rank q reports in text (an array of [index, doc]). */
static void take_results(struct bench *b, int q, const char *text,
			 size_t len)
{
	json_error_t err;
	json_t *a = len ? json_loadb(text, len, 0, &err) : NULL;
	size_t i;
	json_t *e;
	json_array_foreach(a, i, e)
	{
		json_int_t k = json_integer_value(json_array_get(e, 0));
		json_t *doc = json_array_get(e, 1);
		if (k < 0 || k >= b->n_cells || b->cells[k].rank != q ||
		    !json_is_object(doc))
			continue;
		b->cells[k].state = BENCH_CELL_FAILED;	/* until doc says */
		bench_cell_from_doc(&b->cells[k], doc);
	}
	json_decref(a);
}

int bench_collect(struct bench *b)
{
	int P = pno_dist_size(), me = pno_dist_rank(), rc = 0;
	char *text = NULL, *all = NULL;
	uint64_t len = 0, *lens = NULL;
	size_t *counts = NULL;
	if (P == 1)
		return 0;
	if (me != 0) {
		json_t *a = json_array();
		for (int i = 0; i < b->n_cells && a; i++) {
			const struct bench_cell *c = &b->cells[i];
			if (c->rank != me || c->state == BENCH_CELL_PENDING)
				continue;
			json_t *d = bench_cell_doc(b, c);
			if (!d || json_array_append_new(a, json_pack("[i, o]", i, d))) {
				json_decref(a);
				a = NULL;
			}
		}
		/* out of memory: rank 0 marks these cells failed below */
		text = a ? bench_json_text(a, JSON_COMPACT |
						   JSON_REAL_PRECISION(17)) :
			   NULL;
		json_decref(a);
		len = text ? strlen(text) : 0;
	} else {
		lens = pno_calloc((size_t)P, sizeof *lens);
		counts = pno_calloc((size_t)P, sizeof *counts);
		if (!lens || !counts)
			rc = 1;
	}
	if ((rc = bench_agree(rc, "collecting the results")))
		goto done;
	if (pno_dist_gather(lens, &len, sizeof len, 0) != PNO_STATUS_OK) {
		rc = dist_error("collecting the results");
		goto done;
	}
	size_t total = 0;
	if (me == 0) {
		for (int q = 0; q < P; q++)
			total += counts[q] = (size_t)lens[q];
		if (!(all = malloc(total + 1)))
			rc = 1;
	}
	if ((rc = bench_agree(rc, "collecting the results")))
		goto done;
	if (pno_dist_gatherv(all, counts, text, (size_t)len, 0) !=
	    PNO_STATUS_OK) {
		rc = dist_error("collecting the results");
		goto done;
	}
	if (me == 0) {
		size_t off = 0;
		for (int q = 0; q < P; off += counts[q], q++)
			take_results(b, q, all + off, counts[q]);
		for (int i = 0; i < b->n_cells; i++) {
			struct bench_cell *c = &b->cells[i];
			if (c->rank == 0 || c->state != BENCH_CELL_PENDING)
				continue;
			c->state = BENCH_CELL_FAILED;
			snprintf(c->failed_step, sizeof c->failed_step, "collect");
			c->exit_code = -1;
			snprintf(c->error, sizeof c->error, "rank %d sent no "
				 "result for this cell (see its result.json)",
				 c->rank);
		}
	}
done:
	free(text);
	free(all);
	pno_free(lens);
	pno_free(counts);
	return rc;
}
