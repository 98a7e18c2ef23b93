/* pno generate: PDE datasets in PDEBench's HDF5 layout. */
#include "cli.h"
#include "flags.h"

#include "pno/dist.h"
#include "pno/pde.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Options of every PDE, at their defaults until flags override them. */
struct gen_opts {
	struct pno_heat_opts heat;
	struct pno_wave_opts wave;
	struct pno_darcy_opts darcy;
	struct pno_burgers_opts burgers;
	struct pno_ks_opts ks;
	struct pno_ns_opts ns;
	int dim, no_forcing;
};

#define MAX_PDE_FLAGS 12
#define GRF_FLAGS(g)                                                          \
	{"alpha", FLAG_POSITIVE, &(g).alpha, 0, 100,                          \
	 "GRF smoothness alpha", 0, 0},                                       \
	{"tau", FLAG_DOUBLE, &(g).tau, 0, 1e6, "GRF inverse length scale tau", \
	 0, 0},                                                               \
	{"sigma", FLAG_POSITIVE, &(g).sigma, 0, 1e12, "GRF amplitude sigma",  \
	 0, 0}

struct pde_entry {
	const char *name, *alias, *summary;
	struct pno_gen_base *(*base)(struct gen_opts *o);
	int (*flags)(struct gen_opts *o, struct flag *f);
	enum pno_status (*run)(struct gen_opts *o, const char *out, int force);
};

#define COPY_FLAGS(f, list)                                                   \
	do {                                                                  \
		struct flag l_[] = list;                                      \
		memcpy((f), l_, sizeof l_);                                   \
		return NF(l_);                                                \
	} while (0)
#define LIST(...) {__VA_ARGS__}

/* heat */
static struct pno_gen_base *heat_base(struct gen_opts *o) { return &o->heat.base; }
static int heat_flags(struct gen_opts *o, struct flag *f)
{
	COPY_FLAGS(f, LIST(
		{"dim", FLAG_INT, &o->dim, 1, 3, "spatial dimensions (default --res 256, 64, 32)", 0, 0},
		{"kappa", FLAG_POSITIVE, &o->heat.kappa, 0, 1e6, "diffusivity", 0, 0},
		{"t-final", FLAG_POSITIVE, &o->heat.t_final, 0, 1e9, "final time", 0, 0},
		{"dt-out", FLAG_DOUBLE, &o->heat.dt_out, 0, 1e9, "time between frames (0: frames 0 and t-final only)", 0, 0},
		GRF_FLAGS(o->heat.grf)));
}
static enum pno_status heat_run(struct gen_opts *o, const char *out, int force)
{
	o->heat.dims = o->dim;
	return pno_generate_heat(&o->heat, out, force);
}

/* wave */
static struct pno_gen_base *wave_base(struct gen_opts *o) { return &o->wave.base; }
static int wave_flags(struct gen_opts *o, struct flag *f)
{
	COPY_FLAGS(f, LIST(
		{"c", FLAG_POSITIVE, &o->wave.c, 0, 1e6, "wave speed", 0, 0},
		{"t-final", FLAG_POSITIVE, &o->wave.t_final, 0, 1e9, "final time", 0, 0},
		{"dt-out", FLAG_POSITIVE, &o->wave.dt_out, 0, 1e9, "time between frames", 0, 0},
		GRF_FLAGS(o->wave.grf)));
}
static enum pno_status wave_run(struct gen_opts *o, const char *out, int force)
{
	return pno_generate_wave(&o->wave, out, force);
}

/* darcy */
static struct pno_gen_base *darcy_base(struct gen_opts *o) { return &o->darcy.base; }
static int darcy_flags(struct gen_opts *o, struct flag *f)
{
	COPY_FLAGS(f, LIST(
		{"fine-res", FLAG_INT, &o->darcy.fine_res, 3, 1025, "solver grid points per axis (incl. boundary)", 0, 0},
		{"a-pos", FLAG_POSITIVE, &o->darcy.a_pos, 0, 1e12, "coefficient where the GRF >= 0", 0, 0},
		{"a-neg", FLAG_POSITIVE, &o->darcy.a_neg, 0, 1e12, "coefficient where the GRF < 0", 0, 0},
		{"forcing", FLAG_DOUBLE, &o->darcy.forcing, -1e12, 1e12, "constant forcing f", 0, 0},
		{"beta", FLAG_DOUBLE, &o->darcy.forcing, -1e12, 1e12, "PDEBench's name for the forcing (same as --forcing)", 0, 0},
		{"tol", FLAG_POSITIVE, &o->darcy.tol, 0, 1e-2, "PCG relative residual", 0, 0},
		GRF_FLAGS(o->darcy.grf)));
}
static enum pno_status darcy_run(struct gen_opts *o, const char *out, int force)
{
	return pno_generate_darcy(&o->darcy, out, force);
}

