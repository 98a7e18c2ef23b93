/* The model repository and the serving state: scan
 * <repo>/<model>/<version>/model.safetensors into a new state (reusing the
 * versions whose file did not change), and reload: config + repository
 * validated into new state, swapped atomically, or the old state kept. */
#include "serve_internal.h"
#include "gate.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int sv_valid_name(const char *s, size_t n)
{
	if (n == 0 || n >= SV_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		      c == '-'))
			return 0;
	}
	return !(n == 1 && s[0] == '.') && !(n == 2 && !strncmp(s, "..", 2));
}

void sv_state_release(struct serve_state *st)
{
	if (!st || atomic_fetch_sub(&st->refs, 1) != 1)
		return;
	for (int i = 0; i < st->nm; i++) {
		for (int j = 0; j < st->m[i].nv; j++)
			sv_version_release(st->m[i].v[j]);
		pno_free(st->m[i].v);
	}
	pno_free(st->m);
	pno_free(st->refused);
	pno_free(st);
}

const struct refusal *sv_state_refusal(const struct serve_state *st,
				       const char *name, const char *vstr)
{
	const struct refusal *r = NULL;
	for (int i = 0; st && i < st->nrefused; i++)
		if (!strcmp(st->refused[i].name, name) &&
		    (!vstr || !vstr[0] || !strcmp(st->refused[i].vstr, vstr)))
			r = &st->refused[i];	/* the highest */
	return r;
}

struct serve_state *sv_state_get(struct server *srv)
{
	pthread_mutex_lock(&srv->state_mu);
	struct serve_state *st = srv->state;
	if (st)
		atomic_fetch_add(&st->refs, 1);
	pthread_mutex_unlock(&srv->state_mu);
	return st;
}

const struct smodel *sv_state_model(const struct serve_state *st,
				    const char *name)
{
	for (int i = 0; st && i < st->nm; i++)
		if (!strcmp(st->m[i].name, name))
			return &st->m[i];
	return NULL;
}

struct mversion *sv_state_version(const struct serve_state *st,
				  const char *name, const char *version)
{
	const struct smodel *m = sv_state_model(st, name);
	if (!m || m->nv == 0)
		return NULL;
	if (!version || !version[0])
		return m->v[m->def < m->nv ? m->def : m->nv - 1];
	for (int j = 0; j < m->nv; j++)
		if (!strcmp(m->v[j]->vstr, version))
			return m->v[j];
	return NULL;
}

static int is_unloaded(char (*list)[SV_NAME_MAX], int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(list[i], name))
			return 1;
	return 0;
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return x < y ? -1 : x > y;
}

static int cmp_model(const void *a, const void *b)
{
	return strcmp(((const struct smodel *)a)->name,
		      ((const struct smodel *)b)->name);
}

/* an unchanged file loaded under the same bounds: keep the loaded one */
static struct mversion *reusable(const struct serve_state *old,
				 const struct serve_config *cfg,
				 const char *name, long v, const char *path)
{
	struct stat sb;
	char vs[24];
	snprintf(vs, sizeof vs, "%ld", v);
	struct mversion *mv = sv_state_version(old, name, vs);
	if (!mv || stat(path, &sb) != 0 || strcmp(mv->path, path) ||
	    mv->dev != sb.st_dev || mv->ino != sb.st_ino ||
	    mv->size != (int64_t)sb.st_size ||
	    mv->mtime_ns != (int64_t)sb.st_mtim.tv_sec * 1000000000 +
				    sb.st_mtim.tv_nsec ||
	    mv->cap != cfg->max_queue_size ||
	    old->cfg.max_samples != cfg->max_samples)
		return NULL;
	return mv;
}

/* the numeric version directories of one model with a model file; a
 * version directory without one is skipped (being filled), but a
 * model.safetensors that is there and not a readable regular file is an
 * error (err): the version must not silently stop being served */
