/* The io_uring write-ahead-log backend's private header: the structures, constants and shared
 * functions of the files in Backends/uring (kstore.h, ABI version 2: DURABLE, NONBLOCKING,
 * SHARED_SYNC; DESIGN.md §6 "uring"). The on-disk formats — WAL segments and frames, MARK and
 * catalog frames, the catalog reserve, index files, spare segments, .lock and .fjord-backend, and
 * the recovery rules — are documented once in docs/storage-formats.md ("uring backend"); this
 * header keeps the invariants the code relies on.
 *
 * Files (one concept each)
 *   kstore_uring.c        the backend table and the instance: options, open (parse → lock →
 *                         probe io_uring → recover → start threads), close, control
 *   uring_catalog.c       the log table of an instance: open_log, delete_log, list_logs
 *   uring_log.c           the log table members except read: append, sync, state, truncate_to,
 *                         delete_before, enforce_retention, find_offset_by_time
 *   uring_read.c          read: index lookups, the read cache, gathered preadv of adjacent frames
 *   uring_index.c         a log's parts and fine index entries; index files of sealed segments
 *   uring_staging.c       frames staged in chunks: reserve, commit, padding, sync requests, segment roll
 *   uring_direct.c        O_DIRECT: the probe at open, the write alignment, aligned buffers
 *   uring_cache.c         the read cache: recently written chunks kept for reads of the WAL's tail
 *   uring_io.c            the I/O thread: writes, group-committed fdatasync, delivery, rewind
 *   uring_maintenance.c   the maintenance thread: segment files, index files, deletion, GC
 *   uring_recovery.c      recovery at open, one function per phase
 *   uring_frame.c         one frame: encoding, and the checked scan recovery reads with
 *   uring_support.c       array growth, segment file names, zero-filling (errors, options, the
 *                         data directory and system calls are the kit's: Backends/kit)
 *
 * Threads
 *   append/sync/reads run on the caller's thread and never wait for I/O: append validates, computes
 *   the CRC and copies header and iovecs into a staging chunk under a short mutex (staging is
 *   bounded by `uring.staging.bytes`; beyond it append answers BUSY). The I/O thread owns the
 *   io_uring ring: it turns staged chunks into writes (up to `uring.writes.inflight` in flight, each
 *   up to `uring.write.bytes`), completes appends in WAL order when their write is done, and issues
 *   one fdatasync (IORING_OP_FSYNC + IORING_FSYNC_DATASYNC) per written segment file whenever sync
 *   requests wait; syncs requested while a flush is in flight wait for the next one, which covers
 *   every log's requests at once (group commit). It submits the next I/O before it runs the host's
 *   callbacks, and runs all the callbacks of one pass (a round) together, in WAL order.
 *   A chunk that is still filling (the open tail) is written only when the disk would otherwise
 *   have nothing of ours to do, when it is full, or when a sync waits for it and no fdatasync is in
 *   flight; so appends wake the I/O thread at most once per burst, and a round's frames go in few
 *   writes.
 *   Direct I/O (`uring.direct`, uring_direct.c): where the file system takes O_DIRECT, the WAL is
 *   written with O_DIRECT from aligned staging, so no write copies into the page cache or waits for
 *   an io-wq worker. Every write then starts at a multiple of the write alignment and ends with a pad
 *   frame (a MARK with a zero payload) up to the next one: a write never rewrites a block holding
 *   frames written before it, and the WAL stays a gapless run of valid frames. Each segment has a
 *   second descriptor for that (wfd); reads, recovery and index files use the buffered one (fd).
 *   Reads pread page-cached or on-disk data (kstore.h read is synchronous: an io_uring read would
 *   block the caller just the same); recently written chunks are kept in the read cache
 *   (`uring.read.cache.bytes`, uring_cache.c) and reads of the WAL's tail copy from there. The
 *   maintenance thread does the blocking file work: deleting segments no log needs, writing index
 *   files of sealed segments, preparing (and in direct mode zero-filling) segments ahead of need.
 *
 * Failures
 *   A failed write (ENOSPC, EDQUOT; injected by tests through the kit fault hook) or a segment that
 *   cannot be created fails that append and every later staged one with NO_SPACE; the WAL is rolled
 *   back to the failed frame (bytes written after it are zeroed), logs' ends return to their first
 *   failed offset and catalog frames are staged again. EIO on a write or an fdatasync fails the WAL:
 *   pending syncs and appends fail with IO and every later mutating call answers IO until the
 *   instance is reopened. Recovery that finds acknowledged data damaged leaves the instance open
 *   but inert: every open_log answers CORRUPT naming the file and position.
 *
 * Locks (in this order): catalog_lock (the log table) → log->lock (one log's index) → wal_lock
 * (staging, chunks, segments, sync requests, failure state). The error slot's mutex and the read cache's lock
 * (cache.lock: readers hold it shared while they copy, the I/O thread exclusively to add and evict)
 * are leaves.
 *
 * Functions shared between these files are declared below with hidden visibility (the one exported
 * symbol is kstore_uring_backend); a function used by one file stays static there.
 */
