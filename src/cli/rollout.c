/* pno rollout: autoregressive prediction with uncertainty over test
 * trajectories (see pno/rollout.h). */
#include "cli.h"
#include "flags.h"

#include "pno/io.h"
#include "pno/model.h"
#include "pno/rollout.h"

#include <jansson.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *rollout_usage =
	"usage: pno rollout --model M.safetensors --data FILE.h5 --steps K\n"
	"                   [--samples S] [--seed SEED] [--start T0] [--first I]\n"
	"                   [--trajectories N] [--threshold R] [--json OUT.json]\n"
	"\n"
	"Autoregressive rollout of a one-step model (trained with --pairs-step 1)\n"
	"over the time-series trajectories of FILE.h5: S sample trajectories start\n"
	"from the true state at step T0, and each step feeds every sample's own\n"
	"state back into the model for one draw of its predictive distribution,\n"
	"so the uncertainty propagates. Prints per step k = 1..K the means over\n"
	"the trajectories of: the relative L2 error of the sample mean, the CRPS,\n"
	"the coverage of the central 90% interval, the mean std, the 50/90/95/99%\n"
	"quantiles of |sample - truth| and the relative uncertainty\n"
	"||std|| / ||mean||, and the first step at which that exceeds R. The\n"
	"model's conformal calibration, if any, is not applied. --json writes\n"
	"every per-step metric and each trajectory's curves.\n";

static json_t *num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

/* the step size the model was trained on, from its provenance (0: not
 * recorded or no --pairs-step) */
static int trained_pairs_step(const struct pno_model *m)
{
	const char *prov = pno_model_meta(m, "provenance");
	json_t *j = prov ? json_loads(prov, 0, NULL) : NULL;
	json_t *v = j ? json_object_get(j, "pairs_step") : NULL;
	int k = json_is_integer(v) ? (int)json_integer_value(v) : 0;
	json_decref(j);
	return k;
}

static int write_json(const char *path, int force, json_t *root)
{
	struct pno_atomic_file af;
	enum pno_status s = pno_atomic_open(&af, path, force);
	if (s != PNO_STATUS_OK)
		return runtime_error("rollout", s);
	if (json_dumpf(root, af.fp, JSON_INDENT(1) | JSON_PRESERVE_ORDER) ||
	    fputc('\n', af.fp) == EOF) {
		pno_atomic_abort(&af);
		fprintf(stderr, "pno rollout: cannot write %s\n", path);
		return 1;
	}
	if ((s = pno_atomic_commit(&af)) != PNO_STATUS_OK)
		return runtime_error("rollout", s);
	return 0;
}

static json_t *step_json(const struct pno_rollout_step *ps, int k, double t)
{
	json_t *o = json_object();
	json_object_set_new(o, "step", json_integer(k));
	json_object_set_new(o, "time", num(t));
	json_object_set_new(o, "rel_l2", num(ps->rel_l2));
	json_object_set_new(o, "crps", num(ps->crps));
	json_object_set_new(o, "coverage90", num(ps->coverage90));
	json_object_set_new(o, "mean_std", num(ps->mean_std));
	static const char *qn[PNO_ROLLOUT_NQ] = {"err_q50", "err_q90",
						 "err_q95", "err_q99"};
	for (int q = 0; q < PNO_ROLLOUT_NQ; q++)
		json_object_set_new(o, qn[q], num(ps->err_q[q]));
	json_object_set_new(o, "rel_unc", num(ps->rel_unc));
	return o;
}

