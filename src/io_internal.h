/* Helpers shared by the file-format modules (atomic.c, safetensors.c,
 * h5io.c); not installed. */
#ifndef PNO_IO_INTERNAL_H
#define PNO_IO_INTERNAL_H

#include <stddef.h>
#include <stdio.h>

/* I/O fault injection for tests, like the allocator's: the `fail_at`-th
 * I/O point (write, flush, fsync, close, rename; 1-based, counted from the
 * last reset) fails with EIO; 0 never fails. */
void pno__io_fault_reset(long fail_at);
long pno__io_fault_count(void);
/* Count one I/O point; nonzero (with errno = EIO) if it must fail. */
int pno__io_fault(void);

/* fwrite of n bytes that counts as one I/O point; 0 on success, else -1
 * with errno set. */
int pno__fwrite_all(FILE *fp, const void *p, size_t n);


#endif