#ifndef URING_INTERNAL_H
#define URING_INTERNAL_H

#include "kstore_kit.h"
#include "kstore_uring.h"

#include <liburing.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "fjord_crc32c.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the uring backend writes its frames in host byte order and supports little-endian hosts only"
#endif

/* MARK: - Limits and formats (docs/storage-formats.md, "uring backend") */

#define UR_FRAME_MAGIC        0x31574A46u /* "FJW1" */
#define UR_FRAME_HEADER_BYTES 72u
#define UR_FRAME_ALIGN_BYTES  8u
#define UR_ERROR_BYTES_MAX    ((size_t)512)
/* Recovery reads WAL segments in blocks of this size. */
#define UR_SCAN_BYTES ((size_t)16 * 1024 * 1024)
/* Deleted segments kept (renamed spare-<generation>.log) to become later segments: their blocks
 * are written already, so reusing them costs neither zeroing nor new extents. Frames left in them
 * carry an older generation, which recovery and reads never take for the new one's. */
#define UR_RECYCLE_MAX 2
/* The largest direct-I/O write alignment used; a file system that asks for more is written
 * buffered (uring.direct=auto) or refused (on). */
#define UR_DIRECT_ALIGN_MAX ((uint32_t)64 * 1024)

enum ur_frame_kind {
    UR_FRAME_DATA = 1,     /* an entry: log_id, offsets, max_timestamp, payload = entry bytes */
    UR_FRAME_CREATE = 2,   /* a log exists: log_id, first_offset = start offset, payload = name */
    UR_FRAME_DELETE = 3,   /* a log was deleted: log_id */
    UR_FRAME_START = 4,    /* delete_before/retention: log_id, first_offset = new start */
    UR_FRAME_TRUNCATE = 5, /* truncate_to: log_id, first_offset = the new end */
    /* After every group commit: no payload; its durable_sequence records what the fdatasync made
     * durable, so a damaged frame followed by a mark is known to be acknowledged data even when no
     * append followed the sync. Written, never synced on its own (losing one loses no data). */
    UR_FRAME_MARK = 6,
};

/* A DATA frame's payload is a Kafka RecordBatch v2 whose own CRC-32C field (payload bytes [17, 21))
 * covers payload bytes [21, end): the frame's crc covers payload bytes [0, 21) only (kstore.h
 * append_checked_batch: the host checked the batch CRC, so staging does not checksum every byte a
 * second time). Valid only with kind DATA and a payload of at least KSTORE_BATCH_BYTES_MIN. */
#define UR_FRAME_FLAG_BATCH_CRC 0x0001u
#define UR_FRAME_FLAGS_KNOWN    UR_FRAME_FLAG_BATCH_CRC

typedef struct ur_frame_header {
    uint32_t magic;
    /* CRC-32C of the payload (with UR_FRAME_FLAG_BATCH_CRC: of its first 21 bytes), then of header
     * bytes [8, 72) */
    uint32_t crc;
    uint32_t payload_bytes;
    uint16_t kind;
    uint16_t flags; /* UR_FRAME_FLAG_*; zero in frames written before the flag existed */
    uint64_t generation;
    uint64_t log_id;
    int64_t first_offset;
    int64_t last_offset;
    int64_t max_timestamp;
    uint64_t sequence;
    uint64_t durable_sequence;
} ur_frame_header;
_Static_assert(sizeof(ur_frame_header) == UR_FRAME_HEADER_BYTES, "frame header layout");

/* One entry of a fine index, in memory and in index files. */
typedef struct ur_entry {
    int64_t first_offset;
    int64_t last_offset;
    int64_t max_timestamp;
    /* Largest max_timestamp of the part's entries from its array index 0 to this one. */
    int64_t running_max_timestamp;
    uint32_t position; /* of the frame header in the segment */
    uint32_t payload_bytes;
} ur_entry;
_Static_assert(sizeof(ur_entry) == 40, "index entry layout");

/* MARK: - Structures */

typedef struct ur_instance ur_instance;
typedef struct ur_log ur_log;

