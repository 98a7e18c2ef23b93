/* Reference spectral layer straight from the definitions, in double:
 *   xhat(f, c) = sum_{x,n} x[x][n] e^{-2 pi i (f x / X + c n / Y)}
 *   yhat       = sum_i xhat_i w(i, o)
 *   y[x][n]    = 1/(X Y) sum_{retained (f, c)} h_c Re(yhat e^{+2 pi i (...)})
 * with h_c = 1 for the DC and Nyquist column of the half spectrum and 2
 * otherwise; this is torch.fft.irfft2 of the zero-padded half spectrum
 * (its c2r drops Im of those columns, and Re(.) does exactly that).
 * In 1D the half-spectrum axis is X and there is no row axis.
 * Shares nothing with the fast paths on purpose. */
#include "internal.h"
#include "pno/spectral.h"

#include <math.h>
#include <string.h>

/* Mode k as (row frequency, column) on the (R, L) grid. */
static void mode_freqs(const struct pno_spectral *s, int k, int *fr, int *fc)
{
	if (s->dims == 1) {
		*fr = 0;
		*fc = k;
		return;
	}
	int r = k / s->M2;
	*fc = k % s->M2;
	*fr = r < s->M1 ? r : s->X - s->M1 + (r - s->M1);
}

enum pno_status pno_spectral_forward_naive(const struct pno_spectral *s,
					   float *y, const float *x,
					   const float *w, int B)
{
	enum pno_status st = PNO_STATUS_NOMEM;
	int R = s->dims == 2 ? s->X : 1, L = s->dims == 2 ? s->Y : s->X;
	int K = s->K, Ci = s->Ci, Co = s->Co;
	size_t N = (size_t)R * L;
	double *xh = NULL, *yh = NULL, *cr = NULL, *sr = NULL, *cl = NULL,
	       *sl = NULL;

	if (B < 1 || B > s->Bmax)
		return pno__errorf(PNO_STATUS_INVALID,
				   "spectral naive: B = %d outside 1..%d", B,
				   s->Bmax);
	xh = pno_calloc((size_t)B * Ci * K * 2, sizeof *xh);
	yh = pno_calloc((size_t)B * Co * K * 2, sizeof *yh);
	cr = pno_calloc((size_t)R, sizeof *cr);
	sr = pno_calloc((size_t)R, sizeof *sr);
	cl = pno_calloc((size_t)L, sizeof *cl);
	sl = pno_calloc((size_t)L, sizeof *sl);
	if (!xh || !yh || !cr || !sr || !cl || !sl) {
		pno__errorf(st, "spectral naive: out of memory");
		goto cleanup;
	}
	for (int j = 0; j < R; j++) {
		cr[j] = cos(2.0 * M_PI * j / R);
		sr[j] = sin(2.0 * M_PI * j / R);
	}
	for (int j = 0; j < L; j++) {
		cl[j] = cos(2.0 * M_PI * j / L);
		sl[j] = sin(2.0 * M_PI * j / L);
	}
	/* analysis: e^{-i(a+b)} = (ca cb - sa sb) - i (sa cb + ca sb) */
	for (int bi = 0; bi < B * Ci; bi++) {
		const float *xi = x + (size_t)bi * N;
		for (int k = 0; k < K; k++) {
			int fr, fc;
			double re = 0, im = 0;
			mode_freqs(s, k, &fr, &fc);
			for (int a = 0; a < R; a++) {
				int ja = (int)(((long)fr * a) % R);
				for (int b = 0; b < L; b++) {
					int jb = (int)(((long)fc * b) % L);
					double v = xi[(size_t)a * L + b];
					re += v * (cr[ja] * cl[jb] - sr[ja] * sl[jb]);
					im -= v * (sr[ja] * cl[jb] + cr[ja] * sl[jb]);
				}
			}
			xh[((size_t)bi * K + k) * 2] = re;
			xh[((size_t)bi * K + k) * 2 + 1] = im;
		}
	}
	/* mixing */
	for (int b = 0; b < B; b++)
		for (int o = 0; o < Co; o++)
			for (int k = 0; k < K; k++) {
				double re = 0, im = 0;
				for (int i = 0; i < Ci; i++) {
					const double *p = xh + (((size_t)b * Ci + i) * K + k) * 2;
					const float *q = w + (((size_t)i * Co + o) * K + k) * 2;
					re += p[0] * q[0] - p[1] * q[1];
					im += p[0] * q[1] + p[1] * q[0];
				}
				yh[(((size_t)b * Co + o) * K + k) * 2] = re;
				yh[(((size_t)b * Co + o) * K + k) * 2 + 1] = im;
			}
	/* synthesis: Re(z e^{+i(a+b)}) */
	for (int bo = 0; bo < B * Co; bo++) {
		for (int a = 0; a < R; a++)
			for (int b = 0; b < L; b++) {
				double acc = 0;
				for (int k = 0; k < K; k++) {
					int fr, fc;
					mode_freqs(s, k, &fr, &fc);
					int ja = (int)(((long)fr * a) % R);
					int jb = (int)(((long)fc * b) % L);
					double h = (fc == 0 || 2 * fc == L) ? 1 : 2;
					double c = cr[ja] * cl[jb] - sr[ja] * sl[jb];
					double sn = sr[ja] * cl[jb] + cr[ja] * sl[jb];
					const double *z = yh + ((size_t)bo * K + k) * 2;
					acc += h * (z[0] * c - z[1] * sn);
				}
				y[(size_t)bo * N + (size_t)a * L + b] =
					(float)(acc / (double)N);
			}
	}
	st = PNO_STATUS_OK;
cleanup:
	pno_free(xh);
	pno_free(yh);
	pno_free(cr);
	pno_free(sr);
	pno_free(cl);
	pno_free(sl);
	return st;
}
