/* The generic training checkpoint (methods without a model file that can
 * carry optimizer state): trainer blocks, Adam moments, best weights,
 * normalization and loop state in one atomic safetensors file. */
#include "internal.h"
#include "train_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define CKPT_FORMAT "pno-checkpoint"

enum pno_status pno__ckpt_write(struct pno__trainee *t,
				const struct pno_adam *opt,
				const struct pno__loop_state *ls,
				float *const *best, const char *path,
				const char *extra_json)
{
	static const char *const kind[4] = {"params", "exp_avg", "exp_avg_sq",
					    "best"};
	struct pno_tensor_view v[4 * PNO__MAX_BLOCKS + 1];
	char names[4 * PNO__MAX_BLOCKS][32], meta[1024];
	int n = 0;
	(void)extra_json;	/* provenance lives in the final model file */
	for (int b = 0; b < t->nb; b++)
		for (int k = 0; k < 4; k++) {
			const float *data = k == 0   ? t->params[b]
					    : k == 1 ? opt[b].m
					    : k == 2 ? opt[b].v
					    : best   ? best[b]
						     : NULL;
			if (!data)
				continue;
			snprintf(names[n], sizeof names[n], "block.%d.%s", b,
				 kind[k]);
			v[n] = (struct pno_tensor_view){names[n], 1,
							{(int64_t)t->n[b]}, data};
			n++;
		}
	v[n++] = (struct pno_tensor_view){"normalization", 1,
					  {(int64_t)t->n_norm}, t->norm};
	/* the state as one JSON string value (metadata values are strings);
	 * %.17g round-trips the best loss, -1 stands for none */
	snprintf(meta, sizeof meta,
		 "{\"format\":\"" CKPT_FORMAT "\",\"method\":\"%s\","
		 "\"state\":\"{\\\"epoch\\\":%d,\\\"step\\\":%lld,"
		 "\\\"lr_scale\\\":%.9g,\\\"best_val\\\":%.17g,"
		 "\\\"best_epoch\\\":%d,\\\"since_best\\\":%d,"
		 "\\\"rollbacks\\\":%d,\\\"blocks\\\":%d}\"}",
		 t->method, ls->epoch, (long long)opt[0].step, ls->lr_scale,
		 isfinite(ls->best_val) ? ls->best_val : -1.0, ls->best_epoch,
		 ls->since_best, ls->rollbacks, t->nb);
	return pno_safetensors_write(path, v, n, meta);
}


enum pno_status pno__ckpt_load(struct pno__trainee *t, struct pno_adam *opt,
			       struct pno__loop_state *ls, float **best,
			       const char *path)
{
	struct pno_safetensors st = {0};
	json_t *md = NULL, *state = NULL;
	enum pno_status s;
	char msg[256] = "";
	int blocks = 0;
	const struct pno_st_entry *e[PNO__MAX_BLOCKS][4] = {{0}};

	pno__json_setup();
	if ((s = pno_safetensors_read(&st, path)) != PNO_STATUS_OK)
		return s;
	md = pno__json_loads(st.metadata_json, &s, msg, sizeof msg);
	json_t *f = md ? json_object_get(md, "format") : NULL;
	json_t *m = md ? json_object_get(md, "method") : NULL;
	json_t *js = md ? json_object_get(md, "state") : NULL;
	if (s == PNO_STATUS_NOMEM) {
		s = pno__errorf(s, "%s: %s", path, msg);
		goto out;
	}
	if (!json_is_string(f) || strcmp(json_string_value(f), CKPT_FORMAT)) {
		s = pno__errorf(PNO_STATUS_FORMAT,
				"%s: not a %s training checkpoint", path,
				t->method);
		goto out;
	}
	if (!json_is_string(m) || strcmp(json_string_value(m), t->method)) {
		s = pno__errorf(PNO_STATUS_SHAPE,
				"%s: a checkpoint of method \"%s\", not \"%s\"",
				path, json_is_string(m) ? json_string_value(m)
							: "?", t->method);
		goto out;
	}
	if (json_is_string(js))
		state = pno__json_loads(json_string_value(js), &s, msg,
					sizeof msg);
	if (s == PNO_STATUS_NOMEM) {
		s = pno__errorf(s, "%s: %s", path, msg);
		goto out;
	}
	json_t *jstep = state ? json_object_get(state, "step") : NULL;
	if (!state || !pno__json_int(state, "epoch", &ls->epoch) ||
	    !pno__json_int(state, "blocks", &blocks) || blocks != t->nb ||
	    !json_is_integer(jstep) || json_integer_value(jstep) < 0) {
		s = pno__errorf(PNO_STATUS_FORMAT,
				"%s: checkpoint state missing or invalid", path);
		goto out;
	}
	static const char *const kind[4] = {"params", "exp_avg", "exp_avg_sq",
					    "best"};
	for (int b = 0; b < t->nb; b++)
		for (int k = 0; k < 4; k++) {
			char name[32];
			snprintf(name, sizeof name, "block.%d.%s", b, kind[k]);
			e[b][k] = pno_safetensors_find(&st, name);
			if ((k < 3 && !e[b][k]) ||
			    (e[b][k] && e[b][k]->count != t->n[b])) {
				s = pno__errorf(PNO_STATUS_SHAPE,
						"%s: %s missing or not of %zu "
						"values (another architecture?)",
						path, name, t->n[b]);
				goto out;
			}
		}
	const struct pno_st_entry *en = pno_safetensors_find(&st,
							     "normalization");
	if (!en || en->count != t->n_norm) {
		s = pno__errorf(PNO_STATUS_SHAPE, "%s: normalization missing or "
				"of the wrong size", path);
		goto out;
	}
	json_t *jl = json_object_get(state, "lr_scale");
	json_t *jb = json_object_get(state, "best_val");
	if (json_is_number(jl) && json_number_value(jl) > 0)
		ls->lr_scale = (float)json_number_value(jl);
	if (json_is_number(jb) && json_number_value(jb) >= 0)
		ls->best_val = json_number_value(jb);
	pno__json_int(state, "best_epoch", &ls->best_epoch);
	pno__json_int(state, "since_best", &ls->since_best);
	pno__json_int(state, "rollbacks", &ls->rollbacks);
	for (int b = 0; b < t->nb; b++) {
		memcpy(t->params[b], e[b][0]->data, t->n[b] * sizeof(float));
		memcpy(opt[b].m, e[b][1]->data, t->n[b] * sizeof(float));
		memcpy(opt[b].v, e[b][2]->data, t->n[b] * sizeof(float));
		opt[b].step = json_integer_value(jstep);
		if (best && e[b][3])
			memcpy(best[b], e[b][3]->data, t->n[b] * sizeof(float));
		else if (!e[b][3]) {	/* no best weights: search afresh */
			ls->best_epoch = 0;
			ls->best_val = INFINITY;
			ls->since_best = 0;
		}
	}
	memcpy(t->norm, en->data, t->n_norm * sizeof(float));
	s = PNO_STATUS_OK;
out:
	json_decref(state);
	json_decref(md);
	pno_safetensors_free(&st);
	return s;
}