enum ur_segment_state { UR_SEGMENT_PREPARING, UR_SEGMENT_READY, UR_SEGMENT_FAILED };

typedef struct ur_segment {
    uint64_t generation;
    /* Bytes frames may use: grows from 64 KiB to uring.segment.bytes over an instance's first
     * segments (a young or small instance does not preallocate 3 x 256 MiB); an existing file's
     * size after recovery. */
    uint64_t capacity;
    int fd; /* -1 until READY; buffered: reads, recovery, zeroing after a failed write */
    /* Direct mode: the same file opened O_DIRECT, for WAL writes and fdatasync; -1 otherwise (then
     * fd is used). See ur_segment_wfd. */
    int wfd;
    int idx_fd; /* -1 until the index file is written */
    enum ur_segment_state state;
    int prepare_error;
    /* All of its frames were written and delivered; the cursor is past it. */
    bool sealed;
    bool sealing;     /* queued for the maintenance thread */
    bool dirty;       /* written since the last fdatasync was issued */
    bool has_catalog; /* holds catalog frames: deleting it needs a checkpoint first */
    /* Where the cursor left it for the next segment (a failed next segment rewinds to here). */
    uint64_t roll_position;
    uint32_t fsyncs_in_flight;
    /* Set by the I/O thread when a staged write waits for this segment: zero-filling stops and
     * the segment becomes ready at once (the rest stays unwritten extents, which read as zeros).
     * Zero-filling uses slack only; it never stalls the WAL. */
    _Atomic bool hurry;
} ur_segment;

/* The entries a log has in one WAL segment: entries [begin, end) of the fine index are live. */
typedef struct ur_part {
    ur_segment *segment;
    ur_entry *entries; /* in memory (unsealed segment), or NULL: in segment->idx_fd */
    size_t entry_capacity;
    uint64_t idx_position; /* of entry 0 in the index file */
    size_t begin;
    size_t end;
    /* Cached from entries[begin] and entries[end - 1]. */
    int64_t first_offset;
    int64_t last_offset;
    /* Over the live entries. */
    uint64_t byte_count;
    int64_t max_timestamp;
    uint64_t untimed_count; /* live entries with max_timestamp -1 */
} ur_part;

struct ur_log {
    kstore_log base; /* first member: the handle the host holds */
    ur_instance *instance;
    char *name;
    uint64_t id;
    /* Protected by catalog_lock. */
    bool open;

    pthread_rwlock_t lock;
    /* Protected by lock. */
    int64_t start_offset;
    int64_t end_offset; /* accepted appends included */
    ur_part *parts;
    size_t part_count;
    size_t part_capacity;
    _Atomic uint64_t truncate_generation;
    /* After a rollback (kstore.h append "state after failure"): the end the host may still be
     * appending at before it sees the failures, and their status. Appends continuing there are
     * refused with that status (not INVALID_ARGUMENT); an append at end_offset clears it. */
    int64_t stale_end;
    kstore_status stale_status;
    /* Set by a rewind (under wal_lock) for each log it rolls back, cleared when that log's end has
     * been rolled back (under log->lock): an append arriving in between must not be staged, or it
     * would be written, acknowledged, and then cut from the log by the rollback. */
    _Atomic bool rollback_pending;

    /* Written by the I/O thread, read anywhere. */
    _Atomic int64_t readable_end;
    _Atomic int64_t durable_end;
    _Atomic int32_t failed_status; /* KSTORE_OK or KSTORE_ERR_IO */

    /* Protected by wal_lock. */
    uint64_t last_sequence; /* of its newest staged frame */
    /* Accepted appends whose completion was not delivered: raised under wal_lock when staged,
     * lowered by the I/O thread after it has taken their chunk off the WAL (outside wal_lock). */
    _Atomic uint64_t undelivered;
    /* I/O thread only. */
    /* Where its readable/durable end updates of the current pass are (ur_io_update merges them). */
    uint64_t update_pass[2];
    size_t update_index[2];
    int64_t written_end;
    uint64_t written_truncate_generation;
    int64_t fsync_end;
    uint64_t fsync_truncate_generation;
    bool in_dirty_list;
    bool in_fsync_list;
};

/* One staged frame, kept until its write completed and its completion was delivered. */
typedef struct ur_pending {
    ur_log *log;                  /* NULL for catalog frames of deleted logs */
    kstore_completion completion; /* NULL for catalog frames */
    void *context;
    int64_t first_offset;
    int64_t end_offset;
    uint64_t truncate_generation;
    uint32_t chunk_offset; /* of the frame in the chunk */
    uint16_t kind;
} ur_pending;

