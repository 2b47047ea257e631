/* The io_uring write-ahead-log storage backend: durable, non-blocking, one shared WAL whose group
 * commit covers every log of the instance. Implements kstore.h. On-disk format:
 * docs/storage-formats.md ("uring backend"). */
#ifndef KSTORE_URING_H
#define KSTORE_URING_H
#include "kstore.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Returns the uring backend's static table (name "uring"). */
const kstore_backend *kstore_uring_backend(void);

/* Instance options (besides "path", the data directory, which is required):
 *   "uring.segment.bytes"    largest size of a preallocated WAL segment file (default 256 MiB;
 *                            65536 .. 1 GiB, a multiple of 4096); an instance's first segments
 *                            start at 64 KiB and double up to it
 *   "uring.staging.bytes"    bound on staged, not yet written frames (default 64 MiB; at least
 *                            twice uring.write.bytes); append answers KSTORE_ERR_BUSY when it is
 *                            reached (the host waits and retries)
 *   "uring.write.bytes"      largest write the I/O thread gathers from staged frames (default 1 MiB)
 *   "uring.writes.inflight"  writes the I/O thread keeps in flight at once (default 8)
 *   "uring.direct"           "auto" (default): the WAL is written with O_DIRECT from aligned
 *                            staging where the data directory's file system takes it and reports
 *                            its direct-I/O alignment (statx STATX_DIOALIGN; ext4, xfs), and
 *                            buffered elsewhere (tmpfs); "on": O_DIRECT or open fails with
 *                            KSTORE_ERR_UNSUPPORTED; "off": buffered writes through the page cache.
 *                            Buffered WAL writes to ext4 are each handed to an io-wq kernel worker
 *                            that copies them into the page cache; direct ones are submitted without
 *                            blocking and copy nothing. Direct writes start aligned and end with a
 *                            pad frame (docs/storage-formats.md ("uring backend")); either mode reads the other's
 *                            data directories.
 *   "uring.read.cache.bytes" memory for the most recently written WAL bytes, from which reads of the
 *                            logs' tails are served (default 32 MiB; "0": none). Direct writes leave
 *                            nothing in the page cache; older data is read from the files.
 *   "uring.segment.zero"     "auto" (default): "write" when the WAL is written with O_DIRECT,
 *                            "fallocate" otherwise; "fallocate": new segments are left as unwritten
 *                            extents, which read as zeros (half the disk writes; fdatasync journals
 *                            the extent conversions); "write": zero-filled with real writes ahead of
 *                            need (later overwrites change no extent metadata, and direct writes
 *                            into them need no conversion; filling stops early rather than stall
 *                            the WAL). Retired segments are reused as spares, already written.
 *   "uring.test.io_uring_error"  TESTS ONLY: "ENOSYS" or "EPERM" makes open behave as if
 *                            io_uring_queue_init had failed with that error. */

/* Instance control ops (kstore_backend.control). Unknown ops answer KSTORE_ERR_UNSUPPORTED. */

/* argument: kstore_uring_stats *, struct_size set by the caller; fills the fields that fit. The same
 * figures are reported under kstore.h's names through KSTORE_CONTROL_STATS (uring_statistics.c),
 * which is what the host exports; this op stays for tests that read one field exactly. */
#define KSTORE_URING_CONTROL_STATS 0x55520001
/* Tests inject I/O faults (failed or torn WAL writes, failed fdatasyncs, failed segment
 * preparations) with the kit's KSTORE_KIT_CONTROL_SET_FAULT_HOOK (kstore_kit_io.h), usually through
 * the faulty shim: the I/O thread asks the hook before each io_uring write and fdatasync round. */

typedef struct kstore_uring_stats {
    uint32_t struct_size;
    uint32_t reserved;
    uint64_t appends;              /* accepted appends */
    uint64_t syncs;                /* accepted sync requests (host syncs and internal ones) */
    uint64_t fsyncs;               /* fdatasync rounds issued (one round may cover 2 segment files) */
    uint64_t writes;               /* WAL writes submitted */
    uint64_t bytes_written;        /* WAL bytes written (frames and padding) */
    uint64_t writes_in_flight_max; /* the most writes that were in flight at once */
    uint64_t segments;             /* WAL segment files in use (including the prepared spare) */
    uint64_t segments_created;
    uint64_t segments_deleted;
    uint64_t staging_bytes;         /* bytes of staging buffers allocated now */
    uint64_t staging_bytes_max;     /* the bound (uring.staging.bytes) */
    uint64_t index_memory_bytes;    /* in-memory fine index entries (active segment only) */
    uint64_t active_generation;     /* generation of the segment the next frame goes to */
    uint64_t recovery_bytes;        /* WAL bytes scanned by recovery at open */
    uint64_t recovery_ns;           /* time recovery took at open */
    uint64_t recovery_frames;       /* frames recovered at open */
    uint64_t busy_rejections;       /* appends answered KSTORE_ERR_BUSY (staging full) */
    uint64_t segments_recycled;     /* segments made from a retired segment file (no zeroing) */
    uint64_t recovery_replay_bytes; /* of recovery_bytes: the valid frames replayed */
    uint64_t recovery_replay_ns;    /* of recovery_ns: replaying them (CRC, indexes, index files) */
    uint64_t direct;                /* 1 when the WAL is written with O_DIRECT (uring.direct), else 0 */
    uint64_t write_align_bytes;     /* writes start at multiples of this (8 when buffered) */
    uint64_t pad_bytes;             /* bytes of pad frames written (direct mode), included in bytes_written */
    uint64_t read_cache_bytes;      /* memory the read cache holds now */
    uint64_t read_cache_hits;       /* frames reads copied from the read cache */
    uint64_t read_cache_misses;     /* frames reads took from the segment files */
} kstore_uring_stats;

#ifdef __cplusplus
}
#endif
#endif