int cmd_rollout(int argc, char **argv)
{
	const char *model = NULL, *data = NULL, *json = NULL;
	int steps = 0, samples = 32, start = 0, first = 0, ntraj = 0;
	int threads = 0, force = 0;
	double threshold = 0.5;
	uint64_t seed = 0;
	struct flag f[] = {
		{"model", FLAG_STRING, &model, 0, 0, "one-step model file (any method)", 1, 0},
		{"data", FLAG_STRING, &data, 0, 0, "time series (HDF5, 'tensor' (N, T, X[, Y]))", 1, 0},
		{"steps", FLAG_INT, &steps, 1, PNO_ROLLOUT_MAX_STEPS, "rollout steps K", 1, 0},
		{"samples", FLAG_INT, &samples, 1, PNO_PREDICT_MAX_SAMPLES, "sample trajectories S per trajectory", 0, 0},
		{"seed", FLAG_U64, &seed, 0, 0, "random seed", 0, 0},
		{"start", FLAG_INT, &start, 0, 1 << 30, "start step T0 (the true state there starts the rollout)", 0, 0},
		{"first", FLAG_INT, &first, 0, 1 << 30, "first trajectory of the file to use", 0, 0},
		{"trajectories", FLAG_INT, &ntraj, 0, 1 << 30, "trajectories to roll out (0: all from --first)", 0, 0},
		{"threshold", FLAG_POSITIVE, &threshold, 0, 1e30, "relative uncertainty ||std||/||mean|| whose first exceedance is reported", 0, 0},
		{"json", FLAG_STRING, &json, 0, 0, "write every per-step metric as JSON", 0, 0},
		{"threads", FLAG_INT, &threads, 0, 1024, "threads (0: all cores)", 0, 0},
		{"force", FLAG_BOOL, &force, 0, 0, "overwrite an existing --json", 0, 0},
		{"quiet", FLAG_BOOL, &quiet, 0, 0, "print only the summary line", 0, 0},
	};
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("%s\noptions:\n", rollout_usage);
			flags_help(stdout, f, NF(f));
			return 0;
		}
	if (flags_parse("rollout", f, NF(f), argc, argv, 2, NULL, 0, NULL))
		return 2;
	struct stat sb;
	if (stat(model, &sb) != 0 || stat(data, &sb) != 0) {
		fprintf(stderr, "pno rollout: %s: no such file\n",
			stat(model, &sb) != 0 ? model : data);
		return 2;
	}
	if (json && check_out_path("rollout", json, force))
		return 2;
	pno_threads_set(threads);

	struct pno_trajectories tr = {0};
	static struct pno_model am;	/* large */
	struct pno_rollout *ro = NULL;
	struct pno_rollout_result res = {0};
	struct pno_rollout_step *per = NULL;
	int *exceed = NULL, rc = 1;
	json_t *root = NULL;
	enum pno_status s = pno_trajectories_read(&tr, data, first, ntraj);
	if (s == PNO_STATUS_FORMAT || s == PNO_STATUS_RANGE ||
	    s == PNO_STATUS_SHAPE) {
		fprintf(stderr, "pno rollout: %s\n", pno_last_error());
		rc = 2;
		goto done;
	}
	if (s != PNO_STATUS_OK) {
		rc = runtime_error("rollout", s);
		goto done;
	}
	if ((long)start + steps >= tr.T) {
		fprintf(stderr, "pno rollout: --start %d + --steps %d goes past "
			"the last step %d of %s's trajectories (T = %d)\n", start,
			steps, tr.T - 1, data, tr.T);
		rc = 2;
		goto done;
	}
	/* on the grid it was trained on: a one-step model must map the
	 * data's state (grid and channels) to itself */
	s = pno_model_load(&am, model, 0, 0, 1);
	if (s != PNO_STATUS_OK) {
		rc = runtime_error("rollout", s);
		goto done;
	}
	struct pno_rollout_opts o;
	pno_rollout_opts_default(&o);
	o.steps = steps, o.samples = samples, o.start = start;
	o.seed = seed, o.threshold = threshold;
	s = pno_rollout_new(&ro, &am, tr.C, tr.dims, tr.X, tr.Y, &o);
	if (s == PNO_STATUS_SHAPE || s == PNO_STATUS_INVALID) {
		fprintf(stderr, "pno rollout: %s: %s\n", model, pno_last_error());
		rc = 2;
		goto done;
	}
	if (s != PNO_STATUS_OK) {
		rc = runtime_error("rollout", s);
		goto done;
	}
	int ks = trained_pairs_step(&am);
	if (!quiet && ks != 1)
		fprintf(stderr, "pno rollout: warning: %s was %s; a rollout "
			"step advances one step of the data\n", model,
			ks > 1 ? "trained on pairs (t, t + K), K > 1"
			       : "not trained with --pairs-step 1");
	if (!quiet && am.conformal.present)
		fprintf(stderr, "pno rollout: note: the model's conformal "
			"calibration is not applied to rollouts\n");
	per = calloc((size_t)tr.N * steps, sizeof *per);
	exceed = calloc((size_t)tr.N, sizeof *exceed);
	if (!per || !exceed) {
		fprintf(stderr, "pno rollout: out of memory\n");
		goto done;
	}
	const size_t TN = (size_t)tr.T * tr.C * tr.X * tr.Y;
	for (int n = 0; n < tr.N; n++) {
		s = pno_rollout_add(ro, tr.u + (size_t)n * TN, tr.T,
				    tr.first + n, NULL, &exceed[n],
				    per + (size_t)n * steps);
		if (s != PNO_STATUS_OK) {
			rc = runtime_error("rollout", s);
			goto done;
		}
	}
	if ((s = pno_rollout_finish(ro, &res)) != PNO_STATUS_OK) {
		rc = runtime_error("rollout", s);
		goto done;
	}

	/* elapsed physical time of step k, if the file has the times */