/* burgers */
static struct pno_gen_base *burgers_base(struct gen_opts *o) { return &o->burgers.base; }
static int burgers_flags(struct gen_opts *o, struct flag *f)
{
	COPY_FLAGS(f, LIST(
		{"fine-res", FLAG_INT, &o->burgers.fine_res, 4, 1 << 20, "solver grid points (a multiple of --res)", 0, 0},
		{"nu", FLAG_POSITIVE, &o->burgers.nu, 0, 1e6, "viscosity", 0, 0},
		{"t-final", FLAG_POSITIVE, &o->burgers.t_final, 0, 1e9, "final time", 0, 0},
		{"dt-out", FLAG_POSITIVE, &o->burgers.dt_out, 0, 1e9, "time between frames", 0, 0},
		{"dt", FLAG_DOUBLE, &o->burgers.dt, 0, 1e9, "time-step cap (0: CFL only)", 0, 0},
		GRF_FLAGS(o->burgers.grf)));
}
static enum pno_status burgers_run(struct gen_opts *o, const char *out, int force)
{
	return pno_generate_burgers(&o->burgers, out, force);
}

/* kuramoto-sivashinsky */
static struct pno_gen_base *ks_base(struct gen_opts *o) { return &o->ks.base; }
static int ks_flags(struct gen_opts *o, struct flag *f)
{
	COPY_FLAGS(f, LIST(
		{"length", FLAG_POSITIVE, &o->ks.L, 0, 1e6, "domain length L", 0, 0},
		{"dt", FLAG_POSITIVE, &o->ks.dt, 0, 1e3, "ETDRK4 time step", 0, 0},
		{"t-final", FLAG_POSITIVE, &o->ks.t_final, 0, 1e9, "final time (after burn-in)", 0, 0},
		{"dt-out", FLAG_POSITIVE, &o->ks.dt_out, 0, 1e9, "time between frames", 0, 0},
		{"burn-in", FLAG_DOUBLE, &o->ks.burn_in, 0, 1e9, "time integrated and discarded before frame 0", 0, 0}));
}
static enum pno_status ks_run(struct gen_opts *o, const char *out, int force)
{
	return pno_generate_ks(&o->ks, out, force);
}

/* navier-stokes */
static struct pno_gen_base *ns_base(struct gen_opts *o) { return &o->ns.base; }
static int ns_flags(struct gen_opts *o, struct flag *f)
{
	COPY_FLAGS(f, LIST(
		{"fine-res", FLAG_INT, &o->ns.fine_res, 4, 8192, "solver grid points per axis (a multiple of --res)", 0, 0},
		{"nu", FLAG_POSITIVE, &o->ns.nu, 0, 1e6, "viscosity (1e-3, 1e-4, 1e-5 in the literature)", 0, 0},
		{"t-final", FLAG_POSITIVE, &o->ns.t_final, 0, 1e9, "final time", 0, 0},
		{"dt-out", FLAG_POSITIVE, &o->ns.dt_out, 0, 1e9, "time between frames", 0, 0},
		{"cfl", FLAG_POSITIVE, &o->ns.cfl, 0, 2, "CFL number of the time step", 0, 0},
		{"dt-max", FLAG_POSITIVE, &o->ns.dt_max, 0, 1e3, "time-step cap", 0, 0},
		{"no-forcing", FLAG_BOOL, &o->no_forcing, 0, 0, "unforced flow (default: f = 0.1 (sin 2pi(x+y) + cos 2pi(x+y)))", 0, 0},
		GRF_FLAGS(o->ns.grf)));
}
static enum pno_status ns_run(struct gen_opts *o, const char *out, int force)
{
	o->ns.forcing = !o->no_forcing;
	return pno_generate_ns(&o->ns, out, force);
}

static const struct pde_entry pdes[] = {
	{"darcy", NULL, "steady Darcy flow -div(a grad u) = f, u = 0 on the boundary (FD + PCG)",
	 darcy_base, darcy_flags, darcy_run},
	{"burgers", NULL, "1D viscous Burgers, periodic (pseudo-spectral, ETDRK4)",
	 burgers_base, burgers_flags, burgers_run},
	{"navier-stokes", "ns", "2D incompressible vorticity on the torus (pseudo-spectral, CN)",
	 ns_base, ns_flags, ns_run},
	{"kuramoto-sivashinsky", "ks", "1D Kuramoto-Sivashinsky, periodic (ETDRK4)",
	 ks_base, ks_flags, ks_run},
	{"heat", NULL, "periodic heat equation in 1D, 2D or 3D (exact)",
	 heat_base, heat_flags, heat_run},
	{"wave", NULL, "2D periodic wave equation (exact per mode)",
	 wave_base, wave_flags, wave_run},
};
#define N_PDES ((int)(sizeof pdes / sizeof pdes[0]))