static int list_versions(struct server *srv, const char *dir, long **out,
			 int *n, char *err, size_t errsz)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int cap = 0;
	*out = NULL;
	*n = 0;
	if (!d) {
		snprintf(err, errsz, "cannot list %s: %s", dir,
			 strerror(errno));
		return -1;
	}
	while ((e = readdir(d))) {
		char *end, path[4400];
		struct stat sb;
		if (!e->d_name[0] || strlen(e->d_name) > 18 ||
		    strspn(e->d_name, "0123456789") != strlen(e->d_name))
			continue;
		long v = strtol(e->d_name, &end, 10);
		snprintf(path, sizeof path, "%s/%s/model.safetensors", dir,
			 e->d_name);
		int se = stat(path, &sb) != 0 ? errno : 0;
		if ((!se && !S_ISREG(sb.st_mode)) || (se && se != ENOENT)) {
			snprintf(err, errsz, "%.400s: %s", path, se ? strerror(se) :
				 "not a regular file");
			pno_free(*out);
			*out = NULL;
			*n = 0;
			closedir(d);
			return -1;
		}
		if (se) {
			sv_log(srv, PNO_LOG_LEVEL_WARN, "repository",
			       ",\"message\":\"version directory without a "
			       "model.safetensors skipped\",\"version\":%ld", v);
			continue;
		}
		if (*n == cap) {
			long *p = pno_malloc(sizeof *p * (size_t)(cap ? 2 * cap
								      : 8));
			if (!p) {
				snprintf(err, errsz, "out of memory");
				pno_free(*out);
				*out = NULL;
				*n = 0;
				closedir(d);
				return -1;
			}
			if (*n)
				memcpy(p, *out, sizeof *p * (size_t)*n);
			pno_free(*out);
			*out = p;
			cap = cap ? 2 * cap : 8;
		}
		(*out)[(*n)++] = v;
	}
	closedir(d);
	qsort(*out, (size_t)*n, sizeof **out, cmp_long);
	return 0;
}

static int add_model(struct serve_state *st, int *cap)
{
	if (st->nm < *cap)
		return 0;
	int nc = *cap ? 2 * *cap : 8;
	struct smodel *m = pno_calloc((size_t)nc, sizeof *m);
	if (!m)
		return -1;
	if (st->nm)
		memcpy(m, st->m, sizeof *m * (size_t)st->nm);
	pno_free(st->m);
	st->m = m;
	*cap = nc;
	return 0;
}

/* Quality gates (docs/serve/gates.md): judge a freshly loaded version's
 * recorded evaluation; the regression baseline is the highest version of
 * the model already live or accepted in this scan (versions go in
 * ascending order). A model's first version has nothing to regress
 * from: its regression gate is not judged (said in the log). Returns 1 to
 * serve it; else 0 with the failed verdicts in why. */
static int gates_pass(struct server *srv, const struct gate_config *g,
		      const struct mversion *mv, const struct mversion *base,
		      char *why, size_t whysz)
{
	struct gate_verdict v[GATE_MAX_VERDICTS];
	struct gate_config gg = *g;
	int n = 0, skipped = 0;
	if (!base && gg.has_crps) {
		gg.has_crps = 0;
		skipped = 1;
	}
	const char *ev = pno_model_meta(&mv->model, "evaluation");
	const char *bev = base ? pno_model_meta(&base->model, "evaluation")
			       : NULL;
	int pass = gate_check(&gg, ev, base ? (bev ? bev : "null") : NULL, v,
			      &n);
	char list[4096], esc[600];
	size_t k = 0, w = 0;
	why[0] = 0;
	k += (size_t)snprintf(list + k, sizeof list - k, "[");
	for (int i = 0; i < n && k < sizeof list; i++) {
		sv_json_escape(esc, sizeof esc, v[i].detail);
		k += (size_t)snprintf(list + k, sizeof list - k,
				      "%s{\"gate\":\"%s\",\"pass\":%s,"
				      "\"detail\":\"%s\"}", i ? "," : "",
				      v[i].name, v[i].pass ? "true" : "false",
				      esc);
		if (!v[i].pass && w < whysz)
			w += (size_t)snprintf(why + w, whysz - w, "%s%s: %s",
					      w ? "; " : "", v[i].name,
					      v[i].detail);
	}
	if (k < sizeof list)
		snprintf(list + k, sizeof list - k, "]");
	sv_log(srv, pass ? PNO_LOG_LEVEL_INFO : PNO_LOG_LEVEL_WARN,
	       pass ? "gates_passed" : "gates_refused",
	       ",\"model\":\"%s\",\"version\":\"%s\",\"baseline\":\"%s\","
	       "\"verdicts\":%s%s", mv->name, mv->vstr, base ? base->vstr : "",
	       list, skipped ? ",\"crps_regression\":\"not judged: no live "
	       "version of the model to compare with\"" : "");
	return pass;
}

