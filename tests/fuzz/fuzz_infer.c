/* libFuzzer harness for the infer body of pno serve (serve/infer.c): the
 * JSON framing and the binary tensor extension (a JSON header of
 * Inference-Header-Content-Length bytes, then raw tensor bytes), parsed
 * against a small in-memory model version, then answered.
 *
 * Input layout: byte 0 picks the model (bit 0: has aleatoric/epistemic
 * variance; bit 1: 1D grid of 8 points, else 2D 4 x 4; bit 2: two input
 * channels); bytes 1-2 are the header length, little-endian (0: the whole
 * body is JSON, as without the header); the rest is the body, given to
 * the parser in a buffer of exactly its size (ASan catches an overread).
 *
 * Properties checked on every input: the parser answers 0, 400 or 503
 * (never another status, never a crash, leak or sanitizer report), sets a
 * message with every refusal, and an accepted request is within the
 * configured limits with finite inputs; its answer (built from made-up
 * outputs) is valid JSON that echoes the request's id exactly, followed
 * by exactly the binary bytes it announces. Build and run: docs/fuzzing.md. */
#include "serve_internal.h"

#include <jansson.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct server srv;
static struct serve_config cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	serve_config_defaults(&cfg);
	srv.seed_key = 0x5eed;
	return 0;
}

static void model(struct mversion *mv, unsigned flags)
{
	struct pno_model *m = &mv->model;
	memset(mv, 0, sizeof *mv);
	snprintf(mv->name, sizeof mv->name, "fuzz");
	snprintf(mv->vstr, sizeof mv->vstr, "1");
	mv->version = 1;
	m->has_variance = flags & 1;
	m->dims = flags & 2 ? 1 : 2;
	m->X = flags & 2 ? 8 : 4;
	m->Y = flags & 2 ? 1 : 4;
	m->in_ch = flags & 4 ? 2 : 1;
	m->out_ch = 1;
	mv->C = m->out_ch;
	mv->P = m->X * m->Y;
}

/* the binary bytes the JSON part announces, or -1 if it is not valid or
 * does not echo the request's id exactly */
static long long announced(const char *s, size_t n, const struct req *r)
{
	json_error_t e;
	json_t *root = json_loadb(s, n, 0, &e), *outs, *o, *id;
	long long sum = 0;
	size_t i;
	if (!root)
		return -1;
	/* the id as the request gave it (length included: a NUL inside) */
	json_t *req = json_loadb(r->body, r->header_len ? r->header_len :
				 r->body_len, 0, &e);
	json_t *rid = json_object_get(req, "id");
	id = json_object_get(root, "id");
	int same = !id == !rid && (!id || (json_string_length(id) ==
					   json_string_length(rid) &&
					   !memcmp(json_string_value(id),
						   json_string_value(rid),
						   json_string_length(id))));
	json_decref(req);
	if (!same || !id != !r->has_id) {
		json_decref(root);
		return -1;
	}
	outs = json_object_get(root, "outputs");
	if (!json_is_array(outs) || json_array_size(outs) == 0) {
		json_decref(root);
		return -1;
	}
	json_array_foreach(outs, i, o) {
		json_t *p = json_object_get(o, "parameters");
		json_t *b = p ? json_object_get(p, "binary_data_size") : NULL;
		if (b)
			sum += json_integer_value(b);
		else if (!json_is_array(json_object_get(o, "data")))
			sum = -1;
		if (sum < 0)
			break;
	}
	json_decref(root);
	return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mversion mv;
	struct req r;
	if (size < 3)
		return 0;
	model(&mv, data[0]);
	memset(&r, 0, sizeof r);
	r.srv = &srv;
	r.mv = &mv;
	r.rid = 1;
	r.header_len = (size_t)data[1] | (size_t)data[2] << 8;
	r.body_len = size - 3;
	/* exactly the body: no terminating NUL to lean on */
	r.body = malloc(r.body_len ? r.body_len : 1);
	if (!r.body)
		return 0;
	memcpy(r.body, data + 3, r.body_len);

	int st = sv_infer_parse(&r, &cfg);
	if (st != 0 && st != 400 && st != 503)
		abort();
	if (st != 0 && !r.err[0])
		abort();
	if (st == 0) {
		size_t nin = (size_t)mv.model.in_ch * mv.P;
		if (r.B < 1 || r.B > 65536 || r.S < 1 ||
		    r.S > cfg.max_samples ||
		    (int64_t)r.B * r.S > cfg.max_total_samples ||
		    r.nq < 0 || r.nq > PNO_PREDICT_MAX_QUANTILES || !r.want ||
		    (r.seed >> 63))
			abort();
		for (size_t i = 0; i < nin * (size_t)r.B; i++)
			if (!isfinite(r.x[i]))
				abort();
		for (int k = 0; k < r.nq; k++)
			if (!(r.q[k] > 0 && r.q[k] < 1))
				abort();
		/* made-up outputs, some not finite (written as null) */
		size_t n = sv_item_floats(&mv, r.want & 1u << SV_OUT_SAMPLES ?
					  r.S : 0, r.nq) * (size_t)r.B;
		for (size_t i = 0; i < n; i++)
			r.y[i] = i % 97 == 96 ? NAN : r.x[i % (nin * r.B)] *
				 (float)(i % 7) - 3.5f;
		r.batch_items = r.B;
		if (sv_infer_respond(&r) == 0) {
			long long bin = announced(r.resp, r.json_len, &r);
			if (bin < 0 || r.json_len + (size_t)bin != r.resp_len)
				abort();
		} else if (r.status != 503) {
			abort();
		}
	}
	free(r.body);
	pno_free(r.x);
	pno_free(r.y);
	pno_free(r.resp);
	return 0;
}