enum ur_chunk_state { UR_CHUNK_OPEN, UR_CHUNK_CLOSED, UR_CHUNK_IN_FLIGHT, UR_CHUNK_DONE };

/* Staged frames that become one write: contiguous bytes of one segment. */
typedef struct ur_chunk {
    struct ur_chunk *next;
    ur_segment *segment; /* NULL once the chunk is in the read cache (which knows the generation) */
    uint64_t generation; /* of the segment */
    uint64_t position;
    uint8_t *bytes;   /* aligned (ur_aligned_alloc): it is written with O_DIRECT in direct mode */
    size_t capacity;  /* frames fit up to here; the allocation has room for a pad frame after it */
    size_t allocated; /* bytes of the allocation (ur_aligned_free) */
    size_t used;      /* frames (and, once closed in direct mode, the pad up to the alignment) */
    size_t written;   /* bytes confirmed written (short writes are resubmitted) */
    uint64_t first_sequence;
    uint64_t last_sequence;
    ur_pending *pending;
    size_t pending_count;
    size_t pending_capacity;
    enum ur_chunk_state state;
    int error; /* errno of a failed write */
    bool injected;
} ur_chunk;

/* A run of WAL bytes a read can copy from memory: a delivered chunk kept in the read cache, or a
 * copy of a mostly empty one (then chunk is NULL and bytes is its own allocation). */
typedef struct ur_cached {
    uint64_t generation;
    uint64_t position;
    size_t length;
    size_t memory; /* counted against the bound */
    uint8_t *bytes;
    ur_chunk *chunk;
} ur_cached;

/* The read cache (uring_cache.c): runs in WAL order, oldest first, in a ring. */
typedef struct ur_read_cache {
    pthread_rwlock_t lock;
    ur_cached *runs;
    size_t head;
    size_t count;
    size_t capacity;
    uint64_t bytes;          /* memory of the runs held */
    uint64_t bytes_max;      /* uring.read.cache.bytes; 0: no cache */
    _Atomic uint64_t hits;   /* frames read from the cache */
    _Atomic uint64_t misses; /* frames read from the files */
} ur_read_cache;

typedef struct ur_sync_request {
    uint64_t target_sequence;
    ur_log *log;
    kstore_completion completion;
    void *context;
} ur_sync_request;

struct ur_instance {
    kstore_instance base; /* first member: the handle the host holds */
    /* The data directory: its path, descriptor and lock (kstore_kit_data_directory.h). */
    kstore_kit_data_directory directory;
    uint64_t segment_bytes;
    uint64_t staging_bytes_max;
    /* uring.segment.zero=fallocate (default): leave new segments as unwritten extents (they read as
     * zeros, also after a crash) instead of writing zeros (=write); halves the disk writes of a
     * growing WAL, at the price of extent conversions that each fdatasync must journal. */
    bool zero_by_fallocate;
    uint64_t write_bytes;
    uint32_t writes_inflight_max;
    /* uring.direct: the WAL is written with O_DIRECT (decided by the probe at open). */
    bool direct;
    /* Writes start at multiples of this and are padded to it (direct mode); 8 when buffered. */
    uint32_t write_align;
    ur_read_cache cache;

    /* MARK: catalog (catalog_lock) */
    pthread_mutex_t catalog_lock;
    ur_log **logs; /* sorted by name */
    size_t log_count;
    size_t log_capacity;
    uint64_t next_log_id;