static int add_refusal(struct serve_state *st, int *cap, const char *name,
		       const char *vstr, const char *why)
{
	if (st->nrefused == *cap) {
		int nc = *cap ? 2 * *cap : 4;
		struct refusal *r = pno_calloc((size_t)nc, sizeof *r);
		if (!r)
			return -1;
		if (st->nrefused)
			memcpy(r, st->refused,
			       sizeof *r * (size_t)st->nrefused);
		pno_free(st->refused);
		st->refused = r;
		*cap = nc;
	}
	struct refusal *r = &st->refused[st->nrefused++];
	snprintf(r->name, sizeof r->name, "%s", name);
	snprintf(r->vstr, sizeof r->vstr, "%s", vstr);
	snprintf(r->reason, sizeof r->reason, "%s", why);
	return 0;
}

/* Build a state from cfg's repository (NULL + err on failure). */
static struct serve_state *scan(struct server *srv,
				const struct serve_config *cfg,
				const struct serve_state *old,
				char (*unloaded)[SV_NAME_MAX], int nunl,
				char *err, size_t errsz)
{
	struct serve_state *st = pno_calloc(1, sizeof *st);
	DIR *d = NULL;
	struct dirent *e;
	int cap = 0, rcap = 0;
	struct gate_config gates;
	int has_gates = cfg->gates_file[0] != 0;
	if (!st) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	atomic_init(&st->refs, 1);
	st->cfg = *cfg;
	/* read at every scan: an edit applies at the next reload */
	if (has_gates && gate_config_load(&gates, cfg->gates_file)) {
		snprintf(err, errsz, "gates_file: %s", pno_last_error());
		goto fail;
	}
	if (!(d = opendir(cfg->repository))) {
		snprintf(err, errsz, "repository %s: %s", cfg->repository,
			 strerror(errno));
		goto fail;
	}
	while ((e = readdir(d))) {
		char dir[4200], path[4400], why[SV_ERR_MAX];
		struct stat sb;
		long *vs = NULL;
		int nv = 0;
		if (e->d_name[0] == '.' ||
		    !sv_valid_name(e->d_name, strlen(e->d_name)) ||
		    is_unloaded(unloaded, nunl, e->d_name))
			continue;
		snprintf(dir, sizeof dir, "%s/%s", cfg->repository, e->d_name);
		if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
			continue;
		if (list_versions(srv, dir, &vs, &nv, why, sizeof why)) {
			snprintf(err, errsz, "model %s: %s", e->d_name, why);
			goto fail;
		}
		if (nv == 0)
			continue;
		if (add_model(st, &cap)) {
			pno_free(vs);
			snprintf(err, errsz, "out of memory");
			goto fail;
		}
		struct smodel *m = &st->m[st->nm++];
		memset(m, 0, sizeof *m);
		snprintf(m->name, sizeof m->name, "%s", e->d_name);
		if (!(m->v = pno_calloc((size_t)nv, sizeof *m->v))) {
			pno_free(vs);
			snprintf(err, errsz, "out of memory");
			goto fail;
		}
		for (int j = 0; j < nv; j++) {
			struct mversion *mv;
			snprintf(path, sizeof path, "%s/%ld/model.safetensors",
				 dir, vs[j]);
			if ((mv = reusable(old, cfg, m->name, vs[j], path))) {
				sv_version_ref(mv);
				atomic_store(&mv->max_batch, cfg->max_batch);
				atomic_store(&mv->delay_us,
					     cfg->max_queue_delay_us);
			} else if (sv_version_open(&mv, srv, cfg, m->name,
						   vs[j], path)) {
				snprintf(err, errsz, "model %s version %ld: %s",
					 m->name, vs[j], pno_last_error());
				pno_free(vs);
				goto fail;
			} else if (has_gates &&
				   !gates_pass(srv, &gates, mv, m->nv ?
					       m->v[m->nv - 1] : NULL, why,
					       sizeof why)) {
				int bad = add_refusal(st, &rcap, m->name,
						      mv->vstr, why);
				sv_version_release(mv);
				if (bad) {
					pno_free(vs);
					snprintf(err, errsz, "out of memory");
					goto fail;
				}
				continue;
			} else {
				const char *lv[2] = {mv->name, mv->vstr};
				prom_set(srv->met.load_s, lv, mv->load_s);
				sv_log(srv, PNO_LOG_LEVEL_INFO, "model_loaded",
				       ",\"model\":\"%s\",\"version\":\"%s\","
				       "\"method\":\"%s\",\"load_s\":%.4f",
				       mv->name, mv->vstr, mv->model.method,
				       mv->load_s);
			}
			m->v[m->nv++] = mv;
		}
		pno_free(vs);
		m->def = sv_rollback_default(srv, m);
	}
	closedir(d);
	qsort(st->m, (size_t)st->nm, sizeof *st->m, cmp_model);
	return st;
fail:
	if (d)
		closedir(d);
	sv_state_release(st);
	return NULL;
}

