/* The faulty shim (tests only): a backend table that wraps any other backend table, the way an
 * SQLite VFS shim wraps another VFS and LevelDB's fault-injection Env wraps an Env.
 *
 * - Its members call the inner backend's members and, on a seeded schedule, inject ABI-level
 *   failures instead: append and sync complete with KSTORE_ERR_NO_SPACE or KSTORE_ERR_IO, read
 *   answers KSTORE_ERR_IO, open_log answers KSTORE_ERR_BUSY. Injected failures keep kstore.h's
 *   contract: completions stay in order, a failed append leaves the log's end at its first offset
 *   (later appends already accepted fail too), NO_SPACE is retryable from that offset, and IO fails
 *   the log until it is reopened.
 * - A crash model: per log it remembers the end offset covered by the last completed sync; the
 *   KSTORE_FAULTY_CONTROL_CRASH op makes every inner log drop what came after (truncate_to on the
 *   inner log) and turns every open handle of the shim into a dead one, as if the process had died.
 *   Logs opened afterwards work normally, so host and broker crash tests run in-process.
 * - It wraps only what the inner backend has: a log table member is NULL when the inner log's is.
 *   The instance `control` member is always present (it carries the shim's own ops) and forwards
 *   ops it does not know to the inner backend.
 *
 * The schedule is deterministic: whether the n-th call of an operation on a log fails depends only
 * on (seed, log name, operation, n), not on thread interleaving, so a run replays by its seed.
 */
#ifndef KSTORE_FAULTY_H
#define KSTORE_FAULTY_H
#include "kstore.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Chances of injected failures, in parts per million of calls. */
typedef struct kstore_faulty_config {
    /* sizeof(kstore_faulty_config). */
    uint32_t struct_size;
    uint32_t reserved;
    uint64_t seed;
    /* append completes with KSTORE_ERR_NO_SPACE / KSTORE_ERR_IO. */
    uint32_t append_no_space_ppm;
    uint32_t append_io_ppm;
    /* sync completes with KSTORE_ERR_IO. */
    uint32_t sync_io_ppm;
    /* read answers KSTORE_ERR_IO. */
    uint32_t read_io_ppm;
    /* open_log answers KSTORE_ERR_BUSY. */
    uint32_t open_log_busy_ppm;
    uint32_t reserved2;
} kstore_faulty_config;

/* Returns a backend table named "faulty" whose instances wrap instances of `inner` (opened with the
 * same options), injecting failures per `config` (copied; NULL: inject nothing). The table stays
 * valid until kstore_faulty_release. NULL when `inner` lacks a REQUIRED member or every one of the
 * shim's 64 table slots is in use (kstore_backend.open gets no table pointer, so each table needs an
 * open function of its own). A table serves any number of instances: to give instances different
 * schedules, wrap once and use KSTORE_FAULTY_CONTROL_SET_CONFIG on each instance. */
const kstore_backend *kstore_faulty_wrap(const kstore_backend *inner, const kstore_faulty_config *config);

/* Frees a table from kstore_faulty_wrap. Call it only after every instance of the table is closed. */
void kstore_faulty_release(const kstore_backend *table);

/* Instance control ops. */

/* The crash: every log (open or not) that this instance has seen drops the entries after the end
 * covered by its last completed sync (via the inner log's truncate_to), and every handle open now
 * answers KSTORE_ERR_IO to everything but state and close. Call it while no other call on the
 * instance is running. argument: NULL. KSTORE_ERR_UNSUPPORTED when the inner logs cannot truncate. */
#define KSTORE_FAULTY_CONTROL_CRASH 0x46410001
/* Replaces the chances and the seed. argument: const kstore_faulty_config *. */
#define KSTORE_FAULTY_CONTROL_SET_CONFIG 0x46410002
/* Fails the next `count` calls of one operation on any log with `status`, before the schedule.
 * argument: const kstore_faulty_fail_next *. */
#define KSTORE_FAULTY_CONTROL_FAIL_NEXT 0x46410003
/* Counts of what was injected. argument: kstore_faulty_stats * with struct_size set. */
#define KSTORE_FAULTY_CONTROL_STATS 0x46410004

/* Holds back every sync completion of the instance — and, to keep kstore.h's order, every
 * completion queued after it on the same log — until KSTORE_FAULTY_CONTROL_RELEASE_SYNCS, which
 * delivers them. For tests of what happens while a sync is outstanding. argument: NULL. Call
 * RELEASE while no log of the instance is being closed. */
#define KSTORE_FAULTY_CONTROL_HOLD_SYNCS 0x46410005
#define KSTORE_FAULTY_CONTROL_RELEASE_SYNCS 0x46410006

/* Operations (kstore_faulty_fail_next.operation). */
#define KSTORE_FAULTY_OP_APPEND 1
#define KSTORE_FAULTY_OP_SYNC 2
#define KSTORE_FAULTY_OP_READ 3
#define KSTORE_FAULTY_OP_OPEN_LOG 4

typedef struct kstore_faulty_fail_next {
    uint32_t struct_size;
    /* KSTORE_FAULTY_OP_*. */
    uint32_t operation;
    /* The status to fail with (a KSTORE_ERR_* code). For append and sync a retryable status behaves
     * like NO_SPACE (the host may retry), any other like IO (the log is failed). */
    int32_t status;
    uint32_t count;
} kstore_faulty_fail_next;

typedef struct kstore_faulty_stats {
    uint32_t struct_size;
    uint32_t reserved;
    uint64_t append_failures;
    uint64_t sync_failures;
    uint64_t read_failures;
    uint64_t open_log_failures;
    uint64_t crashes;
    /* Offsets removed from inner logs by crashes. */
    uint64_t dropped_offsets;
} kstore_faulty_stats;

#ifdef __cplusplus
}
#endif
#endif
