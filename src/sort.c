/* Sorting of float arrays without allocation (see internal.h). */
#include "internal.h"

/* Ascending sort of floats without NaN (infinities sort to the ends):
 * quicksort (median of three, recursion
 * on the smaller side so the stack stays O(log n)), insertion below 16.
 * Allocates nothing, unlike qsort in some libcs. */
void pno__sort_floats(float *v, size_t n)
{
	while (n > 16) {
		size_t mid = n / 2, i = 0, j = n - 1;
		float t;
#define SW(a, b) (t = v[a], v[a] = v[b], v[b] = t)
		if (v[mid] < v[0])
			SW(mid, 0);
		if (v[n - 1] < v[0])
			SW(n - 1, 0);
		if (v[n - 1] < v[mid])
			SW(n - 1, mid);
		float piv = v[mid];
		for (;;) {
			while (v[i] < piv)
				i++;
			while (piv < v[j])
				j--;
			if (i >= j)
				break;
			SW(i, j);
			i++, j--;
		}
#undef SW
		size_t nl = j + 1;
		if (nl < n - nl) {
			pno__sort_floats(v, nl);
			v += nl, n -= nl;
		} else {
			pno__sort_floats(v + nl, n - nl);
			n = nl;
		}
	}
	for (size_t i = 1; i < n; i++) {
		float x = v[i];
		size_t j = i;
		while (j > 0 && v[j - 1] > x) {
			v[j] = v[j - 1];
			j--;
		}
		v[j] = x;
	}
}
