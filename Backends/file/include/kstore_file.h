/* The plain-file storage backend: one directory per log, segment files named by base offset, a
 * sparse offset index and a time index per segment (Kafka's LogSegment layout), pwrite + fdatasync.
 * DURABLE, not NONBLOCKING: every call may block on I/O. Implements kstore.h (ABI version 1).
 *
 * Instance options: "path" (required) — the data directory, which must exist and be writable.
 * Log options (open_log): "segment.bytes" (default 1 GiB), "segment.ms" (default 7 days) and
 * "index.interval.bytes" (default 4096: bytes of log data between two offset index entries), all
 * positive decimals.
 *
 * Layout of a data directory X:
 *   X/.lock                  flock()ed by the open instance; holds its pid
 *   X/.fjord-backend         "file 1\n": which backend (and format version) owns the directory
 *   X/logs/<name>/           one directory per log
 *       <base>.log           frames, <base> = %020lld of the first offset stored in the segment
 *       <base>.index         64-byte summary header + 32-byte entries (offset -> position)
 *       <base>.timeindex     32-byte entries (running max timestamp -> offset)
 *       meta                 the log start offset (write-temp + fsync + rename + directory fsync)
 *       clean-shutdown       present only while the log is closed cleanly
 *   X/deleted/               logs being deleted (renamed here first, then removed)
 * The frame, index and summary formats are described in kstore_file.c.
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
 * Fault injection into the backend's I/O layer (tests only). Every system call the backend makes
 * goes through one small static layer; these instance control ops make chosen calls fail there.
 * ------------------------------------------------------------------------------------------- */

/* Instance control op: arm a fault. argument: const kstore_file_fault *. Replaces any fault armed
 * earlier for the same operation. */
#define KSTORE_FILE_CONTROL_INJECT_FAULT 0x46490001
/* Instance control op: disarm every fault. argument: NULL. */
#define KSTORE_FILE_CONTROL_CLEAR_FAULTS 0x46490002

/* Which system calls a fault applies to (kstore_file_fault.operation). */
#define KSTORE_FILE_IO_WRITE 1    /* pwrite/pwritev of segment, index and metadata files */
#define KSTORE_FILE_IO_SYNC 2     /* fdatasync/fsync of files and directories */
#define KSTORE_FILE_IO_READ 3     /* pread */
#define KSTORE_FILE_IO_TRUNCATE 4 /* ftruncate */
#define KSTORE_FILE_IO_OPEN 5     /* openat (opening and creating files) */

/* How the call fails (kstore_file_fault.fault). */
#define KSTORE_FILE_FAULT_NO_SPACE 1 /* as with ENOSPC: the device is full */
#define KSTORE_FILE_FAULT_IO 2       /* as with EIO: the device failed */

typedef struct kstore_file_fault {
    /* sizeof(kstore_file_fault). */
    uint32_t struct_size;
    /* KSTORE_FILE_IO_*. */
    uint32_t operation;
    /* KSTORE_FILE_FAULT_*. */
    uint32_t fault;
    /* Let this many calls of the operation succeed first. */
    uint32_t skip_count;
    /* Then fail this many calls (0 disarms the operation). */
    uint32_t fail_count;
    /* KSTORE_FILE_IO_WRITE only: when non-zero, the first failing call really writes half of its
     * bytes and returns that short count, and the call after it fails — a device that fills up in
     * the middle of a write. */
    uint32_t partial;
} kstore_file_fault;

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