static void opts_default(struct gen_opts *o)
{
	memset(o, 0, sizeof *o);
	o->dim = 1;
	pno_heat_opts_default(&o->heat, 1);
	pno_wave_opts_default(&o->wave);
	pno_darcy_opts_default(&o->darcy);
	pno_burgers_opts_default(&o->burgers);
	pno_ks_opts_default(&o->ks);
	pno_ns_opts_default(&o->ns);
}

struct common {
	struct pno_gen_base base;
	int threads, force, help;
	const char *out;
};

/* The flags every PDE takes; `res` and `samples` start at the PDE's
 * defaults (res 0 for the general help: per PDE). */
static int common_flags(struct common *c, struct flag *f)
{
	COPY_FLAGS(f, LIST(
		{"samples", FLAG_INT, &c->base.samples, 1, 1e7, "number of samples", 0, 0},
		{"res", FLAG_INT, &c->base.res, 0, 1 << 20, "output grid points per axis (0: the PDE's default, listed below)", 0, 0},
		{"seed", FLAG_U64, &c->base.seed, 0, 0, "random seed (sample i depends on seed and i only)", 0, 0},
		{"threads", FLAG_INT, &c->threads, 0, 1024, "threads (0: all cores; the output does not depend on it)", 0, 0},
		{"out", FLAG_STRING, &c->out, 0, 0, "output HDF5 file", 1, 0},
		{"force", FLAG_BOOL, &c->force, 0, 0, "overwrite an existing output", 0, 0},
		{"quiet", FLAG_BOOL, &quiet, 0, 0, "no progress bar or summary", 0, 0},
		{"help", FLAG_BOOL, &c->help, 0, 0, "show this help", 0, 0}));
}

static const char *generate_usage =
	"usage: pno generate <pde> --out FILE.h5 [--samples N] [--res R] "
	"[--seed S]\n"
	"                    [--threads T] [--force] [--quiet] [PDE options]\n"
	"\n"
	"Generate a dataset in PDEBench's HDF5 layout with a verified solver.\n"
	"The file is written under a temporary name and renamed when complete;\n"
	"Ctrl-C stops cleanly and leaves nothing. Root attributes record the PDE,\n"
	"every parameter, the solver, time step, grid, seed and pno version.\n";

static void print_help(const struct pde_entry *only)
{
	struct gen_opts o;
	struct common c = {0};
	struct flag f[MAX_PDE_FLAGS + 8];
	opts_default(&o);
	printf("%s\ncommon options:\n", generate_usage);
	c.base = only ? *only->base(&o) : o.heat.base;
	if (!only)
		c.base.res = 0;
	flags_help(stdout, f, common_flags(&c, f));
	for (int i = 0; i < N_PDES; i++) {
		const struct pde_entry *p = &pdes[i];
		if (only && p != only)
			continue;
		char alias[32] = "";
		if (p->alias)
			snprintf(alias, sizeof alias, " (or %s)", p->alias);
		printf("\n%s%s: %s\n  defaults: --samples %d --res %d\n",
		       p->name, alias, p->summary, p->base(&o)->samples,
		       p->base(&o)->res);
		flags_help(stdout, f, p->flags(&o, f));
	}
}

/* ---- progress and interruption ---- */
/* Set by the first SIGINT/SIGTERM; the library polls it between frames
 * and steps (sig_atomic_t is int here). A second signal kills at once. */
static volatile int interrupted;

static void on_signal(int sig)
{
	interrupted = 1;
	signal(sig, SIG_DFL);
}

struct bar {
	const char *pde;
	int tty;
	double t0, last;
};

static int on_progress(void *ud, long done, long total)
{
	struct bar *b = ud;
	if (interrupted)
		return 1;
	double t = cli_now();
	if (!b->tty || quiet || (t - b->last < 0.1 && done < total))
		return 0;
	b->last = t;
	int width = 30, fill = (int)((double)done / (double)total * width);
	char bar[64], eta[32], rate[32];
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[width] = '\0';
	double r = (double)done / (t - b->t0);
	if (r >= 1)
		snprintf(rate, sizeof rate, "%.1f samples/s", r);
	else
		snprintf(rate, sizeof rate, "%.1f s/sample", 1.0 / r);
	cli_fmt_duration(eta, sizeof eta, (double)(total - done) / r);
	fprintf(stderr, "\r  %s [%s] %ld/%ld  %s  ETA %s   ", b->pde, bar, done,
		total, rate, eta);
	if (done == total)
		fprintf(stderr, "\n");
	return 0;
}

/* ---- under mpirun ----
 * Every rank parses the same argv, so flag errors are the same on all.
 * Only rank 0 writes the file, so only it can judge the output path: it
 * runs check_out_path's test (the same messages, kept here as text to
 * pass on) and every rank learns the verdict. Every rank prints an
 * agreed failure and exits with the same status; the progress bar and
 * the summary are rank 0's. */