    /* MARK: WAL (wal_lock) */
    pthread_mutex_t wal_lock;
    pthread_cond_t wal_changed; /* durable_sequence advanced, or the WAL failed */
    ur_segment **segments;      /* sorted by generation, including prepared spares */
    size_t segment_count;
    size_t segment_capacity;
    ur_segment *cursor_segment; /* where the next frame goes */
    uint64_t cursor_position;
    uint64_t next_sequence;
    uint64_t written_sequence; /* every frame up to it is written and delivered */
    uint64_t durable_sequence; /* every frame up to it is on stable storage */
    ur_chunk *chunk_head;
    ur_chunk *chunk_tail;
    ur_chunk *free_chunks;
    uint64_t staging_bytes;
    uint32_t writes_in_flight;
    bool fsync_in_flight;
    uint32_t fsync_parts_left;
    int fsync_error;
    uint64_t fsync_covered_sequence;
    ur_sync_request *syncs;
    size_t sync_count;
    size_t sync_capacity;
    /* Sync requests the I/O thread completed whose callbacks it has not run yet: a sync that could
     * complete at once waits behind them (syncs complete in the order they were accepted). */
    _Atomic uint64_t sync_callbacks_queued;
    bool io_waiting;
    bool rewinding;
    /* The status of the appends the last rewind failed (see ur_log.rollback_pending). */
    kstore_status rewind_status;
    kstore_status failed_status; /* KSTORE_OK; KSTORE_ERR_IO once the WAL failed; KSTORE_ERR_CORRUPT
                                  * when recovery found acknowledged data damaged */
    char corrupt_message[UR_ERROR_BYTES_MAX];
    bool stopping;
    /* Deletion of old segments, waiting for a durable checkpoint. */
    uint64_t generation_floor; /* new segments get at least this generation */
    /* Generations of retired segment files waiting to be reused (spare-<generation>.log). */
    uint64_t recycled[UR_RECYCLE_MAX];
    size_t recycled_count;
    uint64_t gc_scheduled_below;
    uint64_t gc_ready_below;
    kstore_uring_stats stats;
    /* I/O thread only: logs written since the last fdatasync was issued, and the ones it covers. */
    ur_log **dirty_logs;
    size_t dirty_count;
    size_t dirty_capacity;
    ur_log **fsync_logs;
    size_t fsync_log_count;
    size_t fsync_log_capacity;

    /* MARK: threads */
    struct io_uring ring;
    bool ring_ready;
    int event_fd;
    pthread_t io_thread;
    bool io_thread_started;
    pthread_t maintenance_thread;
    bool maintenance_thread_started;
    pthread_cond_t maintenance_wake; /* with wal_lock */
    bool maintenance_stop;
    /* Set with maintenance_stop; read without the lock by a segment being zero-filled. */
    _Atomic bool closing;
    bool maintenance_poke;

    /* last_error's message (kstore_kit_error.h). */
    kstore_kit_error errors;
    /* The fault hook every system call and io_uring write, fdatasync and segment preparation asks
     * (KSTORE_KIT_CONTROL_SET_FAULT_HOOK; tests only). */
    kstore_kit_io io;
};

/* Where a frame of frame_bytes goes: the cursor, or the start of the next segment. */
typedef struct ur_reservation {
    ur_segment *segment;
    uint64_t position;
    ur_chunk *chunk; /* the open tail chunk, or a new one not yet linked */
    bool new_chunk;
} ur_reservation;

/* A frame to stage (ur_commit): its header fields, its payload, and the completion its delivery
 * calls. Catalog frames and marks have no completion. */
typedef struct ur_frame {
    uint16_t kind;
    ur_log *log; /* NULL for marks and for catalog frames of deleted logs */
    uint64_t log_id;
    int64_t first_offset;
    int64_t last_offset;
    int64_t max_timestamp;
    /* CRC-32C of the payload (with UR_FRAME_FLAG_BATCH_CRC in flags: of its first 21 bytes),
     * computed before any lock is taken. */
    uint32_t payload_crc;
    uint16_t flags; /* the header's */
    const kstore_iovec *iov;
    uint32_t iov_count;
    uint64_t payload_bytes;
    kstore_completion completion;
    void *context;
} ur_frame;

/* Reads a segment file through a large buffer (recovery). */
typedef struct ur_scan {
    int fd;
    uint64_t file_bytes;
    uint8_t *buffer;
    size_t capacity;
    uint64_t buffer_position;
    size_t buffer_length;
    uint64_t bytes_read;
} ur_scan;

#define UR_FITS(pointer, type, field)                                                                                  \
    ((size_t)(pointer)->struct_size >= offsetof(type, field) + sizeof(((type *)0)->field))

static inline int64_t ur_max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t ur_min64(int64_t a, int64_t b) { return a < b ? a : b; }

static inline uint64_t ur_frame_bytes(uint64_t payload_bytes) {
    return (UR_FRAME_HEADER_BYTES + payload_bytes + UR_FRAME_ALIGN_BYTES - 1) & ~(uint64_t)(UR_FRAME_ALIGN_BYTES - 1);
}

static inline uint32_t ur_frame_crc(uint32_t payload_crc, const ur_frame_header *header) {
    return fjord_crc32c(payload_crc, (const uint8_t *)header + 8, UR_FRAME_HEADER_BYTES - 8);
}

/* Where a segment's WAL writes go: the O_DIRECT descriptor in direct mode. */
static inline int ur_segment_wfd(const ur_segment *segment) { return segment->wfd >= 0 ? segment->wfd : segment->fd; }

static inline uint64_t ur_align_up(uint64_t position, uint64_t alignment) {
    return (position + alignment - 1) / alignment * alignment;
}

