/* The faulty shim (tests only): a backend table that wraps any other backend table, the way an
 * SQLite VFS shim wraps another VFS and LevelDB's fault-injection Env wraps an Env. It is the one
 * driver of faults in Fjord: backends carry no fault controls of their own.
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
 * - I/O-level failures below the inner backend: for a backend built on the kit (Backends/kit) the
 *   shim installs the kit's fault hook into the inner instance (KSTORE_KIT_CONTROL_SET_FAULT_HOOK),
 *   so chosen system calls — writes, syncs, reads, truncations, opens, allocations — fail with an
 *   errno (ENOSPC, EIO, …) or land torn, and the inner backend's own reaction is what is tested.
 *   Failures of the inner backend pass through unchanged: its contract (for example a log failed
 *   after KSTORE_ERR_IO) is what the host sees.
 * - It wraps only what the inner backend has: a log table member is NULL when the inner log's is.
 *   The instance `control` member is always present (it carries the shim's own ops) and forwards
 *   ops it does not know to the inner backend.
 *
 * The schedules are deterministic: whether the n-th call of an operation on a log fails depends
 * only on (seed, log name, operation, n), not on thread interleaving, so a run replays by its seed.
 * The I/O schedule decides by (seed, I/O operation, n), n counting that operation's calls on the
 * instance since the schedule was set: it replays when the calls come in the same order (one log,
 * or logs driven one at a time).
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
#define KSTORE_FAULTY_CONTROL_HOLD_SYNCS    0x46410005
#define KSTORE_FAULTY_CONTROL_RELEASE_SYNCS 0x46410006

/* Fails chosen I/O calls of the inner backend through the kit's fault hook: the next fail_count
 * calls of one operation, after skip_count of them succeed. Replaces what was armed before for that
 * operation; fail_count 0 disarms it. Armed calls fail before the seeded I/O schedule is asked.
 * argument: const kstore_faulty_io_fault *. KSTORE_ERR_UNSUPPORTED when the inner backend has no
 * fault hook (it is not built on the kit, or not durable: the memory backend makes no I/O). */
#define KSTORE_FAULTY_CONTROL_FAIL_IO 0x46410007
/* Sets the seeded I/O schedule (and restarts its clock). argument: const kstore_faulty_io_schedule *;
 * KSTORE_ERR_UNSUPPORTED as for FAIL_IO. */
#define KSTORE_FAULTY_CONTROL_SET_IO_SCHEDULE 0x46410008
/* Disarms every I/O fault and clears the I/O schedule. argument: NULL. */
#define KSTORE_FAULTY_CONTROL_CLEAR_IO 0x46410009

/* Operations (kstore_faulty_fail_next.operation). */
#define KSTORE_FAULTY_OP_APPEND   1
#define KSTORE_FAULTY_OP_SYNC     2
#define KSTORE_FAULTY_OP_READ     3
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

/* I/O operations (kstore_faulty_io_fault.operation, the index of kstore_faulty_io_schedule's arrays);
 * the same numbers as KSTORE_KIT_IO_* (kstore_kit_io.h). */
#define KSTORE_FAULTY_IO_WRITE    1 /* pwrite/pwritev (and io_uring writes) */
#define KSTORE_FAULTY_IO_SYNC     2 /* fdatasync/fsync of files and directories */
#define KSTORE_FAULTY_IO_READ     3 /* pread */
#define KSTORE_FAULTY_IO_TRUNCATE 4 /* ftruncate */
#define KSTORE_FAULTY_IO_OPEN     5 /* openat: opening and creating files (a new segment) */
#define KSTORE_FAULTY_IO_ALLOCATE 6 /* fallocate: preparing a segment */
/* Slots of kstore_faulty_io_schedule's arrays (index 0 and 7 unused). */
#define KSTORE_FAULTY_IO_SLOTS 8

typedef struct kstore_faulty_io_fault {
    uint32_t struct_size;
    /* KSTORE_FAULTY_IO_*. */
    uint32_t operation;
    /* The errno the calls fail with (ENOSPC, EIO, …; > 0). */
    int32_t error;
    /* Let this many calls of the operation succeed first. */
    uint32_t skip_count;
    /* Then fail this many calls (0 disarms the operation). */
    uint32_t fail_count;
    /* KSTORE_FAULTY_IO_WRITE only: when non-zero, each failing write really writes the first half of
     * its bytes before it fails — a device that fills up in the middle of a write. */
    uint32_t torn;
} kstore_faulty_io_fault;

typedef struct kstore_faulty_io_schedule {
    uint32_t struct_size;
    uint32_t reserved;
    uint64_t seed;
    /* Per KSTORE_FAULTY_IO_*: the chance, in parts per million, that a call fails. */
    uint32_t fail_ppm[KSTORE_FAULTY_IO_SLOTS];
    /* Per KSTORE_FAULTY_IO_*: the errno a failing call fails with (0: EIO). */
    int32_t error[KSTORE_FAULTY_IO_SLOTS];
    /* Of the writes that fail, parts per million that are torn (half their bytes land first). */
    uint32_t torn_write_ppm;
    uint32_t reserved2;
} kstore_faulty_io_schedule;

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
    /* I/O calls of the inner backend failed through the fault hook (armed or scheduled). */
    uint64_t io_failures;
} kstore_faulty_stats;

#ifdef __cplusplus
}
#endif
#endif
