/* The io_uring write-ahead-log storage backend (kstore.h, ABI version 1): DURABLE, NONBLOCKING,
 * SHARED_SYNC. See DESIGN.md §6 "uring".
 *
 * WAL
 *   One write-ahead log per instance, shared by every log: segment files `wal-<generation>.log` in
 *   the data directory, preallocated (fallocate) and zero-filled ahead of need by the maintenance
 *   thread, so later overwrites change no extent metadata and fdatasync flushes data only. Sizes
 *   start at 64 KiB and double per generation up to `uring.segment.bytes` (a young instance does
 *   not preallocate hundreds of MiB). Zero-filling only uses slack: when a staged write waits for a
 *   segment, filling stops and the rest stays unwritten extents (they read as zeros as well).
 *   Deleted segments are kept (renamed spare-<generation>.log) and reused as later segments.
 *   Every append and every catalog change is a FRAME: a 72-byte little-endian header
 *   (ur_frame_header) and a payload, padded with zeros to 8 bytes. The header carries the segment
 *   generation (frames an older generation left in a reused file are never taken for new ones), a
 *   sequence number that grows by one per frame across the whole WAL (recovery sees a gap), and the
 *   sequence known durable when the frame was staged. After each group commit a payload-less MARK
 *   frame records the newly durable sequence. Together they let recovery tell a torn,
 *   never-acknowledged tail from damage to acknowledged data. The CRC-32C covers the payload, then
 *   header bytes [8, 72).
 *
 * Catalog
 *   Log names, ids, creations, deletions, start offsets and truncations are frames in the WAL
 *   itself (kinds CREATE, DELETE, START, TRUNCATE). Why not a catalog file: a WAL record is ordered
 *   with the data frames around it (truncate, then append the same offsets again; delete, then
 *   recreate), and it becomes durable with the same group-committed fdatasync, without a second file
 *   to fsync and rename on the event loop. Before WAL segments holding catalog frames are deleted, a
 *   checkpoint (one CREATE frame per live log with its current start offset) is made durable after
 *   them. The last 1/8 (at most 4 MiB) of every segment takes catalog frames only, so that
 *   checkpoint fits even when the disk is full and no next segment can be created. Recovery replays
 *   frames in WAL order; a data frame may precede its log's CREATE record (checkpointed later), so
 *   ids are resolved at the end and frames of ids that never got a name are dropped.
 *
 * Indexes
 *   Per log, memory holds one ur_part per WAL segment the log has live entries in (offset range,
 *   bytes, count, max timestamp) — a coarse structure bounded by the number of segments. The fine
 *   index (one 40-byte ur_entry per entry: offsets, timestamps, position) of the segment being
 *   written lives in memory; when a segment is sealed the maintenance thread writes it to
 *   `wal-<generation>.idx` and frees it, and reads then binary-search that file with pread. Index
 *   files are derived data: recovery rebuilds them from the WAL at every open.
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
 *   callbacks. Reads pread page-cached, recently written data (kstore.h read is synchronous: an
 *   io_uring read would block the caller just the same). The maintenance thread does the blocking
 *   file work: deleting segments no log needs, writing index files of sealed segments, preparing
 *   segments ahead of need.
 *
 * Failures
 *   A failed write (ENOSPC, EDQUOT; injected by KSTORE_URING_CONTROL_FAIL_WRITES) or a segment that
 *   cannot be created fails that append and every later staged one with NO_SPACE; the WAL is rolled
 *   back to the failed frame (bytes written after it are zeroed), logs' ends return to their first
 *   failed offset and catalog frames are staged again. EIO on a write or an fdatasync fails the WAL:
 *   pending syncs and appends fail with IO and every later mutating call answers IO until the
 *   instance is reopened. Recovery that finds acknowledged data damaged leaves the instance open
 *   but inert: every open_log answers CORRUPT naming the file and position.
 *
 * Locks (in this order): catalog_lock (the log table) → log->lock (one log's index) → wal_lock
 * (staging, chunks, segments, sync requests, failure state). error_lock is a leaf.
 */
#include "kstore_uring.h"

#include <liburing.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "fjord_crc32c.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the uring backend writes its frames in host byte order and supports little-endian hosts only"
#endif

/* MARK: - Limits and formats */

#define UR_FRAME_MAGIC 0x31574A46u /* "FJW1" */
#define UR_FRAME_HEADER_BYTES 72u
#define UR_FRAME_ALIGN_BYTES 8u
#define UR_INDEX_MAGIC 0x31584449464A4Full /* "OFJIDX1" */
#define UR_INDEX_HEADER_BYTES 64u

#define UR_SEGMENT_BYTES_DEFAULT ((uint64_t)256 * 1024 * 1024)
#define UR_SEGMENT_BYTES_MIN ((uint64_t)64 * 1024)
/* Positions inside a segment are stored as uint32. */
#define UR_SEGMENT_BYTES_MAX ((uint64_t)1024 * 1024 * 1024)
#define UR_STAGING_BYTES_DEFAULT ((uint64_t)64 * 1024 * 1024)
#define UR_WRITE_BYTES_DEFAULT ((uint64_t)1024 * 1024)
#define UR_WRITES_INFLIGHT_DEFAULT 8u
#define UR_WRITES_INFLIGHT_MAX 64u
#define UR_RING_ENTRIES 256u
#define UR_ERROR_BYTES_MAX ((size_t)512)
#define UR_ZERO_BYTES ((size_t)1024 * 1024)
/* Recovery reads WAL segments in blocks of this size. */
#define UR_SCAN_BYTES ((size_t)16 * 1024 * 1024)
/* The data directory's format marker. */
#define UR_MARKER_NAME ".fjord-backend"
#define UR_MARKER_TEXT "uring 1\n"
#define UR_LOCK_NAME ".lock"
/* Deleted segments kept (renamed spare-<generation>.log) to become later segments: their blocks
 * are written already, so reusing them costs neither zeroing nor new extents. Frames left in them
 * carry an older generation, which recovery and reads never take for the new one's. */
#define UR_RECYCLE_MAX 2
/* Reads gather runs of adjacent frames into one preadv of at most this many iovecs. */
#define UR_READ_IOVECS_MAX 192

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