static enum pno_status out_path_verdict(const char *path, int force,
					char *msg, size_t size)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	struct stat sb;
	if (stat(path, &sb) == 0 && !force) {
		snprintf(msg, size, "%s exists (use --force to overwrite)", path);
		return PNO_STATUS_EXISTS;
	}
	if (!slash)
		snprintf(dir, sizeof dir, ".");
	else if (slash == path)
		snprintf(dir, sizeof dir, "/");
	else
		snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
	if (access(dir, W_OK | X_OK) != 0) {
		snprintf(msg, size, "cannot write %s: directory %s is missing "
			 "or not writable", path, dir);
		return PNO_STATUS_INVALID;
	}
	return PNO_STATUS_OK;
}

int cmd_generate(int argc, char **argv)
{
	struct gen_opts o;
	struct common c = {0};
	struct flag f[MAX_PDE_FLAGS + 8];
	const struct pde_entry *p = NULL;
	const char *name = argc > 2 ? argv[2] : NULL;

	opts_default(&o);
	if (!name || !strcmp(name, "--help") || !strcmp(name, "-h")) {
		if (name) {
			print_help(NULL);
			return 0;
		}
		fprintf(stderr, "pno generate: name the PDE (see pno generate "
			"--help)\n");
		return 2;
	}
	for (int i = 0; i < N_PDES; i++)
		if (!strcmp(name, pdes[i].name) ||
		    (pdes[i].alias && !strcmp(name, pdes[i].alias)))
			p = &pdes[i];
	if (!p) {
		fprintf(stderr, "pno generate: unknown PDE '%s' (known: darcy, "
			"burgers, navier-stokes, kuramoto-sivashinsky, heat, "
			"wave)\n", name);
		return 2;
	}
	for (int i = 3; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			print_help(p);
			return 0;
		}
	c.base = *p->base(&o);
	c.base.res = 0;
	int n = common_flags(&c, f);
	n += p->flags(&o, f + n);
	if (flags_parse("generate", f, n, argc, argv, 3, NULL, 0, NULL))
		return 2;
	int ranks = pno_dist_size();
	if (ranks == 1 && check_out_path("generate", c.out, c.force))
		return 2;
	if (ranks > 1) {
		char msg[4200] = "";
		enum pno_status s = pno_dist_is_root() ?
			out_path_verdict(c.out, c.force, msg, sizeof msg) :
			PNO_STATUS_OK;
		if (pno_dist_agree(s, msg) != PNO_STATUS_OK) {
			fprintf(stderr, "pno generate: %s\n", pno_last_error());
			return 2;
		}
		if (!pno_dist_is_root())
			quiet = 1;	/* rank 0 shows progress and the summary */
	}

	struct pno_gen_base *base = p->base(&o);
	if (p->run == heat_run) {	/* its default resolution follows --dim */
		struct pno_heat_opts d;
		pno_heat_opts_default(&d, o.dim);
		base->res = d.base.res;
	}
	base->samples = c.base.samples;
	base->seed = c.base.seed;
	if (c.base.res)
		base->res = c.base.res;
	struct bar bar = {p->name, isatty(2), cli_now(), 0};
	base->progress = on_progress;
	base->progress_ud = &bar;
	base->cancel = &interrupted;
	/* ranks on one machine share its cores (Open MPI says how many), as
	 * pno train does */
	const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
	if (c.threads == 0 && ranks > 1 && local && atoi(local) > 1) {
		long nc = sysconf(_SC_NPROCESSORS_ONLN) / atoi(local);
		c.threads = nc > 1 ? (int)nc : 1;
	}
	pno_threads_set(c.threads);

	struct sigaction sa, old_int, old_term;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	double t0 = cli_now();
	enum pno_status s = p->run(&o, c.out, c.force);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	if (s == PNO_STATUS_CANCELLED) {
		fprintf(stderr, "\npno generate: interrupted: %s; nothing "
			"written\n", pno_last_error());
		return 130;
	}
	if (s == PNO_STATUS_INVALID || s == PNO_STATUS_EXISTS) {
		fprintf(stderr, "pno generate: %s\n", pno_last_error());
		return 2;
	}
	if (s != PNO_STATUS_OK)
		return runtime_error("generate", s);
	if (!quiet && ranks > 1)
		printf("wrote %s: %s, %d samples, %d points per axis, %.1f s "
		       "(%d processes)\n", c.out, p->name, base->samples,
		       base->res, cli_now() - t0, ranks);
	else if (!quiet)
		printf("wrote %s: %s, %d samples, %d points per axis, %.1f s\n",
		       c.out, p->name, base->samples, base->res, cli_now() - t0);
	return 0;
}
