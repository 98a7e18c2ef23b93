/*
 * pno dist: the few collective operations data-parallel work needs, over
 * MPI when the library is built with it (PNO_HAVE_MPI) and launched under
 * an MPI launcher, else as single-process no-ops (rank 0 of 1).
 *
 * One process group: the ranks of MPI_COMM_WORLD, through a private
 * duplicate so pno's messages never meet a program's own. pno_dist_init
 * calls MPI_Init only when the environment says the process was started
 * by a launcher (mpirun/mpiexec/srun: OMPI_COMM_WORLD_SIZE, PMIX_RANK,
 * PMI_RANK or PMI_SIZE set), so a plain `pno ...` never pays for an MPI
 * singleton start-up; if the program has already initialized MPI itself,
 * pno uses it and leaves finalizing to the program.
 *
 * Every collective must be called by every rank in the same order with
 * matching sizes (MPI's rule). MPI errors are returned, not fatal:
 * PNO_STATUS_IO with MPI's message. The usual way a failure on one rank
 * reaches the others is pno_dist_agree: each rank passes its status, all
 * receive the first failure (lowest rank) with its message, so all ranks
 * stop together with the same error instead of waiting forever in the
 * next collective.
 *
 * Not thread-safe: call from one thread (MPI is initialized with
 * MPI_THREAD_FUNNELED; OpenMP regions never communicate).
 */
#ifndef PNO_DIST_H
#define PNO_DIST_H

#include "pno/core.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Join the process group (MPI_Init_thread if launched by an MPI launcher
 * and MPI is not yet initialized); argc/argv may be NULL. Single process
 * otherwise, and always without PNO_HAVE_MPI. Idempotent. Errors: MPI
 * initialization failing (PNO_STATUS_IO). */
enum pno_status pno_dist_init(int *argc, char ***argv);
/* Leave it (MPI_Finalize if pno_dist_init called MPI_Init). Safe without
 * init and twice. Call on every rank after the last collective. */
void pno_dist_finalize(void);

/* This process's rank in [0, size) and the number of ranks (0 and 1
 * before init or without MPI). */
int pno_dist_rank(void);
int pno_dist_size(void);
/* 1 on rank 0: the rank that prints, writes files and owns the result. */
int pno_dist_is_root(void);
/* 1 if built with MPI support (whether or not this run uses it). */
int pno_dist_compiled(void);

/* Wait until every rank has called it. */
enum pno_status pno_dist_barrier(void);
/* A barrier that sleeps while it waits (MPI_Ibarrier tested every poll_s
 * seconds, poll_s in (0, 10]): Open MPI's blocking collectives busy-poll,
 * so a rank done early (pno bench, pno generate) would otherwise burn a
 * core the others need. Every rank calls it at the same point. */
enum pno_status pno_dist_barrier_idle(double poll_s);
/* Copy `bytes` bytes of buf from rank `root` to every rank's buf. */
enum pno_status pno_dist_bcast(void *buf, size_t bytes, int root);
/* In place: buf[i] = sum over ranks of buf[i] (n elements). The sum order
 * is MPI's (the same on every rank: every rank gets identical bits). */
enum pno_status pno_dist_allreduce_sum_f32(float *buf, size_t n);
enum pno_status pno_dist_allreduce_sum_f64(double *buf, size_t n);
/* Rank r's `bytes` bytes of send land at recv + r * bytes on root (recv:
 * size * bytes, used on root only; may be NULL elsewhere). */
enum pno_status pno_dist_gather(void *recv, const void *send, size_t bytes,
				int root);
/* Variable sizes: rank r sends `bytes` (its own count); on root, counts[r]
 * must equal rank r's bytes and rank r's data lands at recv + sum of
 * counts[0..r). counts and recv are used on root only. Each count must be
 * below 2^31 bytes (MPI's int counts). */
enum pno_status pno_dist_gatherv(void *recv, const size_t *counts,
				 const void *send, size_t bytes, int root);

/* The agreed error. Every rank passes its status `s` and, if failed, a
 * message (NULL: pno_last_error()). Returns PNO_STATUS_OK on every rank if
 * every rank passed OK; otherwise on every rank the status of the lowest
 * failing rank, with pno_last_error() set to that rank's message (prefixed
 * "rank R: " when there is more than one rank). One MPI_Allreduce when all
 * is well, plus one broadcast on failure. A failure of the agreement
 * itself is PNO_STATUS_IO. */
enum pno_status pno_dist_agree(enum pno_status s, const char *msg);

/* Bytes this rank has sent in collectives since init (payload only, as
 * the reduction/broadcast algorithms' volume depends on the MPI library:
 * an allreduce of n bytes counts n). For benchmarks. */
uint64_t pno_dist_bytes(void);

#ifdef __cplusplus
}
#endif
#endif