typedef struct ur_frame_header {
    uint32_t magic;
    uint32_t crc; /* CRC-32C of the payload, then of header bytes [8, 72) */
    uint32_t payload_bytes;
    uint16_t kind;
    uint16_t reserved; /* zero */
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

typedef struct ur_instance ur_instance;
typedef struct ur_log ur_log;

enum ur_segment_state { UR_SEGMENT_PREPARING, UR_SEGMENT_READY, UR_SEGMENT_FAILED };

typedef struct ur_segment {
    uint64_t generation;
    /* Bytes frames may use: grows from 1 MiB to uring.segment.bytes over an instance's first
     * segments (a young or small instance does not preallocate 3 x 256 MiB); an existing file's
     * size after recovery. */
    uint64_t capacity;
    int fd;     /* -1 until READY */
    int idx_fd; /* -1 until the index file is written */
    enum ur_segment_state state;
    int prepare_error;
    /* All of its frames were written and delivered; the cursor is past it. */
    bool sealed;
    bool sealing; /* queued for the maintenance thread */
    bool dirty;   /* written since the last fdatasync was issued */
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
    uint64_t undelivered;   /* accepted appends whose completion was not delivered */
    /* I/O thread only. */
    int64_t written_end;
    uint64_t written_truncate_generation;
    int64_t fsync_end;
    uint64_t fsync_truncate_generation;
    bool in_dirty_list;
    bool in_fsync_list;
};

/* One staged frame, kept until its write completed and its completion was delivered. */
typedef struct ur_pending {
    ur_log *log; /* NULL for catalog frames of deleted logs */
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
    ur_segment *segment;
    uint64_t position;
    uint8_t *bytes;
    size_t capacity;
    size_t used;
    size_t written; /* bytes confirmed written (short writes are resubmitted) */
    uint64_t first_sequence;
    uint64_t last_sequence;
    ur_pending *pending;
    size_t pending_count;
    size_t pending_capacity;
    enum ur_chunk_state state;
    int error; /* errno of a failed write */
    bool injected;
} ur_chunk;

typedef struct ur_sync_request {
    uint64_t target_sequence;
    ur_log *log;
    kstore_completion completion;
    void *context;
} ur_sync_request;

/* A completion to call outside the locks. */
typedef struct ur_callback {
    kstore_completion completion;
    void *context;
    kstore_status status;
} ur_callback;

typedef struct ur_callbacks {
    ur_callback *items;
    size_t count;
    size_t capacity;
} ur_callbacks;

struct ur_instance {
    kstore_instance base; /* first member: the handle the host holds */
    char *path;
    int dir_fd;
    int lock_fd;
    uint64_t segment_bytes;
    uint64_t staging_bytes_max;
    /* uring.segment.zero=fallocate (default): leave new segments as unwritten extents (they read as
     * zeros, also after a crash) instead of writing zeros (=write); halves the disk writes of a
     * growing WAL, at the price of extent conversions that each fdatasync must journal. */
    bool zero_by_fallocate;
    uint64_t write_bytes;
    uint32_t writes_inflight_max;

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
    /* Faults injected by tests. */
    int32_t fail_writes_count;
    int32_t fail_writes_error;
    int32_t fail_fsyncs_count;
    int32_t fail_fsyncs_error;
    int32_t fail_segments_count;
    int32_t fail_segments_error;
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

    pthread_mutex_t error_lock;
    char error_message[UR_ERROR_BYTES_MAX];
    size_t error_length;
};

static const kstore_log_methods ur_log_methods;
static const kstore_backend ur_backend;
static const uint8_t ur_zeros[4096];

/* MARK: - Helpers */

__attribute__((format(printf, 2, 3))) static void ur_set_error(ur_instance *instance, const char *format, ...) {
    char message[UR_ERROR_BYTES_MAX];
    va_list arguments;
    va_start(arguments, format);
    if (vsnprintf(message, sizeof(message), format, arguments) < 0) message[0] = '\0';
    va_end(arguments);
    pthread_mutex_lock(&instance->error_lock);
    memcpy(instance->error_message, message, sizeof(message));
    instance->error_length = strlen(instance->error_message);
    pthread_mutex_unlock(&instance->error_lock);
}

/* Maps an errno to the ABI status (STYLE.md rule 15). */
static kstore_status ur_status_from_errno(int error) {
    switch (error) {
    case ENOSPC:
    case EDQUOT:
        return KSTORE_ERR_NO_SPACE;
    case ENOMEM:
        return KSTORE_ERR_NO_MEMORY;
    default:
        return KSTORE_ERR_IO;
    }
}

static int64_t ur_max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t ur_min64(int64_t a, int64_t b) { return a < b ? a : b; }

static uint64_t ur_frame_bytes(uint64_t payload_bytes) {
    return (UR_FRAME_HEADER_BYTES + payload_bytes + UR_FRAME_ALIGN_BYTES - 1) & ~(uint64_t)(UR_FRAME_ALIGN_BYTES - 1);
}

static uint64_t ur_now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

static uint32_t ur_frame_crc(uint32_t payload_crc, const ur_frame_header *header) {
    return fjord_crc32c(payload_crc, (const uint8_t *)header + 8, UR_FRAME_HEADER_BYTES - 8);
}

#define UR_FITS(pointer, type, field) \
    ((size_t)(pointer)->struct_size >= offsetof(type, field) + sizeof(((type *)0)->field))

static bool ur_grow(void **array, size_t *capacity, size_t needed, size_t element_bytes, size_t minimum) {
    if (needed <= *capacity) return true;
    size_t grown = *capacity == 0 ? minimum : *capacity;
    while (grown < needed) {
        if (grown > SIZE_MAX / 2) return false;
        grown *= 2;
    }
    if (grown > SIZE_MAX / element_bytes) return false;
    void *resized = realloc(*array, grown * element_bytes);
    if (resized == NULL) return false;
    *array = resized;
    *capacity = grown;
    return true;
}

static bool ur_callbacks_add(ur_callbacks *callbacks, kstore_completion completion, void *context,
                             kstore_status status) {
    if (completion == NULL) return true;
    if (!ur_grow((void **)&callbacks->items, &callbacks->capacity, callbacks->count + 1, sizeof(ur_callback), 64)) {
        /* Out of memory while completing: call it right away rather than lose it. The callers
         * hold no lock that a completion could need (it must not call into the instance). */
        completion(context, status);
        return false;
    }
    callbacks->items[callbacks->count++] = (ur_callback){completion, context, status};
    return true;
}

static void ur_callbacks_run(ur_callbacks *callbacks) {
    for (size_t index = 0; index < callbacks->count; index++) {
        callbacks->items[index].completion(callbacks->items[index].context, callbacks->items[index].status);
    }
    callbacks->count = 0;
}

static ssize_t ur_pwrite_all(int fd, const void *bytes, size_t count, uint64_t position) {
    size_t done = 0;
    while (done < count) {
        ssize_t written = pwrite(fd, (const uint8_t *)bytes + done, count - done, (off_t)(position + done));
        if (written < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (written == 0) {
            errno = ENOSPC;
            return -1;
        }
        done += (size_t)written;
    }
    return (ssize_t)done;
}

/* Reads exactly count bytes unless the file ends; returns the bytes read or -1. */
static ssize_t ur_pread_all(int fd, void *bytes, size_t count, uint64_t position) {
    size_t done = 0;
    while (done < count) {
        ssize_t got = pread(fd, (uint8_t *)bytes + done, count - done, (off_t)(position + done));
        if (got < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (got == 0) break;
        done += (size_t)got;
    }
    return (ssize_t)done;
}

static int ur_fdatasync(int fd) {
    while (fdatasync(fd) != 0) {
        if (errno != EINTR) return -1;
    }
    return 0;
}

static int ur_fsync(int fd) {
    while (fsync(fd) != 0) {
        if (errno != EINTR) return -1;
    }
    return 0;
}

static void ur_segment_name(char *buffer, size_t capacity, uint64_t generation, const char *suffix) {
    snprintf(buffer, capacity, "wal-%016" PRIx64 ".%s", generation, suffix);
}

/* Writes zeros over [position, position + count) of fd; stops with ECANCELED when *cancel
 * becomes true (a segment being prepared while the instance closes). */
static int ur_write_zeros_cancellable(int fd, uint64_t position, uint64_t count, _Atomic bool *cancel,
                                      _Atomic bool *hurry) {
    uint8_t *buffer = calloc(1, UR_ZERO_BYTES);
    if (buffer == NULL) {
        errno = ENOMEM;
        return -1;
    }
    int result = 0;
    while (count > 0) {
        if (cancel != NULL && atomic_load_explicit(cancel, memory_order_relaxed)) {
            free(buffer);
            errno = ECANCELED;
            return -1;
        }
        if (hurry != NULL && atomic_load_explicit(hurry, memory_order_relaxed)) break;
        size_t step = count < UR_ZERO_BYTES ? (size_t)count : UR_ZERO_BYTES;
        if (ur_pwrite_all(fd, buffer, step, position) < 0) {
            result = -1;
            break;
        }
        position += step;
        count -= step;
    }
    int saved = errno;
    free(buffer);
    errno = saved;
    return result;
}

static int ur_write_zeros(int fd, uint64_t position, uint64_t count) {
    return ur_write_zeros_cancellable(fd, position, count, NULL, NULL);
}

/* MARK: - Per-log index (caller holds log->lock; shared for reads, exclusive for changes) */

/* Copies entries [index, index + count) of a part into out; false (errno set) if the index file
 * cannot be read. */
static bool ur_part_entries(const ur_part *part, size_t index, size_t count, ur_entry *out) {
    if (count == 0) return true;
    if (part->entries != NULL) {
        memcpy(out, part->entries + index, count * sizeof(ur_entry));
        return true;
    }
    size_t bytes = count * sizeof(ur_entry);
    ssize_t got = ur_pread_all(part->segment->idx_fd, out, bytes, part->idx_position + index * sizeof(ur_entry));
    if (got < 0) return false;
    if ((size_t)got != bytes) {
        errno = EIO;
        return false;
    }
    return true;
}

/* Index of the last entry in [begin, end) whose first_offset <= offset (begin if none). */
static bool ur_part_find(const ur_part *part, int64_t offset, size_t *found) {
    size_t low = part->begin, high = part->end; /* answer in [low, high) */
    while (high - low > 1) {
        size_t middle = low + (high - low) / 2;
        ur_entry entry;
        if (!ur_part_entries(part, middle, 1, &entry)) return false;
        if (entry.first_offset <= offset) {
            low = middle;
        } else {
            high = middle;
        }
    }
    *found = low;
    return true;
}

/* Index of the first entry in [begin, end) whose last_offset >= offset (end if none). */
static bool ur_part_first_ending_at_or_after(const ur_part *part, int64_t offset, size_t *found) {
    size_t low = part->begin, high = part->end;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        ur_entry entry;
        if (!ur_part_entries(part, middle, 1, &entry)) return false;
        if (entry.last_offset < offset) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    *found = low;
    return true;
}

/* Recomputes the cached fields of a part from its live entries (O(entries of one segment)). */
static bool ur_part_recompute(ur_part *part) {
    part->byte_count = 0;
    part->max_timestamp = -1;
    part->untimed_count = 0;
    ur_entry block[256];
    for (size_t index = part->begin; index < part->end;) {
        size_t count = part->end - index < 256 ? part->end - index : 256;
        if (!ur_part_entries(part, index, count, block)) return false;
        for (size_t k = 0; k < count; k++) {
            part->byte_count += block[k].payload_bytes;
            part->max_timestamp = ur_max64(part->max_timestamp, block[k].max_timestamp);
            if (block[k].max_timestamp < 0) part->untimed_count++;
            if (index + k == part->begin) part->first_offset = block[k].first_offset;
            if (index + k + 1 == part->end) part->last_offset = block[k].last_offset;
        }
        index += count;
    }
    return true;
}

static void ur_log_remove_parts(ur_log *log, size_t from, size_t to) {
    for (size_t index = from; index < to; index++) free(log->parts[index].entries);
    memmove(log->parts + from, log->parts + to, (log->part_count - to) * sizeof(ur_part));
    log->part_count -= to - from;
}

/* Makes room for one more entry of `segment` at the end of the log's index. */
static bool ur_log_reserve_entry(ur_log *log, ur_segment *segment) {
    ur_part *last = log->part_count > 0 ? &log->parts[log->part_count - 1] : NULL;
    if (last != NULL && last->segment == segment) {
        /* The part of the segment being written always keeps its entries in memory. */
        return ur_grow((void **)&last->entries, &last->entry_capacity, last->end + 1, sizeof(ur_entry), 16);
    }
    if (!ur_grow((void **)&log->parts, &log->part_capacity, log->part_count + 1, sizeof(ur_part), 4)) return false;
    ur_part *part = &log->parts[log->part_count];
    memset(part, 0, sizeof(*part));
    part->segment = segment;
    part->max_timestamp = -1;
    part->entries = malloc(16 * sizeof(ur_entry));
    if (part->entries == NULL) return false;
    part->entry_capacity = 16;
    log->part_count++;
    return true;
}

/* Adds an entry after ur_log_reserve_entry succeeded for its segment. */
static void ur_log_add_entry(ur_log *log, ur_segment *segment, int64_t first_offset, int64_t last_offset,
                             int64_t max_timestamp, uint32_t position, uint32_t payload_bytes) {
    ur_part *part = &log->parts[log->part_count - 1];
    (void)segment;
    int64_t running = part->end > 0 ? part->entries[part->end - 1].running_max_timestamp : -1;
    part->entries[part->end] = (ur_entry){
        .first_offset = first_offset,
        .last_offset = last_offset,
        .max_timestamp = max_timestamp,
        .running_max_timestamp = ur_max64(running, max_timestamp),
        .position = position,
        .payload_bytes = payload_bytes,
    };
    if (part->end == part->begin) part->first_offset = first_offset;
    part->end++;
    part->last_offset = last_offset;
    part->byte_count += payload_bytes;
    part->max_timestamp = ur_max64(part->max_timestamp, max_timestamp);
    if (max_timestamp < 0) part->untimed_count++;
}

/* Drops a part whose reservation was not used (an append that failed after reserving). */
static void ur_log_unreserve(ur_log *log) {
    if (log->part_count > 0 && log->parts[log->part_count - 1].end == log->parts[log->part_count - 1].begin) {
        ur_log_remove_parts(log, log->part_count - 1, log->part_count);
    }
}

/* Removes every entry whose last_offset >= offset (for an entry boundary that is every entry from
 * it on; for offset == start also the entry straddling the start). */
static bool ur_log_cut(ur_log *log, int64_t offset) {
    while (log->part_count > 0) {
        ur_part *part = &log->parts[log->part_count - 1];
        if (part->first_offset >= offset || part->begin == part->end) {
            ur_log_remove_parts(log, log->part_count - 1, log->part_count);
            continue;
        }
        if (part->last_offset < offset) break;
        size_t keep = 0;
        if (!ur_part_first_ending_at_or_after(part, offset, &keep)) return false;
        part->end = keep;
        if (part->end == part->begin) {
            ur_log_remove_parts(log, log->part_count - 1, log->part_count);
            continue;
        }
        if (!ur_part_recompute(part)) return false;
        break;
    }
    return true;
}

/* Moves the start to offset (>= start): drops entries lying wholly below it. */
static bool ur_log_advance_start(ur_log *log, int64_t offset) {
    if (offset <= log->start_offset) return true;
    log->start_offset = offset;
    size_t drop = 0;
    while (drop < log->part_count && log->parts[drop].last_offset < offset) drop++;
    ur_log_remove_parts(log, 0, drop);
    if (log->part_count > 0 && log->parts[0].first_offset < offset) {
        ur_part *part = &log->parts[0];
        size_t keep = 0;
        if (!ur_part_first_ending_at_or_after(part, offset, &keep)) return false;
        if (keep != part->begin) {
            part->begin = keep;
            if (!ur_part_recompute(part)) return false;
        }
    }
    return true;
}

static void ur_log_totals(const ur_log *log, uint64_t *byte_count, uint64_t *entry_count, int64_t *max_timestamp) {
    uint64_t bytes = 0, entries = 0;
    int64_t maximum = -1;
    for (size_t index = 0; index < log->part_count; index++) {
        bytes += log->parts[index].byte_count;
        entries += log->parts[index].end - log->parts[index].begin;
        maximum = ur_max64(maximum, log->parts[index].max_timestamp);
    }
    *byte_count = bytes;
    *entry_count = entries;
    *max_timestamp = maximum;
}

/* Index of the part holding offset: the last part whose first_offset <= offset. */
static size_t ur_log_find_part(const ur_log *log, int64_t offset) {
    size_t low = 0, high = log->part_count;
    while (high - low > 1) {
        size_t middle = low + (high - low) / 2;
        if (log->parts[middle].first_offset <= offset) {
            low = middle;
        } else {
            high = middle;
        }
    }
    return low;
}

/* MARK: - WAL staging (caller holds wal_lock) */

/* The first segment's size; each next one doubles up to uring.segment.bytes. */
#define UR_SEGMENT_BYTES_FIRST ((uint64_t)64 * 1024)

static uint64_t ur_capacity_for(const ur_instance *instance, uint64_t generation) {
    uint64_t capacity = UR_SEGMENT_BYTES_FIRST < instance->segment_bytes ? UR_SEGMENT_BYTES_FIRST
                                                                         : instance->segment_bytes;
    for (uint64_t step = 1; step < generation && capacity < instance->segment_bytes; step++) capacity *= 2;
    return capacity < instance->segment_bytes ? capacity : instance->segment_bytes;
}

/* The last bytes of every segment take catalog frames only, so a catalog change (a checkpoint
 * before deleting segments, above all) fits even when the next segment cannot be created because
 * the disk is full: 1/8 of the segment, at most 4 MiB. */
static uint64_t ur_catalog_reserve(uint64_t capacity) {
    return capacity / 8 < (uint64_t)4 * 1024 * 1024 ? capacity / 8 : (uint64_t)4 * 1024 * 1024;
}

static ur_segment *ur_segment_after(ur_instance *instance, const ur_segment *segment) {
    for (size_t index = 0; index < instance->segment_count; index++) {
        if (instance->segments[index] == segment) {
            return index + 1 < instance->segment_count ? instance->segments[index + 1] : NULL;
        }
    }
    return NULL;
}

/* Appends a segment in state PREPARING with the next generation and wakes the maintenance thread,
 * which creates its file. */
static ur_segment *ur_segment_add(ur_instance *instance) {
    if (!ur_grow((void **)&instance->segments, &instance->segment_capacity, instance->segment_count + 1,
                 sizeof(ur_segment *), 8)) {
        return NULL;
    }
    ur_segment *segment = calloc(1, sizeof(ur_segment));
    if (segment == NULL) return NULL;
    uint64_t last = instance->segment_count > 0 ? instance->segments[instance->segment_count - 1]->generation : 0;
    segment->generation = last + 1 > instance->generation_floor ? last + 1 : instance->generation_floor;
    segment->capacity = ur_capacity_for(instance, segment->generation);
    segment->fd = -1;
    segment->idx_fd = -1;
    segment->state = UR_SEGMENT_PREPARING;
    instance->segments[instance->segment_count++] = segment;
    pthread_cond_signal(&instance->maintenance_wake);
    return segment;
}

/* Where a frame of frame_bytes goes: the cursor, or the start of the next segment. */
typedef struct ur_reservation {
    ur_segment *segment;
    uint64_t position;
    ur_chunk *chunk;     /* the open tail chunk, or a new one not yet linked */
    bool new_chunk;
} ur_reservation;

static void ur_wake_io(ur_instance *instance) {
    uint64_t one = 1;
    while (write(instance->event_fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
}

static ur_chunk *ur_chunk_take(ur_instance *instance, size_t capacity) {
    ur_chunk **link = &instance->free_chunks;
    while (*link != NULL) {
        if ((*link)->capacity >= capacity) {
            ur_chunk *chunk = *link;
            *link = chunk->next;
            chunk->next = NULL;
            return chunk;
        }
        link = &(*link)->next;
    }
    ur_chunk *chunk = calloc(1, sizeof(ur_chunk));
    if (chunk == NULL) return NULL;
    chunk->bytes = malloc(capacity);
    if (chunk->bytes == NULL) {
        free(chunk);
        return NULL;
    }
    chunk->capacity = capacity;
    instance->staging_bytes += capacity;
    return chunk;
}

/* Keeps chunks of the standard size for reuse, up to the staging bound; frees the others. */
static void ur_chunk_release(ur_instance *instance, ur_chunk *chunk) {
    chunk->used = 0;
    chunk->written = 0;
    chunk->pending_count = 0;
    chunk->error = 0;
    chunk->injected = false;
    chunk->segment = NULL;
    size_t kept = 0;
    for (ur_chunk *free_chunk = instance->free_chunks; free_chunk != NULL; free_chunk = free_chunk->next) kept++;
    if (chunk->capacity == instance->write_bytes && kept < 4) {
        chunk->next = instance->free_chunks;
        instance->free_chunks = chunk;
        return;
    }
    instance->staging_bytes -= chunk->capacity;
    free(chunk->pending);
    free(chunk->bytes);
    free(chunk);
}

/* Frees the chunks kept for reuse. */
static void ur_chunks_free_idle(ur_instance *instance) {
    while (instance->free_chunks != NULL) {
        ur_chunk *chunk = instance->free_chunks;
        instance->free_chunks = chunk->next;
        instance->staging_bytes -= chunk->capacity;
        free(chunk->pending);
        free(chunk->bytes);
        free(chunk);
    }
}

static void ur_maybe_seal(ur_instance *instance, ur_segment *segment);

/* Finds room for a frame without changing the WAL. */
static kstore_status ur_reserve(ur_instance *instance, uint64_t frame_bytes, bool catalog,
                                ur_reservation *reservation, const char **reason) {
    if (instance->failed_status != KSTORE_OK) {
        *reason = "the write-ahead log failed earlier; reopen the instance";
        return instance->failed_status;
    }
    if (instance->rewinding) {
        *reason = "the write-ahead log is rolling back a failed write; retry";
        return KSTORE_ERR_BUSY;
    }
    ur_segment *segment = instance->cursor_segment;
    uint64_t position = instance->cursor_position;
    uint64_t limit = catalog ? segment->capacity : segment->capacity - ur_catalog_reserve(segment->capacity);
    /* Data frames never go into a sealed segment (its index was written): after a rewind into
     * one, only catalog frames do. */
    if (position + frame_bytes > limit || (!catalog && segment->sealed)) {
        ur_segment *next = ur_segment_after(instance, segment);
        if (next == NULL) next = ur_segment_add(instance);
        if (next == NULL) {
            *reason = "out of memory";
            return KSTORE_ERR_NO_MEMORY;
        }
        segment = next;
        position = 0;
        /* An entry larger than a young segment: that segment grows (a write past its
         * preallocated end extends the file). */
        uint64_t needed = frame_bytes + frame_bytes / 7 + UR_FRAME_ALIGN_BYTES;
        if (!catalog && segment->capacity - ur_catalog_reserve(segment->capacity) < frame_bytes) {
            segment->capacity = needed > segment->capacity ? needed : segment->capacity;
        }
    }
    if (segment != instance->cursor_segment && segment->state == UR_SEGMENT_FAILED) {
        instance->maintenance_poke = true;
        pthread_cond_signal(&instance->maintenance_wake);
        *reason = "no space for the next write-ahead-log segment";
        return ur_status_from_errno(segment->prepare_error);
    }
    ur_chunk *tail = instance->chunk_tail;
    if (tail != NULL && tail->state == UR_CHUNK_OPEN && tail->segment == segment &&
        tail->position + tail->used == position && tail->capacity - tail->used >= frame_bytes) {
        if (!ur_grow((void **)&tail->pending, &tail->pending_capacity, tail->pending_count + 1, sizeof(ur_pending),
                     64)) {
            *reason = "out of memory";
            return KSTORE_ERR_NO_MEMORY;
        }
        *reservation = (ur_reservation){segment, position, tail, false};
        return KSTORE_OK;
    }
    size_t capacity = frame_bytes > instance->write_bytes ? (size_t)frame_bytes : (size_t)instance->write_bytes;
    bool fits_free = false;
    for (ur_chunk *free_chunk = instance->free_chunks; free_chunk != NULL; free_chunk = free_chunk->next) {
        if (free_chunk->capacity >= capacity) fits_free = true;
    }
    if (!fits_free && instance->staging_bytes + capacity > instance->staging_bytes_max) {
        /* Idle chunks kept for reuse count toward the bound but hold nothing: free them first, or
         * a frame larger than the standard chunk would wait for room that never comes. */
        ur_chunks_free_idle(instance);
    }
    if (!fits_free && instance->staging_bytes > 0 && instance->staging_bytes + capacity > instance->staging_bytes_max) {
        instance->stats.busy_rejections++;
        *reason = "the staging buffers are full (uring.staging.bytes); retry";
        return KSTORE_ERR_BUSY;
    }
    ur_chunk *chunk = ur_chunk_take(instance, capacity);
    if (chunk == NULL ||
        !ur_grow((void **)&chunk->pending, &chunk->pending_capacity, 1, sizeof(ur_pending), 64)) {
        if (chunk != NULL) ur_chunk_release(instance, chunk);
        *reason = "out of memory";
        return KSTORE_ERR_NO_MEMORY;
    }
    chunk->segment = segment;
    chunk->position = position;
    chunk->state = UR_CHUNK_OPEN;
    *reservation = (ur_reservation){segment, position, chunk, true};
    return KSTORE_OK;
}

/* Writes a reserved frame into staging and advances the cursor. Returns whether the I/O thread
 * must be woken (the caller writes the eventfd after dropping the lock). */
static bool ur_commit(ur_instance *instance, const ur_reservation *reservation, uint16_t kind, ur_log *log,
                      uint64_t log_id, int64_t first_offset, int64_t last_offset, int64_t max_timestamp,
                      uint32_t payload_crc, const kstore_iovec *iov, uint32_t iov_count, uint64_t payload_bytes,
                      kstore_completion completion, void *context, uint64_t *sequence_out) {
    ur_chunk *chunk = reservation->chunk;
    if (reservation->new_chunk) {
        if (instance->chunk_tail != NULL && instance->chunk_tail->state == UR_CHUNK_OPEN) {
            instance->chunk_tail->state = UR_CHUNK_CLOSED;
        }
        chunk->first_sequence = instance->next_sequence;
        chunk->next = NULL;
        if (instance->chunk_tail != NULL) {
            instance->chunk_tail->next = chunk;
        } else {
            instance->chunk_head = chunk;
        }
        instance->chunk_tail = chunk;
    }
    if (reservation->segment != instance->cursor_segment) {
        /* Rolled: keep one prepared segment ahead of the one being written. */
        ur_segment *left = instance->cursor_segment;
        left->roll_position = instance->cursor_position;
        instance->cursor_segment = reservation->segment;
        /* Its last write may have been delivered already: then it is sealed now. */
        ur_maybe_seal(instance, left);
        if (ur_segment_after(instance, reservation->segment) == NULL) (void)ur_segment_add(instance);
    }
    uint64_t frame_bytes = ur_frame_bytes(payload_bytes);
    uint8_t *destination = chunk->bytes + chunk->used;
    uint64_t sequence = instance->next_sequence++;
    ur_frame_header header = {
        .magic = UR_FRAME_MAGIC,
        .crc = 0,
        .payload_bytes = (uint32_t)payload_bytes,
        .kind = kind,
        .reserved = 0,
        .generation = reservation->segment->generation,
        .log_id = log_id,
        .first_offset = first_offset,
        .last_offset = last_offset,
        .max_timestamp = max_timestamp,
        .sequence = sequence,
        .durable_sequence = instance->durable_sequence,
    };
    header.crc = ur_frame_crc(payload_crc, &header);
    memcpy(destination, &header, sizeof(header));
    size_t copied = UR_FRAME_HEADER_BYTES;
    for (uint32_t index = 0; index < iov_count; index++) {
        if (iov[index].len == 0) continue;
        memcpy(destination + copied, iov[index].base, iov[index].len);
        copied += iov[index].len;
    }
    /* Zero the padding: persisted bytes are never left uninitialized (STYLE.md rule 15). */
    memset(destination + copied, 0, frame_bytes - copied);
    if (kind != UR_FRAME_DATA && kind != UR_FRAME_MARK) reservation->segment->has_catalog = true;
    chunk->pending[chunk->pending_count++] = (ur_pending){
        .log = log,
        .completion = completion,
        .context = context,
        .first_offset = first_offset,
        .end_offset = last_offset + 1,
        .truncate_generation = log != NULL ? atomic_load(&log->truncate_generation) : 0,
        .chunk_offset = (uint32_t)chunk->used,
        .kind = kind,
    };
    chunk->used += frame_bytes;
    chunk->last_sequence = sequence;
    instance->cursor_position = reservation->position + frame_bytes;
    if (log != NULL) {
        log->last_sequence = sequence;
        if (kind == UR_FRAME_DATA) log->undelivered++;
    }
    if (kind == UR_FRAME_DATA) instance->stats.appends++;
    if (sequence_out != NULL) *sequence_out = sequence;
    bool wake = instance->io_waiting && instance->writes_in_flight < instance->writes_inflight_max;
    if (wake) instance->io_waiting = false;
    return wake;
}

/* Stages a catalog frame (no completion): CREATE carries the name. */
static kstore_status ur_stage_catalog(ur_instance *instance, uint16_t kind, ur_log *log, uint64_t log_id,
                                      int64_t offset, const char *name, bool *wake, const char **reason) {
    kstore_iovec iov = {name, name != NULL ? strlen(name) : 0};
    uint32_t iov_count = name != NULL ? 1 : 0;
    uint32_t payload_crc = fjord_crc32c(0, iov.base, iov.len);
    ur_reservation reservation;
    kstore_status status = ur_reserve(instance, ur_frame_bytes(iov.len), true, &reservation, reason);
    if (status != KSTORE_OK) return status;
    bool woke = ur_commit(instance, &reservation, kind, log, log_id, offset, offset, -1, payload_crc, &iov,
                          iov_count, iov.len, NULL, NULL, NULL);
    *wake = *wake || woke;
    return KSTORE_OK;
}

/* Queues a sync request; false when out of memory. */
static bool ur_add_sync(ur_instance *instance, uint64_t target, ur_log *log, kstore_completion completion,
                        void *context, bool *wake) {
    if (!ur_grow((void **)&instance->syncs, &instance->sync_capacity, instance->sync_count + 1,
                 sizeof(ur_sync_request), 64)) {
        return false;
    }
    instance->syncs[instance->sync_count++] = (ur_sync_request){target, log, completion, context};
    instance->stats.syncs++;
    if (instance->io_waiting && !instance->fsync_in_flight) {
        instance->io_waiting = false;
        *wake = true;
    }
    return true;
}

/* A waiter for an internal sync (delete_log, close). */
typedef struct ur_waiter {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    bool done;
    kstore_status status;
} ur_waiter;

static void ur_waiter_done(void *context, kstore_status status) {
    ur_waiter *waiter = context;
    pthread_mutex_lock(&waiter->mutex);
    waiter->done = true;
    waiter->status = status;
    pthread_cond_signal(&waiter->cond);
    pthread_mutex_unlock(&waiter->mutex);
}

/* Waits until everything staged so far is durable (blocking: delete_log and close only). Caller
 * holds no lock. */
static kstore_status ur_wait_durable(ur_instance *instance) {
    ur_waiter waiter = {.done = false, .status = KSTORE_OK};
    pthread_mutex_init(&waiter.mutex, NULL);
    pthread_cond_init(&waiter.cond, NULL);
    bool wake = false;
    pthread_mutex_lock(&instance->wal_lock);
    kstore_status status = instance->failed_status;
    bool queued = false;
    if (status == KSTORE_OK) {
        uint64_t target = instance->next_sequence - 1;
        if (target <= instance->durable_sequence) {
            waiter.done = true;
        } else if (ur_add_sync(instance, target, NULL, ur_waiter_done, &waiter, &wake)) {
            queued = true;
        } else {
            status = KSTORE_ERR_NO_MEMORY;
        }
    }
    pthread_mutex_unlock(&instance->wal_lock);
    if (wake) ur_wake_io(instance);
    if (queued) {
        pthread_mutex_lock(&waiter.mutex);
        while (!waiter.done) pthread_cond_wait(&waiter.cond, &waiter.mutex);
        pthread_mutex_unlock(&waiter.mutex);
        status = waiter.status;
    }
    pthread_mutex_destroy(&waiter.mutex);
    pthread_cond_destroy(&waiter.cond);
    return status;
}

/* MARK: - I/O thread */

#define UR_TAG_EVENT ((uintptr_t)8)
#define UR_TAG_FSYNC_BIT ((uintptr_t)1)

/* A log field update the I/O thread makes outside wal_lock, under the log's read lock. */
typedef struct ur_update {
    ur_log *log;
    int64_t end_offset;
    uint64_t truncate_generation;
    bool durable;
} ur_update;

typedef struct ur_io_state {
    ur_callbacks callbacks;
    ur_update *updates;
    size_t update_count;
    size_t update_capacity;
    uint64_t event_value;
    bool event_armed;
} ur_io_state;

static void ur_io_update(ur_io_state *io, ur_log *log, int64_t end_offset, uint64_t truncate_generation,
                         bool durable) {
    if (!ur_grow((void **)&io->updates, &io->update_capacity, io->update_count + 1, sizeof(ur_update), 256)) {
        return; /* Out of memory: the state lags (readable/durable_end), data is still correct. */
    }
    io->updates[io->update_count++] = (ur_update){log, end_offset, truncate_generation, durable};
}

/* Applies readable/durable end updates, then calls the completions (outside wal_lock). */
static void ur_io_flush(ur_io_state *io) {
    for (size_t index = 0; index < io->update_count; index++) {
        ur_update *update = &io->updates[index];
        pthread_rwlock_rdlock(&update->log->lock);
        if (atomic_load(&update->log->truncate_generation) == update->truncate_generation) {
            _Atomic int64_t *field = update->durable ? &update->log->durable_end : &update->log->readable_end;
            int64_t end = ur_min64(update->end_offset, update->log->end_offset);
            if (atomic_load(field) < end) atomic_store(field, end);
        }
        pthread_rwlock_unlock(&update->log->lock);
    }
    io->update_count = 0;
    ur_callbacks_run(&io->callbacks);
}

static struct io_uring_sqe *ur_io_sqe(ur_instance *instance) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&instance->ring);
    if (sqe == NULL) {
        io_uring_submit(&instance->ring);
        sqe = io_uring_get_sqe(&instance->ring);
    }
    return sqe;
}

static void ur_maybe_seal(ur_instance *instance, ur_segment *segment) {
    if (segment == NULL || segment == instance->cursor_segment || segment->sealed) return;
    if (instance->chunk_head != NULL && instance->chunk_head->segment->generation <= segment->generation) return;
    segment->sealed = true;
    segment->sealing = true;
    pthread_cond_signal(&instance->maintenance_wake);
}

/* Submits staged chunks in WAL order while fewer than writes_inflight_max are in flight. Returns
 * whether a chunk settled without a CQE to come (an injected failure, a segment that could not be
 * created): the caller must then go round again instead of waiting. Caller holds wal_lock. */
static bool ur_io_submit_writes(ur_instance *instance) {
    if (instance->rewinding || instance->failed_status != KSTORE_OK) return false;
    bool settled = false;
    for (ur_chunk *chunk = instance->chunk_head; chunk != NULL; chunk = chunk->next) {
        if (chunk->state == UR_CHUNK_IN_FLIGHT || chunk->state == UR_CHUNK_DONE) continue;
        if (instance->writes_in_flight >= instance->writes_inflight_max) break;
        if (chunk->state == UR_CHUNK_OPEN) {
            if (chunk->used == 0) break;
            chunk->state = UR_CHUNK_CLOSED;
        }
        if (chunk->segment->state == UR_SEGMENT_FAILED) {
            /* The segment could not be created (no space): its frames fail and roll back. */
            chunk->error = chunk->segment->prepare_error != 0 ? chunk->segment->prepare_error : ENOSPC;
            chunk->state = UR_CHUNK_DONE;
            settled = true;
            break;
        }
        if (chunk->segment->state != UR_SEGMENT_READY) {
            atomic_store(&chunk->segment->hurry, true);
            break;
        }
        if (instance->fail_writes_count > 0) {
            instance->fail_writes_count--;
            chunk->injected = true;
            chunk->error = instance->fail_writes_error;
            chunk->state = UR_CHUNK_DONE;
            settled = true;
            continue;
        }
        struct io_uring_sqe *sqe = ur_io_sqe(instance);
        if (sqe == NULL) break;
        io_uring_prep_write(sqe, chunk->segment->fd, chunk->bytes + chunk->written,
                            (unsigned)(chunk->used - chunk->written), chunk->position + chunk->written);
        io_uring_sqe_set_data(sqe, chunk);
        chunk->state = UR_CHUNK_IN_FLIGHT;
        instance->writes_in_flight++;
        instance->stats.writes++;
        if (instance->writes_in_flight > instance->stats.writes_in_flight_max) {
            instance->stats.writes_in_flight_max = instance->writes_in_flight;
        }
    }
    return settled;
}

/* Completes the sync requests whose target is durable, in request order. Caller holds wal_lock. */
static void ur_io_complete_syncs(ur_instance *instance, ur_io_state *io, kstore_status status) {
    size_t kept = 0;
    for (size_t index = 0; index < instance->sync_count; index++) {
        ur_sync_request *request = &instance->syncs[index];
        if (status != KSTORE_OK || request->target_sequence <= instance->durable_sequence) {
            ur_callbacks_add(&io->callbacks, request->completion, request->context, status);
        } else {
            instance->syncs[kept++] = *request;
        }
    }
    instance->sync_count = kept;
}

static void ur_io_fsync_done(ur_instance *instance, ur_io_state *io);

/* Issues one group-commit round when a sync request waits for frames that are all written.
 * Caller holds wal_lock. */
static void ur_io_maybe_fsync(ur_instance *instance, ur_io_state *io) {
    if (instance->fsync_in_flight || instance->sync_count == 0 || instance->failed_status != KSTORE_OK) return;
    uint64_t min_target = UINT64_MAX;
    for (size_t index = 0; index < instance->sync_count; index++) {
        if (instance->syncs[index].target_sequence < min_target) min_target = instance->syncs[index].target_sequence;
    }
    if (min_target > instance->written_sequence) return;
    uint64_t covered = instance->written_sequence;
    size_t dirty = 0;
    for (size_t index = 0; index < instance->segment_count; index++) dirty += instance->segments[index]->dirty;
    if (dirty == 0) {
        /* Everything written is already covered by an earlier fdatasync. */
        if (covered > instance->durable_sequence) instance->durable_sequence = covered;
        pthread_cond_broadcast(&instance->wal_changed);
        ur_io_complete_syncs(instance, io, KSTORE_OK);
        return;
    }
    instance->fsync_in_flight = true;
    instance->fsync_error = 0;
    instance->fsync_covered_sequence = covered;
    instance->stats.fsyncs++;
    if (instance->fail_fsyncs_count > 0) {
        instance->fail_fsyncs_count--;
        instance->fsync_error = instance->fail_fsyncs_error;
        instance->fsync_parts_left = 0;
    } else {
        instance->fsync_parts_left = 0;
        for (size_t index = 0; index < instance->segment_count; index++) {
            ur_segment *segment = instance->segments[index];
            if (!segment->dirty) continue;
            struct io_uring_sqe *sqe = ur_io_sqe(instance);
            if (sqe == NULL) {
                instance->fsync_error = EAGAIN;
                continue;
            }
            io_uring_prep_fsync(sqe, segment->fd, IORING_FSYNC_DATASYNC);
            io_uring_sqe_set_data(sqe, (void *)((uintptr_t)segment | UR_TAG_FSYNC_BIT));
            segment->dirty = false;
            segment->fsyncs_in_flight++;
            instance->fsync_parts_left++;
        }
    }
    /* The logs written so far are the ones this round makes durable. */
    ur_log **swap = instance->fsync_logs;
    size_t swap_capacity = instance->fsync_log_capacity;
    instance->fsync_logs = instance->dirty_logs;
    instance->fsync_log_capacity = instance->dirty_capacity;
    instance->fsync_log_count = instance->dirty_count;
    instance->dirty_logs = swap;
    instance->dirty_capacity = swap_capacity;
    instance->dirty_count = 0;
    for (size_t index = 0; index < instance->fsync_log_count; index++) {
        ur_log *log = instance->fsync_logs[index];
        log->in_dirty_list = false;
        log->fsync_end = log->written_end;
        log->fsync_truncate_generation = log->written_truncate_generation;
    }
    /* An injected failure (or no SQE) has no CQE to wait for. */
    if (instance->fsync_parts_left == 0) ur_io_fsync_done(instance, io);
}

static void ur_fail_wal(ur_instance *instance, const char *what, int error) {
    if (instance->failed_status == KSTORE_OK) {
        instance->failed_status = KSTORE_ERR_IO;
        ur_set_error(instance, "%s in data directory %s failed: %s; the write-ahead log is failed until the instance is reopened",
                     what, instance->path, strerror(error));
    }
    pthread_cond_broadcast(&instance->wal_changed);
}

/* A round of fdatasyncs finished. Caller holds wal_lock. */
static void ur_io_fsync_done(ur_instance *instance, ur_io_state *io) {
    instance->fsync_in_flight = false;
    if (instance->fsync_error != 0) {
        ur_fail_wal(instance, "fdatasync of the write-ahead log", instance->fsync_error);
        instance->fsync_log_count = 0;
        ur_io_complete_syncs(instance, io, KSTORE_ERR_IO);
        return;
    }
    if (instance->fsync_covered_sequence > instance->durable_sequence) {
        instance->durable_sequence = instance->fsync_covered_sequence;
    }
    for (size_t index = 0; index < instance->fsync_log_count; index++) {
        ur_log *log = instance->fsync_logs[index];
        ur_io_update(io, log, log->fsync_end, log->fsync_truncate_generation, true);
    }
    instance->fsync_log_count = 0;
    /* The durable mark (best effort: without room it is simply not written). */
    ur_reservation reservation;
    const char *reason = NULL;
    if (ur_reserve(instance, ur_frame_bytes(0), true, &reservation, &reason) == KSTORE_OK) {
        (void)ur_commit(instance, &reservation, UR_FRAME_MARK, NULL, 0, 0, 0, -1, 0, NULL, 0, 0, NULL, NULL, NULL);
    }
    pthread_cond_broadcast(&instance->wal_changed);
    ur_io_complete_syncs(instance, io, KSTORE_OK);
}

/* Delivers the chunks at the head whose write completed, in WAL order. Caller holds wal_lock. */
static void ur_io_deliver(ur_instance *instance, ur_io_state *io) {
    while (instance->chunk_head != NULL && instance->chunk_head->state == UR_CHUNK_DONE &&
           instance->chunk_head->error == 0) {
        ur_chunk *chunk = instance->chunk_head;
        for (size_t index = 0; index < chunk->pending_count; index++) {
            ur_pending *pending = &chunk->pending[index];
            if (pending->kind != UR_FRAME_DATA || pending->log == NULL) continue;
            ur_log *log = pending->log;
            log->undelivered--;
            ur_io_update(io, log, pending->end_offset, pending->truncate_generation, false);
            log->written_end = pending->end_offset;
            log->written_truncate_generation = pending->truncate_generation;
            if (!log->in_dirty_list &&
                ur_grow((void **)&instance->dirty_logs, &instance->dirty_capacity, instance->dirty_count + 1,
                        sizeof(ur_log *), 64)) {
                log->in_dirty_list = true;
                instance->dirty_logs[instance->dirty_count++] = log;
            }
            ur_callbacks_add(&io->callbacks, pending->completion, pending->context, KSTORE_OK);
        }
        instance->written_sequence = chunk->last_sequence;
        instance->stats.bytes_written += chunk->used;
        chunk->segment->dirty = true;
        ur_segment *segment = chunk->segment;
        instance->chunk_head = chunk->next;
        if (instance->chunk_head == NULL) instance->chunk_tail = NULL;
        ur_chunk_release(instance, chunk);
        ur_maybe_seal(instance, segment);
    }
}

/* One affected log of a rollback and the first offset that failed on it. */
typedef struct ur_rollback {
    ur_log *log;
    int64_t first_offset;
} ur_rollback;

/* Rolls the WAL back to the chunk at the head, which failed (kstore.h append "state after failure"):
 * every frame from it on fails, logs' ends return to their first failed offset, bytes written after
 * the failure are zeroed so recovery never sees them, and catalog frames are staged again. Runs on
 * the I/O thread once no write is in flight; takes and drops wal_lock itself. */
static void ur_io_rewind(ur_instance *instance, ur_io_state *io) {
    pthread_mutex_lock(&instance->wal_lock);
    ur_chunk *list = instance->chunk_head;
    instance->chunk_head = instance->chunk_tail = NULL;
    int error = list->error != 0 ? list->error : EIO;
    kstore_status status = instance->failed_status != KSTORE_OK ? instance->failed_status : ur_status_from_errno(error);
    if (status == KSTORE_ERR_NO_MEMORY) status = KSTORE_ERR_IO;
    ur_segment *segment = list->segment;
    uint64_t position = list->position;
    uint64_t sequence = list->first_sequence;
    if (segment->state == UR_SEGMENT_FAILED && position == 0) {
        /* Back to where the previous segment was left; catalog frames fit in its reserve. */
        for (size_t index = 1; index < instance->segment_count; index++) {
            if (instance->segments[index] == segment) {
                segment = instance->segments[index - 1];
                position = segment->roll_position;
            }
        }
    }
    pthread_mutex_unlock(&instance->wal_lock);

    /* Zero whatever later chunks wrote (they succeeded, but follow the failed one). */
    for (ur_chunk *chunk = list; chunk != NULL && status == KSTORE_ERR_NO_SPACE; chunk = chunk->next) {
        if (chunk->written == 0) continue;
        if (ur_write_zeros(chunk->segment->fd, chunk->position, chunk->written) != 0 ||
            ur_fdatasync(chunk->segment->fd) != 0) {
            int zero_error = errno;
            pthread_mutex_lock(&instance->wal_lock);
            ur_fail_wal(instance, "zeroing a rolled-back write", zero_error);
            pthread_mutex_unlock(&instance->wal_lock);
            status = KSTORE_ERR_IO;
        }
    }

    ur_rollback *rollbacks = NULL;
    size_t rollback_count = 0, rollback_capacity = 0;
    pthread_mutex_lock(&instance->wal_lock);
    if (status == KSTORE_ERR_IO) ur_fail_wal(instance, "a write to the write-ahead log", error);
    instance->cursor_segment = segment;
    instance->cursor_position = position;
    instance->next_sequence = sequence;
    /* Everything in the dropped chunks failed; catalog frames are kept by staging them again. */
    instance->rewinding = false;
    uint64_t restaged_last = sequence - 1;
    for (ur_chunk *chunk = list; chunk != NULL; chunk = chunk->next) {
        for (size_t index = 0; index < chunk->pending_count; index++) {
            ur_pending *pending = &chunk->pending[index];
            ur_log *log = pending->log;
            if (log != NULL && log->last_sequence >= sequence) log->last_sequence = sequence - 1;
            if (pending->kind == UR_FRAME_DATA) {
                if (log != NULL) {
                    log->undelivered--;
                    bool seen = false;
                    for (size_t k = 0; k < rollback_count; k++) seen = seen || rollbacks[k].log == log;
                    if (!seen && ur_grow((void **)&rollbacks, &rollback_capacity, rollback_count + 1,
                                         sizeof(ur_rollback), 16)) {
                        rollbacks[rollback_count++] = (ur_rollback){log, pending->first_offset};
                        atomic_store(&log->rollback_pending, true);
                        instance->rewind_status = status;
                    }
                }
                ur_callbacks_add(&io->callbacks, pending->completion, pending->context, status);
                continue;
            }
            if (status == KSTORE_ERR_IO) continue;
            ur_frame_header header;
            memcpy(&header, chunk->bytes + pending->chunk_offset, sizeof(header));
            kstore_iovec payload = {chunk->bytes + pending->chunk_offset + UR_FRAME_HEADER_BYTES, header.payload_bytes};
            ur_reservation reservation;
            const char *reason = NULL;
            if (ur_reserve(instance, ur_frame_bytes(header.payload_bytes), true, &reservation, &reason) != KSTORE_OK) {
                ur_fail_wal(instance, "staging catalog records again after a failed write", ENOMEM);
                status = KSTORE_ERR_IO;
                continue;
            }
            ur_commit(instance, &reservation, header.kind, log, header.log_id, header.first_offset, header.last_offset,
                      header.max_timestamp, fjord_crc32c(0, payload.base, payload.len), &payload,
                      payload.len > 0 ? 1 : 0, payload.len, NULL, NULL, &restaged_last);
        }
    }
    for (size_t index = 0; index < instance->sync_count; index++) {
        if (instance->syncs[index].target_sequence >= sequence) instance->syncs[index].target_sequence = restaged_last;
    }
    if (instance->failed_status != KSTORE_OK) ur_io_complete_syncs(instance, io, KSTORE_ERR_IO);
    /* Free the dropped chunks (the re-staged frames were copied). */
    while (list != NULL) {
        ur_chunk *next = list->next;
        ur_chunk_release(instance, list);
        list = next;
    }
    pthread_mutex_unlock(&instance->wal_lock);

    for (size_t index = 0; index < rollback_count; index++) {
        ur_log *log = rollbacks[index].log;
        pthread_rwlock_wrlock(&log->lock);
        if (log->end_offset > rollbacks[index].first_offset) {
            log->stale_end = log->end_offset;
            log->stale_status = status;
            (void)ur_log_cut(log, rollbacks[index].first_offset);
            log->end_offset = rollbacks[index].first_offset;
        }
        atomic_store(&log->rollback_pending, false);
        pthread_rwlock_unlock(&log->lock);
    }
    free(rollbacks);
    ur_set_error(instance, "a write to the write-ahead log in %s failed: %s; the appends from it on were rolled back",
                 instance->path, strerror(error));
}

static void *ur_io_main(void *argument) {
    ur_instance *instance = argument;
    ur_io_state io;
    memset(&io, 0, sizeof(io));
    for (;;) {
        if (!io.event_armed) {
            struct io_uring_sqe *sqe = ur_io_sqe(instance);
            if (sqe != NULL) {
                io_uring_prep_read(sqe, instance->event_fd, &io.event_value, sizeof(io.event_value), 0);
                io_uring_sqe_set_data(sqe, (void *)UR_TAG_EVENT);
                io.event_armed = true;
            }
        }
        pthread_mutex_lock(&instance->wal_lock);
        bool rewind = false;
        if (instance->chunk_head != NULL && instance->chunk_head->state == UR_CHUNK_DONE &&
            instance->chunk_head->error != 0) {
            instance->rewinding = true;
            rewind = instance->writes_in_flight == 0;
        } else if (instance->failed_status != KSTORE_OK && instance->chunk_head != NULL) {
            /* The WAL failed (fdatasync): fail every staged frame once the writes settle. */
            instance->rewinding = true;
            rewind = instance->writes_in_flight == 0;
        }
        if (rewind) {
            pthread_mutex_unlock(&instance->wal_lock);
            ur_io_rewind(instance, &io);
            ur_io_flush(&io);
            continue;
        }
        bool settled = ur_io_submit_writes(instance);
        ur_io_maybe_fsync(instance, &io);
        if (instance->failed_status != KSTORE_OK && instance->sync_count > 0) {
            ur_io_complete_syncs(instance, &io, KSTORE_ERR_IO);
        }
        bool idle = instance->chunk_head == NULL && !instance->fsync_in_flight && instance->sync_count == 0 &&
                    instance->writes_in_flight == 0;
        bool exit_now = instance->stopping && idle;
        /* Completions are delivered only after the next writes and fdatasync were submitted, so
         * the disk works while the host runs its callbacks (thousands per group commit). A sync's
         * callback still follows its appends': it comes from a later fdatasync completion. */
        bool deliver = io.callbacks.count > 0 || io.update_count > 0 || settled;
        if (!exit_now && !deliver) instance->io_waiting = true;
        pthread_mutex_unlock(&instance->wal_lock);
        if (deliver) {
            io_uring_submit(&instance->ring);
            ur_io_flush(&io);
            continue;
        }
        if (exit_now) break;

        int submitted = io_uring_submit_and_wait(&instance->ring, 1);
        if (submitted < 0 && submitted != -EINTR && submitted != -EAGAIN && submitted != -EBUSY) {
            pthread_mutex_lock(&instance->wal_lock);
            ur_fail_wal(instance, "io_uring_submit_and_wait", -submitted);
            pthread_mutex_unlock(&instance->wal_lock);
        }
        pthread_mutex_lock(&instance->wal_lock);
        instance->io_waiting = false;
        struct io_uring_cqe *cqe;
        unsigned head;
        unsigned seen = 0;
        io_uring_for_each_cqe(&instance->ring, head, cqe) {
            seen++;
            uintptr_t data = (uintptr_t)io_uring_cqe_get_data(cqe);
            if (data == UR_TAG_EVENT) {
                io.event_armed = false;
            } else if ((data & UR_TAG_FSYNC_BIT) != 0) {
                ur_segment *segment = (ur_segment *)(data & ~UR_TAG_FSYNC_BIT);
                segment->fsyncs_in_flight--;
                if (cqe->res < 0) instance->fsync_error = -cqe->res;
                if (--instance->fsync_parts_left == 0) ur_io_fsync_done(instance, &io);
            } else {
                ur_chunk *chunk = (ur_chunk *)data;
                instance->writes_in_flight--;
                if (cqe->res == -EINTR || cqe->res == -EAGAIN) {
                    chunk->state = UR_CHUNK_CLOSED;
                } else if (cqe->res < 0) {
                    chunk->error = -cqe->res;
                    chunk->state = UR_CHUNK_DONE;
                } else if (cqe->res == 0) {
                    chunk->error = ENOSPC;
                    chunk->state = UR_CHUNK_DONE;
                } else {
                    chunk->written += (size_t)cqe->res;
                    /* A short write is resubmitted for the rest. */
                    chunk->state = chunk->written < chunk->used ? UR_CHUNK_CLOSED : UR_CHUNK_DONE;
                }
            }
        }
        io_uring_cq_advance(&instance->ring, seen);
        ur_io_deliver(instance, &io);
        pthread_mutex_unlock(&instance->wal_lock);
    }
    free(io.callbacks.items);
    free(io.updates);
    return NULL;
}

/* MARK: - Maintenance thread: segment files, index files, deletion */

/* Number of prepared (or preparing) segments kept ahead of the one being written. */
#define UR_SPARE_SEGMENTS 2

/* Creates, preallocates and zero-fills a segment file; returns its fd or -1 with *error. */
static int ur_prepare_segment_file(ur_instance *instance, ur_segment *segment, int *error) {
    char name[64];
    int fd = -1;
    pthread_mutex_lock(&instance->wal_lock);
    uint64_t generation = segment->generation;
    uint64_t capacity = segment->capacity;
    ur_segment_name(name, sizeof(name), generation, "log");
    bool inject = instance->fail_segments_count > 0;
    if (inject) {
        instance->fail_segments_count--;
        *error = instance->fail_segments_error;
    }
    pthread_mutex_unlock(&instance->wal_lock);
    if (inject) return -1;
    /* Reuse a retired segment file when one waits. */
    pthread_mutex_lock(&instance->wal_lock);
    bool recycle = instance->recycled_count > 0;
    uint64_t old_generation = recycle ? instance->recycled[--instance->recycled_count] : 0;
    pthread_mutex_unlock(&instance->wal_lock);
    if (recycle) {
        char spare[64];
        snprintf(spare, sizeof(spare), "spare-%016" PRIx64 ".log", old_generation);
        struct stat info;
        if (renameat(instance->dir_fd, spare, instance->dir_fd, name) == 0) {
            do {
                fd = openat(instance->dir_fd, name, O_RDWR | O_CLOEXEC);
            } while (fd < 0 && errno == EINTR);
            if (fd >= 0 && fstat(fd, &info) == 0 && (uint64_t)info.st_size >= capacity &&
                ur_fsync(instance->dir_fd) == 0) {
                pthread_mutex_lock(&instance->wal_lock);
                /* A larger file only gives the segment more room. */
                if ((uint64_t)info.st_size > segment->capacity) segment->capacity = (uint64_t)info.st_size;
                instance->stats.segments_recycled++;
                pthread_mutex_unlock(&instance->wal_lock);
                return fd;
            }
            if (fd >= 0) close(fd);
            unlinkat(instance->dir_fd, name, 0);
        } else {
            unlinkat(instance->dir_fd, spare, 0);
        }
    }
    do {
        fd = openat(instance->dir_fd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        *error = errno;
        return -1;
    }
    int result;
    do {
        result = fallocate(fd, 0, 0, (off_t)capacity);
    } while (result != 0 && errno == EINTR);
    if (result != 0 && errno == EOPNOTSUPP) {
        result = ftruncate(fd, (off_t)capacity);
    }
    /* Real zeros, not unwritten extents: later overwrites then change no extent metadata, so
     * the WAL's fdatasync flushes data only, and the end of valid data reads as zeros. */
    if (result != 0 ||
        (!instance->zero_by_fallocate &&
         ur_write_zeros_cancellable(fd, 0, capacity, &instance->closing, &segment->hurry) != 0) ||
        (!atomic_load(&segment->hurry) && ur_fdatasync(fd) != 0) ||
        ur_fsync(instance->dir_fd) != 0) {
        *error = errno;
        close(fd);
        unlinkat(instance->dir_fd, name, 0);
        return -1;
    }
    return fd;
}

/* Writes the fine index of every log's part in `segment` to wal-<generation>.idx and frees the
 * in-memory entries. The caller holds catalog_lock (or runs recovery). On failure the entries stay
 * in memory. */
static bool ur_write_index_of(ur_instance *instance, ur_segment *segment, ur_log **logs, size_t log_count) {
    char name[64];
    ur_segment_name(name, sizeof(name), segment->generation, "idx");
    /* Pass 1: gather the entries. */
    size_t total = 0;
    for (size_t index = 0; index < log_count; index++) {
        ur_log *log = logs[index];
        pthread_rwlock_rdlock(&log->lock);
        for (size_t k = 0; k < log->part_count; k++) {
            if (log->parts[k].segment == segment && log->parts[k].entries != NULL) total += log->parts[k].end;
        }
        pthread_rwlock_unlock(&log->lock);
    }
    size_t bytes = UR_INDEX_HEADER_BYTES + total * sizeof(ur_entry);
    uint8_t *buffer = calloc(1, bytes);
    uint64_t *positions = calloc(log_count + 1, sizeof(uint64_t));
    bool ok = buffer != NULL && positions != NULL;
    size_t used = UR_INDEX_HEADER_BYTES;
    for (size_t index = 0; ok && index < log_count; index++) {
        ur_log *log = logs[index];
        pthread_rwlock_rdlock(&log->lock);
        positions[index] = UINT64_MAX;
        for (size_t k = 0; k < log->part_count; k++) {
            ur_part *part = &log->parts[k];
            if (part->segment != segment || part->entries == NULL) continue;
            size_t count = part->end;
            if (used + count * sizeof(ur_entry) > bytes) count = (bytes - used) / sizeof(ur_entry);
            positions[index] = used;
            memcpy(buffer + used, part->entries, count * sizeof(ur_entry));
            used += count * sizeof(ur_entry);
        }
        pthread_rwlock_unlock(&log->lock);
    }
    int fd = -1;
    if (ok) {
        uint64_t header[4] = {UR_INDEX_MAGIC, segment->generation, total, 0};
        memcpy(buffer, header, sizeof(header));
        do {
            fd = openat(instance->dir_fd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        } while (fd < 0 && errno == EINTR);
        /* Derived data, rebuilt by recovery at every open: no fsync needed. */
        ok = fd >= 0 && ur_pwrite_all(fd, buffer, used, 0) >= 0;
    }
    if (ok) {
        /* Pass 2: switch the parts to the file. Sealed segments get no new entries, and
         * truncation or a new start only shrink [begin, end), so the copied positions hold. */
        for (size_t index = 0; index < log_count; index++) {
            if (positions[index] == UINT64_MAX) continue;
            ur_log *log = logs[index];
            pthread_rwlock_wrlock(&log->lock);
            for (size_t k = 0; k < log->part_count; k++) {
                ur_part *part = &log->parts[k];
                if (part->segment != segment || part->entries == NULL) continue;
                part->idx_position = positions[index];
                free(part->entries);
                part->entries = NULL;
                part->entry_capacity = 0;
            }
            pthread_rwlock_unlock(&log->lock);
        }
        segment->idx_fd = fd;
    } else if (fd >= 0) {
        close(fd);
    }
    free(buffer);
    free(positions);
    return ok;
}

static bool ur_write_index(ur_instance *instance, ur_segment *segment) {
    pthread_mutex_lock(&instance->catalog_lock);
    bool ok = ur_write_index_of(instance, segment, instance->logs, instance->log_count);
    pthread_mutex_unlock(&instance->catalog_lock);
    return ok;
}

static void ur_unlink_segment(ur_instance *instance, ur_segment *segment) {
    char name[64];
    if (segment->fd >= 0) close(segment->fd);
    if (segment->idx_fd >= 0) close(segment->idx_fd);
    ur_segment_name(name, sizeof(name), segment->generation, "idx");
    unlinkat(instance->dir_fd, name, 0);
    ur_segment_name(name, sizeof(name), segment->generation, "log");
    unlinkat(instance->dir_fd, name, 0);
    free(segment);
}

/* Retires a deleted segment: kept for reuse (renamed out of the WAL's name space first, so
 * recovery never reads it as WAL) while fewer than UR_RECYCLE_MAX wait, else unlinked. Runs on
 * the maintenance thread without wal_lock. */
static void ur_retire_segment(ur_instance *instance, ur_segment *segment) {
    pthread_mutex_lock(&instance->wal_lock);
    bool keep = instance->recycled_count < UR_RECYCLE_MAX && segment->state == UR_SEGMENT_READY;
    pthread_mutex_unlock(&instance->wal_lock);
    if (keep) {
        char name[64], spare[64];
        ur_segment_name(name, sizeof(name), segment->generation, "log");
        snprintf(spare, sizeof(spare), "spare-%016" PRIx64 ".log", segment->generation);
        if (renameat(instance->dir_fd, name, instance->dir_fd, spare) == 0) {
            ur_segment_name(name, sizeof(name), segment->generation, "idx");
            unlinkat(instance->dir_fd, name, 0);
            if (segment->fd >= 0) close(segment->fd);
            if (segment->idx_fd >= 0) close(segment->idx_fd);
            pthread_mutex_lock(&instance->wal_lock);
            instance->recycled[instance->recycled_count++] = segment->generation;
            pthread_mutex_unlock(&instance->wal_lock);
            free(segment);
            return;
        }
    }
    ur_unlink_segment(instance, segment);
}

static void *ur_maintenance_main(void *argument) {
    ur_instance *instance = argument;
    uint64_t last_retry_ns = 0;
    pthread_mutex_lock(&instance->wal_lock);
    while (!instance->maintenance_stop) {
        /* 1. Delete segments below the durable checkpoint that no log needs (cheap, and it gives
         * space back before anything else). */
        size_t deletable = 0;
        while (deletable < instance->segment_count) {
            ur_segment *segment = instance->segments[deletable];
            if (segment->generation >= instance->gc_ready_below || segment == instance->cursor_segment ||
                !segment->sealed || segment->sealing || segment->dirty || segment->fsyncs_in_flight > 0) {
                break;
            }
            deletable++;
        }
        if (deletable > 0) {
            ur_segment **victims = malloc(deletable * sizeof(ur_segment *));
            if (victims != NULL) {
                memcpy(victims, instance->segments, deletable * sizeof(ur_segment *));
                memmove(instance->segments, instance->segments + deletable,
                        (instance->segment_count - deletable) * sizeof(ur_segment *));
                instance->segment_count -= deletable;
                instance->stats.segments_deleted += deletable;
                pthread_mutex_unlock(&instance->wal_lock);
                for (size_t index = 0; index < deletable; index++) ur_retire_segment(instance, victims[index]);
                (void)ur_fsync(instance->dir_fd);
                free(victims);
                pthread_mutex_lock(&instance->wal_lock);
                /* Space came back: a failed segment may be preparable now. */
                instance->maintenance_poke = true;
                continue;
            }
        }
        /* 2. Write the index file of a sealed segment. */
        ur_segment *seal = NULL;
        for (size_t index = 0; index < instance->segment_count && seal == NULL; index++) {
            if (instance->segments[index]->sealing) seal = instance->segments[index];
        }
        if (seal != NULL) {
            pthread_mutex_unlock(&instance->wal_lock);
            (void)ur_write_index(instance, seal);
            pthread_mutex_lock(&instance->wal_lock);
            seal->sealing = false;
            continue;
        }
        /* 3. Prepare the next segment file (retry a failed one when poked, or every 200 ms). */
        ur_segment *prepare = NULL;
        bool retry_due = instance->maintenance_poke || ur_now_ns() - last_retry_ns > 200000000ull;
        for (size_t index = 0; index < instance->segment_count && prepare == NULL; index++) {
            ur_segment *segment = instance->segments[index];
            if (segment->state == UR_SEGMENT_PREPARING || (segment->state == UR_SEGMENT_FAILED && retry_due)) {
                prepare = segment;
            }
        }
        if (prepare != NULL) {
            instance->maintenance_poke = false;
            prepare->state = UR_SEGMENT_PREPARING;
            uint64_t generation = prepare->generation;
            pthread_mutex_unlock(&instance->wal_lock);
            int error = 0;
            int fd = ur_prepare_segment_file(instance, prepare, &error);
            pthread_mutex_lock(&instance->wal_lock);
            if (fd >= 0) {
                prepare->fd = fd;
                prepare->state = UR_SEGMENT_READY;
                instance->stats.segments_created++;
            } else {
                prepare->state = UR_SEGMENT_FAILED;
                prepare->prepare_error = error;
                last_retry_ns = ur_now_ns();
                ur_set_error(instance, "preparing write-ahead-log segment %016" PRIx64 " in %s failed: %s", generation,
                             instance->path, strerror(error));
            }
            pthread_mutex_unlock(&instance->wal_lock);
            ur_wake_io(instance);
            pthread_mutex_lock(&instance->wal_lock);
            continue;
        }
        /* 4. Keep spares ahead of the cursor. */
        size_t ahead = 0;
        bool failed = false;
        for (size_t index = 0; index < instance->segment_count; index++) {
            ur_segment *segment = instance->segments[index];
            if (segment->generation > instance->cursor_segment->generation) ahead++;
            failed = failed || segment->state == UR_SEGMENT_FAILED;
        }
        if (ahead < UR_SPARE_SEGMENTS && !failed && !instance->stopping) {
            if (ur_segment_add(instance) != NULL) continue;
        }
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_nsec += 200000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&instance->maintenance_wake, &instance->wal_lock, &deadline);
    }
    pthread_mutex_unlock(&instance->wal_lock);
    return NULL;
}

/* The bound a durable checkpoint unlocks for deletion. */
typedef struct ur_gc_ticket {
    ur_instance *instance;
    uint64_t below;
} ur_gc_ticket;

static void ur_gc_checkpoint_durable(void *context, kstore_status status) {
    ur_gc_ticket *ticket = context;
    ur_instance *instance = ticket->instance;
    pthread_mutex_lock(&instance->wal_lock);
    if (status == KSTORE_OK && ticket->below > instance->gc_ready_below) instance->gc_ready_below = ticket->below;
    if (status != KSTORE_OK && instance->gc_scheduled_below >= ticket->below) instance->gc_scheduled_below = 0;
    pthread_cond_signal(&instance->maintenance_wake);
    pthread_mutex_unlock(&instance->wal_lock);
    free(ticket);
}

/* After a log's start moved or a log was deleted: if WAL segments at the front are no longer
 * needed by any log, write a checkpoint of the catalog after them and delete them once it is
 * durable. The caller holds no lock. */
static void ur_schedule_gc(ur_instance *instance) {
    pthread_mutex_lock(&instance->catalog_lock);
    uint64_t needed = UINT64_MAX;
    size_t count = instance->log_count;
    int64_t *starts = malloc((count + 1) * sizeof(int64_t));
    for (size_t index = 0; index < count; index++) {
        ur_log *log = instance->logs[index];
        pthread_rwlock_rdlock(&log->lock);
        if (log->part_count > 0 && log->parts[0].segment->generation < needed) {
            needed = log->parts[0].segment->generation;
        }
        if (starts != NULL) starts[index] = log->start_offset;
        pthread_rwlock_unlock(&log->lock);
    }
    bool wake = false;
    pthread_mutex_lock(&instance->wal_lock);
    uint64_t below = ur_min64((int64_t)needed, (int64_t)instance->cursor_segment->generation);
    uint64_t oldest = instance->segments[0]->generation;
    if (starts != NULL && below > oldest && below > instance->gc_scheduled_below &&
        instance->failed_status == KSTORE_OK) {
        bool checkpoint = false;
        for (size_t index = 0; index < instance->segment_count; index++) {
            ur_segment *segment = instance->segments[index];
            if (segment->generation < below && segment->has_catalog) checkpoint = true;
        }
        if (!checkpoint) {
            instance->gc_scheduled_below = below;
            if (below > instance->gc_ready_below) instance->gc_ready_below = below;
            pthread_cond_signal(&instance->maintenance_wake);
        } else {
            ur_gc_ticket *ticket = malloc(sizeof(ur_gc_ticket));
            bool staged = ticket != NULL;
            const char *reason = NULL;
            for (size_t index = 0; staged && index < count; index++) {
                ur_log *log = instance->logs[index];
                staged = ur_stage_catalog(instance, UR_FRAME_CREATE, log, log->id, starts[index], log->name, &wake,
                                          &reason) == KSTORE_OK;
            }
            if (staged) {
                *ticket = (ur_gc_ticket){instance, below};
                staged = ur_add_sync(instance, instance->next_sequence - 1, NULL, ur_gc_checkpoint_durable, ticket,
                                     &wake);
            }
            if (staged) {
                instance->gc_scheduled_below = below;
            } else {
                /* Not now (staging full, no space): a later retention call tries again. */
                free(ticket);
            }
        }
    }
    pthread_mutex_unlock(&instance->wal_lock);
    pthread_mutex_unlock(&instance->catalog_lock);
    free(starts);
    if (wake) ur_wake_io(instance);
}

/* MARK: - Log members */

static void ur_log_close(kstore_log *handle) {
    if (handle == NULL) return;
    ur_log *log = (ur_log *)handle;
    pthread_mutex_lock(&log->instance->catalog_lock);
    log->open = false;
    pthread_mutex_unlock(&log->instance->catalog_lock);
}

static kstore_status ur_log_append(kstore_log *handle, int64_t first_offset, int64_t last_offset, int64_t max_timestamp,
                                   const kstore_iovec *iov, uint32_t iov_count, kstore_completion completion,
                                   void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_log *log = (ur_log *)handle;
    ur_instance *instance = log->instance;
    if (completion == NULL) {
        ur_set_error(instance, "append to log '%s': completion is NULL", log->name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (iov == NULL || iov_count == 0) {
        ur_set_error(instance, "append to log '%s': no iovecs (iov_count %u)", log->name, iov_count);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    uint64_t total_bytes = 0;
    for (uint32_t index = 0; index < iov_count; index++) {
        if (iov[index].len > 0 && iov[index].base == NULL) {
            ur_set_error(instance, "append to log '%s': iov[%u].base is NULL with length %zu", log->name, index,
                         iov[index].len);
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        if (iov[index].len > instance->segment_bytes) {
            total_bytes = UINT64_MAX;
            break;
        }
        total_bytes += iov[index].len;
    }
    if (total_bytes == 0) {
        ur_set_error(instance, "append to log '%s': the entry is empty", log->name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (total_bytes == UINT64_MAX ||
        ur_frame_bytes(total_bytes) > instance->segment_bytes - ur_catalog_reserve(instance->segment_bytes)) {
        ur_set_error(instance,
                     "append to log '%s': the entry (%" PRIu64 " bytes) does not fit in a write-ahead-log segment "
                     "(uring.segment.bytes %" PRIu64 ")",
                     log->name, total_bytes, instance->segment_bytes);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (last_offset < first_offset || last_offset == INT64_MAX) {
        ur_set_error(instance, "append to log '%s': bad offset range [%lld, %lld]", log->name, (long long)first_offset,
                     (long long)last_offset);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (max_timestamp < -1) {
        ur_set_error(instance, "append to log '%s': max_timestamp %lld is neither -1 nor >= 0", log->name,
                     (long long)max_timestamp);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    /* The CRC of the payload is computed before taking any lock. */
    uint32_t payload_crc = 0;
    for (uint32_t index = 0; index < iov_count; index++) {
        payload_crc = fjord_crc32c(payload_crc, iov[index].base, iov[index].len);
    }

    pthread_rwlock_wrlock(&log->lock);
    if (atomic_load(&log->failed_status) != KSTORE_OK) {
        pthread_rwlock_unlock(&log->lock);
        ur_set_error(instance, "append to log '%s': the log failed earlier; reopen the instance", log->name);
        return KSTORE_ERR_IO;
    }
    if (first_offset != log->end_offset) {
        int64_t end_offset = log->end_offset;
        if (log->stale_status != KSTORE_OK && first_offset == log->stale_end) {
            kstore_status stale = log->stale_status;
            log->stale_end = last_offset + 1;
            pthread_rwlock_unlock(&log->lock);
            ur_set_error(instance,
                         "append [%lld, %lld] to log '%s': an earlier append failed (%s) and the log's end returned "
                         "to %lld; append again from there",
                         (long long)first_offset, (long long)last_offset, log->name, kstore_status_name(stale),
                         (long long)end_offset);
            return stale;
        }
        pthread_rwlock_unlock(&log->lock);
        ur_set_error(instance, "append to log '%s': first_offset %lld does not continue the log (end %lld)", log->name,
                     (long long)first_offset, (long long)end_offset);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    pthread_mutex_lock(&instance->wal_lock);
    if (atomic_load(&log->rollback_pending)) {
        /* A rewind failed this log's earlier appends and is about to roll its end back: refuse
         * this one like them, and count it into the end the rollback turns into stale_end, so
         * the appends after it are refused with the same status. */
        kstore_status stale = instance->rewind_status;
        pthread_mutex_unlock(&instance->wal_lock);
        log->end_offset = last_offset + 1;
        pthread_rwlock_unlock(&log->lock);
        ur_set_error(instance, "append [%lld, %lld] to log '%s': an earlier append failed (%s); append again once "
                     "the log's end has returned", (long long)first_offset, (long long)last_offset, log->name,
                     kstore_status_name(stale));
        return stale;
    }
    log->stale_status = KSTORE_OK;
    ur_reservation reservation;
    const char *reason = NULL;
    kstore_status status = ur_reserve(instance, ur_frame_bytes(total_bytes), false, &reservation, &reason);
    if (status == KSTORE_OK && !ur_log_reserve_entry(log, reservation.segment)) {
        if (reservation.new_chunk) ur_chunk_release(instance, reservation.chunk);
        ur_log_unreserve(log);
        status = KSTORE_ERR_NO_MEMORY;
        reason = "out of memory";
    }
    if (status != KSTORE_OK) {
        pthread_mutex_unlock(&instance->wal_lock);
        pthread_rwlock_unlock(&log->lock);
        ur_set_error(instance, "append [%lld, %lld] to log '%s': %s", (long long)first_offset, (long long)last_offset,
                     log->name, reason != NULL ? reason : "refused");
        return status;
    }
    bool wake = ur_commit(instance, &reservation, UR_FRAME_DATA, log, log->id, first_offset, last_offset,
                          max_timestamp, payload_crc, iov, iov_count, total_bytes, completion, context, NULL);
    pthread_mutex_unlock(&instance->wal_lock);
    ur_log_add_entry(log, reservation.segment, first_offset, last_offset, max_timestamp, (uint32_t)reservation.position,
                     (uint32_t)total_bytes);
    log->end_offset = last_offset + 1;
    pthread_rwlock_unlock(&log->lock);
    if (wake) ur_wake_io(instance);
    return KSTORE_OK;
}

static kstore_status ur_check_read(ur_log *log, const ur_part *part, const ur_entry *entry,
                                   const ur_frame_header *header, const uint8_t *destination);

/* Copies one entry's payload into destination and checks its frame. */
static kstore_status ur_read_entry(ur_log *log, const ur_part *part, const ur_entry *entry, uint8_t *destination) {
    ur_instance *instance = log->instance;
    ur_frame_header header;
    size_t wanted = sizeof(header) + entry->payload_bytes;
    size_t done = 0;
    while (done < wanted) {
        ssize_t got;
        if (done < sizeof(header)) {
            struct iovec rest[2] = {{(uint8_t *)&header + done, sizeof(header) - done},
                                    {destination, entry->payload_bytes}};
            got = preadv(part->segment->fd, rest, 2, (off_t)(entry->position + done));
        } else {
            size_t into = done - sizeof(header);
            got = pread(part->segment->fd, destination + into, entry->payload_bytes - into,
                        (off_t)(entry->position + done));
        }
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            int error = got < 0 ? errno : EIO;
            ur_set_error(instance, "read of log '%s' at offset %lld: reading wal-%016" PRIx64 ".log at position %u: %s",
                         log->name, (long long)entry->first_offset, part->segment->generation, entry->position,
                         strerror(error));
            return KSTORE_ERR_IO;
        }
        done += (size_t)got;
    }
    return ur_check_read(log, part, entry, &header, destination);
}

/* Checks a frame read into header + destination against its index entry. */
static kstore_status ur_check_read(ur_log *log, const ur_part *part, const ur_entry *entry,
                                   const ur_frame_header *header, const uint8_t *destination) {
    uint32_t crc = ur_frame_crc(fjord_crc32c(0, destination, entry->payload_bytes), header);
    if (header->magic != UR_FRAME_MAGIC || header->crc != crc || header->generation != part->segment->generation ||
        header->log_id != log->id || header->first_offset != entry->first_offset ||
        header->payload_bytes != entry->payload_bytes) {
        ur_set_error(log->instance,
                     "read of log '%s' at offset %lld: the frame in wal-%016" PRIx64 ".log at position %u is damaged "
                     "(checksum or header mismatch)",
                     log->name, (long long)entry->first_offset, part->segment->generation, entry->position);
        return KSTORE_ERR_CORRUPT;
    }
    return KSTORE_OK;
}

/* Reads a run of entries whose frames are adjacent in the segment with one preadv: headers and
 * padding go to scratch, payloads straight into the caller's buffer. */
static kstore_status ur_read_run(ur_log *log, const ur_part *part, const ur_entry *run, size_t count,
                                 uint8_t *destination) {
    if (count == 1) return ur_read_entry(log, part, &run[0], destination);
    ur_frame_header headers[UR_READ_IOVECS_MAX / 3];
    uint8_t padding[UR_FRAME_ALIGN_BYTES];
    struct iovec vectors[UR_READ_IOVECS_MAX];
    size_t vector_count = 0, total = 0, written = 0;
    for (size_t index = 0; index < count; index++) {
        uint64_t frame = ur_frame_bytes(run[index].payload_bytes);
        vectors[vector_count++] = (struct iovec){&headers[index], UR_FRAME_HEADER_BYTES};
        vectors[vector_count++] = (struct iovec){destination + written, run[index].payload_bytes};
        size_t pad = (size_t)(frame - UR_FRAME_HEADER_BYTES - run[index].payload_bytes);
        if (pad > 0) vectors[vector_count++] = (struct iovec){padding, pad};
        written += run[index].payload_bytes;
        total += (size_t)frame;
    }
    ssize_t got;
    do {
        got = preadv(part->segment->fd, vectors, (int)vector_count, (off_t)run[0].position);
    } while (got < 0 && errno == EINTR);
    if (got != (ssize_t)total) {
        /* Short or failed: read entry by entry, which retries and reports precisely. */
        size_t offset = 0;
        for (size_t index = 0; index < count; index++) {
            kstore_status status = ur_read_entry(log, part, &run[index], destination + offset);
            if (status != KSTORE_OK) return status;
            offset += run[index].payload_bytes;
        }
        return KSTORE_OK;
    }
    size_t offset = 0;
    for (size_t index = 0; index < count; index++) {
        kstore_status status = ur_check_read(log, part, &run[index], &headers[index], destination + offset);
        if (status != KSTORE_OK) return status;
        offset += run[index].payload_bytes;
    }
    return KSTORE_OK;
}

static kstore_status ur_log_read(kstore_log *handle, int64_t offset, int64_t end_offset_limit, void *buf,
                                 uint64_t capacity, kstore_read_result *result) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_log *log = (ur_log *)handle;
    if (result == NULL || (buf == NULL && capacity > 0)) {
        ur_set_error(log->instance, "read from log '%s': %s is NULL", log->name, result == NULL ? "result" : "buf");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    uint32_t entry_count = 0;
    uint64_t byte_count = 0;
    int64_t next_offset = offset;
    uint64_t first_entry_bytes = 0;
    kstore_status status = KSTORE_OK;

    /* Reads hold the log's read lock while they copy (page-cached, recently written data, see
     * the report on NONBLOCKING): parts cannot be dropped or their segments deleted meanwhile. */
    pthread_rwlock_rdlock(&log->lock);
    if (offset < log->start_offset || offset > log->end_offset) {
        int64_t start_offset = log->start_offset, end_offset = log->end_offset;
        pthread_rwlock_unlock(&log->lock);
        ur_set_error(log->instance, "read from log '%s': offset %lld outside [%lld, %lld]", log->name,
                     (long long)offset, (long long)start_offset, (long long)end_offset);
        return KSTORE_ERR_OUT_OF_RANGE;
    }
    /* Only entries whose append completed are returned. */
    int64_t limit = ur_min64(end_offset_limit, atomic_load(&log->readable_end));
    if (offset < limit && log->part_count > 0) {
        uint8_t *destination = buf;
        size_t part_index = ur_log_find_part(log, offset);
        size_t entry_index = 0;
        bool done = false;
        if (!ur_part_find(&log->parts[part_index], offset, &entry_index)) {
            status = KSTORE_ERR_IO;
            done = true;
        }
        ur_entry block[64];
        while (!done && part_index < log->part_count) {
            const ur_part *part = &log->parts[part_index];
            while (!done && entry_index < part->end) {
                size_t count = part->end - entry_index < 64 ? part->end - entry_index : 64;
                if (!ur_part_entries(part, entry_index, count, block)) {
                    ur_set_error(log->instance, "read from log '%s': reading the index of wal-%016" PRIx64 ": %s",
                                 log->name, part->segment->generation, strerror(errno));
                    status = KSTORE_ERR_IO;
                    break;
                }
                /* Entries are taken while they fit; runs of adjacent frames are read together. */
                size_t run_start = 0, run_length = 0;
                uint64_t run_bytes = 0;
                for (size_t k = 0; k <= count; k++) {
                    const ur_entry *entry = k < count ? &block[k] : NULL;
                    bool take = entry != NULL;
                    if (take && (entry->first_offset >= limit || entry_count + run_length >= UINT32_MAX)) {
                        take = false;
                        done = true;
                    }
                    if (take && entry->payload_bytes > capacity - byte_count - run_bytes) {
                        if (entry_count + run_length == 0) first_entry_bytes = entry->payload_bytes;
                        take = false;
                        done = true;
                    }
                    bool adjacent = take && run_length > 0 && run_length < UR_READ_IOVECS_MAX / 3 &&
                                    entry->position == block[k - 1].position +
                                                           ur_frame_bytes(block[k - 1].payload_bytes);
                    if (run_length > 0 && !adjacent) {
                        status = ur_read_run(log, part, &block[run_start], run_length, destination + byte_count);
                        if (status != KSTORE_OK) {
                            done = true;
                            break;
                        }
                        byte_count += run_bytes;
                        entry_count += (uint32_t)run_length;
                        next_offset = block[run_start + run_length - 1].last_offset + 1;
                        run_length = 0;
                        run_bytes = 0;
                    }
                    if (!take) break;
                    if (run_length == 0) run_start = k;
                    run_length++;
                    run_bytes += entry->payload_bytes;
                }
                entry_index += count;
                if (status != KSTORE_OK) done = true;
            }
            part_index++;
            if (part_index < log->part_count) entry_index = log->parts[part_index].begin;
        }
    }
    pthread_rwlock_unlock(&log->lock);
    if (status != KSTORE_OK) return status;
    if (UR_FITS(result, kstore_read_result, entry_count)) result->entry_count = entry_count;
    if (UR_FITS(result, kstore_read_result, byte_count)) result->byte_count = byte_count;
    if (UR_FITS(result, kstore_read_result, next_offset)) result->next_offset = next_offset;
    if (UR_FITS(result, kstore_read_result, first_entry_bytes)) result->first_entry_bytes = first_entry_bytes;
    return KSTORE_OK;
}

static kstore_status ur_log_sync(kstore_log *handle, kstore_completion completion, void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_log *log = (ur_log *)handle;
    ur_instance *instance = log->instance;
    if (completion == NULL) {
        ur_set_error(instance, "sync of log '%s': completion is NULL", log->name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (atomic_load(&log->failed_status) != KSTORE_OK) {
        ur_set_error(instance, "sync of log '%s': the log failed earlier; reopen the instance", log->name);
        return KSTORE_ERR_IO;
    }
    bool wake = false;
    bool now = false;
    pthread_mutex_lock(&instance->wal_lock);
    if (instance->failed_status != KSTORE_OK) {
        pthread_mutex_unlock(&instance->wal_lock);
        ur_set_error(instance, "sync of log '%s': the write-ahead log failed earlier; reopen the instance", log->name);
        return KSTORE_ERR_IO;
    }
    if (log->undelivered == 0 && log->last_sequence <= instance->durable_sequence) {
        /* Nothing of this log waits: complete before returning (kstore.h "Completions"). */
        now = true;
    } else if (!ur_add_sync(instance, log->last_sequence, log, completion, context, &wake)) {
        pthread_mutex_unlock(&instance->wal_lock);
        ur_set_error(instance, "sync of log '%s': out of memory", log->name);
        return KSTORE_ERR_NO_MEMORY;
    }
    pthread_mutex_unlock(&instance->wal_lock);
    if (wake) ur_wake_io(instance);
    if (now) completion(context, KSTORE_OK);
    return KSTORE_OK;
}

static kstore_status ur_log_state(kstore_log *handle, kstore_log_state *state) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_log *log = (ur_log *)handle;
    if (state == NULL) {
        ur_set_error(log->instance, "state of log '%s': state is NULL", log->name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    pthread_rwlock_rdlock(&log->lock);
    int64_t start_offset = log->start_offset, end_offset = log->end_offset;
    int64_t durable_end = ur_min64(atomic_load(&log->durable_end), end_offset);
    uint64_t byte_count = 0, entry_count = 0;
    int64_t max_timestamp = -1;
    ur_log_totals(log, &byte_count, &entry_count, &max_timestamp);
    pthread_rwlock_unlock(&log->lock);
    if (UR_FITS(state, kstore_log_state, reserved)) state->reserved = 0;
    if (UR_FITS(state, kstore_log_state, start_offset)) state->start_offset = start_offset;
    if (UR_FITS(state, kstore_log_state, end_offset)) state->end_offset = end_offset;
    if (UR_FITS(state, kstore_log_state, durable_end_offset)) state->durable_end_offset = durable_end;
    if (UR_FITS(state, kstore_log_state, max_timestamp)) state->max_timestamp = max_timestamp;
    if (UR_FITS(state, kstore_log_state, byte_count)) state->byte_count = byte_count;
    if (UR_FITS(state, kstore_log_state, entry_count)) state->entry_count = entry_count;
    return KSTORE_OK;
}

/* Stages a catalog record for a log under its write lock. */
static kstore_status ur_log_record(ur_log *log, uint16_t kind, int64_t offset, const char *operation) {
    ur_instance *instance = log->instance;
    bool wake = false;
    const char *reason = NULL;
    pthread_mutex_lock(&instance->wal_lock);
    kstore_status status = ur_stage_catalog(instance, kind, log, log->id, offset, NULL, &wake, &reason);
    pthread_mutex_unlock(&instance->wal_lock);
    if (wake) ur_wake_io(instance);
    if (status != KSTORE_OK) {
        ur_set_error(instance, "%s of log '%s': %s", operation, log->name, reason != NULL ? reason : "refused");
    }
    return status;
}

static kstore_status ur_log_truncate_to(kstore_log *handle, int64_t offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_log *log = (ur_log *)handle;
    pthread_rwlock_wrlock(&log->lock);
    if (offset == log->end_offset) {
        pthread_rwlock_unlock(&log->lock);
        return KSTORE_OK;
    }
    /* kstore.h: an entry boundary in [start, end] (start inside an entry is not one). */
    bool boundary = false;
    if (offset >= log->start_offset && offset < log->end_offset && log->part_count > 0) {
        const ur_part *part = &log->parts[ur_log_find_part(log, offset)];
        size_t index = 0;
        ur_entry entry;
        boundary = ur_part_find(part, offset, &index) && ur_part_entries(part, index, 1, &entry) &&
                   entry.first_offset == offset;
    }
    if (!boundary) {
        int64_t start_offset = log->start_offset, end_offset = log->end_offset;
        pthread_rwlock_unlock(&log->lock);
        ur_set_error(log->instance, "truncate_to of log '%s': %lld is not an entry boundary in [%lld, %lld]", log->name,
                     (long long)offset, (long long)start_offset, (long long)end_offset);
        return KSTORE_ERR_OUT_OF_RANGE;
    }
    if (atomic_load(&log->failed_status) != KSTORE_OK) {
        pthread_rwlock_unlock(&log->lock);
        ur_set_error(log->instance, "truncate_to of log '%s': the log failed earlier", log->name);
        return KSTORE_ERR_IO;
    }
    /* The record goes first: recovery replays it after the frames it cuts. */
    kstore_status status = ur_log_record(log, UR_FRAME_TRUNCATE, offset, "truncate_to");
    if (status == KSTORE_OK) {
        if (!ur_log_cut(log, offset)) {
            status = KSTORE_ERR_IO;
            ur_set_error(log->instance, "truncate_to of log '%s': reading its index failed: %s", log->name,
                         strerror(errno));
        }
        log->end_offset = offset;
        atomic_fetch_add(&log->truncate_generation, 1);
        if (atomic_load(&log->readable_end) > offset) atomic_store(&log->readable_end, offset);
        if (atomic_load(&log->durable_end) > offset) atomic_store(&log->durable_end, offset);
    }
    pthread_rwlock_unlock(&log->lock);
    return status;
}

/* Moves the start and stages its record; the caller holds the write lock. */
static kstore_status ur_log_move_start(ur_log *log, int64_t offset, const char *operation) {
    if (offset <= log->start_offset) return KSTORE_OK;
    if (atomic_load(&log->failed_status) != KSTORE_OK) {
        ur_set_error(log->instance, "%s of log '%s': the log failed earlier", operation, log->name);
        return KSTORE_ERR_IO;
    }
    kstore_status status = ur_log_record(log, UR_FRAME_START, offset, operation);
    if (status != KSTORE_OK) return status;
    if (!ur_log_advance_start(log, offset)) {
        ur_set_error(log->instance, "%s of log '%s': reading its index failed: %s", operation, log->name,
                     strerror(errno));
        return KSTORE_ERR_IO;
    }
    return KSTORE_OK;
}

static kstore_status ur_log_delete_before(kstore_log *handle, int64_t offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_log *log = (ur_log *)handle;
    pthread_rwlock_wrlock(&log->lock);
    if (offset > log->end_offset) {
        int64_t end_offset = log->end_offset;
        pthread_rwlock_unlock(&log->lock);
        ur_set_error(log->instance, "delete_before of log '%s': %lld is beyond the end %lld", log->name,
                     (long long)offset, (long long)end_offset);
        return KSTORE_ERR_OUT_OF_RANGE;
    }
    uint64_t first_generation = log->part_count > 0 ? log->parts[0].segment->generation : 0;
    kstore_status status = ur_log_move_start(log, offset, "delete_before");
    bool freed = log->part_count == 0 || log->parts[0].segment->generation != first_generation;
    pthread_rwlock_unlock(&log->lock);
    if (status == KSTORE_OK && freed) ur_schedule_gc(log->instance);
    return status;
}

static kstore_status ur_log_enforce_retention(kstore_log *handle, int64_t retain_bytes,
                                              int64_t retain_after_timestamp, int64_t *new_start_offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_log *log = (ur_log *)handle;
    if (new_start_offset == NULL) {
        ur_set_error(log->instance, "enforce_retention of log '%s': new_start_offset is NULL", log->name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    /* The unit is one entry: in a shared WAL a log's share of a segment frees nothing by itself
     * (space comes back when no log needs a whole segment), so the finest unit costs no more and
     * keeps exactly what the limits ask for. Whole parts are skipped without reading entries. */
    pthread_rwlock_wrlock(&log->lock);
    uint64_t remaining = 0, entries = 0;
    int64_t maximum = -1;
    ur_log_totals(log, &remaining, &entries, &maximum);
    int64_t start = log->end_offset;
    bool stopped = false;
    kstore_status status = KSTORE_OK;
    for (size_t part_index = 0; part_index < log->part_count && !stopped && status == KSTORE_OK; part_index++) {
        const ur_part *part = &log->parts[part_index];
        bool last_part = part_index + 1 == log->part_count;
        bool part_expired = retain_after_timestamp >= 0 && part->untimed_count == 0 &&
                            part->max_timestamp < retain_after_timestamp;
        bool part_over = retain_bytes >= 0 && !last_part && remaining - part->byte_count > (uint64_t)retain_bytes;
        if (part_expired || part_over) {
            remaining -= part->byte_count;
            continue;
        }
        ur_entry block[128];
        for (size_t index = part->begin; index < part->end && !stopped;) {
            size_t count = part->end - index < 128 ? part->end - index : 128;
            if (!ur_part_entries(part, index, count, block)) {
                status = KSTORE_ERR_IO;
                break;
            }
            for (size_t k = 0; k < count; k++) {
                const ur_entry *entry = &block[k];
                bool expired = retain_after_timestamp >= 0 && entry->max_timestamp >= 0 &&
                               entry->max_timestamp < retain_after_timestamp;
                bool over = retain_bytes >= 0 && remaining > (uint64_t)retain_bytes;
                bool is_last = last_part && index + k + 1 == part->end;
                if (!(expired || (over && !is_last))) {
                    start = entry->first_offset;
                    stopped = true;
                    break;
                }
                remaining -= entry->payload_bytes;
            }
            index += count;
        }
    }
    uint64_t first_generation = log->part_count > 0 ? log->parts[0].segment->generation : 0;
    if (status == KSTORE_OK) {
        status = ur_log_move_start(log, ur_max64(start, log->start_offset), "enforce_retention");
    } else {
        ur_set_error(log->instance, "enforce_retention of log '%s': reading its index failed: %s", log->name,
                     strerror(errno));
    }
    bool freed = log->part_count == 0 || log->parts[0].segment->generation != first_generation;
    *new_start_offset = log->start_offset;
    pthread_rwlock_unlock(&log->lock);
    if (status == KSTORE_OK && freed) ur_schedule_gc(log->instance);
    return status;
}

static kstore_status ur_log_find_offset_by_time(kstore_log *handle, int64_t timestamp, int64_t *offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_log *log = (ur_log *)handle;
    if (offset == NULL) {
        ur_set_error(log->instance, "find_offset_by_time of log '%s': offset is NULL", log->name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    pthread_rwlock_rdlock(&log->lock);
    *offset = -1;
    kstore_status status = KSTORE_OK;
    /* Parts carry their max timestamp: the first part reaching it holds the answer. */
    for (size_t part_index = 0; part_index < log->part_count; part_index++) {
        const ur_part *part = &log->parts[part_index];
        if (part->max_timestamp < timestamp) continue;
        size_t found = part->end;
        ur_entry entry;
        /* The running maximum is taken from the part's array index 0; it can be bisected over
         * [begin, end) when nothing before begin reached the timestamp, else scan (one segment). */
        bool bisect = part->begin == 0;
        if (!bisect) {
            if (!ur_part_entries(part, part->begin - 1, 1, &entry)) {
                status = KSTORE_ERR_IO;
                break;
            }
            bisect = entry.running_max_timestamp < timestamp;
        }
        if (bisect) {
            size_t low = part->begin, high = part->end;
            while (low < high) {
                size_t middle = low + (high - low) / 2;
                if (!ur_part_entries(part, middle, 1, &entry)) {
                    status = KSTORE_ERR_IO;
                    break;
                }
                if (entry.running_max_timestamp < timestamp) {
                    low = middle + 1;
                } else {
                    high = middle;
                }
            }
            found = low;
        } else {
            for (size_t index = part->begin; index < part->end; index++) {
                if (!ur_part_entries(part, index, 1, &entry)) {
                    status = KSTORE_ERR_IO;
                    break;
                }
                if (entry.max_timestamp >= timestamp) {
                    found = index;
                    break;
                }
            }
        }
        if (status == KSTORE_OK && found < part->end && ur_part_entries(part, found, 1, &entry)) {
            *offset = ur_max64(entry.first_offset, log->start_offset);
        }
        break;
    }
    pthread_rwlock_unlock(&log->lock);
    if (status != KSTORE_OK) {
        ur_set_error(log->instance, "find_offset_by_time of log '%s': reading its index failed: %s", log->name,
                     strerror(errno));
    }
    return status;
}

static kstore_status ur_log_control(kstore_log *handle, int32_t op, void *argument) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_log *log = (ur_log *)handle;
    (void)argument;
    ur_set_error(log->instance, "control of log '%s': op %d is not supported by the uring backend", log->name, (int)op);
    return KSTORE_ERR_UNSUPPORTED;
}

static const kstore_log_methods ur_log_methods = {
    .abi_version = KSTORE_ABI_VERSION,
    .struct_size = sizeof(kstore_log_methods),
    .close = ur_log_close,
    .append = ur_log_append,
    .read = ur_log_read,
    .sync = ur_log_sync,
    .state = ur_log_state,
    .truncate_to = ur_log_truncate_to,
    .delete_before = ur_log_delete_before,
    .enforce_retention = ur_log_enforce_retention,
    .find_offset_by_time = ur_log_find_offset_by_time,
    .control = ur_log_control,
};

/* MARK: - Logs of the instance */

static ur_log *ur_new_log(ur_instance *instance, uint64_t id) {
    ur_log *log = calloc(1, sizeof(ur_log));
    if (log == NULL) return NULL;
    pthread_rwlockattr_t attributes;
    pthread_rwlockattr_init(&attributes);
    pthread_rwlockattr_setkind_np(&attributes, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int failed = pthread_rwlock_init(&log->lock, &attributes);
    pthread_rwlockattr_destroy(&attributes);
    if (failed != 0) {
        free(log);
        return NULL;
    }
    log->base.methods = &ur_log_methods;
    log->instance = instance;
    log->id = id;
    atomic_init(&log->readable_end, 0);
    atomic_init(&log->durable_end, 0);
    atomic_init(&log->failed_status, KSTORE_OK);
    atomic_init(&log->truncate_generation, 0);
    return log;
}

static void ur_free_log(ur_log *log) {
    if (log == NULL) return;
    ur_log_remove_parts(log, 0, log->part_count);
    free(log->parts);
    pthread_rwlock_destroy(&log->lock);
    free(log->name);
    free(log);
}

/* Position of name in the sorted log array (or where to insert it). Caller holds catalog_lock. */
static size_t ur_find_log(const ur_instance *instance, const char *name, bool *found) {
    size_t low = 0, high = instance->log_count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        int order = strcmp(instance->logs[middle]->name, name);
        if (order == 0) {
            *found = true;
            return middle;
        }
        if (order < 0) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    *found = false;
    return low;
}

static bool ur_insert_log(ur_instance *instance, ur_log *log) {
    bool found = false;
    size_t position = ur_find_log(instance, log->name, &found);
    if (found) return false;
    if (!ur_grow((void **)&instance->logs, &instance->log_capacity, instance->log_count + 1, sizeof(ur_log *), 16)) {
        return false;
    }
    memmove(instance->logs + position + 1, instance->logs + position,
            (instance->log_count - position) * sizeof(ur_log *));
    instance->logs[position] = log;
    instance->log_count++;
    return true;
}

/* MARK: - Recovery */

/* Reads a segment file through a large buffer. */
typedef struct ur_scan {
    int fd;
    uint64_t file_bytes;
    uint8_t *buffer;
    size_t capacity;
    uint64_t buffer_position;
    size_t buffer_length;
    uint64_t bytes_read;
} ur_scan;

/* Bytes [position, position + count) of the file, or NULL past its end or on a read error (errno
 * set then; 0 past the end). */
static const uint8_t *ur_scan_get(ur_scan *scan, uint64_t position, size_t count) {
    if (position + count > scan->file_bytes) {
        errno = 0;
        return NULL;
    }
    if (position >= scan->buffer_position && position + count <= scan->buffer_position + scan->buffer_length) {
        return scan->buffer + (position - scan->buffer_position);
    }
    size_t want = count > UR_SCAN_BYTES ? count : UR_SCAN_BYTES;
    if (want > scan->file_bytes - position) want = (size_t)(scan->file_bytes - position);
    if (want > scan->capacity) {
        uint8_t *grown = realloc(scan->buffer, want);
        if (grown == NULL) {
            errno = ENOMEM;
            return NULL;
        }
        scan->buffer = grown;
        scan->capacity = want;
    }
    ssize_t got = ur_pread_all(scan->fd, scan->buffer, want, position);
    if (got < 0) return NULL;
    scan->bytes_read += (uint64_t)got;
    scan->buffer_position = position;
    scan->buffer_length = (size_t)got;
    if ((size_t)got < count) {
        errno = EIO;
        return NULL;
    }
    return scan->buffer;
}

/* Whether a complete, checksummed frame of `generation` starts at position. */
static bool ur_scan_frame(ur_scan *scan, uint64_t position, uint64_t generation, ur_frame_header *header_out,
                          const uint8_t **payload_out) {
    const uint8_t *bytes = ur_scan_get(scan, position, UR_FRAME_HEADER_BYTES);
    if (bytes == NULL) return false;
    ur_frame_header header;
    memcpy(&header, bytes, sizeof(header));
    if (header.magic != UR_FRAME_MAGIC || header.generation != generation || header.reserved != 0 ||
        header.kind < UR_FRAME_DATA || header.kind > UR_FRAME_MARK ||
        position + ur_frame_bytes(header.payload_bytes) > scan->file_bytes) {
        return false;
    }
    const uint8_t *payload = ur_scan_get(scan, position + UR_FRAME_HEADER_BYTES, header.payload_bytes);
    if (payload == NULL && header.payload_bytes > 0) return false;
    if (ur_frame_crc(fjord_crc32c(0, payload, header.payload_bytes), &header) != header.crc) return false;
    *header_out = header;
    if (payload_out != NULL) *payload_out = payload;
    return true;
}

/* Recovery's view of the logs by id, including ids whose CREATE record has not been seen yet. */
typedef struct ur_recovery {
    ur_log **logs;
    size_t count;
    size_t capacity;
    ur_log *last; /* lookup cache */
} ur_recovery;

static ur_log *ur_recovery_log(ur_instance *instance, ur_recovery *recovery, uint64_t id) {
    if (recovery->last != NULL && recovery->last->id == id) return recovery->last;
    /* Logs are few compared to frames, and ids arrive in runs: bisect the array sorted by id. */
    size_t low = 0, high = recovery->count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (recovery->logs[middle]->id < id) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    if (low < recovery->count && recovery->logs[low]->id == id) return recovery->last = recovery->logs[low];
    if (!ur_grow((void **)&recovery->logs, &recovery->capacity, recovery->count + 1, sizeof(ur_log *), 64)) return NULL;
    ur_log *log = ur_new_log(instance, id);
    if (log == NULL) return NULL;
    memmove(recovery->logs + low + 1, recovery->logs + low, (recovery->count - low) * sizeof(ur_log *));
    recovery->logs[low] = log;
    recovery->count++;
    if (id >= instance->next_log_id) instance->next_log_id = id + 1;
    return recovery->last = log;
}

/* Applies one recovered frame to the logs. */
static bool ur_recovery_apply(ur_instance *instance, ur_recovery *recovery, ur_segment *segment, uint64_t position,
                              const ur_frame_header *header, const uint8_t *payload) {
    if (header->kind == UR_FRAME_MARK) return true;
    ur_log *log = ur_recovery_log(instance, recovery, header->log_id);
    if (log == NULL) return false;
    switch (header->kind) {
    case UR_FRAME_DATA:
        if (header->first_offset < log->end_offset && log->part_count > 0) {
            if (!ur_log_cut(log, header->first_offset)) return false;
        }
        if (!ur_log_reserve_entry(log, segment)) return false;
        ur_log_add_entry(log, segment, header->first_offset, header->last_offset, header->max_timestamp,
                         (uint32_t)position, header->payload_bytes);
        log->end_offset = header->last_offset + 1;
        return true;
    case UR_FRAME_CREATE:
        if (log->name == NULL) {
            log->name = strndup((const char *)payload, header->payload_bytes);
            if (log->name == NULL) return false;
        }
        /* A log created empty, or whose frames are all gone, ends at its start. */
        if (header->first_offset > log->start_offset) {
            int64_t start = header->first_offset;
            if (!ur_log_advance_start(log, start)) return false;
        }
        if (log->end_offset < log->start_offset) log->end_offset = log->start_offset;
        return true;
    case UR_FRAME_DELETE:
        ur_log_remove_parts(log, 0, log->part_count);
        free(log->name);
        log->name = NULL;
        log->start_offset = log->end_offset = 0;
        /* The id is never used again; a frame for it later would be a bug, and is dropped. */
        log->open = true; /* marks "deleted" during recovery */
        return true;
    case UR_FRAME_START:
        if (!ur_log_advance_start(log, header->first_offset)) return false;
        if (log->end_offset < log->start_offset) log->end_offset = log->start_offset;
        return true;
    case UR_FRAME_TRUNCATE:
        if (!ur_log_cut(log, header->first_offset)) return false;
        log->end_offset = header->first_offset;
        return true;
    default:
        return false;
    }
}

/* Reads the header at position (false if there is none) and whether the whole frame is valid for
 * generation. Used on the few magic-looking positions after the end of the WAL. */
static bool ur_check_frame_at(int fd, uint64_t file_bytes, uint64_t position, uint64_t generation,
                              ur_frame_header *header, bool *valid) {
    *valid = false;
    if (position + UR_FRAME_HEADER_BYTES > file_bytes) return false;
    if (ur_pread_all(fd, header, sizeof(*header), position) != (ssize_t)sizeof(*header)) return false;
    if (header->magic != UR_FRAME_MAGIC) return false;
    if (header->generation != generation || header->reserved != 0 || header->kind < UR_FRAME_DATA ||
        header->kind > UR_FRAME_MARK || position + ur_frame_bytes(header->payload_bytes) > file_bytes) {
        return true;
    }
    uint8_t *payload = malloc(header->payload_bytes > 0 ? header->payload_bytes : 1);
    if (payload == NULL) return true;
    if (ur_pread_all(fd, payload, header->payload_bytes, position + UR_FRAME_HEADER_BYTES) ==
        (ssize_t)header->payload_bytes) {
        *valid = ur_frame_crc(fjord_crc32c(0, payload, header->payload_bytes), header) == header->crc;
    }
    free(payload);
    return true;
}

static int ur_compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Scans the WAL, rebuilds logs and indexes, truncates a torn tail. Runs in open before any thread
 * starts. Returns a status and writes a message naming file and position on failure. */
static kstore_status ur_recover(ur_instance *instance, char *message, size_t capacity) {
    uint64_t started = ur_now_ns();
    /* 1. The segment files, in generation order; index files are rebuilt, so old ones go. */
    int listing = dup(instance->dir_fd);
    DIR *directory = listing >= 0 ? fdopendir(listing) : NULL;
    if (directory == NULL) {
        snprintf(message, capacity, "cannot list data directory %s: %s", instance->path, strerror(errno));
        if (listing >= 0) close(listing);
        return KSTORE_ERR_IO;
    }
    uint64_t *generations = NULL;
    size_t generation_count = 0, generation_capacity = 0;
    struct dirent *item;
    while ((item = readdir(directory)) != NULL) {
        uint64_t generation = 0;
        char suffix[8] = {0};
        if (sscanf(item->d_name, "spare-%16" SCNx64 ".log", &generation) == 1 && strlen(item->d_name) == 26) {
            /* A retired segment kept for reuse: reuse it again, or drop it. */
            if (instance->recycled_count < UR_RECYCLE_MAX) {
                instance->recycled[instance->recycled_count++] = generation;
                if (generation >= instance->generation_floor) instance->generation_floor = generation + 1;
            } else {
                unlinkat(instance->dir_fd, item->d_name, 0);
            }
            continue;
        }
        if (sscanf(item->d_name, "wal-%16" SCNx64 ".%3s", &generation, suffix) != 2 || strlen(item->d_name) != 24) {
            continue;
        }
        if (strcmp(suffix, "idx") == 0) {
            unlinkat(instance->dir_fd, item->d_name, 0);
        } else if (strcmp(suffix, "log") == 0 && generation > 0) {
            if (!ur_grow((void **)&generations, &generation_capacity, generation_count + 1, sizeof(uint64_t), 16)) {
                closedir(directory);
                free(generations);
                snprintf(message, capacity, "out of memory listing %s", instance->path);
                return KSTORE_ERR_NO_MEMORY;
            }
            generations[generation_count++] = generation;
        }
    }
    closedir(directory);
    if (generation_count > 1) qsort(generations, generation_count, sizeof(uint64_t), ur_compare_u64);

    kstore_status status = KSTORE_OK;
    ur_recovery recovery = {0};
    ur_scan scan = {.fd = -1};
    uint64_t expected = 0; /* next sequence; 0 until the first frame */
    size_t end_index = 0;
    uint64_t end_position = 0;
    uint64_t frames = 0, scanned = 0;
    for (size_t index = 0; index < generation_count && status == KSTORE_OK; index++) {
        char name[64];
        ur_segment_name(name, sizeof(name), generations[index], "log");
        ur_segment *segment = calloc(1, sizeof(ur_segment));
        int fd = openat(instance->dir_fd, name, O_RDWR | O_CLOEXEC);
        struct stat info;
        if (segment == NULL || fd < 0 || fstat(fd, &info) != 0 ||
            !ur_grow((void **)&instance->segments, &instance->segment_capacity, instance->segment_count + 1,
                     sizeof(ur_segment *), 8)) {
            snprintf(message, capacity, "cannot open write-ahead-log segment %s in %s: %s", name, instance->path,
                     strerror(errno));
            if (fd >= 0) close(fd);
            free(segment);
            status = KSTORE_ERR_IO;
            break;
        }
        segment->generation = generations[index];
        segment->capacity = (uint64_t)info.st_size;
        segment->fd = fd;
        segment->idx_fd = -1;
        segment->state = UR_SEGMENT_READY;
        instance->segments[instance->segment_count++] = segment;
    }
    free(generations);

    /* 2. Replay frames in order while they continue the sequence. */
    bool ended = false;
    for (size_t index = 0; index < instance->segment_count && status == KSTORE_OK && !ended; index++) {
        ur_segment *segment = instance->segments[index];
        struct stat info;
        fstat(segment->fd, &info);
        scan.fd = segment->fd;
        scan.file_bytes = (uint64_t)info.st_size;
        scan.buffer_length = 0;
        posix_fadvise(segment->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        uint64_t position = 0;
        for (;;) {
            ur_frame_header header;
            const uint8_t *payload = NULL;
            if (!ur_scan_frame(&scan, position, segment->generation, &header, &payload) ||
                (expected != 0 && header.sequence != expected)) {
                break;
            }
            if (!ur_recovery_apply(instance, &recovery, segment, position, &header, payload)) {
                snprintf(message, capacity, "out of memory recovering %s", instance->path);
                status = KSTORE_ERR_NO_MEMORY;
                break;
            }
            if (header.kind != UR_FRAME_DATA && header.kind != UR_FRAME_MARK) segment->has_catalog = true;
            expected = header.sequence + 1;
            position += ur_frame_bytes(header.payload_bytes);
            frames++;
        }
        scanned += position;
        end_index = index;
        end_position = position;
        /* The next segment continues the WAL if its first frame carries the next sequence. */
        ended = true;
        if (status == KSTORE_OK && index + 1 < instance->segment_count) {
            ur_segment *next = instance->segments[index + 1];
            struct stat next_info;
            fstat(next->fd, &next_info);
            ur_frame_header header;
            bool valid = false;
            if (ur_check_frame_at(next->fd, (uint64_t)next_info.st_size, 0, next->generation, &header, &valid) &&
                valid && (expected == 0 || header.sequence == expected)) {
                ended = false;
            }
        }
        if (!ended && status == KSTORE_OK) {
            /* Sealed: write its index now so memory holds one segment's fine index at a time. */
            segment->sealed = true;
            if (!ur_write_index_of(instance, segment, recovery.logs, recovery.count)) {
                snprintf(message, capacity, "cannot write the index of segment %016" PRIx64 " in %s: %s",
                         segment->generation, instance->path, strerror(errno));
                status = ur_status_from_errno(errno);
            }
        }
    }

    instance->stats.recovery_replay_bytes = scanned;
    instance->stats.recovery_replay_ns = ur_now_ns() - started;
    /* 3. The tail: any frame after the end that claims an acknowledged (durable) sequence at or
     * beyond the end means a frame in between was damaged after it was acknowledged. */
    if (status == KSTORE_OK && instance->segment_count > 0) {
        uint64_t dirty_end = end_position;
        for (size_t index = end_index; index < instance->segment_count && status == KSTORE_OK; index++) {
            ur_segment *segment = instance->segments[index];
            struct stat info;
            fstat(segment->fd, &info);
            scan.fd = segment->fd;
            scan.file_bytes = (uint64_t)info.st_size;
            scan.buffer_length = 0;
            uint64_t position = index == end_index ? end_position : 0;
            /* Cached pages of unwritten extents count as data for SEEK_DATA below, and the replay's
             * readahead cached zeros past the end: drop the clean pages (dirty ones, written by a
             * process that was killed, are real data) and read without readahead. */
            posix_fadvise(segment->fd, 0, 0, POSIX_FADV_DONTNEED);
            posix_fadvise(segment->fd, 0, 0, POSIX_FADV_RANDOM);
            while (position + UR_FRAME_HEADER_BYTES <= scan.file_bytes && status == KSTORE_OK) {
                /* Preallocated space is unwritten extents or holes, which read as zeros and so hold
                 * no frame: skip to the next data (ext4 and xfs report unwritten extents as holes),
                 * so recovery does not read the hundreds of MiB ahead of the WAL's end. */
                off_t data = lseek(segment->fd, (off_t)position, SEEK_DATA);
                if (data < 0 && errno == ENXIO) break;
                uint64_t skip_to = data > 0 ? (uint64_t)data & ~(uint64_t)(UR_FRAME_ALIGN_BYTES - 1) : position;
                if (skip_to > position) {
                    position = skip_to;
                    continue;
                }
                uint64_t region_end = scan.file_bytes;
                off_t hole = lseek(segment->fd, (off_t)position, SEEK_HOLE);
                if (hole > (off_t)position && (uint64_t)hole < region_end) {
                    region_end = ((uint64_t)hole + UR_FRAME_ALIGN_BYTES - 1) & ~(uint64_t)(UR_FRAME_ALIGN_BYTES - 1);
                    if (region_end > scan.file_bytes) region_end = scan.file_bytes;
                }
                size_t block = (size_t)(region_end - position < UR_SCAN_BYTES ? region_end - position : UR_SCAN_BYTES);
                block &= ~(size_t)(UR_FRAME_ALIGN_BYTES - 1);
                /* Read no further than the data region (ur_scan_get reads ahead up to file_bytes). */
                uint64_t file_bytes = scan.file_bytes;
                scan.file_bytes = region_end;
                const uint8_t *bytes = ur_scan_get(&scan, position, block);
                scan.file_bytes = file_bytes;
                if (bytes == NULL || block == 0) break;
                uint64_t base = position;
                for (size_t k = 0; k < block; k += UR_FRAME_ALIGN_BYTES) {
                    uint32_t magic;
                    memcpy(&magic, bytes + k, sizeof(magic));
                    if (magic != UR_FRAME_MAGIC) continue;
                    ur_frame_header header;
                    bool valid = false;
                    if (!ur_check_frame_at(segment->fd, scan.file_bytes, base + k, segment->generation, &header,
                                           &valid)) {
                        continue;
                    }
                    if (index == end_index && header.generation == segment->generation) {
                        uint64_t claimed = base + k + ur_frame_bytes(header.payload_bytes);
                        if (claimed > scan.file_bytes) claimed = base + k + UR_FRAME_HEADER_BYTES;
                        if (claimed > dirty_end) dirty_end = claimed;
                    }
                    if (valid && expected != 0 && header.durable_sequence >= expected) {
                        char name[64];
                        ur_segment_name(name, sizeof(name), instance->segments[end_index]->generation, "log");
                        snprintf(message, capacity,
                                 "write-ahead log %s/%s is damaged at position %" PRIu64
                                 ": the frame there is missing or fails its checksum, but a later frame (%s/wal-%016" PRIx64
                                 ".log at position %" PRIu64 ") shows sequence %" PRIu64 " was already durable",
                                 instance->path, name, end_position, instance->path, segment->generation, base + k,
                                 expected);
                        status = KSTORE_ERR_CORRUPT;
                        break;
                    }
                }
                position = base + block;
                scanned += block;
            }
        }
        /* A torn tail: zero it, so no later recovery can take its bytes for frames. */
        ur_segment *end_segment = instance->segments[end_index];
        if (status == KSTORE_OK) {
            uint64_t zero_end = dirty_end > end_position + UR_FRAME_HEADER_BYTES ? dirty_end
                                                                                 : end_position + UR_FRAME_HEADER_BYTES;
            struct stat info;
            fstat(end_segment->fd, &info);
            if (zero_end > (uint64_t)info.st_size) zero_end = (uint64_t)info.st_size;
            bool nonzero = false;
            uint8_t block[4096];
            for (uint64_t position = end_position; position < zero_end && !nonzero; position += sizeof(block)) {
                size_t count = zero_end - position < sizeof(block) ? (size_t)(zero_end - position) : sizeof(block);
                ssize_t got = ur_pread_all(end_segment->fd, block, count, position);
                if (got > 0 && memcmp(block, ur_zeros, (size_t)got) != 0) nonzero = true;
            }
            if (nonzero && (ur_write_zeros(end_segment->fd, end_position, zero_end - end_position) != 0 ||
                            ur_fdatasync(end_segment->fd) != 0)) {
                snprintf(message, capacity, "cannot zero the torn tail of wal-%016" PRIx64 ".log in %s at %" PRIu64 ": %s",
                         end_segment->generation, instance->path, end_position, strerror(errno));
                status = ur_status_from_errno(errno);
            }
        }
        /* Segments after the end hold no acknowledged frame: delete them. */
        if (status == KSTORE_OK) {
            uint64_t max_generation = instance->segments[instance->segment_count - 1]->generation;
            for (size_t index = end_index + 1; index < instance->segment_count; index++) {
                ur_unlink_segment(instance, instance->segments[index]);
            }
            instance->segment_count = end_index + 1;
            if (max_generation + 1 > instance->generation_floor) instance->generation_floor = max_generation + 1;
            (void)ur_fsync(instance->dir_fd);
            instance->cursor_segment = end_segment;
            instance->cursor_position = end_position;
            end_segment->sealed = false;
        }
    }
    free(scan.buffer);

    /* 4. Logs: drop ids that never got a name (deleted long ago) and deleted ones. */
    for (size_t index = 0; index < recovery.count; index++) {
        ur_log *log = recovery.logs[index];
        bool keep = status == KSTORE_OK && log->name != NULL && !log->open;
        if (keep) {
            if (log->end_offset < log->start_offset) log->end_offset = log->start_offset;
            atomic_store(&log->readable_end, log->end_offset);
            atomic_store(&log->durable_end, log->end_offset);
            log->open = false;
            keep = ur_insert_log(instance, log);
        }
        if (!keep) ur_free_log(log);
    }
    free(recovery.logs);
    if (status != KSTORE_OK) return status;

    /* 5. The WAL continues at the end; an empty directory gets its first segment. */
    if (instance->segment_count == 0) {
        ur_segment *segment = ur_segment_add(instance);
        int error = 0;
        int fd = segment != NULL ? ur_prepare_segment_file(instance, segment, &error) : -1;
        if (fd < 0) {
            snprintf(message, capacity, "cannot create the first write-ahead-log segment in %s: %s", instance->path,
                     strerror(segment != NULL ? error : ENOMEM));
            return ur_status_from_errno(segment != NULL ? error : ENOMEM);
        }
        segment->fd = fd;
        segment->state = UR_SEGMENT_READY;
        instance->stats.segments_created++;
        instance->cursor_segment = segment;
        instance->cursor_position = 0;
    }
    instance->next_sequence = expected != 0 ? expected : 1;
    instance->durable_sequence = instance->next_sequence - 1;
    instance->written_sequence = instance->next_sequence - 1;
    instance->stats.recovery_bytes = scanned;
    instance->stats.recovery_frames = frames;
    instance->stats.recovery_ns = ur_now_ns() - started;
    return KSTORE_OK;
}

/* MARK: - Instance members */

static void ur_write_open_error(char *error_message, size_t error_capacity, const char *message) {
    if (error_message != NULL && error_capacity > 0) snprintf(error_message, error_capacity, "%s", message);
}

static void ur_destroy(ur_instance *instance) {
    if (instance->ring_ready) io_uring_queue_exit(&instance->ring);
    if (instance->event_fd >= 0) close(instance->event_fd);
    for (size_t index = 0; index < instance->log_count; index++) ur_free_log(instance->logs[index]);
    free(instance->logs);
    for (size_t index = 0; index < instance->segment_count; index++) {
        ur_segment *segment = instance->segments[index];
        if (segment->fd >= 0) close(segment->fd);
        if (segment->idx_fd >= 0) close(segment->idx_fd);
        if (segment->state != UR_SEGMENT_READY) {
            /* A spare that never became ready leaves no half-made file behind. */
            char name[64];
            ur_segment_name(name, sizeof(name), segment->generation, "log");
            if (segment->state == UR_SEGMENT_FAILED) unlinkat(instance->dir_fd, name, 0);
        }
        free(segment);
    }
    free(instance->segments);
    while (instance->chunk_head != NULL) {
        ur_chunk *next = instance->chunk_head->next;
        free(instance->chunk_head->pending);
        free(instance->chunk_head->bytes);
        free(instance->chunk_head);
        instance->chunk_head = next;
    }
    ur_chunks_free_idle(instance);
    free(instance->syncs);
    free(instance->dirty_logs);
    free(instance->fsync_logs);
    if (instance->lock_fd >= 0) close(instance->lock_fd); /* releases the flock */
    if (instance->dir_fd >= 0) close(instance->dir_fd);
    pthread_mutex_destroy(&instance->catalog_lock);
    pthread_mutex_destroy(&instance->wal_lock);
    pthread_cond_destroy(&instance->wal_changed);
    pthread_cond_destroy(&instance->maintenance_wake);
    pthread_mutex_destroy(&instance->error_lock);
    free(instance->path);
    free(instance);
}

/* Parses a size option within [minimum, maximum]. */
static bool ur_size_option(const kstore_option *option, const char *key, uint64_t minimum, uint64_t maximum,
                           uint64_t *value, char *error_message, size_t error_capacity, bool *bad) {
    if (strcmp(option->key, key) != 0) return false;
    int64_t signed_value = 0;
    uint64_t parsed = kstore_parse_positive_decimal(option->value, &signed_value) ? (uint64_t)signed_value : 0;
    if (parsed == 0 || parsed < minimum || parsed > maximum) {
        char message[256];
        snprintf(message, sizeof(message), "uring backend: option %s has bad value '%s' (a decimal in [%" PRIu64
                 ", %" PRIu64 "])", key, option->value, minimum, maximum);
        ur_write_open_error(error_message, error_capacity, message);
        *bad = true;
        return true;
    }
    *value = parsed;
    return true;
}

static kstore_status ur_open(const kstore_option *options, uint32_t option_count, kstore_instance **instance_out,
                             char *error_message, size_t error_capacity) {
    char message[UR_ERROR_BYTES_MAX + 256];
    if (instance_out == NULL) {
        ur_write_open_error(error_message, error_capacity, "uring backend: instance pointer is NULL");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    *instance_out = NULL;
    if (options == NULL && option_count > 0) {
        ur_write_open_error(error_message, error_capacity, "uring backend: options is NULL");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    const char *path = NULL;
    const char *simulated_error = NULL;
    /* Default: unwritten extents. Writing zeros doubles the disk writes and the page-cache copies
     * of a growing WAL; on this project's 2-core benchmark machine fallocate gave about twice the
     * durable throughput (1 KiB x 64 logs) despite the extent conversions fdatasync journals. */
    bool zero_by_fallocate = true;
    uint64_t segment_bytes = UR_SEGMENT_BYTES_DEFAULT, staging_bytes = UR_STAGING_BYTES_DEFAULT;
    uint64_t write_bytes = UR_WRITE_BYTES_DEFAULT, writes_inflight = UR_WRITES_INFLIGHT_DEFAULT;
    for (uint32_t index = 0; index < option_count; index++) {
        const kstore_option *option = &options[index];
        if (option->key == NULL || option->value == NULL) {
            ur_write_open_error(error_message, error_capacity, "uring backend: an option key or value is NULL");
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        bool bad = false;
        if (strcmp(option->key, "path") == 0) {
            path = option->value;
        } else if (strcmp(option->key, "uring.segment.zero") == 0) {
            if (strcmp(option->value, "write") != 0 && strcmp(option->value, "fallocate") != 0) {
                ur_write_open_error(error_message, error_capacity,
                                    "uring backend: option uring.segment.zero is 'write' or 'fallocate'");
                return KSTORE_ERR_INVALID_ARGUMENT;
            }
            zero_by_fallocate = strcmp(option->value, "fallocate") == 0;
        } else if (strcmp(option->key, "uring.test.io_uring_error") == 0) {
            simulated_error = option->value;
        } else if (ur_size_option(option, "uring.segment.bytes", UR_SEGMENT_BYTES_MIN, UR_SEGMENT_BYTES_MAX,
                                  &segment_bytes, error_message, error_capacity, &bad) ||
                   ur_size_option(option, "uring.staging.bytes", 64 * 1024, (uint64_t)1 << 40, &staging_bytes,
                                  error_message, error_capacity, &bad) ||
                   ur_size_option(option, "uring.write.bytes", 4096, (uint64_t)64 * 1024 * 1024, &write_bytes,
                                  error_message, error_capacity, &bad) ||
                   ur_size_option(option, "uring.writes.inflight", 1, UR_WRITES_INFLIGHT_MAX, &writes_inflight,
                                  error_message, error_capacity, &bad)) {
            if (bad) return KSTORE_ERR_INVALID_ARGUMENT;
        }
        /* Unknown options are ignored (kstore.h). */
    }
    if (segment_bytes % 4096 != 0) {
        ur_write_open_error(error_message, error_capacity, "uring backend: uring.segment.bytes must be a multiple of 4096");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (staging_bytes < 2 * write_bytes) {
        /* One write's chunk being written and one filling: less and appends could only wait. */
        snprintf(message, sizeof(message),
                 "uring backend: uring.staging.bytes (%llu) must be at least twice uring.write.bytes (%llu)",
                 (unsigned long long)staging_bytes, (unsigned long long)write_bytes);
        ur_write_open_error(error_message, error_capacity, message);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (path == NULL || path[0] == '\0') {
        ur_write_open_error(error_message, error_capacity,
                            "uring backend: option 'path' (the data directory) is required");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    struct stat info;
    if (stat(path, &info) != 0 || !S_ISDIR(info.st_mode)) {
        int error = errno;
        if (stat(path, &info) == 0) {
            snprintf(message, sizeof(message), "data directory %s is not a directory", path);
            ur_write_open_error(error_message, error_capacity, message);
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        snprintf(message, sizeof(message), "data directory %s does not exist%s%s", path,
                 error == ENOENT ? "" : ": ", error == ENOENT ? "" : strerror(error));
        ur_write_open_error(error_message, error_capacity, message);
        return error == ENOENT || error == ENOTDIR ? KSTORE_ERR_NOT_FOUND : KSTORE_ERR_IO;
    }

    ur_instance *instance = calloc(1, sizeof(ur_instance));
    if (instance == NULL || (instance->path = strdup(path)) == NULL) {
        free(instance);
        ur_write_open_error(error_message, error_capacity, "uring backend: out of memory");
        return KSTORE_ERR_NO_MEMORY;
    }
    instance->base.backend = &ur_backend;
    instance->dir_fd = instance->lock_fd = instance->event_fd = -1;
    atomic_init(&instance->closing, false);
    instance->segment_bytes = segment_bytes;
    instance->staging_bytes_max = staging_bytes;
    instance->zero_by_fallocate = zero_by_fallocate;
    instance->write_bytes = write_bytes;
    instance->writes_inflight_max = (uint32_t)writes_inflight;
    instance->next_log_id = 1;
    pthread_mutex_init(&instance->catalog_lock, NULL);
    pthread_mutex_init(&instance->wal_lock, NULL);
    pthread_cond_init(&instance->wal_changed, NULL);
    pthread_cond_init(&instance->maintenance_wake, NULL);
    pthread_mutex_init(&instance->error_lock, NULL);
    kstore_status status = KSTORE_OK;

    instance->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (instance->dir_fd < 0) {
        snprintf(message, sizeof(message), "cannot open data directory %s: %s", path, strerror(errno));
        status = KSTORE_ERR_IO;
        goto failed;
    }
    /* The lock: flock on X/.lock, with our pid in it for the message another process gets. */
    instance->lock_fd = openat(instance->dir_fd, UR_LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (instance->lock_fd < 0) {
        snprintf(message, sizeof(message), "data directory %s is not writable: %s", path, strerror(errno));
        status = KSTORE_ERR_IO;
        goto failed;
    }
    if (flock(instance->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int error = errno;
        char pid[32] = {0};
        ssize_t got = ur_pread_all(instance->lock_fd, pid, sizeof(pid) - 1, 0);
        if (got > 0) pid[strcspn(pid, "\n")] = '\0';
        if (error == EWOULDBLOCK) {
            snprintf(message, sizeof(message), "data directory %s is locked by another process (pid %s)", path,
                     got > 0 && pid[0] != '\0' ? pid : "unknown");
            status = KSTORE_ERR_BUSY;
        } else {
            snprintf(message, sizeof(message), "cannot lock data directory %s: %s", path, strerror(error));
            status = KSTORE_ERR_IO;
        }
        goto failed;
    }
    {
        char pid[32];
        int length = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
        if (ftruncate(instance->lock_fd, 0) != 0 || ur_pwrite_all(instance->lock_fd, pid, (size_t)length, 0) < 0) {
            snprintf(message, sizeof(message), "data directory %s is not writable: %s", path, strerror(errno));
            status = errno == ENOSPC || errno == EDQUOT ? KSTORE_ERR_NO_SPACE : KSTORE_ERR_IO;
            goto failed;
        }
    }
    /* The format marker: refuse another backend's data. */
    {
        char marker[64] = {0};
        int fd = openat(instance->dir_fd, UR_MARKER_NAME, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t got = ur_pread_all(fd, marker, sizeof(marker) - 1, 0);
            close(fd);
            if (got < 0 || strcmp(marker, UR_MARKER_TEXT) != 0) {
                char backend[32] = {0};
                if (sscanf(marker, "%31s", backend) != 1) snprintf(backend, sizeof(backend), "unknown");
                if (strcmp(backend, "uring") == 0) {
                    snprintf(message, sizeof(message), "data directory %s holds uring data of an unsupported format ('%.40s')",
                             path, marker);
                } else {
                    snprintf(message, sizeof(message), "data directory %s holds data of backend '%s'", path, backend);
                }
                status = KSTORE_ERR_INVALID_ARGUMENT;
                goto failed;
            }
        } else {
            fd = openat(instance->dir_fd, UR_MARKER_NAME ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (fd < 0 || ur_pwrite_all(fd, UR_MARKER_TEXT, strlen(UR_MARKER_TEXT), 0) < 0 || ur_fsync(fd) != 0 ||
                renameat(instance->dir_fd, UR_MARKER_NAME ".tmp", instance->dir_fd, UR_MARKER_NAME) != 0 ||
                ur_fsync(instance->dir_fd) != 0) {
                int error = errno;
                if (fd >= 0) close(fd);
                snprintf(message, sizeof(message), "data directory %s is not writable: %s", path, strerror(error));
                status = error == ENOSPC || error == EDQUOT ? KSTORE_ERR_NO_SPACE : KSTORE_ERR_IO;
                goto failed;
            }
            close(fd);
        }
    }
    /* io_uring: containers (seccomp), kernel.io_uring_disabled or old kernels refuse it. */
    {
        int result = 0;
        if (simulated_error != NULL) {
            result = strcmp(simulated_error, "EPERM") == 0 ? -EPERM : -ENOSYS;
        } else {
            result = io_uring_queue_init(UR_RING_ENTRIES, &instance->ring, 0);
        }
        if (result < 0) {
            snprintf(message, sizeof(message), "io_uring is not available (%s); use --backend file", strerror(-result));
            status = KSTORE_ERR_UNSUPPORTED;
            goto failed;
        }
        instance->ring_ready = true;
        struct io_uring_probe *probe = io_uring_get_probe_ring(&instance->ring);
        const char *missing = NULL;
        if (probe == NULL) {
            missing = "the op probe (IORING_REGISTER_PROBE)";
        } else if (!io_uring_opcode_supported(probe, IORING_OP_WRITE)) {
            missing = "IORING_OP_WRITE";
        } else if (!io_uring_opcode_supported(probe, IORING_OP_READ)) {
            missing = "IORING_OP_READ";
        } else if (!io_uring_opcode_supported(probe, IORING_OP_FSYNC)) {
            missing = "IORING_OP_FSYNC";
        }
        if (probe != NULL) io_uring_free_probe(probe);
        if (missing != NULL) {
            snprintf(message, sizeof(message), "io_uring is not available (the kernel lacks %s); use --backend file",
                     missing);
            status = KSTORE_ERR_UNSUPPORTED;
            goto failed;
        }
    }
    instance->event_fd = eventfd(0, EFD_CLOEXEC);
    if (instance->event_fd < 0) {
        snprintf(message, sizeof(message), "eventfd: %s", strerror(errno));
        status = ur_status_from_errno(errno);
        goto failed;
    }
    status = ur_recover(instance, message, sizeof(message));
    if (status == KSTORE_ERR_CORRUPT) {
        /* Acknowledged data is damaged. The instance opens, writes nothing, and every open_log
         * answers CORRUPT with the file and position (kstore.h open_log), so the operator sees
         * which log and where rather than a broker that cannot start. */
        instance->failed_status = KSTORE_ERR_CORRUPT;
        snprintf(instance->corrupt_message, sizeof(instance->corrupt_message), "%s", message);
        ur_set_error(instance, "%s", message);
        *instance_out = &instance->base;
        return KSTORE_OK;
    }
    if (status != KSTORE_OK) goto failed;
    if (pthread_create(&instance->io_thread, NULL, ur_io_main, instance) != 0) {
        snprintf(message, sizeof(message), "cannot start the I/O thread");
        status = KSTORE_ERR_NO_MEMORY;
        goto failed;
    }
    instance->io_thread_started = true;
    pthread_setname_np(instance->io_thread, "fjord-uring-io");
    if (pthread_create(&instance->maintenance_thread, NULL, ur_maintenance_main, instance) != 0) {
        pthread_mutex_lock(&instance->wal_lock);
        instance->stopping = true;
        pthread_mutex_unlock(&instance->wal_lock);
        ur_wake_io(instance);
        pthread_join(instance->io_thread, NULL);
        snprintf(message, sizeof(message), "cannot start the maintenance thread");
        status = KSTORE_ERR_NO_MEMORY;
        goto failed;
    }
    instance->maintenance_thread_started = true;
    pthread_setname_np(instance->maintenance_thread, "fjord-uring-mnt");
    *instance_out = &instance->base;
    return KSTORE_OK;

failed:
    ur_write_open_error(error_message, error_capacity, message);
    ur_destroy(instance);
    return status;
}

static void ur_close(kstore_instance *handle) {
    if (handle == NULL) return;
    ur_instance *instance = (ur_instance *)handle;
    /* Everything staged becomes durable before the threads stop (logs survive close). */
    (void)ur_wait_durable(instance);
    pthread_mutex_lock(&instance->wal_lock);
    instance->stopping = true;
    instance->maintenance_stop = true;
    atomic_store(&instance->closing, true);
    pthread_cond_signal(&instance->maintenance_wake);
    pthread_mutex_unlock(&instance->wal_lock);
    ur_wake_io(instance);
    if (instance->io_thread_started) pthread_join(instance->io_thread, NULL);
    if (instance->maintenance_thread_started) pthread_join(instance->maintenance_thread, NULL);
    ur_destroy(instance);
}

static size_t ur_last_error(kstore_instance *handle, char *buf, size_t capacity) {
    if (handle == NULL) {
        if (buf != NULL && capacity > 0) buf[0] = '\0';
        return 0;
    }
    ur_instance *instance = (ur_instance *)handle;
    pthread_mutex_lock(&instance->error_lock);
    size_t length = instance->error_length;
    kstore_copy_error(instance->error_message, length, buf, capacity);
    pthread_mutex_unlock(&instance->error_lock);
    return length;
}

static kstore_status ur_open_log(kstore_instance *handle, const char *name, uint32_t flags,
                                 const kstore_option *options, uint32_t option_count, kstore_log **log_out) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_instance *instance = (ur_instance *)handle;
    char message[512];
    kstore_status invalid =
        kstore_check_open_log_arguments(name, flags, options, option_count, log_out, message, sizeof(message));
    if (invalid != KSTORE_OK) {
        ur_set_error(instance, "%s", message);
        return invalid;
    }
    if (instance->failed_status == KSTORE_ERR_CORRUPT) {
        ur_set_error(instance, "open_log '%s': %s", name, instance->corrupt_message);
        return KSTORE_ERR_CORRUPT;
    }
    pthread_mutex_lock(&instance->catalog_lock);
    bool found = false;
    size_t position = ur_find_log(instance, name, &found);
    ur_log *log = NULL;
    if (found) {
        log = instance->logs[position];
        if ((flags & KSTORE_OPEN_EXCLUSIVE) != 0) {
            pthread_mutex_unlock(&instance->catalog_lock);
            ur_set_error(instance, "open_log '%s': the log exists (exclusive create)", name);
            return KSTORE_ERR_EXISTS;
        }
        if (log->open) {
            pthread_mutex_unlock(&instance->catalog_lock);
            ur_set_error(instance, "open_log '%s': the log is already open", name);
            return KSTORE_ERR_BUSY;
        }
    } else {
        if ((flags & KSTORE_OPEN_CREATE) == 0) {
            pthread_mutex_unlock(&instance->catalog_lock);
            ur_set_error(instance, "open_log '%s': no such log", name);
            return KSTORE_ERR_NOT_FOUND;
        }
        log = ur_new_log(instance, instance->next_log_id);
        if (log != NULL) log->name = strdup(name);
        if (log == NULL || log->name == NULL || !ur_grow((void **)&instance->logs, &instance->log_capacity,
                                                         instance->log_count + 1, sizeof(ur_log *), 16)) {
            pthread_mutex_unlock(&instance->catalog_lock);
            ur_free_log(log);
            ur_set_error(instance, "open_log '%s': out of memory", name);
            return KSTORE_ERR_NO_MEMORY;
        }
        /* Creation becomes durable with the next sync of any log (or close). */
        bool wake = false;
        const char *reason = NULL;
        pthread_mutex_lock(&instance->wal_lock);
        kstore_status status = ur_stage_catalog(instance, UR_FRAME_CREATE, log, log->id, 0, name, &wake, &reason);
        pthread_mutex_unlock(&instance->wal_lock);
        if (wake) ur_wake_io(instance);
        if (status != KSTORE_OK) {
            pthread_mutex_unlock(&instance->catalog_lock);
            ur_free_log(log);
            ur_set_error(instance, "open_log '%s': cannot record its creation: %s", name, reason);
            return status;
        }
        instance->next_log_id++;
        (void)ur_insert_log(instance, log);
    }
    /* Set on every open: a shim may have replaced the pointer on an earlier handle. */
    log->base.methods = &ur_log_methods;
    log->open = true;
    pthread_mutex_unlock(&instance->catalog_lock);
    *log_out = &log->base;
    return KSTORE_OK;
}

static kstore_status ur_delete_log(kstore_instance *handle, const char *name) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_instance *instance = (ur_instance *)handle;
    if (!kstore_log_name_is_valid(name)) {
        ur_set_error(instance, "delete_log: invalid log name");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    pthread_mutex_lock(&instance->catalog_lock);
    bool found = false;
    size_t position = ur_find_log(instance, name, &found);
    if (!found) {
        pthread_mutex_unlock(&instance->catalog_lock);
        ur_set_error(instance, "delete_log '%s': no such log", name);
        return KSTORE_ERR_NOT_FOUND;
    }
    ur_log *log = instance->logs[position];
    if (log->open) {
        pthread_mutex_unlock(&instance->catalog_lock);
        ur_set_error(instance, "delete_log '%s': the log is open", name);
        return KSTORE_ERR_BUSY;
    }
    bool wake = false;
    const char *reason = NULL;
    pthread_mutex_lock(&instance->wal_lock);
    kstore_status status = ur_stage_catalog(instance, UR_FRAME_DELETE, NULL, log->id, 0, NULL, &wake, &reason);
    pthread_mutex_unlock(&instance->wal_lock);
    if (status != KSTORE_OK) {
        pthread_mutex_unlock(&instance->catalog_lock);
        if (wake) ur_wake_io(instance);
        ur_set_error(instance, "delete_log '%s': %s", name, reason);
        return status;
    }
    memmove(instance->logs + position, instance->logs + position + 1,
            (instance->log_count - position - 1) * sizeof(ur_log *));
    instance->log_count--;
    pthread_mutex_unlock(&instance->catalog_lock);
    if (wake) ur_wake_io(instance);
    /* kstore.h: durable before returning. This waits for one group commit (milliseconds): the
     * one place besides open and close where a member of this NONBLOCKING backend waits. */
    status = ur_wait_durable(instance);
    if (status != KSTORE_OK) {
        ur_set_error(instance, "delete_log '%s': the deletion could not be made durable", name);
        return status; /* the log is gone from memory; its memory is kept (the I/O thread may hold it) */
    }
    ur_free_log(log);
    ur_schedule_gc(instance);
    return KSTORE_OK;
}

static kstore_status ur_list_logs(kstore_instance *handle, kstore_list_callback callback, void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_instance *instance = (ur_instance *)handle;
    if (callback == NULL) {
        ur_set_error(instance, "list_logs: callback is NULL");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    pthread_mutex_lock(&instance->catalog_lock);
    size_t count = instance->log_count;
    char **names = count > 0 ? calloc(count, sizeof(char *)) : NULL;
    bool failed = count > 0 && names == NULL;
    for (size_t index = 0; !failed && index < count; index++) {
        names[index] = strdup(instance->logs[index]->name);
        failed = names[index] == NULL;
    }
    pthread_mutex_unlock(&instance->catalog_lock);
    if (!failed) {
        for (size_t index = 0; index < count; index++) callback(context, names[index]);
    }
    for (size_t index = 0; names != NULL && index < count; index++) free(names[index]);
    free(names);
    if (failed) {
        ur_set_error(instance, "list_logs: out of memory");
        return KSTORE_ERR_NO_MEMORY;
    }
    return KSTORE_OK;
}

static kstore_status ur_control(kstore_instance *handle, int32_t op, void *argument) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_instance *instance = (ur_instance *)handle;
    switch (op) {
    case KSTORE_URING_CONTROL_STATS: {
        kstore_uring_stats *stats = argument;
        if (stats == NULL || stats->struct_size < 8) {
            ur_set_error(instance, "control STATS: argument is NULL or its struct_size is too small");
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        uint64_t index_bytes = 0;
        pthread_mutex_lock(&instance->catalog_lock);
        for (size_t index = 0; index < instance->log_count; index++) {
            ur_log *log = instance->logs[index];
            pthread_rwlock_rdlock(&log->lock);
            for (size_t k = 0; k < log->part_count; k++) {
                index_bytes += log->parts[k].entry_capacity * sizeof(ur_entry);
            }
            pthread_rwlock_unlock(&log->lock);
        }
        pthread_mutex_unlock(&instance->catalog_lock);
        pthread_mutex_lock(&instance->wal_lock);
        kstore_uring_stats copy = instance->stats;
        copy.segments = instance->segment_count;
        copy.staging_bytes = instance->staging_bytes;
        copy.staging_bytes_max = instance->staging_bytes_max;
        copy.index_memory_bytes = index_bytes;
        copy.active_generation = instance->cursor_segment != NULL ? instance->cursor_segment->generation : 0;
        pthread_mutex_unlock(&instance->wal_lock);
        size_t size = stats->struct_size < sizeof(copy) ? stats->struct_size : sizeof(copy);
        copy.struct_size = stats->struct_size;
        memcpy(stats, &copy, size);
        return KSTORE_OK;
    }
    case KSTORE_URING_CONTROL_FAIL_WRITES:
    case KSTORE_URING_CONTROL_FAIL_FSYNCS:
    case KSTORE_URING_CONTROL_FAIL_SEGMENTS: {
        const kstore_uring_fault *fault = argument;
        if (fault == NULL || fault->count < 0 || fault->error <= 0) {
            ur_set_error(instance, "control fault injection: argument is NULL or invalid");
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        pthread_mutex_lock(&instance->wal_lock);
        if (op == KSTORE_URING_CONTROL_FAIL_WRITES) {
            instance->fail_writes_count = fault->count;
            instance->fail_writes_error = fault->error;
        } else if (op == KSTORE_URING_CONTROL_FAIL_FSYNCS) {
            instance->fail_fsyncs_count = fault->count;
            instance->fail_fsyncs_error = fault->error;
        } else {
            instance->fail_segments_count = fault->count;
            instance->fail_segments_error = fault->error;
        }
        pthread_mutex_unlock(&instance->wal_lock);
        return KSTORE_OK;
    }
    default:
        ur_set_error(instance, "control: op %d is not supported by the uring backend", (int)op);
        return KSTORE_ERR_UNSUPPORTED;
    }
}

static const kstore_backend ur_backend = {
    .abi_version = KSTORE_ABI_VERSION,
    .struct_size = sizeof(kstore_backend),
    .name = "uring",
    .description = "io_uring write-ahead log shared by all logs: group-committed durability (Linux)",
    .capabilities = KSTORE_CAP_DURABLE | KSTORE_CAP_NONBLOCKING | KSTORE_CAP_SHARED_SYNC,
    .reserved = 0,
    .open = ur_open,
    .close = ur_close,
    .last_error = ur_last_error,
    .open_log = ur_open_log,
    .delete_log = ur_delete_log,
    .list_logs = ur_list_logs,
    .control = ur_control,
};

const kstore_backend *kstore_uring_backend(void) { return &ur_backend; }