static void log_change(void *ud, const char *line)
{
	char esc[1200];
	sv_json_escape(esc, sizeof esc, line);
	sv_log(ud, PNO_LOG_LEVEL_INFO, "config_changed", ",\"change\":\"%s\"",
	       esc);
}

static int reload_locked(struct server *srv, const char *load,
			 const char *unload, char *err, size_t errsz)
{
	struct serve_config nc;
	const char *nr = NULL;
	char unl[32][SV_NAME_MAX];
	int nunl = srv->n_unloaded;
	serve_config_defaults(&nc);
	/* the config module's messages name the file or flag already */
	if (srv->opts.config_path &&
	    serve_config_load_file(&nc, srv->opts.config_path)) {
		snprintf(err, errsz, "%s", pno_last_error());
		return -1;
	}
	for (int i = 0; i < srv->opts.nflags; i++) {
		char src[160];
		snprintf(src, sizeof src, "--%s", srv->opts.flag_name[i]);
		if (serve_config_set(&nc, srv->opts.flag_name[i],
				     srv->opts.flag_value[i], src)) {
			snprintf(err, errsz, "%s", pno_last_error());
			return -1;
		}
	}
	if (serve_config_check(&nc)) {
		snprintf(err, errsz, "config: %s", pno_last_error());
		return -1;
	}
	struct serve_state *old = sv_state_get(srv);
	serve_config_diff(&old->cfg, &nc, NULL, NULL, &nr);
	if (nr) {
		snprintf(err, errsz, "config key %s cannot change on reload "
			 "(restart the server to change it)", nr);
		sv_state_release(old);
		return -1;
	}
	memcpy(unl, srv->unloaded, sizeof unl);
	if (load)	/* an operator's load serves its highest version again */
		sv_rollback_forget(srv, load);
	if (unload) {
		if (!sv_state_model(old, unload)) {
			snprintf(err, errsz, "model \"%s\" not found (not "
				 "loaded)", unload);
			sv_state_release(old);
			return -1;
		}
		if (!is_unloaded(unl, nunl, unload)) {
			if (nunl == 32) {
				snprintf(err, errsz, "at most 32 models can be "
					 "unloaded at a time");
				sv_state_release(old);
				return -1;
			}
			snprintf(unl[nunl++], SV_NAME_MAX, "%s", unload);
		}
	}
	if (load)
		for (int i = 0; i < nunl; i++)
			if (!strcmp(unl[i], load)) {
				memmove(unl[i], unl[i + 1],
					sizeof unl[0] * (size_t)(nunl - i - 1));
				nunl--;
				break;
			}
	struct serve_state *st = scan(srv, &nc, old, unl, nunl, err, errsz);
	if (st && load && !sv_state_model(st, load)) {
		snprintf(err, errsz, "model \"%s\" not found in the repository "
			 "%s", load, nc.repository);
		sv_state_release(st);
		st = NULL;
	}
	if (!st) {
		sv_state_release(old);
		return -1;
	}
	serve_config_diff(&old->cfg, &nc, log_change, srv, &nr);
	pthread_mutex_lock(&srv->state_mu);
	struct serve_state *prev = srv->state;
	srv->state = st;
	srv->opts.cfg = nc;
	pthread_mutex_unlock(&srv->state_mu);
	sv_apply_runtime(srv);
	memcpy(srv->unloaded, unl, sizeof unl);
	srv->n_unloaded = nunl;
	int nv = 0;
	for (int i = 0; i < st->nm; i++)
		nv += st->m[i].nv;
	prom_set(srv->met.models, NULL, nv);
	sv_state_release(prev);
	sv_state_release(old);
	return 0;
}