/* Catalog frames make a segment need a checkpoint before it is deleted; data and marks do not. */
static inline bool ur_frame_is_catalog(uint16_t kind) { return kind != UR_FRAME_DATA && kind != UR_FRAME_MARK; }

static inline uint64_t ur_now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

#pragma GCC visibility push(hidden)

/* MARK: - uring_statistics.c */

/* KSTORE_URING_CONTROL_STATS: fills the fields of *stats that fit its struct_size. */
kstore_status ur_control_stats(ur_instance *instance, kstore_uring_stats *stats);
/* KSTORE_CONTROL_STATS (kstore.h). */
kstore_status ur_report_stats(ur_instance *instance, const kstore_stats_visitor *visitor);

/* MARK: - uring_support.c */

bool ur_grow(void **array, size_t *capacity, size_t needed, size_t element_bytes, size_t minimum);
/* kstore_kit_pread_full for reads of data the WAL already holds (recovery scans, frame checks,
 * index files) made where no instance is at hand: no fault hook is asked (tests fail writes, syncs
 * and segment preparations, which is where the uring backend's failure handling lives). */
ssize_t ur_pread_all(int fd, void *bytes, size_t count, uint64_t position);
/* wal-<generation>.<suffix> */
void ur_segment_name(char *buffer, size_t capacity, uint64_t generation, const char *suffix);
/* spare-<generation>.log: a retired segment file kept for reuse. */
void ur_spare_name(char *buffer, size_t capacity, uint64_t generation);
/* Writes zeros over [position, position + count) of fd; stops with ECANCELED when *cancel
 * becomes true (a segment being prepared while the instance closes), and early (successfully)
 * when *hurry becomes true. Either may be NULL. */
int ur_write_zeros_cancellable(kstore_kit_io *io, int fd, uint64_t position, uint64_t count, _Atomic bool *cancel,
                               _Atomic bool *hurry);
/* ur_write_zeros for the WAL: through the segment's O_DIRECT descriptor in direct mode (position and
 * count are then aligned), so the zeros leave no page-cache pages behind for later direct writes. */
int ur_write_segment_zeros(kstore_kit_io *io, const ur_segment *segment, uint64_t position, uint64_t count);
int ur_write_zeros(kstore_kit_io *io, int fd, uint64_t position, uint64_t count);

/* MARK: - uring_direct.c */

/* uring.direct */
enum ur_direct_mode { UR_DIRECT_AUTO, UR_DIRECT_ON, UR_DIRECT_OFF };
/* Decides instance->direct and instance->write_align: writes a probe file in the data directory with
 * O_DIRECT. auto: direct where the file system takes O_DIRECT and reports its alignment (statx
 * STATX_DIOALIGN), else buffered; on: direct or KSTORE_ERR_UNSUPPORTED; off: buffered. Runs in open
 * before recovery. */
kstore_status ur_direct_probe(ur_instance *instance, enum ur_direct_mode mode, char *message, size_t capacity);
/* Memory for WAL writes: aligned for O_DIRECT (and to the page), uninitialized; NULL if none. Its
 * own mapping where the page alignment is enough, so that freeing it gives the memory back to the
 * system (staging and the read cache come and go with load). */
void *ur_aligned_alloc(const ur_instance *instance, size_t bytes);
void ur_aligned_free(const ur_instance *instance, void *memory, size_t bytes);
/* In direct mode opens the segment file `name` again with O_DIRECT for writing into *wfd; otherwise
 * sets *wfd to -1. False (errno set) if the open fails. */
bool ur_open_wfd(const ur_instance *instance, const char *name, int *wfd);

/* MARK: - uring_cache.c */

void ur_cache_init(ur_read_cache *cache, uint64_t bytes_max);
/* Frees every run and the chunks the cache holds. No other thread may use the cache. */
void ur_cache_destroy(ur_instance *instance);
/* I/O thread, no lock held: adds delivered chunks (a list in WAL order) and evicts the oldest runs
 * beyond the bound. Chunks the cache does not keep (mostly empty ones are copied instead) are
 * prepended to *reclaim, for the caller to give back to staging (ur_chunk_reclaim). */
void ur_cache_add(ur_read_cache *cache, ur_chunk *delivered, ur_chunk **reclaim);
/* The cached bytes [position, position + length) of segment `generation`, or NULL. The caller holds
 * cache->lock shared for as long as it uses them. *hint: the run found last (start with 0). */
const uint8_t *ur_cache_find(const ur_read_cache *cache, uint64_t generation, uint64_t position, size_t length,
                             size_t *hint);

