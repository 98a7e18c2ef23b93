/* FFTW path of the spectral layer, one (X[, Y]) slice per loop iteration,
 * in parallel over (b, c). 1D: r2c / c2r of the line. 2D: r2c of every
 * row (along Y), then complex DFTs along X of only the M2 retained
 * columns (the others are never needed); the inverse runs the same steps
 * backwards, and its row c2r drops Im of the DC / Nyquist column after the
 * X transform, exactly as a 2D c2r (torch.fft.irfft2) does.
 *
 * Each thread copies its slice into its own PNO_ALIGN-aligned slot, so the
 * new-array execute functions always see the alignment the plans were made
 * with whatever the caller's pointers are, and c2r may destroy its input.
 * Plans use FFTW_ESTIMATE: a MEASURE plan depends on timing and could
 * change the rounding from run to run.
 *
 * The adjoints follow from y = Re sum_k a_k z_k:
 *   synthesize_backward  dz_k = (w_k / N) r2c(dy)_k
 *   analyze_backward     dx  += c2r(dz_k / w_k)
 * with w_k the Hermitian weight of the half-spectrum column (1 or 2).
 */
#include "spectral_impl.h"

#include <omp.h>
#include <pthread.h>
#include <string.h>

static pthread_mutex_t fftw_planner_lock = PTHREAD_MUTEX_INITIALIZER;

void pno__fftw_lock(void) { pthread_mutex_lock(&fftw_planner_lock); }
void pno__fftw_unlock(void) { pthread_mutex_unlock(&fftw_planner_lock); }

void pno__fftw_destroy(fftw_plan *p)
{
	if (!*p)
		return;
	pno__fftw_lock();
	fftw_destroy_plan(*p);
	pno__fftw_unlock();
	*p = NULL;
}

/* Round a float count up to a whole number of PNO_ALIGN blocks. */
static size_t round_slot(size_t n)
{
	size_t q = PNO_ALIGN / sizeof(float);
	return (n + q - 1) / q * q;
}

void pno__spectral_fftw_free(struct pno__spectral_fftw *f)
{
	if (!f)
		return;
	fftwf_plan *plans[4] = {&f->r2c, &f->c2r, &f->colf, &f->colb};
	pno__fftw_lock();
	for (int i = 0; i < 4; i++)
		if (*plans[i])
			fftwf_destroy_plan(*plans[i]);
	pno__fftw_unlock();
	pno_free(f->re);
	pno_free(f->cx);
	pno_free(f);
}

enum pno_status pno__spectral_fftw_init(struct pno__spectral_fftw **out,
					const struct pno_spectral *s)
{
	enum pno_status st = PNO_STATUS_NOMEM;
	struct pno__spectral_fftw *f = pno_calloc(1, sizeof *f);
	int n[2] = {s->X, s->Y};
	int rank = s->dims;
	fftwf_complex *cx;
	size_t half = rank == 2 ? (size_t)s->X * (size_t)(s->Y / 2 + 1)
				: (size_t)(s->X / 2 + 1);

	*out = NULL;
	if (!f)
		goto cleanup;
	f->nthr = PNO__MAX(omp_get_max_threads(), 1);
	f->nr = round_slot((size_t)s->X * s->Y);
	f->nc = round_slot(2 * half);
	f->re = pno_calloc((size_t)f->nthr * f->nr, sizeof(float));
	f->cx = pno_calloc((size_t)f->nthr * f->nc, sizeof(float));
	if (!f->re || !f->cx)
		goto cleanup;
	cx = (fftwf_complex *)f->cx;
	pno__fftw_lock();
	if (rank == 1) {
		f->r2c = fftwf_plan_many_dft_r2c(1, n, 1, f->re, NULL, 1, 0, cx,
						 NULL, 1, 0, FFTW_ESTIMATE);
		f->c2r = fftwf_plan_many_dft_c2r(1, n, 1, cx, NULL, 1, 0, f->re,
						 NULL, 1, 0, FFTW_ESTIMATE);
	} else {
		/* rows along Y, then only the M2 retained columns along X */
		int hy = s->Y / 2 + 1;
		f->r2c = fftwf_plan_many_dft_r2c(1, n + 1, s->X, f->re, NULL, 1,
						 s->Y, cx, NULL, 1, hy,
						 FFTW_ESTIMATE);
		f->c2r = fftwf_plan_many_dft_c2r(1, n + 1, s->X, cx, NULL, 1, hy,
						 f->re, NULL, 1, s->Y,
						 FFTW_ESTIMATE);
		f->colf = fftwf_plan_many_dft(1, n, s->M2, cx, NULL, hy, 1, cx,
					      NULL, hy, 1, FFTW_FORWARD,
					      FFTW_ESTIMATE);
		f->colb = fftwf_plan_many_dft(1, n, s->M2, cx, NULL, hy, 1, cx,
					      NULL, hy, 1, FFTW_BACKWARD,
					      FFTW_ESTIMATE);
	}
	pno__fftw_unlock();
	if (!f->r2c || !f->c2r || (rank == 2 && (!f->colf || !f->colb))) {
		st = pno__errorf(PNO_STATUS_INTERNAL,
				 "spectral: FFTW could not plan a %dD transform "
				 "of %d x %d", rank, s->X, s->Y);
		goto cleanup;
	}
	*out = f;
	f = NULL;
	st = PNO_STATUS_OK;
cleanup:
	pno__spectral_fftw_free(f);
	if (st == PNO_STATUS_NOMEM)
		pno__errorf(st, "spectral: out of memory for FFTW buffers");
	return st;
}

