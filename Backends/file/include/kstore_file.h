/* The plain-file storage backend: one directory per log, segment files named by base offset, a
 * sparse offset index and a time index per segment (Kafka's LogSegment layout), pwrite + fdatasync.
 * DURABLE, not NONBLOCKING: every call may block on I/O. Implements kstore.h (ABI version 1).
 *
 * Instance options: "path" (required) — the data directory, which must exist and be writable.
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