/* MARK: - uring_frame.c */

/* Encodes a frame at destination: sets header->crc, copies the header and the payload, and
 * zero-fills the padding up to ur_frame_bytes(header->payload_bytes). */
void ur_frame_encode(uint8_t *destination, ur_frame_header *header, uint32_t payload_crc, const kstore_iovec *iov,
                     uint32_t iov_count);
/* Whether a frame's checksums hold over its header and payload (header->payload_bytes of them):
 * its crc, and for a UR_FRAME_FLAG_BATCH_CRC frame the batch's own CRC over the rest. */
bool ur_frame_valid(const ur_frame_header *header, const uint8_t *payload);
/* Encodes a pad frame of frame_bytes (at least a header, a multiple of 8) at destination: a MARK
 * whose payload is zeros. Direct mode ends every write with one, up to the write alignment. */
void ur_pad_frame_encode(uint8_t *destination, uint64_t frame_bytes, uint64_t generation, uint64_t sequence,
                         uint64_t durable_sequence);
/* Bytes [position, position + count) of the file, or NULL past its end or on a read error (errno
 * set then; 0 past the end). */
const uint8_t *ur_scan_get(ur_scan *scan, uint64_t position, size_t count);
/* Whether a complete, checksummed frame of `generation` starts at position. */
bool ur_scan_frame(ur_scan *scan, uint64_t position, uint64_t generation, ur_frame_header *header_out,
                   const uint8_t **payload_out);
/* Reads the header at position (false if there is none) and whether the whole frame is valid for
 * generation. Used on the few magic-looking positions after the end of the WAL. */
bool ur_check_frame_at(int fd, uint64_t file_bytes, uint64_t position, uint64_t generation, ur_frame_header *header,
                       bool *valid);

/* MARK: - uring_index.c (caller holds log->lock; shared for reads, exclusive for changes) */

/* Copies entries [index, index + count) of a part into out; false (errno set) if the index file
 * cannot be read. */
bool ur_part_entries(const ur_part *part, size_t index, size_t count, ur_entry *out);
/* Index of the last entry in [begin, end) whose first_offset <= offset (begin if none). */
bool ur_part_find(const ur_part *part, int64_t offset, size_t *found);
/* Index of the first live entry whose max_timestamp >= timestamp (end if none). */
bool ur_part_find_timestamp(const ur_part *part, int64_t timestamp, size_t *found);
void ur_log_remove_parts(ur_log *log, size_t from, size_t to);
/* Makes room for one more entry of `segment` at the end of the log's index. */
bool ur_log_reserve_entry(ur_log *log, ur_segment *segment);
/* Adds an entry after ur_log_reserve_entry succeeded for its segment. */
void ur_log_add_entry(ur_log *log, ur_segment *segment, int64_t first_offset, int64_t last_offset,
                      int64_t max_timestamp, uint32_t position, uint32_t payload_bytes);
/* Drops a part whose reservation was not used (an append that failed after reserving). */
void ur_log_unreserve(ur_log *log);
/* Removes every entry whose last_offset >= offset. */
bool ur_log_cut(ur_log *log, int64_t offset);
/* Moves the start to offset (>= start): drops entries lying wholly below it. */
bool ur_log_advance_start(ur_log *log, int64_t offset);
void ur_log_totals(const ur_log *log, uint64_t *byte_count, uint64_t *entry_count, int64_t *max_timestamp);
/* Index of the part holding offset: the last part whose first_offset <= offset. */
size_t ur_log_find_part(const ur_log *log, int64_t offset);
/* Writes the fine index of every log's part in `segment` to wal-<generation>.idx and frees the
 * in-memory entries. The caller holds catalog_lock (or runs recovery). On failure the entries stay
 * in memory. */
bool ur_write_index_of(ur_instance *instance, ur_segment *segment, ur_log **logs, size_t log_count);

/* MARK: - uring_staging.c (caller holds wal_lock unless said otherwise) */

/* The last bytes of every segment that take catalog frames only. */
uint64_t ur_catalog_reserve(uint64_t capacity);
/* Appends a segment in state PREPARING with the next generation and wakes the maintenance thread,
 * which creates its file. */
ur_segment *ur_segment_add(ur_instance *instance);
/* Seals a segment the cursor has left once every chunk of it was delivered, and wakes the
 * maintenance thread, which writes its index file. */