/* Thread count of a stage loop: never more than the slots made at init. */
static int stage_threads(const struct pno__spectral_fftw *f)
{
	return PNO__MIN(f->nthr, omp_get_max_threads());
}

/* Half-spectrum index (complex) of mode k of a slice. */
static size_t mode_index(const struct pno_spectral *s, int k)
{
	if (s->dims == 1)
		return (size_t)k;
	int r = k / s->M2, m2 = k % s->M2;
	return (size_t)pno__row_freq(r, s->M1, s->X) * (s->Y / 2 + 1) + m2;
}

/* Hermitian weight of mode k along the last axis. */
static int mode_weight(const struct pno_spectral *s, int k)
{
	if (s->dims == 1)
		return pno__herm_weight(k, s->X);
	return pno__herm_weight(k % s->M2, s->Y);
}

/* Retained modes of r2c(in) times scale(k), for every slice. */
static void forward_modes(const struct pno_spectral *s, float *z,
			  const float *in, int herm, float scale, int C, int B)
{
	struct pno__spectral_fftw *f = s->impl->f;
	size_t N = (size_t)s->X * s->Y;
	int BC = B * C, K = s->K;
#pragma omp parallel for schedule(static) num_threads(stage_threads(f))
	for (int bc = 0; bc < BC; bc++) {
		int t = omp_get_thread_num();
		float *re = f->re + (size_t)t * f->nr;
		float *cx = f->cx + (size_t)t * f->nc;
		memcpy(re, in + (size_t)bc * N, N * sizeof *re);
		fftwf_execute_dft_r2c(f->r2c, re, (fftwf_complex *)cx);
		if (f->colf)
			fftwf_execute_dft(f->colf, (fftwf_complex *)cx,
					  (fftwf_complex *)cx);
		for (int k = 0; k < K; k++) {
			const float *c = cx + 2 * mode_index(s, k);
			float a = herm ? scale * mode_weight(s, k) : scale;
			float *o = z + pno__mode_off(k, bc / C, bc % C, B, C);
			o[0] = a * c[0];
			o[C] = a * c[1];
		}
	}
}

/* c2r of the zero-padded modes z(k) * scale(k) into out (set or add). */
static void inverse_modes(const struct pno_spectral *s, float *out,
			  const float *z, int herm, float scale, int add,
			  int C, int B)
{
	struct pno__spectral_fftw *f = s->impl->f;
	size_t N = (size_t)s->X * s->Y;
	int BC = B * C, K = s->K;
#pragma omp parallel for schedule(static) num_threads(stage_threads(f))
	for (int bc = 0; bc < BC; bc++) {
		int t = omp_get_thread_num();
		float *re = f->re + (size_t)t * f->nr;
		float *cx = f->cx + (size_t)t * f->nc;
		float *o = out + (size_t)bc * N;
		memset(cx, 0, f->nc * sizeof *cx);
		for (int k = 0; k < K; k++) {
			float *c = cx + 2 * mode_index(s, k);
			float a = herm ? scale / mode_weight(s, k) : scale;
			const float *i = z + pno__mode_off(k, bc / C, bc % C, B, C);
			c[0] = a * i[0];
			c[1] = a * i[C];
		}
		if (f->colb)
			fftwf_execute_dft(f->colb, (fftwf_complex *)cx,
					  (fftwf_complex *)cx);
		fftwf_execute_dft_c2r(f->c2r, (fftwf_complex *)cx, re);
		if (add) {
			for (size_t j = 0; j < N; j++)
				o[j] += re[j];
		} else {
			memcpy(o, re, N * sizeof *o);
		}
	}
}

void pno__spectral_fftw_analyze(const struct pno_spectral *s, float *xhat,
				const float *x, int C, int B)
{
	forward_modes(s, xhat, x, 0, 1.0f, C, B);
}

void pno__spectral_fftw_synthesize(const struct pno_spectral *s, float *y,
				   const float *yhat, int C, int B)
{
	float inv_n = (float)(1.0 / ((double)s->X * s->Y));
	inverse_modes(s, y, yhat, 0, inv_n, 0, C, B);
}

void pno__spectral_fftw_synthesize_backward(const struct pno_spectral *s,
					    float *dyhat, const float *dy,
					    int C, int B)
{
	float inv_n = (float)(1.0 / ((double)s->X * s->Y));
	forward_modes(s, dyhat, dy, 1, inv_n, C, B);
}

void pno__spectral_fftw_analyze_backward(const struct pno_spectral *s,
					 float *dx, const float *dxhat, int C,
					 int B)
{
	inverse_modes(s, dx, dxhat, 1, 1.0f, 1, C, B);
}
