/* The plain-file storage backend: one directory per log, segment files named by base offset, a
 * sparse offset index and a time index per segment (Kafka's LogSegment layout), pwrite + fdatasync.
 * DURABLE, not NONBLOCKING: every call may block on I/O. Implements kstore.h (ABI version 1).
 *
 * Instance options: "path" (required) — the data directory, which must exist and be writable;
 * "file.open.files.max" — the most descriptors the instance keeps open (a decimal in
 * [4, 2^30]; default: half the soft RLIMIT_NOFILE when the instance opens, leaving the rest for
 * sockets; 2^20 when the limit is unlimited). Every descriptor of a log directory and of a
 * segment's .log, .index and .timeindex is leased from one LRU cache for the duration of a call;
 * when more than the limit are open, the least recently used idle ones are closed (a .log with
 * writes no fdatasync covered yet is fdatasync'ed first, and a failure of that fdatasync fails its
 * log). So any number of logs work under a small RLIMIT_NOFILE, at the price of reopening files of
 * logs that were not used recently. Calls in progress may hold up to four leased descriptors each
 * above the limit. When an open still fails with EMFILE or ENFILE after idle descriptors were
 * closed and it was retried once, the call answers KSTORE_ERR_BUSY (retryable) with a message
 * naming both limits.
 * Log options (open_log): "segment.bytes" (default 1 GiB), "segment.ms" (default 7 days) and
 * "index.interval.bytes" (default 4096: bytes of log data between two offset index entries), all
 * positive decimals.
 *
 * The data directory's layout, the frame, index, summary and meta formats, the markers and the
 * recovery rules are documented in docs/storage-formats.md ("file backend"). The instance control
 * op KSTORE_KIT_CONTROL_SET_FAULT_HOOK (Backends/kit, kstore_kit_io.h) installs a test fault hook
 * under every system call; the faulty shim (Backends/faulty) drives it.
 */
#ifndef KSTORE_FILE_H
#define KSTORE_FILE_H
#include "kstore.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Returns the file backend's static table (name "file"). */
const kstore_backend *kstore_file_backend(void);

/* ---------------------------------------------------------------------------------------------
 * The descriptor cache (tests and operators).
 * ------------------------------------------------------------------------------------------- */

/* Instance control op: describe the descriptor cache. argument: kstore_file_descriptor_info * with
 * struct_size set by the caller; fields that fit are filled. kstore.h's KSTORE_CONTROL_STATS reports
 * the same figures (open_descriptors, open_descriptors_limit, descriptor_*_total) beside the write
 * and sync counters (file_statistics.c). */
#define KSTORE_FILE_CONTROL_DESCRIPTOR_INFO 0x46490001

typedef struct kstore_file_descriptor_info {
    uint32_t struct_size;
    uint32_t reserved;
    /* file.open.files.max. */
    uint64_t limit;
    /* Descriptors open now (leased, idle or being closed), and the most ever open at once. */
    uint64_t open_count;
    uint64_t peak_open_count;
    /* Opens the cache made (misses), and leases it answered from an open descriptor (hits). */
    uint64_t open_calls;
    uint64_t hits;
    /* Idle descriptors closed to make room, and how many of them needed an fdatasync first. */
    uint64_t evictions;
    uint64_t eviction_syncs;
    /* Opens retried after EMFILE or ENFILE (idle descriptors closed first). */
    uint64_t exhausted_retries;
} kstore_file_descriptor_info;

/* ---------------------------------------------------------------------------------------------
 * What open_log found (tests and operators).
 * ------------------------------------------------------------------------------------------- */

/* Log control op: describe the recovery that open_log ran. argument: kstore_file_recovery_info *
 * with struct_size set by the caller; fields that fit are filled. */
#define KSTORE_FILE_LOG_CONTROL_RECOVERY_INFO 0x46490101

typedef struct kstore_file_recovery_info {
    uint32_t struct_size;
    /* 1 when the log had been closed cleanly, so its data and indexes were trusted and only the
     * last segment's tail and the index summaries were verified; 0 after a crash (every frame's
     * CRC was verified and every index rebuilt). */
    uint32_t clean;
    /* Segments of the log after recovery. */
    uint64_t segment_count;
    /* Bytes and frames whose checksums were verified. */
    uint64_t verified_bytes;
    uint64_t verified_frames;
    /* Wall time spent verifying and rebuilding, in nanoseconds. */
    uint64_t scan_nanoseconds;
    /* Bytes of torn tail removed (frames cut short by a crash and the garbage after them). */
    uint64_t truncated_bytes;
    /* Segments whose offset and time indexes were rebuilt. */
    uint64_t rebuilt_index_count;
    /* 1 when the start-offset file was unreadable and the start was taken from the oldest segment. */
    uint32_t meta_damaged;
    uint32_t reserved;
} kstore_file_recovery_info;

#ifdef __cplusplus
}
#endif
#endif