#define TIME(k) (tr.t ? tr.t[start + (k)] - tr.t[start] : NAN)
	if (!quiet) {
		printf("%s: %d trajectories from %d, %d samples each, %s model "
		       "%s, start step %d\n", data, tr.N, tr.first, samples,
		       am.method, model, start);
		printf("%5s %9s %10s %10s %6s %10s %10s %10s %10s %10s %9s\n",
		       "step", "time", "rel_l2", "crps", "cov90", "mean_std",
		       "err_q50", "err_q90", "err_q95", "err_q99", "rel_unc");
		for (int k = 1; k <= steps; k++) {
			const struct pno_rollout_step *p = &res.step[k - 1];
			printf("%5d %9.4g %10.4e %10.4e %6.3f %10.4e %10.4e "
			       "%10.4e %10.4e %10.4e %9.4f\n", k, TIME(k),
			       p->rel_l2, p->crps, p->coverage90, p->mean_std,
			       p->err_q[0], p->err_q[1], p->err_q[2],
			       p->err_q[3], p->rel_unc);
		}
	}
	if (res.mean_exceed > 0)
		printf("relative uncertainty > %g first at step %d (time %.4g) "
		       "on average; %d of %d trajectories exceed it (mean first "
		       "step %.2f)\n", threshold, res.mean_exceed,
		       TIME(res.mean_exceed), res.n_exceeded, res.n_traj,
		       res.mean_first_exceed);
	else
		printf("relative uncertainty stays <= %g on average over %d "
		       "steps; %d of %d trajectories exceed it\n", threshold,
		       steps, res.n_exceeded, res.n_traj);

	if (json) {
		root = json_object();
		json_t *sa = json_array(), *ta = json_array();
		json_object_set_new(root, "model", json_string(model));
		json_object_set_new(root, "method", json_string(am.method));
		json_object_set_new(root, "data", json_string(data));
		json_object_set_new(root, "pde", json_string(tr.pde));
		json_object_set_new(root, "samples", json_integer(samples));
		json_object_set_new(root, "steps", json_integer(steps));
		json_object_set_new(root, "start", json_integer(start));
		json_object_set_new(root, "seed", json_integer((json_int_t)seed));
		json_object_set_new(root, "first_trajectory",
				    json_integer(tr.first));
		json_object_set_new(root, "trajectories", json_integer(tr.N));
		json_object_set_new(root, "conformal_applied", json_false());
		json_object_set_new(root, "threshold", json_real(threshold));
		json_object_set_new(root, "threshold_step_mean",
				    json_integer(res.mean_exceed));
		json_object_set_new(root, "threshold_time_mean",
				    num(res.mean_exceed > 0
						? TIME(res.mean_exceed) : NAN));
		json_object_set_new(root, "n_exceeded",
				    json_integer(res.n_exceeded));
		json_object_set_new(root, "mean_first_exceed",
				    num(res.mean_first_exceed));
		for (int k = 1; k <= steps; k++)
			json_array_append_new(sa, step_json(&res.step[k - 1], k,
							    TIME(k)));
		json_object_set_new(root, "per_step", sa);
		for (int n = 0; n < tr.N; n++) {
			json_t *t = json_object(), *e = json_array();
			json_t *u = json_array(), *m = json_array();
			json_object_set_new(t, "index", json_integer(tr.first + n));
			json_object_set_new(t, "first_exceed",
					    json_integer(exceed[n]));
			for (int k = 0; k < steps; k++) {
				const struct pno_rollout_step *p =
					&per[(size_t)n * steps + k];
				json_array_append_new(e, num(p->rel_l2));
				json_array_append_new(u, num(p->rel_unc));
				json_array_append_new(m, num(p->err_q[1]));
			}
			json_object_set_new(t, "rel_l2", e);
			json_object_set_new(t, "rel_unc", u);
			json_object_set_new(t, "err_q90", m);
			json_array_append_new(ta, t);
		}
		json_object_set_new(root, "per_trajectory", ta);
		if ((rc = write_json(json, force, root)) != 0)
			goto done;
		if (!quiet)
			printf("wrote %s\n", json);
	}
#undef TIME
	rc = 0;
done:
	json_decref(root);
	free(per);
	free(exceed);
	pno_rollout_result_free(&res);
	pno_rollout_free(ro);
	pno_model_free(&am);
	pno_trajectories_free(&tr);
	return rc;
}
