/* faulty_internal.h — the faulty shim's private header: its types and the functions its files
 * share. Nothing here is part of the ABI.
 *
 * Files:
 *   kstore_faulty.c   the tables (one per wrapped backend), the instance members, the crash model
 *   faulty_log.c      the log members and the in-order completion queue
 *   faulty_schedule.c the ABI-level schedule (seeded per log name, FAIL_NEXT) and the error slot
 *   faulty_io.c       I/O-level faults through the kit's fault hook of the inner instance
 *
 * Completions: every accepted append and sync of a log becomes an item in the log's FIFO; the
 * inner backend's callbacks and the shim's injected failures mark items done, and items are handed
 * to the host strictly in order (kstore.h "Completions"), by whichever thread finds the head done.
 * An injected failure never reaches the inner log, so the inner log's end already is the failed
 * entry's first offset; appends accepted after it (the host had not seen the failure yet) fail with
 * the same status without reaching the inner log, until the host appends from that offset again.
 *
 * Functions shared between these files are fy_*, with hidden visibility (exported: kstore_* only).
 */
#ifndef FAULTY_INTERNAL_H
#define FAULTY_INTERNAL_H

#include "kstore_faulty.h"
#include "kstore_kit.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#pragma GCC visibility push(hidden)

#define FY_SLOT_COUNT 64
#define FY_OP_COUNT   5

typedef struct fy_instance fy_instance;
typedef struct fy_log fy_log;

/* A member exists if the table's version reaches its "since" and its size covers it, and it is
 * non-NULL (kstore.h). */
#define FY_HAS_SINCE(table, type, member, since)                                                                       \
    ((table)->abi_version >= (since) && offsetof(type, member) + sizeof(void *) <= (size_t)(table)->struct_size &&     \
     (table)->member != NULL)
#define FY_HAS(table, type, member) FY_HAS_SINCE(table, type, member, 1)

/* What the shim remembers about one log name for the life of an instance. */
typedef struct fy_record {
    char *name;
    uint64_t name_hash;
    /* The end covered by the last completed sync; -1 until the log is first opened. */
    int64_t synced_end;
    /* Calls per operation: the schedule's clock. */
    uint64_t calls[FY_OP_COUNT];
    /* The open handle, or NULL. */
    fy_log *open;
} fy_record;

typedef struct fy_item {
    struct fy_item *next;
    kstore_completion completion;
    void *context;
    kstore_status status;
    bool done;
    bool is_sync;
    /* append: its first offset and the end after it. */
    int64_t offset;
    int64_t end_after;
    fy_log *log;
} fy_item;

struct fy_log {
    kstore_log base; /* first member: the handle the host holds */
    kstore_log_methods methods;
    fy_instance *instance;
    fy_record *record;
    kstore_log *inner;

    pthread_mutex_t mutex;
    fy_item *head;
    fy_item *tail;
    bool delivering;
    /* Inner completions still running fy_inner_done: the host may see their item delivered by
     * another thread's fy_drain and close the log before they return, so close waits for zero. */
    int completing;
    /* The end after every accepted append (the inner log's, plus pending ones). */
    int64_t end;
    /* The end after the last append whose success was delivered, in delivery order: what a sync
     * delivered now covers. */
    int64_t confirmed_end;
    bool poisoned;
    int64_t poison_offset;
    kstore_status poison_status;
    /* An injected KSTORE_ERR_IO failed the log (the inner backend's own failures it reports itself). */
    bool failed;
    bool crashed;
};

/* One armed I/O fault (KSTORE_FAULTY_CONTROL_FAIL_IO). */
typedef struct fy_io_slot {
    int32_t error;
    uint32_t skip_count;
    uint32_t fail_count;
    bool torn;
} fy_io_slot;

/* The I/O-level faults of an instance: the kit fault hook installed into the inner instance. */
typedef struct fy_io {
    kstore_kit_fault_hook hook;
    /* Protects everything below; the hook's fast path reads `armed` without it. */
    pthread_mutex_t mutex;
    bool installed;
    /* Read with __atomic builtins: 0 when nothing is armed or scheduled. */
    int armed;
    fy_io_slot slots[KSTORE_FAULTY_IO_SLOTS];
    kstore_faulty_io_schedule schedule;
    /* Calls per operation since the schedule was set: its clock. */
    uint64_t calls[KSTORE_FAULTY_IO_SLOTS];
    uint64_t failures;
} fy_io;

struct fy_instance {
    kstore_instance base; /* first member: the handle the host holds */
    const kstore_backend *inner;
    kstore_instance *inner_instance;

    pthread_mutex_t mutex;
    kstore_faulty_config config;
    fy_record **records;
    size_t record_count;
    size_t record_capacity;
    kstore_status fail_next_status[FY_OP_COUNT];
    uint32_t fail_next_count[FY_OP_COUNT];
    kstore_faulty_stats stats;
    /* KSTORE_FAULTY_CONTROL_HOLD_SYNCS: sync completions (and what follows them) wait. Read without
     * the instance mutex by fy_drain, which holds a log mutex, hence atomic. */
    bool hold_syncs;

    fy_io io;

    /* The shim's own last failure; empty when the latest failure was the inner backend's (then
     * last_error asks the inner backend). */
    kstore_kit_error errors;
};

/* MARK: - faulty_schedule.c */

__attribute__((format(printf, 2, 3))) void fy_set_error(fy_instance *instance, const char *format, ...);
/* The inner backend failed with `status` (if not KSTORE_OK): last_error reads its message. */
kstore_status fy_inner_failed(fy_instance *instance, kstore_status status);
/* splitmix64's finalizer: the schedules' hash. */
uint64_t fy_mix(uint64_t x);
/* The record of `name`, created if missing. Caller holds instance->mutex. NULL: out of memory. */
fy_record *fy_record_for(fy_instance *instance, const char *name);
/* The status the `operation` call on `record` fails with (KSTORE_OK: none); advances the schedule.
 * Caller holds instance->mutex. */
kstore_status fy_decide(fy_instance *instance, fy_record *record, int operation);
/* fy_decide for an open log, counting what it injects. */
kstore_status fy_decide_for_log(fy_log *log, int operation);

/* MARK: - faulty_log.c */

void fy_build_methods(kstore_log_methods *methods, const kstore_log_methods *inner);
/* Hands done items to the host in order. */
void fy_drain(fy_log *log);

/* MARK: - faulty_io.c */

void fy_io_init(fy_io *io);
void fy_io_destroy(fy_io *io);
/* KSTORE_FAULTY_CONTROL_FAIL_IO, _SET_IO_SCHEDULE and _CLEAR_IO. */
kstore_status fy_io_control(fy_instance *instance, int32_t op, void *argument);

#pragma GCC visibility pop

#endif