void ur_maybe_seal(ur_instance *instance, ur_segment *segment);
/* Wakes the I/O thread (caller holds no lock). */
void ur_wake_io(ur_instance *instance);
/* Keeps chunks of the standard size for reuse, up to the staging bound; frees the others. */
void ur_chunk_release(ur_instance *instance, ur_chunk *chunk);
/* Gives a chunk back to staging that the read cache held (it was not counted in staging_bytes). */
void ur_chunk_reclaim(ur_instance *instance, ur_chunk *chunk);
/* Frees a chunk, its bytes and its pending array. */
void ur_chunk_free(const ur_instance *instance, ur_chunk *chunk);
/* Where a chunk whose frames end at `end` of `segment` ends once padded (direct mode): the length
 * of the pad frame (0: none; a pad is at least a frame header), the end of its write, and where
 * the cursor goes. Near the segment's end, where no pad frame fits, the write is padded with zeros
 * and the cursor goes to the segment's end (the next frame starts the next segment). */
typedef struct ur_pad {
    uint64_t frame_bytes;
    uint64_t write_end;
    uint64_t cursor;
} ur_pad;
ur_pad ur_pad_for(const ur_instance *instance, const ur_segment *segment, uint64_t end);
/* Closes an open chunk: it takes no more frames; in direct mode it gets its pad (a frame with the
 * next sequence), and the cursor moves past it if it was at the chunk's end. */
void ur_chunk_close(ur_instance *instance, ur_chunk *chunk);
/* Frees the chunks kept for reuse. */
void ur_chunks_free_idle(ur_instance *instance);
/* Finds room for a frame without changing the WAL. */
kstore_status ur_reserve(ur_instance *instance, uint64_t frame_bytes, bool catalog, ur_reservation *reservation,
                         const char **reason);
/* Writes a reserved frame into staging and advances the cursor. Returns whether the I/O thread
 * must be woken (the caller writes the eventfd after dropping the lock). */
bool ur_commit(ur_instance *instance, const ur_reservation *reservation, const ur_frame *frame, uint64_t *sequence_out);
/* Stages a catalog frame (no completion): CREATE carries the name. */
kstore_status ur_stage_catalog(ur_instance *instance, uint16_t kind, ur_log *log, uint64_t log_id, int64_t offset,
                               const char *name, bool *wake, const char **reason);
/* Queues a sync request; false when out of memory. */
bool ur_add_sync(ur_instance *instance, uint64_t target, ur_log *log, kstore_completion completion, void *context,
                 bool *wake);
/* Waits until everything staged so far is durable (blocking: delete_log and close only). Caller
 * holds no lock. */
kstore_status ur_wait_durable(ur_instance *instance);

/* MARK: - uring_io.c */

void *ur_io_main(void *argument);

/* MARK: - uring_maintenance.c */

void *ur_maintenance_main(void *argument);
/* Creates (or reuses a spare), preallocates and zero-fills a segment file; returns its fd (and in
 * direct mode the O_DIRECT one in *wfd, else -1 there) or -1 with *error. Caller holds no lock. */
int ur_prepare_segment_file(ur_instance *instance, ur_segment *segment, int *wfd, int *error);
/* Closes a segment's files, unlinks them and frees it. */
void ur_unlink_segment(ur_instance *instance, ur_segment *segment);
/* After a log's start moved or a log was deleted: deletes WAL segments no log needs any more,
 * after a durable checkpoint of the catalog. The caller holds no lock. */
void ur_schedule_gc(ur_instance *instance);

/* MARK: - uring_recovery.c */

/* Scans the WAL, rebuilds logs and indexes, truncates a torn tail. Runs in open before any thread
 * starts. Returns a status and writes a message naming file and position on failure. */
kstore_status ur_recover(ur_instance *instance, char *message, size_t capacity);

/* MARK: - uring_catalog.c */

ur_log *ur_new_log(ur_instance *instance, uint64_t id);
void ur_free_log(ur_log *log);
/* Adds a log to the sorted table; false if the name exists or out of memory. */
bool ur_insert_log(ur_instance *instance, ur_log *log);
kstore_status ur_open_log(kstore_instance *handle, const char *name, uint32_t flags, const kstore_option *options,
                          uint32_t option_count, kstore_log **log_out);
kstore_status ur_delete_log(kstore_instance *handle, const char *name);
kstore_status ur_list_logs(kstore_instance *handle, kstore_list_callback callback, void *context);

/* MARK: - uring_log.c, uring_read.c */

extern const kstore_log_methods ur_log_methods;
kstore_status ur_log_read(kstore_log *handle, int64_t offset, int64_t end_offset_limit, void *buf, uint64_t capacity,
                          kstore_read_result *result);

#pragma GCC visibility pop

#endif