int sv_reload(struct server *srv, const char *why, const char *load,
	      const char *unload, char *err, size_t errsz)
{
	double t0 = sv_now();
	pthread_mutex_lock(&srv->reload_mu);
	int rc = reload_locked(srv, load, unload, err, errsz);
	pthread_mutex_unlock(&srv->reload_mu);
	char esc[2 * SV_ERR_MAX];
	/* the keys file on every reload, even when the config is refused: a
	 * revocation must not wait for a valid config */
	if (srv->auth) {
		if (auth_ctx_reload(srv->auth) != PNO_STATUS_OK) {
			sv_json_escape(esc, sizeof esc, pno_last_error());
			sv_log(srv, PNO_LOG_LEVEL_ERROR, "keys_reload_failed",
			       ",\"trigger\":\"%s\",\"reason\":\"%s\","
			       "\"message\":\"the previous keys stay in force\"",
			       why, esc);
		} else {
			int pruned = session_prune(srv->sessions, srv->auth);
			sv_log(srv, PNO_LOG_LEVEL_INFO, "keys_reloaded",
			       ",\"trigger\":\"%s\",\"sessions_ended\":%d",
			       why, pruned);
		}
	}
	if (rc) {
		prom_inc(srv->met.reload_fail, NULL, 1);
		sv_json_escape(esc, sizeof esc, err);
		sv_log(srv, PNO_LOG_LEVEL_ERROR, "reload_failed",
		       ",\"trigger\":\"%s\",\"reason\":\"%s\",\"message\":"
		       "\"the previous state keeps serving\"", why, esc);
		return -1;
	}
	prom_inc(srv->met.reloads, NULL, 1);
	sv_log(srv, PNO_LOG_LEVEL_INFO, "reloaded",
	       ",\"trigger\":\"%s\",\"seconds\":%.4f", why, sv_now() - t0);
	return 0;
}

/* the first state, at start */
int sv_repo_open(struct server *srv, char *err, size_t errsz)
{
	struct serve_state *st = scan(srv, &srv->opts.cfg, NULL, NULL, 0, err,
				      errsz);
	if (!st)
		return -1;
	srv->state = st;
	int nv = 0;
	for (int i = 0; i < st->nm; i++)
		nv += st->m[i].nv;
	prom_set(srv->met.models, NULL, nv);
	return 0;
}
