/* The plain-file storage backend (kstore.h, ABI version 1): DURABLE, blocking. The host calls it on
 * its blocking thread pool with one serial lane per log, so plain blocking system calls are right.
 *
 * Layout (see kstore_file.h for the directory tree)
 *   A log is a directory of segments, Kafka's LogSegment: <base>.log holds frames, <base>.index a
 *   sparse offset index (one entry per ~index.interval.bytes of frames) and <base>.timeindex a
 *   sparse time index (running maximum timestamp -> offset). Indexes are derived data: after a crash
 *   they are rebuilt from the frames; after a clean close they are trusted once their summaries and
 *   last entries check out.
 *
 * Frame (little-endian): FL_FRAME_HEADER_BYTES = 40 bytes, then the entry's bytes verbatim.
 *    0 u32 magic "FJFR"
 *    4 u32 CRC-32C of header bytes [8, 40) followed by the payload
 *    8 u32 payload byte count (>= 1)
 *   12 u32 reserved, zero
 *   16 i64 first_offset   24 i64 last_offset   32 i64 max_timestamp (-1: none)
 * The CRC lets recovery verify a frame without understanding Kafka; read verifies it again (STYLE 11).
 *
 * Offset index: a 64-byte summary header, then 32-byte entries. Entry k marks a frame that starts a
 * new block of at least index.interval.bytes of frames (the first block starts at position 0 and is
 * not recorded):
 *    0 u32 relative offset (first_offset - base)    4 u32 ordinal of the frame in the segment
 *    8 u64 position        16 i64 largest max_timestamp of the block that ends at this frame
 *   24 u32 count of frames without timestamp before this frame   28 u32 CRC-32C of [0, 28)
 * The block maxima let a search that starts inside a segment (below it lies the log start) skip
 * whole blocks; the per-entry CRC lets a lookup notice a damaged entry and fall back to a scan.
 * Summary header, written when a segment is sealed (rolled) and when the log is closed:
 *    0 u32 magic "FJIX"   4 u32 version 1   8 u32 flags (1: summary valid)   12 u32 zero
 *   16 i64 time of the first append (ms)    24 u64 segment file size   32 i64 end offset
 *   40 u64 entry count   48 i64 max timestamp   56 u32 entries without timestamp   60 u32 CRC
 * Time index: 32-byte entries {i64 timestamp, u32 relative offset, u32 ordinal, u64 position,
 * u32 zero, u32 CRC}. An entry is written when the running maximum rises and the frame lies at
 * least index.interval.bytes after the previous entry's frame (the first rise always), and once more
 * when the segment is sealed or closed if the maximum rose since. So every rise of the maximum that
 * is not recorded lies within one interval after a recorded one, which bounds the scan of a lookup.
 *
 * Recovery (open_log)
 *   - After a crash (no clean-shutdown marker) every frame of every segment is verified and the
 *     indexes rebuilt. A bad frame with nothing valid after it — in its segment or any later one —
 *     is a torn write: the segment is truncated there and later (garbage-only) segments deleted. A
 *     bad frame followed by a valid frame is damage to acknowledged data: CORRUPT, naming the file
 *     and position. A frame with a valid CRC whose offsets do not continue the log is CORRUPT too.
 *   - After a clean close every segment's summary is checked against its file and the last index
 *     entries, and the frames after the last segment's last index entry are verified; any bad frame
 *     there is CORRUPT (everything was synced at close).
 *   - The start offset is max(meta, oldest segment's base); segments wholly below it are deleted.
 *
 * Memory: per log, one descriptor per segment plus the active segment's index state. Index entries
 * live in the index files and are read with pread.
 *
 * Locking, per log: `mutate_mutex` serializes the mutating members (the host already does); the
 *   rwlock `lock` protects the segment array and every published size, and is held shared by read,
 *   find_offset_by_time and sync for their I/O, exclusively only to publish changes (and for the
 *   rare structural changes: truncation, deletion of segments); `state_mutex` guards the snapshot
 *   that state() copies, so state never waits for I/O.
 */
#include "kstore_file.h"

#include "fjord_crc32c.h"

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
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* MARK: - Limits and formats */

#define FL_FRAME_MAGIC 0x52464A46u /* "FJFR" */
#define FL_FRAME_HEADER_BYTES 40u
#define FL_INDEX_MAGIC 0x58494A46u /* "FJIX" */
#define FL_INDEX_VERSION 1u
#define FL_INDEX_HEADER_BYTES 64u
#define FL_INDEX_ENTRY_BYTES 32u
#define FL_TIME_ENTRY_BYTES 32u
#define FL_SUMMARY_VALID 1u
#define FL_META_MAGIC 0x544D4A46u /* "FJMT" */
#define FL_META_VERSION 1u
#define FL_META_BYTES 32u
#define FL_FORMAT_MARKER "file 1\n"

#define FL_SEGMENT_BYTES_DEFAULT ((uint64_t)1 << 30)
#define FL_SEGMENT_MS_DEFAULT ((int64_t)7 * 24 * 3600 * 1000)
#define FL_INDEX_INTERVAL_DEFAULT ((uint64_t)4096)
/* Reads of entries go through a window of this size; larger payloads are read straight into the
 * caller's buffer. */
#define FL_READ_WINDOW_BYTES ((size_t)64 * 1024)
/* Recovery verifies frames with large sequential reads. */
#define FL_SCAN_WINDOW_BYTES ((size_t)4 * 1024 * 1024)
/* Index entries written during a rebuild are buffered to this size. */
#define FL_WRITER_BYTES ((size_t)64 * 1024)
/* iovecs per pwritev call; larger appends take several calls. */
#define FL_IOVECS_PER_CALL 64
#define FL_ERROR_BYTES_MAX ((size_t)1024)
#define FL_PATH_BYTES_MAX ((size_t)4096)
/* %020lld + ".timeindex" + NUL. */
#define FL_FILE_NAME_BYTES 40

typedef struct fl_instance fl_instance;
typedef struct fl_log fl_log;

/* A decoded frame header. */
typedef struct fl_frame {
    uint32_t crc;
    /* CRC-32C of header bytes [8, 40): where the frame's CRC starts before the payload. */
    uint32_t header_crc;
    uint32_t payload_bytes;
    int64_t first_offset;
    int64_t last_offset;
    int64_t max_timestamp;
} fl_frame;

typedef struct fl_index_record {
    uint32_t relative_offset;
    uint32_t ordinal;
    uint64_t position;
    int64_t block_max_timestamp;
    uint32_t untimed_before;
} fl_index_record;

typedef struct fl_time_record {
    int64_t timestamp;
    uint32_t relative_offset;
    uint32_t ordinal;
    uint64_t position;
} fl_time_record;

/* One segment: everything the log keeps in memory about it. */
typedef struct fl_segment {
    int64_t base_offset;
    /* The offset after its last entry (base_offset when empty). */
    int64_t end_offset;
    /* Bytes of the .log file that hold whole frames (the published size). */
    uint64_t size_bytes;
    uint64_t entry_count;
    int64_t max_timestamp;
    /* Entries whose max_timestamp is -1 (they never expire by time). */
    uint64_t untimed_count;
    uint64_t index_count;
    uint64_t time_count;
    /* Wall-clock ms of the first append (segment.ms); 0 when unknown or empty. */
    int64_t created_ms;
} fl_segment;

/* Index maintenance state of the segment being appended to (and of a segment being rebuilt). */
typedef struct fl_builder {
    uint64_t interval_bytes;
    uint64_t marker_position;
    int64_t block_max_timestamp;
    uint64_t time_position;
    int64_t time_timestamp;
    /* The frame where the segment's max timestamp was first reached. */
    int64_t max_offset;
    uint32_t max_ordinal;
    uint64_t max_position;
} fl_builder;

/* A buffered window over a file. */
typedef struct fl_reader {
    fl_instance *instance;
    int fd;
    /* Bytes that may be read: a position at or beyond is end of data. */
    uint64_t limit;
    uint8_t *buffer;
    size_t capacity;
    uint64_t window_position;
    size_t window_bytes;
    /* errno of the last failed pread, or 0. */
    int error;
} fl_reader;

/* Buffered sequential writer for rebuilt index files. */
typedef struct fl_writer {
    fl_instance *instance;
    int fd;
    uint64_t position;
    uint8_t *buffer;
    size_t used;
    int error;
} fl_writer;

/* The files of one segment during a call: the active segment's stay open, a sealed segment's are
 * opened for the call (index files only when needed). */
typedef struct fl_files {
    int log_fd;
    int index_fd;
    int time_fd;
    bool owned;
    bool index_tried;
    bool time_tried;
} fl_files;

/* A located frame. */
typedef struct fl_place {
    uint64_t position;
    uint64_t ordinal;
    fl_frame frame;
} fl_place;

enum { FL_OP_WRITE = 1, FL_OP_SYNC, FL_OP_READ, FL_OP_TRUNCATE, FL_OP_OPEN, FL_OP_COUNT };

typedef struct fl_fault_slot {
    uint32_t fault;
    uint32_t skip_count;
    uint32_t fail_count;
    uint32_t partial;
} fl_fault_slot;

struct fl_log {
    kstore_log base; /* first member: the handle the host holds */
    fl_instance *instance;
    char *name;
    /* data/logs/<name>, for messages. */
    char *path;
    int dir_fd;
    uint64_t segment_bytes_max;
    int64_t segment_ms;
    uint64_t index_interval_bytes;

    pthread_mutex_t mutate_mutex;
    pthread_rwlock_t lock;
    /* Protected by `lock` (written with it held exclusively, and with mutate_mutex). */
    fl_segment *segments;
    size_t segment_count;
    size_t segment_capacity;
    int active_fd;
    int active_index_fd;
    int active_time_fd;
    int64_t start_offset;
    int64_t end_offset;
    /* Entries of segments[0] lying wholly below the start, and their payload bytes. */
    uint64_t dead_count;
    uint64_t dead_bytes;
    /* Largest max timestamp of segments[0]'s entries at or above the start. */
    int64_t first_live_max_timestamp;
    uint64_t byte_count;
    uint64_t entry_count;
    int64_t max_timestamp;
    /* Only touched with mutate_mutex held. */
    fl_builder builder;
    uint64_t active_index_bytes;
    uint64_t active_time_bytes;

    /* A failed fdatasync or write: every later mutating call answers KSTORE_ERR_IO (kstore.h). */
    atomic_int failed;
    /* A lookup found a damaged index entry: do not mark the log clean, so the next open rebuilds. */
    atomic_int index_suspect;

    pthread_mutex_t state_mutex;
    kstore_log_state snapshot;

    kstore_file_recovery_info recovery;
};

struct fl_instance {
    kstore_instance base; /* first member: the handle the host holds */
    char *path;
    int root_fd;
    int logs_fd;
    int deleted_fd;
    int lock_fd;

    /* Names of logs that are open, being opened or being deleted. */
    pthread_mutex_t mutex;
    char **busy_names;
    size_t busy_count;
    size_t busy_capacity;
    uint64_t delete_sequence;

    pthread_mutex_t error_mutex;
    char error_message[FL_ERROR_BYTES_MAX];
    size_t error_length;

    pthread_mutex_t fault_mutex;
    atomic_int faults_armed;
    fl_fault_slot faults[FL_OP_COUNT];
    /* errno the next write fails with, after an injected short write. */
    int pending_write_error;
};

static const kstore_log_methods fl_log_methods;
static const kstore_backend fl_backend;

/* MARK: - Small helpers */

static void fl_put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void fl_put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t fl_get32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t fl_get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int64_t fl_max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t fl_min64(int64_t a, int64_t b) { return a < b ? a : b; }

static int64_t fl_now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static uint64_t fl_monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static void fl_vset_error(fl_instance *instance, const char *format, va_list arguments) {
    char message[FL_ERROR_BYTES_MAX];
    if (vsnprintf(message, sizeof(message), format, arguments) < 0) message[0] = '\0';
    pthread_mutex_lock(&instance->error_mutex);
    memcpy(instance->error_message, message, sizeof(message));
    instance->error_length = strlen(instance->error_message);
    pthread_mutex_unlock(&instance->error_mutex);
}

__attribute__((format(printf, 2, 3))) static void fl_set_error(fl_instance *instance, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    fl_vset_error(instance, format, arguments);
    va_end(arguments);
}

/* kstore.h status for an errno (errno never crosses the ABI). */
static kstore_status fl_status_for_errno(int error) {
    switch (error) {
    case ENOSPC:
    case EDQUOT: return KSTORE_ERR_NO_SPACE;
    case ENOENT: return KSTORE_ERR_NOT_FOUND;
    case ENOMEM: return KSTORE_ERR_NO_MEMORY;
    default: return KSTORE_ERR_IO; /* EIO, EACCES, EROFS, EPERM and anything unexpected */
    }
}

/* Records "<what>: <strerror>" (plus "not writable" for permission errors) and returns the status. */
__attribute__((format(printf, 3, 4))) static kstore_status fl_errno_error(fl_instance *instance, int error,
                                                                          const char *format, ...) {
    char what[FL_ERROR_BYTES_MAX];
    va_list arguments;
    va_start(arguments, format);
    if (vsnprintf(what, sizeof(what), format, arguments) < 0) what[0] = '\0';
    va_end(arguments);
    char reason[256];
    const char *text = strerror_r(error, reason, sizeof(reason));
    bool not_writable = error == EACCES || error == EROFS || error == EPERM;
    fl_set_error(instance, "%s: %s%s", what, text, not_writable ? " (not writable)" : "");
    return fl_status_for_errno(error);
}

static void fl_segment_name(char *buffer, int64_t base_offset, const char *suffix) {
    snprintf(buffer, FL_FILE_NAME_BYTES, "%020lld%s", (long long)base_offset, suffix);
}

/* Parses "%020lld.log"; false for anything else. */
static bool fl_parse_segment_name(const char *name, int64_t *base_offset) {
    if (strlen(name) != 24 || strcmp(name + 20, ".log") != 0) return false;
    int64_t value = 0;
    for (int index = 0; index < 20; index++) {
        char c = name[index];
        if (c < '0' || c > '9') return false;
        if (value > (INT64_MAX - (c - '0')) / 10) return false;
        value = value * 10 + (c - '0');
    }
    *base_offset = value;
    return true;
}

/* Fields of a host-provided struct that fit its struct_size (kstore.h). */
#define FL_FITS(pointer, type, field) \
    ((size_t)(pointer)->struct_size >= offsetof(type, field) + sizeof(((type *)0)->field))

static uint64_t fl_payload_bytes(const fl_segment *segment) {
    return segment->size_bytes - segment->entry_count * FL_FRAME_HEADER_BYTES;
}

/* MARK: - The I/O layer
 *
 * Every system call on data goes through these functions: they retry EINTR and consult the faults
 * armed with KSTORE_FILE_CONTROL_INJECT_FAULT. They return -1 with errno set, like the calls. */

/* The errno to fail this call with (0: run it). *partial: write half, then fail the next write. */
static int fl_fault_take(fl_instance *instance, int operation, bool *partial) {
    *partial = false;
    if (atomic_load_explicit(&instance->faults_armed, memory_order_acquire) == 0) return 0;
    int error = 0;
    pthread_mutex_lock(&instance->fault_mutex);
    if (operation == FL_OP_WRITE && instance->pending_write_error != 0) {
        error = instance->pending_write_error;
        instance->pending_write_error = 0;
    } else {
        fl_fault_slot *slot = &instance->faults[operation];
        if (slot->fail_count > 0) {
            if (slot->skip_count > 0) {
                slot->skip_count--;
            } else {
                slot->fail_count--;
                error = slot->fault == KSTORE_FILE_FAULT_NO_SPACE ? ENOSPC : EIO;
                *partial = slot->partial != 0 && operation == FL_OP_WRITE;
            }
        }
    }
    bool armed = instance->pending_write_error != 0;
    for (int index = 1; index < FL_OP_COUNT; index++) armed = armed || instance->faults[index].fail_count > 0;
    atomic_store_explicit(&instance->faults_armed, armed ? 1 : 0, memory_order_release);
    pthread_mutex_unlock(&instance->fault_mutex);
    return error;
}

static ssize_t fl_io_pwritev(fl_instance *instance, int fd, const struct iovec *iov, int count, uint64_t position) {
    bool partial = false;
    int injected = fl_fault_take(instance, FL_OP_WRITE, &partial);
    if (injected != 0 && !partial) {
        errno = injected;
        return -1;
    }
    struct iovec shortened[FL_IOVECS_PER_CALL + 1];
    if (injected != 0) {
        /* A device filling up mid-write: half the bytes land, the call after fails. */
        size_t total = 0;
        for (int index = 0; index < count; index++) total += iov[index].iov_len;
        size_t remaining = total / 2;
        int used = 0;
        for (int index = 0; index < count && remaining > 0 && used <= FL_IOVECS_PER_CALL; index++) {
            size_t take = iov[index].iov_len < remaining ? iov[index].iov_len : remaining;
            shortened[used].iov_base = iov[index].iov_base;
            shortened[used].iov_len = take;
            used++;
            remaining -= take;
        }
        if (used == 0) {
            errno = injected;
            return -1;
        }
        pthread_mutex_lock(&instance->fault_mutex);
        instance->pending_write_error = injected;
        atomic_store_explicit(&instance->faults_armed, 1, memory_order_release);
        pthread_mutex_unlock(&instance->fault_mutex);
        iov = shortened;
        count = used;
    }
    for (;;) {
        ssize_t written = pwritev(fd, iov, count, (off_t)position);
        if (written < 0 && errno == EINTR) continue;
        return written;
    }
}

/* Writes every byte of the pieces at `position`, in as many calls as needed. 0, or an errno. */
static int fl_write_all(fl_instance *instance, int fd, const struct iovec *pieces, size_t piece_count,
                        uint64_t position) {
    size_t piece = 0, skip = 0; /* skip: bytes of pieces[piece] already written */
    while (piece < piece_count) {
        struct iovec batch[FL_IOVECS_PER_CALL];
        int count = 0;
        size_t batch_bytes = 0;
        for (size_t index = piece; index < piece_count && count < FL_IOVECS_PER_CALL; index++) {
            size_t offset = index == piece ? skip : 0;
            if (pieces[index].iov_len - offset == 0) continue;
            batch[count].iov_base = (uint8_t *)pieces[index].iov_base + offset;
            batch[count].iov_len = pieces[index].iov_len - offset;
            batch_bytes += batch[count].iov_len;
            count++;
        }
        if (count == 0) break;
        ssize_t written = fl_io_pwritev(instance, fd, batch, count, position);
        if (written < 0) return errno;
        if (written == 0) return EIO;
        position += (uint64_t)written;
        size_t advance = (size_t)written;
        while (advance > 0 && piece < piece_count) {
            size_t left = pieces[piece].iov_len - skip;
            if (advance < left) {
                skip += advance;
                advance = 0;
            } else {
                advance -= left;
                piece++;
                skip = 0;
            }
        }
        while (piece < piece_count && pieces[piece].iov_len == skip) {
            piece++;
            skip = 0;
        }
        (void)batch_bytes;
    }
    return 0;
}

static int fl_pwrite_all(fl_instance *instance, int fd, const void *bytes, size_t length, uint64_t position) {
    struct iovec piece = {.iov_base = (void *)bytes, .iov_len = length};
    return fl_write_all(instance, fd, &piece, 1, position);
}

/* Reads up to `length` bytes (fewer only at end of file). Returns the count, or -1 with errno. */
static ssize_t fl_io_pread(fl_instance *instance, int fd, void *buffer, size_t length, uint64_t position) {
    bool partial = false;
    int injected = fl_fault_take(instance, FL_OP_READ, &partial);
    if (injected != 0) {
        errno = injected;
        return -1;
    }
    size_t done = 0;
    while (done < length) {
        ssize_t got = pread(fd, (uint8_t *)buffer + done, length - done, (off_t)(position + done));
        if (got < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (got == 0) break;
        done += (size_t)got;
    }
    return (ssize_t)done;
}

static int fl_io_fdatasync(fl_instance *instance, int fd) {
    bool partial = false;
    int injected = fl_fault_take(instance, FL_OP_SYNC, &partial);
    if (injected != 0) {
        errno = injected;
        return -1;
    }
    for (;;) {
        if (fdatasync(fd) == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

/* Directories need fsync (their entries are metadata). */
static int fl_io_fsync(fl_instance *instance, int fd) {
    bool partial = false;
    int injected = fl_fault_take(instance, FL_OP_SYNC, &partial);
    if (injected != 0) {
        errno = injected;
        return -1;
    }
    for (;;) {
        if (fsync(fd) == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

static int fl_io_ftruncate(fl_instance *instance, int fd, uint64_t length) {
    bool partial = false;
    int injected = fl_fault_take(instance, FL_OP_TRUNCATE, &partial);
    if (injected != 0) {
        errno = injected;
        return -1;
    }
    for (;;) {
        if (ftruncate(fd, (off_t)length) == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

static int fl_io_openat(fl_instance *instance, int dir_fd, const char *name, int flags, mode_t mode) {
    bool partial = false;
    int injected = fl_fault_take(instance, FL_OP_OPEN, &partial);
    if (injected != 0) {
        errno = injected;
        return -1;
    }
    for (;;) {
        int fd = openat(dir_fd, name, flags | O_CLOEXEC, mode);
        if (fd >= 0 || errno != EINTR) return fd;
    }
}

static void fl_close_fd(int fd) {
    /* Linux closes the descriptor even when close reports EINTR: never retry. */
    if (fd >= 0) close(fd);
}

static int fl_file_size(int fd, uint64_t *size) {
    struct stat status;
    if (fstat(fd, &status) != 0) return -1;
    *size = (uint64_t)status.st_size;
    return 0;
}

/* MARK: - Buffered reads */

static bool fl_reader_init(fl_reader *reader, fl_instance *instance, size_t capacity) {
    memset(reader, 0, sizeof(*reader));
    reader->instance = instance;
    reader->fd = -1;
    reader->buffer = malloc(capacity);
    reader->capacity = capacity;
    return reader->buffer != NULL;
}

static void fl_reader_free(fl_reader *reader) {
    free(reader->buffer);
    reader->buffer = NULL;
}

static void fl_reader_reset(fl_reader *reader, int fd, uint64_t limit) {
    reader->fd = fd;
    reader->limit = limit;
    reader->window_position = 0;
    reader->window_bytes = 0;
    reader->error = 0;
}

/* The bytes [position, position + length) (length <= capacity), or NULL at end of data or on a read
 * error (then reader->error is set). */
static const uint8_t *fl_reader_get(fl_reader *reader, uint64_t position, size_t length) {
    if (length > reader->capacity || position > reader->limit || length > reader->limit - position) return NULL;
    if (position >= reader->window_position && position - reader->window_position <= reader->window_bytes &&
        length <= reader->window_bytes - (position - reader->window_position)) {
        return reader->buffer + (position - reader->window_position);
    }
    uint64_t available = reader->limit - position;
    size_t want = available < reader->capacity ? (size_t)available : reader->capacity;
    ssize_t got = fl_io_pread(reader->instance, reader->fd, reader->buffer, want, position);
    if (got < 0) {
        reader->error = errno;
        reader->window_bytes = 0;
        return NULL;
    }
    reader->window_position = position;
    reader->window_bytes = (size_t)got;
    if ((size_t)got < length) return NULL;
    return reader->buffer;
}

/* Copies [position, position + length) into `destination`; large ranges bypass the window. */
static bool fl_reader_copy(fl_reader *reader, uint64_t position, uint64_t length, uint8_t *destination) {
    if (position > reader->limit || length > reader->limit - position) return false;
    if (length <= reader->capacity / 2) {
        const uint8_t *bytes = fl_reader_get(reader, position, (size_t)length);
        if (bytes == NULL) return false;
        memcpy(destination, bytes, (size_t)length);
        return true;
    }
    uint64_t done = 0;
    /* What the window already holds. */
    if (position >= reader->window_position && position - reader->window_position < reader->window_bytes) {
        size_t held = reader->window_bytes - (size_t)(position - reader->window_position);
        done = held < length ? held : length;
        memcpy(destination, reader->buffer + (position - reader->window_position), (size_t)done);
    }
    if (done < length) {
        ssize_t got = fl_io_pread(reader->instance, reader->fd, destination + done, (size_t)(length - done),
                                  position + done);
        if (got < 0) {
            reader->error = errno;
            return false;
        }
        if ((uint64_t)got < length - done) return false;
    }
    return true;
}

/* CRC-32C of [position, position + length), continuing from `crc`, streamed through the window. */
static bool fl_reader_crc(fl_reader *reader, uint64_t position, uint64_t length, uint32_t *crc) {
    while (length > 0) {
        size_t chunk = length < reader->capacity ? (size_t)length : reader->capacity;
        const uint8_t *bytes = fl_reader_get(reader, position, chunk);
        if (bytes == NULL) return false;
        *crc = fjord_crc32c(*crc, bytes, chunk);
        position += chunk;
        length -= chunk;
    }
    return true;
}

/* MARK: - Buffered writes (index rebuilds) */

static bool fl_writer_init(fl_writer *writer, fl_instance *instance, int fd, uint64_t position) {
    memset(writer, 0, sizeof(*writer));
    writer->instance = instance;
    writer->fd = fd;
    writer->position = position;
    writer->buffer = malloc(FL_WRITER_BYTES);
    return writer->buffer != NULL;
}

static void fl_writer_flush(fl_writer *writer) {
    if (writer->used > 0 && writer->error == 0) {
        writer->error = fl_pwrite_all(writer->instance, writer->fd, writer->buffer, writer->used, writer->position);
        writer->position += writer->used;
    }
    writer->used = 0;
}

static void fl_writer_put(fl_writer *writer, const uint8_t *bytes, size_t length) {
    if (writer->used + length > FL_WRITER_BYTES) fl_writer_flush(writer);
    memcpy(writer->buffer + writer->used, bytes, length);
    writer->used += length;
}

static void fl_writer_free(fl_writer *writer) {
    free(writer->buffer);
    writer->buffer = NULL;
}

/* MARK: - Frames and index records */

/* Fills the 40-byte header; the CRC field covers [8, 40) and the payload, added by the caller. */
static void fl_frame_encode(uint8_t *header, uint32_t payload_bytes, int64_t first_offset, int64_t last_offset,
                            int64_t max_timestamp) {
    fl_put32(header, FL_FRAME_MAGIC);
    fl_put32(header + 4, 0);
    fl_put32(header + 8, payload_bytes);
    fl_put32(header + 12, 0);
    fl_put64(header + 16, (uint64_t)first_offset);
    fl_put64(header + 24, (uint64_t)last_offset);
    fl_put64(header + 32, (uint64_t)max_timestamp);
}

/* Decodes a header and checks what can be checked without the payload. */
static bool fl_frame_decode(const uint8_t *header, fl_frame *frame) {
    if (fl_get32(header) != FL_FRAME_MAGIC || fl_get32(header + 12) != 0) return false;
    frame->crc = fl_get32(header + 4);
    frame->payload_bytes = fl_get32(header + 8);
    frame->first_offset = (int64_t)fl_get64(header + 16);
    frame->last_offset = (int64_t)fl_get64(header + 24);
    frame->max_timestamp = (int64_t)fl_get64(header + 32);
    frame->header_crc = 0;
    return frame->payload_bytes >= 1 && frame->first_offset >= 0 && frame->last_offset >= frame->first_offset &&
           frame->last_offset < INT64_MAX && frame->max_timestamp >= -1;
}

static void fl_index_encode(uint8_t *bytes, const fl_index_record *record) {
    fl_put32(bytes, record->relative_offset);
    fl_put32(bytes + 4, record->ordinal);
    fl_put64(bytes + 8, record->position);
    fl_put64(bytes + 16, (uint64_t)record->block_max_timestamp);
    fl_put32(bytes + 24, record->untimed_before);
    fl_put32(bytes + 28, fjord_crc32c(0, bytes, 28));
}

static bool fl_index_decode(const uint8_t *bytes, fl_index_record *record) {
    if (fl_get32(bytes + 28) != fjord_crc32c(0, bytes, 28)) return false;
    record->relative_offset = fl_get32(bytes);
    record->ordinal = fl_get32(bytes + 4);
    record->position = fl_get64(bytes + 8);
    record->block_max_timestamp = (int64_t)fl_get64(bytes + 16);
    record->untimed_before = fl_get32(bytes + 24);
    return true;
}

static void fl_time_encode(uint8_t *bytes, const fl_time_record *record) {
    fl_put64(bytes, (uint64_t)record->timestamp);
    fl_put32(bytes + 8, record->relative_offset);
    fl_put32(bytes + 12, record->ordinal);
    fl_put64(bytes + 16, record->position);
    fl_put32(bytes + 24, 0);
    fl_put32(bytes + 28, fjord_crc32c(0, bytes, 28));
}

static bool fl_time_decode(const uint8_t *bytes, fl_time_record *record) {
    if (fl_get32(bytes + 28) != fjord_crc32c(0, bytes, 28) || fl_get32(bytes + 24) != 0) return false;
    record->timestamp = (int64_t)fl_get64(bytes);
    record->relative_offset = fl_get32(bytes + 8);
    record->ordinal = fl_get32(bytes + 12);
    record->position = fl_get64(bytes + 16);
    return true;
}

static bool fl_index_read(fl_log *log, int fd, uint64_t index, fl_index_record *record) {
    uint8_t bytes[FL_INDEX_ENTRY_BYTES];
    ssize_t got = fl_io_pread(log->instance, fd, bytes, sizeof(bytes),
                              FL_INDEX_HEADER_BYTES + index * FL_INDEX_ENTRY_BYTES);
    return got == (ssize_t)sizeof(bytes) && fl_index_decode(bytes, record);
}

static bool fl_time_read(fl_log *log, int fd, uint64_t index, fl_time_record *record) {
    uint8_t bytes[FL_TIME_ENTRY_BYTES];
    ssize_t got = fl_io_pread(log->instance, fd, bytes, sizeof(bytes), index * FL_TIME_ENTRY_BYTES);
    return got == (ssize_t)sizeof(bytes) && fl_time_decode(bytes, record);
}

/* The summary header of a segment's offset index. */
static void fl_summary_encode(uint8_t *bytes, const fl_segment *segment) {
    memset(bytes, 0, FL_INDEX_HEADER_BYTES);
    fl_put32(bytes, FL_INDEX_MAGIC);
    fl_put32(bytes + 4, FL_INDEX_VERSION);
    fl_put32(bytes + 8, FL_SUMMARY_VALID);
    fl_put64(bytes + 16, (uint64_t)segment->created_ms);
    fl_put64(bytes + 24, segment->size_bytes);
    fl_put64(bytes + 32, (uint64_t)segment->end_offset);
    fl_put64(bytes + 40, segment->entry_count);
    fl_put64(bytes + 48, (uint64_t)segment->max_timestamp);
    fl_put32(bytes + 56, (uint32_t)segment->untimed_count);
    fl_put32(bytes + 60, fjord_crc32c(0, bytes, 60));
}

static bool fl_summary_decode(const uint8_t *bytes, fl_segment *segment) {
    if (fl_get32(bytes) != FL_INDEX_MAGIC || fl_get32(bytes + 4) != FL_INDEX_VERSION ||
        fl_get32(bytes + 8) != FL_SUMMARY_VALID || fl_get32(bytes + 60) != fjord_crc32c(0, bytes, 60)) {
        return false;
    }
    segment->created_ms = (int64_t)fl_get64(bytes + 16);
    segment->size_bytes = fl_get64(bytes + 24);
    segment->end_offset = (int64_t)fl_get64(bytes + 32);
    segment->entry_count = fl_get64(bytes + 40);
    segment->max_timestamp = (int64_t)fl_get64(bytes + 48);
    segment->untimed_count = fl_get32(bytes + 56);
    return true;
}

/* MARK: - Index maintenance */

static void fl_builder_start(fl_builder *builder, uint64_t interval_bytes) {
    memset(builder, 0, sizeof(*builder));
    builder->interval_bytes = interval_bytes;
    builder->block_max_timestamp = -1;
    builder->time_timestamp = -1;
    builder->max_offset = -1;
}

/* Adds the frame at `position` to the segment's statistics and index state. Says whether an offset
 * index entry and a time index entry must be written for it (the counts are already advanced). */
static void fl_builder_add(fl_segment *segment, fl_builder *builder, const fl_frame *frame, uint64_t position,
                           bool *emit_index, fl_index_record *index, bool *emit_time, fl_time_record *time) {
    uint32_t ordinal = (uint32_t)segment->entry_count;
    uint32_t relative_offset = (uint32_t)(frame->first_offset - segment->base_offset);
    *emit_index = false;
    *emit_time = false;
    if (ordinal > 0 && position - builder->marker_position >= builder->interval_bytes) {
        *emit_index = true;
        *index = (fl_index_record){
            .relative_offset = relative_offset,
            .ordinal = ordinal,
            .position = position,
            .block_max_timestamp = builder->block_max_timestamp,
            .untimed_before = (uint32_t)segment->untimed_count,
        };
        segment->index_count++;
        builder->marker_position = position;
        builder->block_max_timestamp = -1;
    }
    builder->block_max_timestamp = fl_max64(builder->block_max_timestamp, frame->max_timestamp);
    if (frame->max_timestamp > segment->max_timestamp) {
        segment->max_timestamp = frame->max_timestamp;
        builder->max_offset = frame->first_offset;
        builder->max_ordinal = ordinal;
        builder->max_position = position;
        if (segment->time_count == 0 || position - builder->time_position >= builder->interval_bytes) {
            *emit_time = true;
            *time = (fl_time_record){
                .timestamp = frame->max_timestamp,
                .relative_offset = relative_offset,
                .ordinal = ordinal,
                .position = position,
            };
            segment->time_count++;
            builder->time_position = position;
            builder->time_timestamp = frame->max_timestamp;
        }
    }
    if (frame->max_timestamp < 0) segment->untimed_count++;
    segment->entry_count++;
    segment->size_bytes = position + FL_FRAME_HEADER_BYTES + frame->payload_bytes;
    segment->end_offset = frame->last_offset + 1;
}

/* The time index entry that records the segment's final maximum, if the last rise was not recorded
 * (written when the segment is sealed or the log closed, as Kafka does on roll). */
static bool fl_builder_final_time(fl_segment *segment, fl_builder *builder, fl_time_record *time) {
    if (segment->max_timestamp < 0 || segment->max_timestamp <= builder->time_timestamp) return false;
    *time = (fl_time_record){
        .timestamp = segment->max_timestamp,
        .relative_offset = (uint32_t)(builder->max_offset - segment->base_offset),
        .ordinal = builder->max_ordinal,
        .position = builder->max_position,
    };
    segment->time_count++;
    builder->time_position = builder->max_position;
    builder->time_timestamp = segment->max_timestamp;
    return true;
}

/* MARK: - Segment files */

static int fl_open_segment_file(fl_log *log, int64_t base_offset, const char *suffix, int flags) {
    char name[FL_FILE_NAME_BYTES];
    fl_segment_name(name, base_offset, suffix);
    return fl_io_openat(log->instance, log->dir_fd, name, flags, 0644);
}

/* Removes a segment's three files (missing ones are fine). */
static void fl_unlink_segment(fl_log *log, int64_t base_offset) {
    static const char *const suffixes[] = {".log", ".index", ".timeindex"};
    for (size_t index = 0; index < 3; index++) {
        char name[FL_FILE_NAME_BYTES];
        fl_segment_name(name, base_offset, suffixes[index]);
        unlinkat(log->dir_fd, name, 0);
    }
}

/* Creates an empty segment's files (truncating leftovers of the same name). The offset index gets
 * no header until the segment is sealed: a zero-filled hole reads as "no summary". */
static kstore_status fl_create_segment_files(fl_log *log, int64_t base_offset, int *log_fd, int *index_fd,
                                             int *time_fd) {
    static const char *const suffixes[] = {".log", ".index", ".timeindex"};
    int fds[3] = {-1, -1, -1};
    for (size_t index = 0; index < 3; index++) {
        fds[index] = fl_open_segment_file(log, base_offset, suffixes[index], O_RDWR | O_CREAT | O_TRUNC);
        if (fds[index] < 0) {
            int error = errno;
            for (size_t opened = 0; opened < index; opened++) fl_close_fd(fds[opened]);
            fl_unlink_segment(log, base_offset);
            char name[FL_FILE_NAME_BYTES];
            fl_segment_name(name, base_offset, suffixes[index]);
            return fl_errno_error(log->instance, error, "log '%s': creating %s/%s failed", log->name, log->path, name);
        }
    }
    *log_fd = fds[0];
    *index_fd = fds[1];
    *time_fd = fds[2];
    return KSTORE_OK;
}

/* Writes the segment's summary header. Failure only costs a rebuild at the next open. */
static bool fl_write_summary(fl_log *log, int index_fd, const fl_segment *segment) {
    uint8_t bytes[FL_INDEX_HEADER_BYTES];
    fl_summary_encode(bytes, segment);
    return fl_pwrite_all(log->instance, index_fd, bytes, sizeof(bytes), 0) == 0;
}

/* MARK: - The start offset file */

/* Reads `meta`: 1 with *start_offset, 0 when missing, -1 when damaged. */
static int fl_read_meta(fl_log *log, int64_t *start_offset) {
    int fd = fl_io_openat(log->instance, log->dir_fd, "meta", O_RDONLY, 0);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    uint8_t bytes[FL_META_BYTES];
    ssize_t got = fl_io_pread(log->instance, fd, bytes, sizeof(bytes), 0);
    fl_close_fd(fd);
    if (got != (ssize_t)sizeof(bytes) || fl_get32(bytes) != FL_META_MAGIC || fl_get32(bytes + 4) != FL_META_VERSION ||
        fl_get32(bytes + 28) != fjord_crc32c(0, bytes, 28) || (int64_t)fl_get64(bytes + 8) < 0) {
        return -1;
    }
    *start_offset = (int64_t)fl_get64(bytes + 8);
    return 1;
}

/* Persists the start offset: write a temporary file, fdatasync, rename over `meta`, fsync the
 * directory (the rename is a directory change). */
static kstore_status fl_write_meta(fl_log *log, int64_t start_offset) {
    uint8_t bytes[FL_META_BYTES];
    memset(bytes, 0, sizeof(bytes));
    fl_put32(bytes, FL_META_MAGIC);
    fl_put32(bytes + 4, FL_META_VERSION);
    fl_put64(bytes + 8, (uint64_t)start_offset);
    fl_put32(bytes + 28, fjord_crc32c(0, bytes, 28));
    int fd = fl_io_openat(log->instance, log->dir_fd, "meta.tmp", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        return fl_errno_error(log->instance, errno, "log '%s': creating %s/meta.tmp failed", log->name, log->path);
    }
    int error = fl_pwrite_all(log->instance, fd, bytes, sizeof(bytes), 0);
    if (error == 0 && fl_io_fdatasync(log->instance, fd) != 0) error = errno;
    fl_close_fd(fd);
    if (error != 0) {
        unlinkat(log->dir_fd, "meta.tmp", 0);
        return fl_errno_error(log->instance, error, "log '%s': writing %s/meta.tmp at position 0 failed", log->name,
                              log->path);
    }
    if (renameat(log->dir_fd, "meta.tmp", log->dir_fd, "meta") != 0) {
        error = errno;
        unlinkat(log->dir_fd, "meta.tmp", 0);
        return fl_errno_error(log->instance, error, "log '%s': renaming %s/meta.tmp failed", log->name, log->path);
    }
    if (fl_io_fsync(log->instance, log->dir_fd) != 0) {
        return fl_errno_error(log->instance, errno, "log '%s': fsync of directory %s failed", log->name, log->path);
    }
    return KSTORE_OK;
}

/* MARK: - State */

/* Recomputes the log's totals from the segment descriptors. Caller holds `lock` exclusively. */
static void fl_recompute_totals(fl_log *log) {
    uint64_t bytes = 0, count = 0;
    int64_t max_timestamp = log->first_live_max_timestamp;
    for (size_t index = 0; index < log->segment_count; index++) {
        const fl_segment *segment = &log->segments[index];
        bytes += fl_payload_bytes(segment);
        count += segment->entry_count;
        if (index > 0) max_timestamp = fl_max64(max_timestamp, segment->max_timestamp);
    }
    log->byte_count = bytes - log->dead_bytes;
    log->entry_count = count - log->dead_count;
    log->max_timestamp = max_timestamp;
    log->end_offset = log->segments[log->segment_count - 1].end_offset;
}

/* Copies the published state into the snapshot state() returns. Caller holds `lock`. */
static void fl_publish_state(fl_log *log) {
    pthread_mutex_lock(&log->state_mutex);
    log->snapshot.start_offset = log->start_offset;
    log->snapshot.end_offset = log->end_offset;
    log->snapshot.durable_end_offset = fl_min64(log->snapshot.durable_end_offset, log->end_offset);
    log->snapshot.max_timestamp = log->max_timestamp;
    log->snapshot.byte_count = log->byte_count;
    log->snapshot.entry_count = log->entry_count;
    pthread_mutex_unlock(&log->state_mutex);
}

/* Index of the segment that holds `offset`: the last whose base is <= offset. Caller holds `lock`. */
static size_t fl_find_segment(const fl_log *log, int64_t offset) {
    size_t low = 0, high = log->segment_count;
    while (high - low > 1) {
        size_t middle = low + (high - low) / 2;
        if (log->segments[middle].base_offset <= offset) {
            low = middle;
        } else {
            high = middle;
        }
    }
    return low;
}

/* MARK: - Segment files during a call */

static bool fl_is_active(const fl_log *log, const fl_segment *segment) {
    return segment == &log->segments[log->segment_count - 1];
}

static kstore_status fl_files_open(fl_log *log, const fl_segment *segment, fl_files *files) {
    memset(files, 0, sizeof(*files));
    files->index_fd = -1;
    files->time_fd = -1;
    if (fl_is_active(log, segment)) {
        files->log_fd = log->active_fd;
        files->index_fd = log->active_index_fd;
        files->time_fd = log->active_time_fd;
        files->index_tried = files->time_tried = true;
        return KSTORE_OK;
    }
    files->owned = true;
    files->log_fd = fl_open_segment_file(log, segment->base_offset, ".log", O_RDONLY);
    if (files->log_fd < 0) {
        char name[FL_FILE_NAME_BYTES];
        fl_segment_name(name, segment->base_offset, ".log");
        return fl_errno_error(log->instance, errno, "log '%s': opening %s/%s failed", log->name, log->path, name);
    }
    return KSTORE_OK;
}

/* The offset index's descriptor, or -1 when it cannot be opened (lookups then scan). */
static int fl_files_index(fl_log *log, const fl_segment *segment, fl_files *files) {
    if (!files->index_tried) {
        files->index_tried = true;
        files->index_fd = fl_open_segment_file(log, segment->base_offset, ".index", O_RDONLY);
    }
    return files->index_fd;
}

static int fl_files_time(fl_log *log, const fl_segment *segment, fl_files *files) {
    if (!files->time_tried) {
        files->time_tried = true;
        files->time_fd = fl_open_segment_file(log, segment->base_offset, ".timeindex", O_RDONLY);
    }
    return files->time_fd;
}

static void fl_files_close(fl_files *files) {
    if (!files->owned) return;
    fl_close_fd(files->log_fd);
    fl_close_fd(files->index_fd);
    fl_close_fd(files->time_fd);
    files->owned = false;
}

/* MARK: - Lookups */

/* CORRUPT with a message naming the segment file and the byte position. */
__attribute__((format(printf, 4, 5))) static kstore_status fl_frame_error(fl_log *log, int64_t base_offset,
                                                                          uint64_t position, const char *format,
                                                                          ...) {
    char what[512];
    va_list arguments;
    va_start(arguments, format);
    if (vsnprintf(what, sizeof(what), format, arguments) < 0) what[0] = '\0';
    va_end(arguments);
    fl_set_error(log->instance, "log '%s': %s/%020lld.log position %llu: %s", log->name, log->path,
                 (long long)base_offset, (unsigned long long)position, what);
    return KSTORE_ERR_CORRUPT;
}

/* Reads and decodes the frame header at `position` of a segment. */
static kstore_status fl_read_header(fl_log *log, const fl_segment *segment, fl_reader *reader, uint64_t position,
                                    fl_frame *frame) {
    const uint8_t *bytes = fl_reader_get(reader, position, FL_FRAME_HEADER_BYTES);
    if (bytes == NULL) {
        if (reader->error != 0) {
            return fl_errno_error(log->instance, reader->error,
                                  "log '%s': reading %s/%020lld.log at position %llu failed",
                                  log->name, log->path, (long long)segment->base_offset, (unsigned long long)position);
        }
        return fl_frame_error(log, segment->base_offset, position, "frame header extends past the end of the data");
    }
    if (!fl_frame_decode(bytes, frame)) {
        return fl_frame_error(log, segment->base_offset, position, "bad frame header");
    }
    frame->header_crc = fjord_crc32c(0, bytes + 8, FL_FRAME_HEADER_BYTES - 8);
    if (position + FL_FRAME_HEADER_BYTES + frame->payload_bytes > reader->limit) {
        return fl_frame_error(log, segment->base_offset, position, "frame of %u bytes extends past the end of the data",
                              frame->payload_bytes);
    }
    return KSTORE_OK;
}

/* Finds the frame of `segment` containing `offset` (base <= offset < end): through the offset index,
 * then a scan of at most one index interval. A damaged index entry falls back to a scan from the
 * segment's start and marks the log's indexes for a rebuild. Reader: over the segment's log file. */
static kstore_status fl_locate(fl_log *log, const fl_segment *segment, fl_files *files, fl_reader *reader,
                               int64_t offset, fl_place *place) {
    uint64_t position = 0, ordinal = 0;
    int64_t expected = segment->base_offset;
    bool from_index = false;
    if (offset > segment->base_offset && segment->index_count > 0) {
        int fd = fl_files_index(log, segment, files);
        if (fd >= 0) {
            uint64_t low = 0, high = segment->index_count;
            bool damaged = false;
            fl_index_record record;
            while (low < high) {
                uint64_t middle = low + (high - low) / 2;
                if (!fl_index_read(log, fd, middle, &record)) {
                    damaged = true;
                    break;
                }
                if (segment->base_offset + (int64_t)record.relative_offset <= offset) {
                    low = middle + 1;
                } else {
                    high = middle;
                }
            }
            if (!damaged && low > 0) {
                if (fl_index_read(log, fd, low - 1, &record) && record.position < segment->size_bytes &&
                    record.ordinal < segment->entry_count) {
                    position = record.position;
                    ordinal = record.ordinal;
                    expected = segment->base_offset + (int64_t)record.relative_offset;
                    from_index = true;
                } else {
                    damaged = true;
                }
            }
            if (damaged) atomic_store(&log->index_suspect, 1);
        }
    }
    for (;;) {
        fl_frame frame;
        kstore_status status = KSTORE_OK;
        bool consistent = position < segment->size_bytes;
        if (consistent) {
            status = fl_read_header(log, segment, reader, position, &frame);
            consistent = status == KSTORE_OK && frame.first_offset == expected;
        }
        if (!consistent) {
            if (from_index) {
                /* The index pointed somewhere wrong: distrust it and scan from the start. */
                atomic_store(&log->index_suspect, 1);
                position = 0;
                ordinal = 0;
                expected = segment->base_offset;
                from_index = false;
                continue;
            }
            if (status != KSTORE_OK) return status;
            if (position >= segment->size_bytes) {
                return fl_frame_error(log, segment->base_offset, position, "offset %lld is missing from the segment",
                                      (long long)offset);
            }
            return fl_frame_error(log, segment->base_offset, position,
                                  "frame holds offset %lld where %lld was expected",
                                  (long long)frame.first_offset, (long long)expected);
        }
        if (frame.last_offset >= offset) {
            place->position = position;
            place->ordinal = ordinal;
            place->frame = frame;
            return KSTORE_OK;
        }
        position += FL_FRAME_HEADER_BYTES + frame.payload_bytes;
        ordinal++;
        expected = frame.last_offset + 1;
    }
}

/* Scans frame headers in [position, end_position): raises *max_timestamp, and when `searching`
 * stops at the first frame whose max_timestamp >= threshold. */
static kstore_status fl_scan_headers(fl_log *log, const fl_segment *segment, fl_reader *reader, uint64_t position,
                                     uint64_t end_position, bool searching, int64_t threshold, int64_t *max_timestamp,
                                     bool *found, fl_frame *found_frame) {
    while (position < end_position) {
        fl_frame frame;
        kstore_status status = fl_read_header(log, segment, reader, position, &frame);
        if (status != KSTORE_OK) return status;
        *max_timestamp = fl_max64(*max_timestamp, frame.max_timestamp);
        if (searching && frame.max_timestamp >= threshold) {
            *found = true;
            *found_frame = frame;
            return KSTORE_OK;
        }
        position += FL_FRAME_HEADER_BYTES + frame.payload_bytes;
    }
    return KSTORE_OK;
}

/* From the frame at `position` to the segment's end: the largest max_timestamp, and (when
 * `searching`) the first frame whose max_timestamp >= threshold. Whole index blocks are skipped by
 * their recorded maxima, so only the partial first block and one more block are scanned. */
static kstore_status fl_walk(fl_log *log, const fl_segment *segment, fl_files *files, fl_reader *reader,
                             uint64_t position, bool searching, int64_t threshold, int64_t *max_timestamp, bool *found,
                             fl_frame *found_frame) {
    *max_timestamp = -1;
    *found = false;
    uint64_t count = segment->index_count;
    int fd = count > 0 ? fl_files_index(log, segment, files) : -1;
    if (fd < 0) {
        return fl_scan_headers(log, segment, reader, position, segment->size_bytes, searching, threshold, max_timestamp,
                               found, found_frame);
    }
    fl_reader index_reader;
    if (!fl_reader_init(&index_reader, log->instance, FL_READ_WINDOW_BYTES)) {
        fl_set_error(log->instance, "log '%s': out of memory", log->name);
        return KSTORE_ERR_NO_MEMORY;
    }
    fl_reader_reset(&index_reader, fd, FL_INDEX_HEADER_BYTES + count * FL_INDEX_ENTRY_BYTES);
    kstore_status status = KSTORE_OK;
    bool damaged = false;
    fl_index_record record;
#define FL_RECORD_AT(k, out)                                                                                    \
    (((bytes = fl_reader_get(&index_reader, FL_INDEX_HEADER_BYTES + (k) * FL_INDEX_ENTRY_BYTES,                 \
                             FL_INDEX_ENTRY_BYTES)) != NULL) &&                                                 \
     fl_index_decode(bytes, (out)) && (out)->position < segment->size_bytes)
    const uint8_t *bytes = NULL;
    /* k: the first marker after `position`. */
    uint64_t low = 0, high = count;
    while (low < high && !damaged) {
        uint64_t middle = low + (high - low) / 2;
        if (!FL_RECORD_AT(middle, &record)) {
            damaged = true;
        } else if (record.position <= position) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    uint64_t k = low;
    fl_index_record previous;
    if (!damaged && k < count && !FL_RECORD_AT(k, &previous)) damaged = true;
    if (!damaged) {
        uint64_t partial_end = k < count ? previous.position : segment->size_bytes;
        status = fl_scan_headers(log, segment, reader, position, partial_end, searching, threshold, max_timestamp,
                                 found, found_frame);
        for (uint64_t j = k + 1; status == KSTORE_OK && !*found && !damaged && j < count; j++) {
            if (!FL_RECORD_AT(j, &record) || record.position <= previous.position) {
                damaged = true;
                break;
            }
            *max_timestamp = fl_max64(*max_timestamp, record.block_max_timestamp);
            if (searching && record.block_max_timestamp >= threshold) {
                int64_t ignored = -1;
                status = fl_scan_headers(log, segment, reader, previous.position, record.position, true, threshold,
                                         &ignored, found, found_frame);
                if (status == KSTORE_OK && !*found) damaged = true; /* the block maximum lied */
                break;
            }
            previous = record;
        }
        if (status == KSTORE_OK && !*found && !damaged && k < count) {
            status = fl_scan_headers(log, segment, reader, previous.position, segment->size_bytes, searching, threshold,
                                     max_timestamp, found, found_frame);
        }
    }
#undef FL_RECORD_AT
    fl_reader_free(&index_reader);
    if (damaged && status == KSTORE_OK) {
        atomic_store(&log->index_suspect, 1);
        *max_timestamp = -1;
        *found = false;
        return fl_scan_headers(log, segment, reader, position, segment->size_bytes, searching, threshold, max_timestamp,
                               found, found_frame);
    }
    return status;
}

/* The first frame of `segment` whose max_timestamp >= timestamp, through the time index (the
 * segment's max timestamp must reach it). */
static kstore_status fl_time_lookup(fl_log *log, const fl_segment *segment, fl_files *files, fl_reader *reader,
                                    int64_t timestamp, fl_frame *answer, bool *found) {
    *found = false;
    uint64_t count = segment->time_count;
    int fd = count > 0 ? fl_files_time(log, segment, files) : -1;
    if (fd >= 0) {
        uint64_t low = 0, high = count;
        bool damaged = false;
        fl_time_record record, next;
        while (low < high) {
            uint64_t middle = low + (high - low) / 2;
            if (!fl_time_read(log, fd, middle, &record)) {
                damaged = true;
                break;
            }
            if (record.timestamp < timestamp) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        /* Entry `low` (if any) is the first recorded rise to >= timestamp; the answer lies after entry
         * low - 1 and at or before entry low, within one index interval of entry low - 1. */
        bool has_next = !damaged && low < count && fl_time_read(log, fd, low, &next) &&
                        next.position < segment->size_bytes && next.timestamp >= timestamp;
        if (!damaged && low < count && !has_next) damaged = true;
        if (!damaged && low > 0) {
            if (!fl_time_read(log, fd, low - 1, &record) || record.position >= segment->size_bytes) {
                damaged = true;
            } else {
                int64_t ignored = -1;
                uint64_t bound = has_next ? next.position : segment->size_bytes;
                kstore_status status = fl_scan_headers(log, segment, reader, record.position, bound, true, timestamp,
                                                       &ignored, found, answer);
                if (status != KSTORE_OK) return status;
            }
        }
        if (!damaged && !*found && has_next) {
            kstore_status status = fl_read_header(log, segment, reader, next.position, answer);
            if (status != KSTORE_OK) return status;
            if (answer->first_offset == segment->base_offset + (int64_t)next.relative_offset &&
                answer->max_timestamp >= timestamp) {
                *found = true;
            } else {
                damaged = true;
            }
        }
        if (*found) return KSTORE_OK;
        atomic_store(&log->index_suspect, 1);
    }
    /* No usable time index: walk the offset index blocks from the segment's start. */
    int64_t ignored = -1;
    return fl_walk(log, segment, files, reader, 0, true, timestamp, &ignored, found, answer);
}

/* MARK: - Derived state of segments */

/* Recomputes the entries of segments[0] lying wholly below the start, their bytes, and the largest
 * timestamp of the rest (kstore_log_state counts only entries in [start, end)). */
static kstore_status fl_compute_dead(fl_log *log) {
    fl_segment *segment = &log->segments[0];
    log->dead_count = 0;
    log->dead_bytes = 0;
    log->first_live_max_timestamp = segment->max_timestamp;
    if (log->start_offset <= segment->base_offset || segment->entry_count == 0) return KSTORE_OK;
    if (log->start_offset >= segment->end_offset) {
        log->dead_count = segment->entry_count;
        log->dead_bytes = fl_payload_bytes(segment);
        log->first_live_max_timestamp = -1;
        return KSTORE_OK;
    }
    fl_files files;
    kstore_status status = fl_files_open(log, segment, &files);
    if (status != KSTORE_OK) return status;
    fl_reader reader;
    if (!fl_reader_init(&reader, log->instance, FL_READ_WINDOW_BYTES)) {
        fl_files_close(&files);
        fl_set_error(log->instance, "log '%s': out of memory", log->name);
        return KSTORE_ERR_NO_MEMORY;
    }
    fl_reader_reset(&reader, files.log_fd, segment->size_bytes);
    fl_place place;
    status = fl_locate(log, segment, &files, &reader, log->start_offset, &place);
    if (status == KSTORE_OK) {
        log->dead_count = place.ordinal;
        log->dead_bytes = place.position - place.ordinal * FL_FRAME_HEADER_BYTES;
        int64_t live_max = -1;
        bool found = false;
        fl_frame ignored;
        status = fl_walk(log, segment, &files, &reader, place.position, false, 0, &live_max, &found, &ignored);
        log->first_live_max_timestamp = live_max;
    }
    fl_reader_free(&reader);
    fl_files_close(&files);
    return status;
}

/* Restores the index state of the segment that becomes (or stays) active from its index files,
 * with scans of at most an index interval: the last marker and its block's maximum, the last time
 * entry and any unrecorded rise after it. With `recount` the segment's max timestamp and untimed
 * count are recomputed too (after a truncation); otherwise they are checked against the summary.
 * segment->size_bytes, entry_count, index_count and time_count must be right. False: the indexes
 * do not add up (the caller rebuilds them). */
static bool fl_restore_builder(fl_log *log, fl_segment *segment, int log_fd, int index_fd, int time_fd, bool recount,
                               fl_reader *reader) {
    fl_builder builder;
    fl_builder_start(&builder, log->index_interval_bytes);
    fl_reader_reset(reader, log_fd, segment->size_bytes);
    uint64_t untimed = 0;
    uint64_t position = 0, ordinal = 0;
    int64_t expected = segment->base_offset;
    if (segment->index_count > 0) {
        fl_index_record record;
        if (!fl_index_read(log, index_fd, segment->index_count - 1, &record) ||
            record.position >= segment->size_bytes || record.ordinal >= segment->entry_count) {
            return false;
        }
        builder.marker_position = record.position;
        untimed = record.untimed_before;
        position = record.position;
        ordinal = record.ordinal;
        expected = segment->base_offset + (int64_t)record.relative_offset;
    }
    while (position < segment->size_bytes) {
        fl_frame frame;
        if (fl_read_header(log, segment, reader, position, &frame) != KSTORE_OK || frame.first_offset != expected) {
            return false;
        }
        builder.block_max_timestamp = fl_max64(builder.block_max_timestamp, frame.max_timestamp);
        if (frame.max_timestamp < 0) untimed++;
        position += FL_FRAME_HEADER_BYTES + frame.payload_bytes;
        ordinal++;
        expected = frame.last_offset + 1;
    }
    if (ordinal != segment->entry_count || expected != segment->end_offset) return false;

    int64_t max_timestamp = -1;
    if (segment->time_count > 0) {
        fl_time_record time;
        if (!fl_time_read(log, time_fd, segment->time_count - 1, &time) || time.position >= segment->size_bytes) {
            return false;
        }
        builder.time_position = time.position;
        builder.time_timestamp = time.timestamp;
        max_timestamp = time.timestamp;
        builder.max_offset = segment->base_offset + (int64_t)time.relative_offset;
        builder.max_ordinal = time.ordinal;
        builder.max_position = time.position;
        /* Rises after the last time entry that were not recorded lie within one interval of it. */
        position = time.position;
        ordinal = time.ordinal;
        while (position < segment->size_bytes && position - time.position < builder.interval_bytes) {
            fl_frame frame;
            if (fl_read_header(log, segment, reader, position, &frame) != KSTORE_OK) return false;
            if (position == time.position && (frame.first_offset != builder.max_offset ||
                                              frame.max_timestamp != time.timestamp)) {
                return false;
            }
            if (frame.max_timestamp > max_timestamp) {
                max_timestamp = frame.max_timestamp;
                builder.max_offset = frame.first_offset;
                builder.max_ordinal = (uint32_t)ordinal;
                builder.max_position = position;
            }
            position += FL_FRAME_HEADER_BYTES + frame.payload_bytes;
            ordinal++;
        }
    }
    if (recount) {
        segment->max_timestamp = max_timestamp;
        segment->untimed_count = untimed;
    } else if (segment->max_timestamp != max_timestamp || segment->untimed_count != untimed) {
        return false;
    }
    log->builder = builder;
    return true;
}

/* MARK: - Recovery */

/* What verifying a segment found. */
typedef struct fl_verify {
    /* The end of the last good frame. */
    uint64_t valid_bytes;
    /* A bad frame starts at valid_bytes (otherwise the file ended there). */
    bool bad;
    char reason[160];
} fl_verify;

/* Verifies every frame of a segment file in [0, file_size) — header, CRC and offset continuity —
 * with large sequential reads, and rebuilds its offset and time indexes from scratch (index_fd and
 * time_fd are truncated). Fills the segment's statistics and *builder for the frames up to the
 * first bad one. A frame with a valid CRC that does not continue the offsets is CORRUPT at once:
 * torn writes do not produce valid checksums. */
static kstore_status fl_verify_segment(fl_log *log, fl_segment *segment, fl_builder *builder, int log_fd,
                                       uint64_t file_size, int index_fd, int time_fd, fl_reader *reader,
                                       fl_verify *verify) {
    fl_instance *instance = log->instance;
    int64_t base_offset = segment->base_offset;
    *segment = (fl_segment){.base_offset = base_offset, .end_offset = base_offset, .max_timestamp = -1};
    fl_builder_start(builder, log->index_interval_bytes);
    memset(verify, 0, sizeof(*verify));
    if (fl_io_ftruncate(instance, index_fd, 0) != 0 || fl_io_ftruncate(instance, time_fd, 0) != 0) {
        return fl_errno_error(instance, errno, "log '%s': truncating the indexes of %s/%020lld.log failed", log->name,
                              log->path, (long long)base_offset);
    }
    fl_writer index_writer, time_writer;
    bool writers = fl_writer_init(&index_writer, instance, index_fd, FL_INDEX_HEADER_BYTES);
    writers = fl_writer_init(&time_writer, instance, time_fd, 0) && writers;
    if (!writers) {
        fl_writer_free(&index_writer);
        fl_writer_free(&time_writer);
        fl_set_error(instance, "log '%s': out of memory", log->name);
        return KSTORE_ERR_NO_MEMORY;
    }
    fl_reader_reset(reader, log_fd, file_size);
    kstore_status status = KSTORE_OK;
    uint64_t position = 0;
    int64_t expected = base_offset;
    while (position < file_size) {
        if (file_size - position < FL_FRAME_HEADER_BYTES) {
            verify->bad = true;
            snprintf(verify->reason, sizeof(verify->reason), "partial frame header (%llu bytes)",
                     (unsigned long long)(file_size - position));
            break;
        }
        const uint8_t *bytes = fl_reader_get(reader, position, FL_FRAME_HEADER_BYTES);
        if (bytes == NULL) {
            status = fl_errno_error(instance, reader->error != 0 ? reader->error : EIO,
                                    "log '%s': reading %s/%020lld.log at position %llu failed", log->name, log->path,
                                    (long long)base_offset, (unsigned long long)position);
            break;
        }
        fl_frame frame;
        if (!fl_frame_decode(bytes, &frame)) {
            verify->bad = true;
            snprintf(verify->reason, sizeof(verify->reason), "bad frame header");
            break;
        }
        if (frame.payload_bytes > file_size - position - FL_FRAME_HEADER_BYTES) {
            verify->bad = true;
            snprintf(verify->reason, sizeof(verify->reason), "frame of %u bytes extends past the end of the file",
                     frame.payload_bytes);
            break;
        }
        /* One CRC pass over header and payload when the window holds the whole frame. */
        uint64_t frame_bytes = FL_FRAME_HEADER_BYTES + (uint64_t)frame.payload_bytes;
        uint32_t crc = 0;
        bool read_ok = true;
        if (frame_bytes <= reader->capacity) {
            const uint8_t *whole = fl_reader_get(reader, position, (size_t)frame_bytes);
            read_ok = whole != NULL;
            if (read_ok) crc = fjord_crc32c(0, whole + 8, (size_t)frame_bytes - 8);
        } else {
            crc = fjord_crc32c(0, bytes + 8, FL_FRAME_HEADER_BYTES - 8);
            read_ok = fl_reader_crc(reader, position + FL_FRAME_HEADER_BYTES, frame.payload_bytes, &crc);
        }
        if (!read_ok) {
            status = fl_errno_error(instance, reader->error != 0 ? reader->error : EIO,
                                    "log '%s': reading %s/%020lld.log at position %llu failed", log->name, log->path,
                                    (long long)base_offset, (unsigned long long)position);
            break;
        }
        if (crc != frame.crc) {
            verify->bad = true;
            snprintf(verify->reason, sizeof(verify->reason), "frame checksum mismatch");
            break;
        }
        if (frame.first_offset != expected || frame.first_offset - base_offset > (int64_t)UINT32_MAX) {
            status = fl_frame_error(log, base_offset, position,
                                    "a valid frame holds offsets [%lld, %lld] where offset %lld was expected",
                                    (long long)frame.first_offset, (long long)frame.last_offset, (long long)expected);
            break;
        }
        bool emit_index = false, emit_time = false;
        fl_index_record index_record;
        fl_time_record time_record;
        fl_builder_add(segment, builder, &frame, position, &emit_index, &index_record, &emit_time, &time_record);
        uint8_t encoded[FL_INDEX_ENTRY_BYTES];
        if (emit_index) {
            fl_index_encode(encoded, &index_record);
            fl_writer_put(&index_writer, encoded, sizeof(encoded));
        }
        if (emit_time) {
            fl_time_encode(encoded, &time_record);
            fl_writer_put(&time_writer, encoded, sizeof(encoded));
        }
        log->recovery.verified_frames++;
        log->recovery.verified_bytes += FL_FRAME_HEADER_BYTES + frame.payload_bytes;
        position += FL_FRAME_HEADER_BYTES + frame.payload_bytes;
        expected = frame.last_offset + 1;
    }
    verify->valid_bytes = position;
    fl_writer_flush(&index_writer);
    fl_writer_flush(&time_writer);
    int error = index_writer.error != 0 ? index_writer.error : time_writer.error;
    fl_writer_free(&index_writer);
    fl_writer_free(&time_writer);
    if (status == KSTORE_OK && error != 0) {
        status = fl_errno_error(instance, error, "log '%s': writing the indexes of %s/%020lld.log failed", log->name,
                                log->path, (long long)base_offset);
    }
    return status;
}

/* Whether a frame with a valid header and checksum starts at `position`. */
static bool fl_valid_frame_at(fl_reader *reader, uint64_t position, uint64_t file_size) {
    if (file_size - position < FL_FRAME_HEADER_BYTES) return false;
    const uint8_t *bytes = fl_reader_get(reader, position, FL_FRAME_HEADER_BYTES);
    fl_frame frame;
    if (bytes == NULL || !fl_frame_decode(bytes, &frame)) return false;
    if (frame.payload_bytes > file_size - position - FL_FRAME_HEADER_BYTES) return false;
    uint32_t crc = fjord_crc32c(0, bytes + 8, FL_FRAME_HEADER_BYTES - 8);
    return fl_reader_crc(reader, position + FL_FRAME_HEADER_BYTES, frame.payload_bytes, &crc) && crc == frame.crc;
}

/* Searches [from, file_size) for any valid frame (after a bad one: is the bad frame a torn tail or
 * damage in the middle?). -1: none; otherwise its position. */
static int64_t fl_find_valid_frame(fl_reader *reader, int fd, uint64_t from, uint64_t file_size) {
    static const uint8_t magic[4] = {'F', 'J', 'F', 'R'};
    fl_reader_reset(reader, fd, file_size);
    uint64_t position = from;
    while (position < file_size && file_size - position >= FL_FRAME_HEADER_BYTES) {
        size_t chunk = file_size - position < reader->capacity ? (size_t)(file_size - position) : reader->capacity;
        const uint8_t *bytes = fl_reader_get(reader, position, chunk);
        if (bytes == NULL) return -1;
        const uint8_t *hit = memmem(bytes, chunk, magic, sizeof(magic));
        if (hit == NULL) {
            if (chunk <= sizeof(magic)) break;
            position += chunk - (sizeof(magic) - 1); /* a magic split by the window boundary */
            continue;
        }
        uint64_t candidate = position + (uint64_t)(hit - bytes);
        if (fl_valid_frame_at(reader, candidate, file_size)) return (int64_t)candidate;
        position = candidate + 1;
    }
    return -1;
}

/* Loads a segment from its summary (clean shutdown) if the summary, the file sizes and the last
 * index entries agree; for the last segment also verifies the frames after its last index entry.
 * Opens the index files read-write into *index_fd / *time_fd (the caller closes them). */
static bool fl_trust_segment(fl_log *log, fl_segment *segment, int log_fd, uint64_t file_size, int64_t next_base,
                             bool last, fl_reader *reader, int *index_fd, int *time_fd) {
    *index_fd = fl_open_segment_file(log, segment->base_offset, ".index", O_RDWR);
    *time_fd = fl_open_segment_file(log, segment->base_offset, ".timeindex", O_RDWR);
    uint64_t index_size = 0, time_size = 0;
    if (*index_fd < 0 || *time_fd < 0 || fl_file_size(*index_fd, &index_size) != 0 ||
        fl_file_size(*time_fd, &time_size) != 0) {
        return false;
    }
    uint8_t header[FL_INDEX_HEADER_BYTES];
    fl_segment loaded = {.base_offset = segment->base_offset};
    if (fl_io_pread(log->instance, *index_fd, header, sizeof(header), 0) != (ssize_t)sizeof(header) ||
        !fl_summary_decode(header, &loaded)) {
        return false;
    }
    int64_t base = loaded.base_offset;
    uint64_t count = loaded.entry_count;
    if (loaded.size_bytes != file_size || (index_size - FL_INDEX_HEADER_BYTES) % FL_INDEX_ENTRY_BYTES != 0 ||
        time_size % FL_TIME_ENTRY_BYTES != 0 || count > file_size / (FL_FRAME_HEADER_BYTES + 1) ||
        (count == 0) != (file_size == 0) || (count == 0) != (loaded.end_offset == base) ||
        loaded.end_offset < base || (uint64_t)(loaded.end_offset - base) < count || loaded.untimed_count > count ||
        loaded.max_timestamp < -1 || (next_base >= 0 && loaded.end_offset != next_base)) {
        return false;
    }
    loaded.index_count = (index_size - FL_INDEX_HEADER_BYTES) / FL_INDEX_ENTRY_BYTES;
    loaded.time_count = time_size / FL_TIME_ENTRY_BYTES;
    uint64_t position = 0, ordinal = 0;
    int64_t expected = base;
    if (loaded.index_count > 0) {
        fl_index_record record;
        if (loaded.index_count > count ||
            !fl_index_read(log, *index_fd, loaded.index_count - 1, &record) || record.position >= file_size ||
            record.ordinal >= count || base + (int64_t)record.relative_offset >= loaded.end_offset ||
            record.untimed_before > loaded.untimed_count) {
            return false;
        }
        position = record.position;
        ordinal = record.ordinal;
        expected = base + (int64_t)record.relative_offset;
    }
    if (loaded.max_timestamp < 0) {
        if (loaded.time_count != 0) return false;
    } else {
        fl_time_record time;
        if (loaded.time_count == 0 || !fl_time_read(log, *time_fd, loaded.time_count - 1, &time) ||
            time.timestamp != loaded.max_timestamp || time.position >= file_size) {
            return false;
        }
    }
    if (last) {
        /* The tail of the last segment: verify every frame after the last index entry. */
        fl_reader_reset(reader, log_fd, file_size);
        while (position < file_size) {
            if (!fl_valid_frame_at(reader, position, file_size)) return false;
            const uint8_t *bytes = fl_reader_get(reader, position, FL_FRAME_HEADER_BYTES);
            fl_frame frame;
            if (bytes == NULL || !fl_frame_decode(bytes, &frame) || frame.first_offset != expected) return false;
            log->recovery.verified_frames++;
            log->recovery.verified_bytes += FL_FRAME_HEADER_BYTES + frame.payload_bytes;
            position += FL_FRAME_HEADER_BYTES + frame.payload_bytes;
            ordinal++;
            expected = frame.last_offset + 1;
        }
        if (ordinal != count || expected != loaded.end_offset) return false;
    }
    *segment = loaded;
    return true;
}

static int fl_compare_offsets(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Lists the segment files of the log directory (sorted base offsets) and removes leftovers: temporary
 * files and index files without their segment. */
static kstore_status fl_list_segments(fl_log *log, int64_t **bases_out, size_t *count_out, bool *changed) {
    int fd = dup(log->dir_fd);
    DIR *directory = fd >= 0 ? fdopendir(fd) : NULL;
    if (directory == NULL) {
        int error = errno;
        fl_close_fd(fd);
        return fl_errno_error(log->instance, error, "log '%s': listing %s failed", log->name, log->path);
    }
    rewinddir(directory);
    int64_t *bases = NULL;
    size_t count = 0, capacity = 0;
    kstore_status status = KSTORE_OK;
    struct dirent *entry;
    while (status == KSTORE_OK && (entry = readdir(directory)) != NULL) {
        const char *name = entry->d_name;
        size_t length = strlen(name);
        int64_t base = 0;
        if (fl_parse_segment_name(name, &base)) {
            if (count == capacity) {
                size_t grown = capacity == 0 ? 16 : capacity * 2;
                int64_t *larger = realloc(bases, grown * sizeof(int64_t));
                if (larger == NULL) {
                    fl_set_error(log->instance, "log '%s': out of memory listing segments", log->name);
                    status = KSTORE_ERR_NO_MEMORY;
                    break;
                }
                bases = larger;
                capacity = grown;
            }
            bases[count++] = base;
        } else if (length > 4 && strcmp(name + length - 4, ".tmp") == 0) {
            unlinkat(log->dir_fd, name, 0);
            *changed = true;
        } else if (length >= 26 && length <= 30 &&
                   (strcmp(name + 20, ".index") == 0 || strcmp(name + 20, ".timeindex") == 0)) {
            char segment_name[FL_FILE_NAME_BYTES];
            memcpy(segment_name, name, 20);
            memcpy(segment_name + 20, ".log", 5);
            if (faccessat(log->dir_fd, segment_name, F_OK, 0) != 0 && errno == ENOENT) {
                unlinkat(log->dir_fd, name, 0);
                *changed = true;
            }
        }
    }
    closedir(directory);
    if (status != KSTORE_OK) {
        free(bases);
        return status;
    }
    if (count > 1) qsort(bases, count, sizeof(int64_t), fl_compare_offsets);
    *bases_out = bases;
    *count_out = count;
    return KSTORE_OK;
}

/* Recovers a log (see "Recovery" at the top): fills the segment array, the start offset, the active
 * segment's descriptors and index state, and the published state. `trusted`: the log was closed
 * cleanly. */
static kstore_status fl_recover(fl_log *log, bool trusted) {
    fl_instance *instance = log->instance;
    uint64_t started = fl_monotonic_ns();
    log->recovery.struct_size = sizeof(kstore_file_recovery_info);
    log->recovery.clean = trusted ? 1 : 0;
    bool changed = false;
    int64_t *bases = NULL;
    size_t base_count = 0;
    kstore_status status = fl_list_segments(log, &bases, &base_count, &changed);
    if (status != KSTORE_OK) return status;

    int64_t meta_start = -1;
    int meta = fl_read_meta(log, &meta_start);
    if (meta <= 0) meta_start = -1;
    if (meta < 0) log->recovery.meta_damaged = 1;
    int64_t start = meta_start < 0 ? 0 : meta_start;
    if (base_count > 0) start = fl_max64(start, bases[0]);
    /* Segments wholly below the start: left over from retention interrupted by a crash. */
    size_t first = 0;
    while (base_count - first >= 2 && bases[first + 1] <= start) {
        fl_unlink_segment(log, bases[first]);
        first++;
        changed = true;
    }

    size_t capacity = base_count - first + 4;
    log->segments = calloc(capacity, sizeof(fl_segment));
    fl_reader reader;
    bool have_reader = fl_reader_init(&reader, instance, FL_SCAN_WINDOW_BYTES);
    if (log->segments == NULL || !have_reader) {
        free(bases);
        if (have_reader) fl_reader_free(&reader);
        fl_set_error(instance, "log '%s': out of memory for %zu segments", log->name, capacity);
        return KSTORE_ERR_NO_MEMORY;
    }
    log->segment_capacity = capacity;
    log->segment_count = 0;
    fl_builder last_builder;
    bool have_builder = false;
    int active_fds[3] = {-1, -1, -1};
    size_t end_index = base_count;
    for (size_t i = first; status == KSTORE_OK && i < end_index; i++) {
        fl_segment segment = {.base_offset = bases[i]};
        bool last = i + 1 == end_index;
        int log_fd = fl_open_segment_file(log, bases[i], ".log", O_RDWR);
        uint64_t file_size = 0;
        if (log_fd < 0 || fl_file_size(log_fd, &file_size) != 0) {
            status = fl_errno_error(instance, errno, "log '%s': opening %s/%020lld.log failed", log->name, log->path,
                                    (long long)bases[i]);
            fl_close_fd(log_fd);
            break;
        }
        int index_fd = -1, time_fd = -1;
        bool verified = false;
        fl_builder builder;
        if (!(trusted && fl_trust_segment(log, &segment, log_fd, file_size, last ? -1 : bases[i + 1], last, &reader,
                                          &index_fd, &time_fd))) {
            fl_close_fd(index_fd);
            fl_close_fd(time_fd);
            index_fd = fl_open_segment_file(log, bases[i], ".index", O_RDWR | O_CREAT);
            time_fd = index_fd < 0 ? -1 : fl_open_segment_file(log, bases[i], ".timeindex", O_RDWR | O_CREAT);
            if (index_fd < 0 || time_fd < 0) {
                status = fl_errno_error(instance, errno, "log '%s': opening the indexes of %s/%020lld.log failed",
                                        log->name, log->path, (long long)bases[i]);
            }
            fl_verify verify;
            segment.base_offset = bases[i];
            if (status == KSTORE_OK) {
                status = fl_verify_segment(log, &segment, &builder, log_fd, file_size, index_fd, time_fd, &reader,
                                           &verify);
                verified = true;
                log->recovery.rebuilt_index_count++;
            }
            if (status == KSTORE_OK && verify.bad) {
                uint64_t bad = verify.valid_bytes;
                if (trusted) {
                    status = fl_frame_error(log, bases[i], bad, "%s in a log that was closed cleanly", verify.reason);
                } else {
                    int64_t later = fl_find_valid_frame(&reader, log_fd, bad + 1, file_size);
                    if (later >= 0) {
                        status = fl_frame_error(log, bases[i], bad,
                                                "%s, followed by a valid frame at position %lld: acknowledged data "
                                                "is damaged",
                                                verify.reason, (long long)later);
                    }
                    for (size_t j = i + 1; status == KSTORE_OK && j < end_index; j++) {
                        int fd = fl_open_segment_file(log, bases[j], ".log", O_RDONLY);
                        uint64_t size = 0;
                        int64_t found = -1;
                        if (fd >= 0 && fl_file_size(fd, &size) == 0) found = fl_find_valid_frame(&reader, fd, 0, size);
                        fl_close_fd(fd);
                        if (found >= 0) {
                            status = fl_frame_error(log, bases[i], bad,
                                                    "%s, followed by a valid frame in %020lld.log at position %lld: "
                                                    "acknowledged data is damaged",
                                                    verify.reason, (long long)bases[j], (long long)found);
                        }
                    }
                    if (status == KSTORE_OK) {
                        /* A torn write: cut it off, with any later (garbage-only) segments. */
                        if (fl_io_ftruncate(instance, log_fd, bad) != 0 || fl_io_fdatasync(instance, log_fd) != 0) {
                            status = fl_errno_error(instance, errno,
                                                    "log '%s': truncating %s/%020lld.log to %llu failed",
                                                    log->name, log->path, (long long)bases[i], (unsigned long long)bad);
                        }
                        log->recovery.truncated_bytes += file_size - bad;
                        for (size_t j = i + 1; j < end_index; j++) {
                            int fd = fl_open_segment_file(log, bases[j], ".log", O_RDONLY);
                            uint64_t size = 0;
                            if (fd >= 0 && fl_file_size(fd, &size) == 0) log->recovery.truncated_bytes += size;
                            fl_close_fd(fd);
                            fl_unlink_segment(log, bases[j]);
                            changed = true;
                        }
                        end_index = i + 1;
                        last = true;
                    }
                }
            }
            if (status == KSTORE_OK && !last) {
                /* A sealed segment: record its final time entry and summary so a clean open trusts it. */
                fl_time_record time;
                uint8_t bytes[FL_TIME_ENTRY_BYTES];
                if (fl_builder_final_time(&segment, &builder, &time)) {
                    fl_time_encode(bytes, &time);
                    if (fl_pwrite_all(instance, time_fd, bytes, sizeof(bytes),
                                      (segment.time_count - 1) * FL_TIME_ENTRY_BYTES) != 0) {
                        atomic_store(&log->index_suspect, 1);
                    }
                }
                if (!fl_write_summary(log, index_fd, &segment)) atomic_store(&log->index_suspect, 1);
            }
            if (status == KSTORE_OK &&
                (fl_io_fdatasync(instance, index_fd) != 0 || fl_io_fdatasync(instance, time_fd) != 0)) {
                atomic_store(&log->index_suspect, 1);
            }
        }
        if (status == KSTORE_OK && log->segment_count > 0) {
            const fl_segment *previous = &log->segments[log->segment_count - 1];
            if (previous->end_offset != segment.base_offset) {
                status = fl_frame_error(log, previous->base_offset, previous->size_bytes,
                                        "the segment ends at offset %lld but the next segment %020lld.log begins at "
                                        "offset %lld: offsets are missing",
                                        (long long)previous->end_offset, (long long)segment.base_offset,
                                        (long long)segment.base_offset);
            }
        }
        if (status != KSTORE_OK) {
            fl_close_fd(log_fd);
            fl_close_fd(index_fd);
            fl_close_fd(time_fd);
            break;
        }
        log->segments[log->segment_count++] = segment;
        if (last) {
            active_fds[0] = log_fd;
            active_fds[1] = index_fd;
            active_fds[2] = time_fd;
            if (verified) {
                last_builder = builder;
                have_builder = true;
            }
        } else {
            fl_close_fd(log_fd);
            fl_close_fd(index_fd);
            fl_close_fd(time_fd);
        }
    }
    free(bases);

    if (status == KSTORE_OK &&
        (log->segment_count == 0 || start > log->segments[log->segment_count - 1].end_offset)) {
        /* No segment at all (a new log), or every entry below a start that a crash made lie beyond the
         * recovered end: begin afresh with an empty segment at the start. */
        for (size_t index = 0; index < 3; index++) fl_close_fd(active_fds[index]);
        for (size_t index = 0; index < log->segment_count; index++) {
            fl_unlink_segment(log, log->segments[index].base_offset);
        }
        status = fl_create_segment_files(log, start, &active_fds[0], &active_fds[1], &active_fds[2]);
        if (status == KSTORE_OK) {
            log->segments[0] = (fl_segment){.base_offset = start, .end_offset = start, .max_timestamp = -1};
            log->segment_count = 1;
            fl_builder_start(&last_builder, log->index_interval_bytes);
            have_builder = true;
        } else {
            for (size_t index = 0; index < 3; index++) active_fds[index] = -1;
        }
        changed = true;
    }
    if (status == KSTORE_OK && changed && fl_io_fsync(instance, log->dir_fd) != 0) {
        status = fl_errno_error(instance, errno, "log '%s': fsync of directory %s failed", log->name, log->path);
    }
    if (status != KSTORE_OK) {
        for (size_t index = 0; index < 3; index++) fl_close_fd(active_fds[index]);
        fl_reader_free(&reader);
        return status;
    }
    log->active_fd = active_fds[0];
    log->active_index_fd = active_fds[1];
    log->active_time_fd = active_fds[2];
    fl_segment *active = &log->segments[log->segment_count - 1];
    if (have_builder) {
        log->builder = last_builder;
    } else if (!fl_restore_builder(log, active, log->active_fd, log->active_index_fd, log->active_time_fd, false,
                                   &reader)) {
        /* The last segment's indexes do not add up after all: rebuild them. */
        uint64_t size = active->size_bytes;
        fl_verify verify;
        status = fl_verify_segment(log, active, &log->builder, log->active_fd, size, log->active_index_fd,
                                   log->active_time_fd, &reader, &verify);
        log->recovery.rebuilt_index_count++;
        if (status == KSTORE_OK && verify.bad) {
            status = fl_frame_error(log, active->base_offset, verify.valid_bytes, "%s in a log that was closed cleanly",
                                    verify.reason);
        }
    }
    fl_reader_free(&reader);
    if (status == KSTORE_OK) {
        if (active->created_ms == 0 && active->entry_count > 0) active->created_ms = fl_now_ms();
        uint64_t index_bytes = 0;
        if (fl_file_size(log->active_index_fd, &index_bytes) != 0) index_bytes = 0;
        log->active_index_bytes = index_bytes;
        log->active_time_bytes = active->time_count * FL_TIME_ENTRY_BYTES;
        log->start_offset = start;
        status = fl_compute_dead(log);
    }
    if (status != KSTORE_OK) {
        fl_close_fd(log->active_fd);
        fl_close_fd(log->active_index_fd);
        fl_close_fd(log->active_time_fd);
        log->active_fd = log->active_index_fd = log->active_time_fd = -1;
        return status;
    }
    fl_recompute_totals(log);
    log->snapshot.struct_size = sizeof(kstore_log_state);
    log->snapshot.durable_end_offset = log->end_offset;
    fl_publish_state(log);
    log->recovery.segment_count = log->segment_count;
    log->recovery.scan_nanoseconds = fl_monotonic_ns() - started;
    return KSTORE_OK;
}

/* MARK: - Rolling */

/* Seals the active segment once its frames are on disk: records the final time entry and the summary
 * and syncs the index files. Failures cost only a rebuild at the next open. */
static void fl_seal_active(fl_log *log) {
    fl_instance *instance = log->instance;
    fl_segment *active = &log->segments[log->segment_count - 1];
    fl_segment sealed = *active;
    fl_builder builder = log->builder;
    fl_time_record time;
    bool ok = true;
    if (fl_builder_final_time(&sealed, &builder, &time)) {
        uint8_t bytes[FL_TIME_ENTRY_BYTES];
        fl_time_encode(bytes, &time);
        ok = fl_pwrite_all(instance, log->active_time_fd, bytes, sizeof(bytes),
                           (sealed.time_count - 1) * FL_TIME_ENTRY_BYTES) == 0;
        if (ok) {
            log->builder = builder;
            log->active_time_bytes = sealed.time_count * FL_TIME_ENTRY_BYTES;
            pthread_rwlock_wrlock(&log->lock);
            active->time_count = sealed.time_count;
            pthread_rwlock_unlock(&log->lock);
        }
    }
    ok = ok && fl_write_summary(log, log->active_index_fd, active);
    if (ok) log->active_index_bytes = fl_max64((int64_t)log->active_index_bytes, FL_INDEX_HEADER_BYTES);
    ok = ok && fl_io_fdatasync(instance, log->active_index_fd) == 0 &&
         fl_io_fdatasync(instance, log->active_time_fd) == 0;
    if (!ok) atomic_store(&log->index_suspect, 1);
}

/* Starts a new segment at the log's end: fdatasync the old one and seal it, create the new files,
 * fsync the directory (new files are directory changes), then publish. */
static kstore_status fl_roll(fl_log *log) {
    fl_instance *instance = log->instance;
    if (log->segment_count == log->segment_capacity) {
        size_t capacity = log->segment_capacity * 2;
        pthread_rwlock_wrlock(&log->lock);
        fl_segment *larger = realloc(log->segments, capacity * sizeof(fl_segment));
        if (larger != NULL) {
            log->segments = larger;
            log->segment_capacity = capacity;
        }
        pthread_rwlock_unlock(&log->lock);
        if (larger == NULL) {
            fl_set_error(instance, "log '%s': out of memory for %zu segments", log->name, capacity);
            return KSTORE_ERR_NO_MEMORY;
        }
    }
    fl_segment *active = &log->segments[log->segment_count - 1];
    int64_t base_offset = active->end_offset;
    if (fl_io_fdatasync(instance, log->active_fd) != 0) {
        atomic_store(&log->failed, 1);
        return fl_errno_error(instance, errno, "log '%s': fdatasync of %s/%020lld.log failed", log->name, log->path,
                              (long long)active->base_offset);
    }
    fl_seal_active(log);
    int fds[3];
    kstore_status status = fl_create_segment_files(log, base_offset, &fds[0], &fds[1], &fds[2]);
    if (status != KSTORE_OK) {
        if (status != KSTORE_ERR_NO_SPACE && status != KSTORE_ERR_NO_MEMORY) atomic_store(&log->failed, 1);
        return status;
    }
    if (fl_io_fsync(instance, log->dir_fd) != 0) {
        int error = errno;
        for (size_t index = 0; index < 3; index++) fl_close_fd(fds[index]);
        fl_unlink_segment(log, base_offset);
        atomic_store(&log->failed, 1);
        return fl_errno_error(instance, error, "log '%s': fsync of directory %s failed", log->name, log->path);
    }
    int old[3] = {log->active_fd, log->active_index_fd, log->active_time_fd};
    pthread_rwlock_wrlock(&log->lock);
    log->segments[log->segment_count++] =
        (fl_segment){.base_offset = base_offset, .end_offset = base_offset, .max_timestamp = -1};
    log->active_fd = fds[0];
    log->active_index_fd = fds[1];
    log->active_time_fd = fds[2];
    pthread_rwlock_unlock(&log->lock);
    for (size_t index = 0; index < 3; index++) fl_close_fd(old[index]);
    fl_builder_start(&log->builder, log->index_interval_bytes);
    log->active_index_bytes = 0;
    log->active_time_bytes = 0;
    return KSTORE_OK;
}

/* MARK: - Log members */

static void fl_log_free(fl_log *log) {
    free(log->segments);
    pthread_mutex_destroy(&log->mutate_mutex);
    pthread_rwlock_destroy(&log->lock);
    pthread_mutex_destroy(&log->state_mutex);
    free(log->path);
    free(log->name);
    free(log);
}

static void fl_release_name(fl_instance *instance, const char *name);

static void fl_log_close(kstore_log *handle) {
    if (handle == NULL) return;
    fl_log *log = (fl_log *)handle;
    fl_instance *instance = log->instance;
    pthread_mutex_lock(&log->mutate_mutex);
    /* Everything synced and summarized: the next open may trust the indexes. kstore.h only promises
     * synced entries survive close; syncing here is what makes the clean marker honest. */
    bool clean = atomic_load(&log->failed) == 0 && atomic_load(&log->index_suspect) == 0 && log->active_fd >= 0;
    if (clean) clean = fl_io_fdatasync(instance, log->active_fd) == 0;
    if (clean) {
        fl_seal_active(log);
        clean = atomic_load(&log->index_suspect) == 0;
    }
    if (clean) {
        int fd = fl_io_openat(instance, log->dir_fd, "clean-shutdown", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        clean = fd >= 0;
        fl_close_fd(fd);
        if (clean && fl_io_fsync(instance, log->dir_fd) != 0) {
            unlinkat(log->dir_fd, "clean-shutdown", 0);
            clean = false;
        }
    }
    fl_close_fd(log->active_fd);
    fl_close_fd(log->active_index_fd);
    fl_close_fd(log->active_time_fd);
    fl_close_fd(log->dir_fd);
    pthread_mutex_unlock(&log->mutate_mutex);
    fl_release_name(instance, log->name);
    fl_log_free(log);
}

/* Appends one frame to the active segment (mutate_mutex held): roll if needed, pwritev header and
 * entry, write index entries, publish. On failure the segment is cut back to its old length, so the
 * log is unchanged. */
static kstore_status fl_append_locked(fl_log *log, int64_t first_offset, int64_t last_offset, int64_t max_timestamp,
                                      const kstore_iovec *iov, uint32_t iov_count, uint64_t total_bytes) {
    fl_instance *instance = log->instance;
    fl_segment *active = &log->segments[log->segment_count - 1];
    int64_t now_ms = fl_now_ms();
    if (active->entry_count > 0 &&
        (active->size_bytes + FL_FRAME_HEADER_BYTES + total_bytes > log->segment_bytes_max ||
         now_ms - active->created_ms >= log->segment_ms ||
         first_offset - active->base_offset > (int64_t)UINT32_MAX || active->entry_count >= UINT32_MAX - 1)) {
        kstore_status status = fl_roll(log);
        if (status != KSTORE_OK) return status;
        active = &log->segments[log->segment_count - 1];
    }
    uint64_t position = active->size_bytes;
    uint8_t header[FL_FRAME_HEADER_BYTES];
    fl_frame_encode(header, (uint32_t)total_bytes, first_offset, last_offset, max_timestamp);
    uint32_t crc = fjord_crc32c(0, header + 8, FL_FRAME_HEADER_BYTES - 8);
    for (uint32_t index = 0; index < iov_count; index++) crc = fjord_crc32c(crc, iov[index].base, iov[index].len);
    fl_put32(header + 4, crc);

    fl_segment next = *active;
    fl_builder builder = log->builder;
    if (next.entry_count == 0) next.created_ms = now_ms;
    fl_frame frame = {.crc = crc,
                      .payload_bytes = (uint32_t)total_bytes,
                      .first_offset = first_offset,
                      .last_offset = last_offset,
                      .max_timestamp = max_timestamp};
    bool emit_index = false, emit_time = false;
    fl_index_record index_record;
    fl_time_record time_record;
    fl_builder_add(&next, &builder, &frame, position, &emit_index, &index_record, &emit_time, &time_record);

    struct iovec stack_pieces[17];
    struct iovec *pieces = stack_pieces;
    if (iov_count + 1 > 17) {
        pieces = malloc(((size_t)iov_count + 1) * sizeof(struct iovec));
        if (pieces == NULL) {
            fl_set_error(instance, "log '%s': out of memory for %u iovecs", log->name, iov_count);
            return KSTORE_ERR_NO_MEMORY;
        }
    }
    pieces[0].iov_base = header;
    pieces[0].iov_len = sizeof(header);
    for (uint32_t index = 0; index < iov_count; index++) {
        pieces[index + 1].iov_base = (void *)iov[index].base;
        pieces[index + 1].iov_len = iov[index].len;
    }
    int error = fl_write_all(instance, log->active_fd, pieces, (size_t)iov_count + 1, position);
    if (pieces != stack_pieces) free(pieces);
    const char *what = "appending";
    uint64_t index_bytes = log->active_index_bytes, time_bytes = log->active_time_bytes;
    if (error == 0 && emit_index) {
        uint8_t bytes[FL_INDEX_ENTRY_BYTES];
        fl_index_encode(bytes, &index_record);
        uint64_t at = FL_INDEX_HEADER_BYTES + (next.index_count - 1) * FL_INDEX_ENTRY_BYTES;
        error = fl_pwrite_all(instance, log->active_index_fd, bytes, sizeof(bytes), at);
        if (error == 0) index_bytes = at + sizeof(bytes);
        what = "indexing";
    }
    if (error == 0 && emit_time) {
        uint8_t bytes[FL_TIME_ENTRY_BYTES];
        fl_time_encode(bytes, &time_record);
        uint64_t at = (next.time_count - 1) * FL_TIME_ENTRY_BYTES;
        error = fl_pwrite_all(instance, log->active_time_fd, bytes, sizeof(bytes), at);
        if (error == 0) time_bytes = at + sizeof(bytes);
        what = "time-indexing";
    }
    if (error != 0) {
        /* kstore.h append "state after failure": the log's end returns to first_offset. */
        kstore_status status = fl_errno_error(instance, error,
                                              "log '%s': %s [%lld, %lld] at %s/%020lld.log position %llu failed",
                                              log->name, what, (long long)first_offset, (long long)last_offset,
                                              log->path, (long long)active->base_offset, (unsigned long long)position);
        bool restored = fl_io_ftruncate(instance, log->active_fd, position) == 0;
        if (restored && emit_index) {
            restored = fl_io_ftruncate(instance, log->active_index_fd, log->active_index_bytes) == 0;
        }
        if (restored && emit_time) {
            restored = fl_io_ftruncate(instance, log->active_time_fd, log->active_time_bytes) == 0;
        }
        if (!restored) {
            fl_set_error(instance,
                         "log '%s': %s [%lld, %lld] at %s/%020lld.log position %llu failed (%s), and cutting the "
                         "segment back failed too: the log is failed until reopened",
                         log->name, what, (long long)first_offset, (long long)last_offset, log->path,
                         (long long)active->base_offset, (unsigned long long)position, kstore_status_name(status));
            status = KSTORE_ERR_IO;
        }
        if (status == KSTORE_ERR_IO) atomic_store(&log->failed, 1);
        return status;
    }
    pthread_rwlock_wrlock(&log->lock);
    *active = next;
    log->end_offset = last_offset + 1;
    log->byte_count += total_bytes;
    log->entry_count++;
    log->max_timestamp = fl_max64(log->max_timestamp, max_timestamp);
    if (log->segment_count == 1) log->first_live_max_timestamp = fl_max64(log->first_live_max_timestamp, max_timestamp);
    fl_publish_state(log);
    pthread_rwlock_unlock(&log->lock);
    log->builder = builder;
    log->active_index_bytes = index_bytes;
    log->active_time_bytes = time_bytes;
    return KSTORE_OK;
}

static kstore_status fl_log_append(kstore_log *handle, int64_t first_offset, int64_t last_offset,
                                   int64_t max_timestamp, const kstore_iovec *iov, uint32_t iov_count,
                                   kstore_completion completion, void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_log *log = (fl_log *)handle;
    fl_instance *instance = log->instance;
    if (completion == NULL) {
        fl_set_error(instance, "append to log '%s': completion is NULL", log->name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (iov == NULL || iov_count == 0) {
        fl_set_error(instance, "append to log '%s': no iovecs (iov_count %u)", log->name, iov_count);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    uint64_t total_bytes = 0;
    for (uint32_t index = 0; index < iov_count; index++) {
        if (iov[index].len > 0 && iov[index].base == NULL) {
            fl_set_error(instance, "append to log '%s': iov[%u].base is NULL with length %zu", log->name, index,
                         iov[index].len);
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        total_bytes += iov[index].len;
        if (total_bytes > UINT32_MAX) {
            fl_set_error(instance, "append to log '%s': the entry is larger than %u bytes, the largest frame",
                         log->name, UINT32_MAX);
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
    }
    if (total_bytes == 0) {
        fl_set_error(instance, "append to log '%s': the entry is empty", log->name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (first_offset < 0 || last_offset < first_offset || last_offset == INT64_MAX) {
        fl_set_error(instance, "append to log '%s': bad offset range [%lld, %lld]", log->name, (long long)first_offset,
                     (long long)last_offset);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (max_timestamp < -1) {
        fl_set_error(instance, "append to log '%s': max_timestamp %lld is neither -1 nor >= 0", log->name,
                     (long long)max_timestamp);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    pthread_mutex_lock(&log->mutate_mutex);
    if (atomic_load(&log->failed) != 0) {
        pthread_mutex_unlock(&log->mutate_mutex);
        fl_set_error(instance, "append to log '%s': the log failed after an I/O error; close and reopen it", log->name);
        return KSTORE_ERR_IO;
    }
    if (first_offset != log->end_offset) {
        int64_t end_offset = log->end_offset;
        pthread_mutex_unlock(&log->mutate_mutex);
        fl_set_error(instance, "append to log '%s': first_offset %lld does not continue the log (end %lld)", log->name,
                     (long long)first_offset, (long long)end_offset);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    kstore_status status = fl_append_locked(log, first_offset, last_offset, max_timestamp, iov, iov_count, total_bytes);
    pthread_mutex_unlock(&log->mutate_mutex);
    /* Synchronous: the entry is readable (or the append failed) before append returns. */
    completion(context, status);
    return KSTORE_OK;
}

static kstore_status fl_log_read(kstore_log *handle, int64_t offset, int64_t end_offset_limit, void *buf,
                                 uint64_t capacity, kstore_read_result *result) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_log *log = (fl_log *)handle;
    fl_instance *instance = log->instance;
    if (result == NULL || (buf == NULL && capacity > 0)) {
        fl_set_error(instance, "read from log '%s': %s is NULL", log->name, result == NULL ? "result" : "buf");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    uint32_t entry_count = 0;
    uint64_t byte_count = 0;
    int64_t next_offset = offset;
    uint64_t first_entry_bytes = 0;
    kstore_status status = KSTORE_OK;

    pthread_rwlock_rdlock(&log->lock);
    if (offset < log->start_offset || offset > log->end_offset) {
        int64_t start_offset = log->start_offset, end_offset = log->end_offset;
        pthread_rwlock_unlock(&log->lock);
        fl_set_error(instance, "read from log '%s': offset %lld outside [%lld, %lld]", log->name, (long long)offset,
                     (long long)start_offset, (long long)end_offset);
        return KSTORE_ERR_OUT_OF_RANGE;
    }
    if (offset < log->end_offset && offset < end_offset_limit) {
        fl_reader reader;
        if (!fl_reader_init(&reader, instance, FL_READ_WINDOW_BYTES)) {
            pthread_rwlock_unlock(&log->lock);
            fl_set_error(instance, "read from log '%s': out of memory", log->name);
            return KSTORE_ERR_NO_MEMORY;
        }
        size_t segment_index = fl_find_segment(log, offset);
        const fl_segment *segment = &log->segments[segment_index];
        fl_files files;
        status = fl_files_open(log, segment, &files);
        fl_place place = {0};
        if (status == KSTORE_OK) {
            fl_reader_reset(&reader, files.log_fd, segment->size_bytes);
            status = fl_locate(log, segment, &files, &reader, offset, &place);
        }
        uint64_t position = place.position;
        int64_t expected = place.frame.first_offset;
        uint8_t *destination = buf;
        while (status == KSTORE_OK) {
            if (position >= segment->size_bytes) {
                fl_files_close(&files);
                segment_index++;
                if (segment_index == log->segment_count) break;
                segment = &log->segments[segment_index];
                if (segment->entry_count == 0) break;
                if (segment->base_offset != expected) {
                    status = fl_frame_error(log, segment->base_offset, 0, "segment begins at offset %lld, not %lld",
                                            (long long)segment->base_offset, (long long)expected);
                    break;
                }
                status = fl_files_open(log, segment, &files);
                if (status != KSTORE_OK) break;
                fl_reader_reset(&reader, files.log_fd, segment->size_bytes);
                position = 0;
                continue;
            }
            fl_frame frame;
            status = fl_read_header(log, segment, &reader, position, &frame);
            if (status != KSTORE_OK) break;
            if (frame.first_offset != expected) {
                status = fl_frame_error(log, segment->base_offset, position,
                                        "frame holds offset %lld where %lld was expected",
                                        (long long)frame.first_offset, (long long)expected);
                break;
            }
            if (frame.first_offset >= end_offset_limit || entry_count == UINT32_MAX) break;
            if (frame.payload_bytes > capacity - byte_count) {
                if (entry_count == 0) first_entry_bytes = frame.payload_bytes;
                break;
            }
            if (!fl_reader_copy(&reader, position + FL_FRAME_HEADER_BYTES, frame.payload_bytes,
                                destination + byte_count)) {
                status = fl_errno_error(instance, reader.error != 0 ? reader.error : EIO,
                                        "read from log '%s': reading %s/%020lld.log at position %llu failed",
                                        log->name, log->path, (long long)segment->base_offset,
                                        (unsigned long long)position);
                break;
            }
            /* STYLE 11: check the frame again on its way out. */
            uint32_t crc = fjord_crc32c(frame.header_crc, destination + byte_count, frame.payload_bytes);
            if (crc != frame.crc) {
                status = fl_frame_error(log, segment->base_offset, position, "frame checksum mismatch on read");
                break;
            }
            byte_count += frame.payload_bytes;
            entry_count++;
            next_offset = frame.last_offset + 1;
            expected = next_offset;
            position += FL_FRAME_HEADER_BYTES + frame.payload_bytes;
        }
        fl_files_close(&files);
        fl_reader_free(&reader);
    }
    pthread_rwlock_unlock(&log->lock);
    if (status != KSTORE_OK) return status;

    if (FL_FITS(result, kstore_read_result, entry_count)) result->entry_count = entry_count;
    if (FL_FITS(result, kstore_read_result, byte_count)) result->byte_count = byte_count;
    if (FL_FITS(result, kstore_read_result, next_offset)) result->next_offset = next_offset;
    if (FL_FITS(result, kstore_read_result, first_entry_bytes)) result->first_entry_bytes = first_entry_bytes;
    return KSTORE_OK;
}

static kstore_status fl_log_sync(kstore_log *handle, kstore_completion completion, void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_log *log = (fl_log *)handle;
    fl_instance *instance = log->instance;
    if (completion == NULL) {
        fl_set_error(instance, "sync of log '%s': completion is NULL", log->name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    pthread_rwlock_rdlock(&log->lock);
    if (atomic_load(&log->failed) != 0) {
        pthread_rwlock_unlock(&log->lock);
        fl_set_error(instance, "sync of log '%s': the log failed after an I/O error; close and reopen it", log->name);
        return KSTORE_ERR_IO;
    }
    /* Sealed segments were synced when they were rolled, and indexes are rebuilt after a crash, so
     * the active segment is the only file with unsynced entries. */
    int64_t end_offset = log->end_offset;
    int64_t base_offset = log->segments[log->segment_count - 1].base_offset;
    kstore_status status = KSTORE_OK;
    if (fl_io_fdatasync(instance, log->active_fd) != 0) {
        atomic_store(&log->failed, 1);
        fl_errno_error(instance, errno, "sync of log '%s': fdatasync of %s/%020lld.log failed", log->name, log->path,
                       (long long)base_offset);
        status = KSTORE_ERR_IO;
    } else {
        pthread_mutex_lock(&log->state_mutex);
        log->snapshot.durable_end_offset = fl_max64(log->snapshot.durable_end_offset, end_offset);
        pthread_mutex_unlock(&log->state_mutex);
    }
    pthread_rwlock_unlock(&log->lock);
    completion(context, status);
    return KSTORE_OK;
}

static kstore_status fl_log_state(kstore_log *handle, kstore_log_state *state) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_log *log = (fl_log *)handle;
    if (state == NULL) {
        fl_set_error(log->instance, "state of log '%s': state is NULL", log->name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    pthread_mutex_lock(&log->state_mutex);
    kstore_log_state copy = log->snapshot;
    pthread_mutex_unlock(&log->state_mutex);
    if (FL_FITS(state, kstore_log_state, reserved)) state->reserved = 0;
    if (FL_FITS(state, kstore_log_state, start_offset)) state->start_offset = copy.start_offset;
    if (FL_FITS(state, kstore_log_state, end_offset)) state->end_offset = copy.end_offset;
    if (FL_FITS(state, kstore_log_state, durable_end_offset)) state->durable_end_offset = copy.durable_end_offset;
    if (FL_FITS(state, kstore_log_state, max_timestamp)) state->max_timestamp = copy.max_timestamp;
    if (FL_FITS(state, kstore_log_state, byte_count)) state->byte_count = copy.byte_count;
    if (FL_FITS(state, kstore_log_state, entry_count)) state->entry_count = copy.entry_count;
    return KSTORE_OK;
}

/* Number of index records (of `record_bytes`, after `header_bytes`) whose frame lies below
 * `position`; false when an entry is damaged. */
static bool fl_count_records_below(fl_log *log, int fd, uint64_t count, bool time_index, uint64_t position,
                                   uint64_t *below) {
    uint64_t low = 0, high = count;
    while (low < high) {
        uint64_t middle = low + (high - low) / 2;
        uint64_t at = 0;
        if (time_index) {
            fl_time_record record;
            if (!fl_time_read(log, fd, middle, &record)) return false;
            at = record.position;
        } else {
            fl_index_record record;
            if (!fl_index_read(log, fd, middle, &record)) return false;
            at = record.position;
        }
        if (at < position) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    *below = low;
    return true;
}

/* truncate_to an entry boundary strictly inside (start, end). mutate_mutex held. */
static kstore_status fl_truncate_inside(fl_log *log, int64_t offset) {
    fl_instance *instance = log->instance;
    size_t segment_index = fl_find_segment(log, offset);
    fl_segment *segment = &log->segments[segment_index];
    fl_reader reader;
    if (!fl_reader_init(&reader, instance, FL_READ_WINDOW_BYTES)) {
        fl_set_error(instance, "truncate_to of log '%s': out of memory", log->name);
        return KSTORE_ERR_NO_MEMORY;
    }
    fl_files files;
    fl_place place = {0};
    kstore_status status = fl_files_open(log, segment, &files);
    if (status == KSTORE_OK) {
        fl_reader_reset(&reader, files.log_fd, segment->size_bytes);
        status = fl_locate(log, segment, &files, &reader, offset, &place);
    }
    if (status == KSTORE_OK && place.frame.first_offset != offset) {
        fl_set_error(instance, "truncate_to of log '%s': %lld is not an entry boundary (the entry is [%lld, %lld])",
                     log->name, (long long)offset, (long long)place.frame.first_offset,
                     (long long)place.frame.last_offset);
        status = KSTORE_ERR_OUT_OF_RANGE;
    }
    uint64_t index_below = 0, time_below = 0;
    bool indexes_ok = true;
    if (status == KSTORE_OK) {
        int index_fd = segment->index_count > 0 ? fl_files_index(log, segment, &files) : -1;
        int time_fd = segment->time_count > 0 ? fl_files_time(log, segment, &files) : -1;
        indexes_ok = (segment->index_count == 0 ||
                      (index_fd >= 0 &&
                       fl_count_records_below(log, index_fd, segment->index_count, false, place.position,
                                              &index_below))) &&
                     (segment->time_count == 0 ||
                      (time_fd >= 0 &&
                       fl_count_records_below(log, time_fd, segment->time_count, true, place.position, &time_below)));
    }
    fl_files_close(&files);
    if (status != KSTORE_OK) {
        fl_reader_free(&reader);
        return status;
    }

    pthread_rwlock_wrlock(&log->lock);
    bool changed = false;
    if (segment_index + 1 < log->segment_count) {
        fl_close_fd(log->active_fd);
        fl_close_fd(log->active_index_fd);
        fl_close_fd(log->active_time_fd);
        for (size_t index = segment_index + 1; index < log->segment_count; index++) {
            fl_unlink_segment(log, log->segments[index].base_offset);
        }
        changed = true;
        log->active_fd = fl_open_segment_file(log, segment->base_offset, ".log", O_RDWR);
        log->active_index_fd = fl_open_segment_file(log, segment->base_offset, ".index", O_RDWR | O_CREAT);
        log->active_time_fd = fl_open_segment_file(log, segment->base_offset, ".timeindex", O_RDWR | O_CREAT);
        if (log->active_fd < 0 || log->active_index_fd < 0 || log->active_time_fd < 0) {
            status = fl_errno_error(instance, errno, "truncate_to of log '%s': opening %s/%020lld.log failed",
                                    log->name, log->path, (long long)segment->base_offset);
        }
    }
    log->segment_count = segment_index + 1;
    static const uint8_t zeros[FL_INDEX_HEADER_BYTES] = {0};
    uint64_t index_bytes = index_below > 0 ? FL_INDEX_HEADER_BYTES + index_below * FL_INDEX_ENTRY_BYTES : 0;
    if (status == KSTORE_OK &&
        (fl_io_ftruncate(instance, log->active_fd, place.position) != 0 ||
         fl_io_ftruncate(instance, log->active_index_fd, index_bytes) != 0 ||
         fl_io_ftruncate(instance, log->active_time_fd, time_below * FL_TIME_ENTRY_BYTES) != 0 ||
         (index_bytes > 0 && fl_pwrite_all(instance, log->active_index_fd, zeros, sizeof(zeros), 0) != 0))) {
        status = fl_errno_error(instance, errno, "truncate_to of log '%s': truncating %s/%020lld.log to %llu failed",
                                log->name, log->path, (long long)segment->base_offset,
                                (unsigned long long)place.position);
    }
    if (status == KSTORE_OK) {
        segment->size_bytes = place.position;
        segment->entry_count = place.ordinal;
        segment->end_offset = offset;
        segment->index_count = index_below;
        segment->time_count = time_below;
        if (segment->entry_count == 0) segment->created_ms = 0;
        if (!indexes_ok ||
            !fl_restore_builder(log, segment, log->active_fd, log->active_index_fd, log->active_time_fd, true,
                                &reader)) {
            fl_verify verify;
            status = fl_verify_segment(log, segment, &log->builder, log->active_fd, place.position,
                                       log->active_index_fd, log->active_time_fd, &reader, &verify);
            if (status == KSTORE_OK && verify.bad) {
                status = fl_frame_error(log, segment->base_offset, verify.valid_bytes, "%s", verify.reason);
            }
        }
        uint64_t size = 0;
        log->active_index_bytes = fl_file_size(log->active_index_fd, &size) == 0 ? size : 0;
        log->active_time_bytes = segment->time_count * FL_TIME_ENTRY_BYTES;
    }
    if (status == KSTORE_OK && segment_index == 0) status = fl_compute_dead(log);
    if (status != KSTORE_OK) atomic_store(&log->failed, 1);
    fl_recompute_totals(log);
    fl_publish_state(log);
    pthread_rwlock_unlock(&log->lock);
    fl_reader_free(&reader);
    if (status == KSTORE_OK && changed && fl_io_fsync(instance, log->dir_fd) != 0) {
        status = fl_errno_error(instance, errno, "truncate_to of log '%s': fsync of directory %s failed", log->name,
                                log->path);
    }
    return status;
}

/* Whether an entry begins at `offset` (start <= offset < end). */
static kstore_status fl_is_boundary(fl_log *log, int64_t offset, bool *boundary) {
    const fl_segment *segment = &log->segments[fl_find_segment(log, offset)];
    if (segment->base_offset == offset) {
        *boundary = true;
        return KSTORE_OK;
    }
    fl_reader reader;
    if (!fl_reader_init(&reader, log->instance, FL_READ_WINDOW_BYTES)) {
        fl_set_error(log->instance, "log '%s': out of memory", log->name);
        return KSTORE_ERR_NO_MEMORY;
    }
    fl_files files;
    fl_place place = {0};
    kstore_status status = fl_files_open(log, segment, &files);
    if (status == KSTORE_OK) {
        fl_reader_reset(&reader, files.log_fd, segment->size_bytes);
        status = fl_locate(log, segment, &files, &reader, offset, &place);
        fl_files_close(&files);
    }
    fl_reader_free(&reader);
    *boundary = status == KSTORE_OK && place.frame.first_offset == offset;
    return status;
}

/* truncate_to the start: every entry goes; one empty segment at the start remains. */
static kstore_status fl_wipe(fl_log *log) {
    fl_instance *instance = log->instance;
    int64_t base_offset = log->start_offset;
    pthread_rwlock_wrlock(&log->lock);
    fl_close_fd(log->active_fd);
    fl_close_fd(log->active_index_fd);
    fl_close_fd(log->active_time_fd);
    log->active_fd = log->active_index_fd = log->active_time_fd = -1;
    for (size_t index = 0; index < log->segment_count; index++) {
        if (log->segments[index].base_offset != base_offset) fl_unlink_segment(log, log->segments[index].base_offset);
    }
    int fds[3];
    kstore_status status = fl_create_segment_files(log, base_offset, &fds[0], &fds[1], &fds[2]);
    if (status == KSTORE_OK) {
        log->active_fd = fds[0];
        log->active_index_fd = fds[1];
        log->active_time_fd = fds[2];
        if (fl_io_fsync(instance, log->dir_fd) != 0) {
            status = fl_errno_error(instance, errno, "truncate_to of log '%s': fsync of directory %s failed", log->name,
                                    log->path);
        }
    }
    if (status != KSTORE_OK) atomic_store(&log->failed, 1);
    log->segments[0] = (fl_segment){.base_offset = base_offset, .end_offset = base_offset, .max_timestamp = -1};
    log->segment_count = 1;
    fl_builder_start(&log->builder, log->index_interval_bytes);
    log->active_index_bytes = 0;
    log->active_time_bytes = 0;
    log->dead_count = log->dead_bytes = 0;
    log->first_live_max_timestamp = -1;
    fl_recompute_totals(log);
    fl_publish_state(log);
    pthread_rwlock_unlock(&log->lock);
    return status;
}

static kstore_status fl_log_truncate_to(kstore_log *handle, int64_t offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_log *log = (fl_log *)handle;
    pthread_mutex_lock(&log->mutate_mutex);
    kstore_status status = KSTORE_OK;
    if (atomic_load(&log->failed) != 0) {
        fl_set_error(log->instance, "truncate_to of log '%s': the log failed after an I/O error; close and reopen it",
                     log->name);
        status = KSTORE_ERR_IO;
    } else if (offset == log->end_offset) {
        status = KSTORE_OK;
    } else if (offset == log->start_offset && offset < log->end_offset) {
        /* Only when the start is an entry boundary (see the report on kstore.h: the header also allows a
         * start inside an entry, the memory backend and the conformance suite refuse it; the refusal is
         * the conservative reading). */
        bool boundary = false;
        status = fl_is_boundary(log, offset, &boundary);
        if (status == KSTORE_OK && boundary) {
            status = fl_wipe(log);
        } else if (status == KSTORE_OK) {
            fl_set_error(log->instance, "truncate_to of log '%s': the start %lld lies inside an entry", log->name,
                         (long long)offset);
            status = KSTORE_ERR_OUT_OF_RANGE;
        }
    } else if (offset > log->start_offset && offset < log->end_offset) {
        status = fl_truncate_inside(log, offset);
    } else {
        fl_set_error(log->instance, "truncate_to of log '%s': %lld is outside [%lld, %lld]", log->name,
                     (long long)offset, (long long)log->start_offset, (long long)log->end_offset);
        status = KSTORE_ERR_OUT_OF_RANGE;
    }
    pthread_mutex_unlock(&log->mutate_mutex);
    return status;
}

/* Deletes the `count` oldest segments (never all of them) and moves the start to the oldest
 * remaining one's base if that is further. mutate_mutex held. */
static kstore_status fl_delete_oldest(fl_log *log, size_t count) {
    if (count == 0) return KSTORE_OK;
    pthread_rwlock_wrlock(&log->lock);
    for (size_t index = 0; index < count; index++) fl_unlink_segment(log, log->segments[index].base_offset);
    memmove(log->segments, log->segments + count, (log->segment_count - count) * sizeof(fl_segment));
    log->segment_count -= count;
    log->start_offset = fl_max64(log->start_offset, log->segments[0].base_offset);
    kstore_status status = fl_compute_dead(log);
    fl_recompute_totals(log);
    fl_publish_state(log);
    pthread_rwlock_unlock(&log->lock);
    return status;
}

static kstore_status fl_log_delete_before(kstore_log *handle, int64_t offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_log *log = (fl_log *)handle;
    fl_instance *instance = log->instance;
    pthread_mutex_lock(&log->mutate_mutex);
    kstore_status status = KSTORE_OK;
    if (atomic_load(&log->failed) != 0) {
        fl_set_error(instance, "delete_before of log '%s': the log failed after an I/O error; close and reopen it",
                     log->name);
        status = KSTORE_ERR_IO;
    } else if (offset > log->end_offset) {
        fl_set_error(instance, "delete_before of log '%s': %lld is beyond the end %lld", log->name, (long long)offset,
                     (long long)log->end_offset);
        status = KSTORE_ERR_OUT_OF_RANGE;
    } else if (offset > log->start_offset) {
        size_t drop = 0;
        while (drop + 1 < log->segment_count && log->segments[drop].end_offset <= offset) drop++;
        /* A start inside a segment must be recorded; one at a segment's base is implied by the files. */
        if (offset > log->segments[drop].base_offset) status = fl_write_meta(log, offset);
        if (status == KSTORE_OK) {
            pthread_rwlock_wrlock(&log->lock);
            log->start_offset = offset;
            pthread_rwlock_unlock(&log->lock);
            if (drop > 0) {
                status = fl_delete_oldest(log, drop);
                if (status == KSTORE_OK && fl_io_fsync(instance, log->dir_fd) != 0) {
                    status = fl_errno_error(instance, errno, "delete_before of log '%s': fsync of directory %s failed",
                                            log->name, log->path);
                }
            } else {
                pthread_rwlock_wrlock(&log->lock);
                status = fl_compute_dead(log);
                fl_recompute_totals(log);
                fl_publish_state(log);
                pthread_rwlock_unlock(&log->lock);
            }
        }
    }
    pthread_mutex_unlock(&log->mutate_mutex);
    return status;
}

static kstore_status fl_log_enforce_retention(kstore_log *handle, int64_t retain_bytes, int64_t retain_after_timestamp,
                                              int64_t *new_start_offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_log *log = (fl_log *)handle;
    fl_instance *instance = log->instance;
    if (new_start_offset == NULL) {
        fl_set_error(instance, "enforce_retention of log '%s': new_start_offset is NULL", log->name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    pthread_mutex_lock(&log->mutate_mutex);
    if (atomic_load(&log->failed) != 0) {
        pthread_mutex_unlock(&log->mutate_mutex);
        fl_set_error(instance, "enforce_retention of log '%s': the log failed after an I/O error; close and reopen it",
                     log->name);
        return KSTORE_ERR_IO;
    }
    /* The unit is a whole segment, from the oldest. A segment without timestamps in some entry never
     * expires by time (kstore.h). */
    uint64_t remaining = log->byte_count;
    size_t count = 0;
    while (count < log->segment_count) {
        const fl_segment *segment = &log->segments[count];
        if (segment->entry_count == 0) break;
        uint64_t live_bytes = fl_payload_bytes(segment) - (count == 0 ? log->dead_bytes : 0);
        bool expired = retain_after_timestamp >= 0 && segment->untimed_count == 0 &&
                       segment->max_timestamp < retain_after_timestamp;
        bool over_size = retain_bytes >= 0 && remaining > (uint64_t)retain_bytes;
        bool holds_last = segment->end_offset == log->end_offset;
        if (!(expired || (over_size && !holds_last))) break;
        remaining -= live_bytes;
        count++;
    }
    kstore_status status = KSTORE_OK;
    if (count > 0) {
        /* Older segments go first: they free the space the roll below may need. */
        bool active_too = count == log->segment_count;
        status = fl_delete_oldest(log, active_too ? count - 1 : count);
        if (status == KSTORE_OK && active_too) {
            /* The active segment is wholly expired: roll, so the log keeps its end, then delete it. */
            status = fl_roll(log);
            if (status == KSTORE_OK) status = fl_delete_oldest(log, 1);
        }
        if (fl_io_fsync(instance, log->dir_fd) != 0 && status == KSTORE_OK) {
            status = fl_errno_error(instance, errno, "enforce_retention of log '%s': fsync of directory %s failed",
                                    log->name, log->path);
        }
    }
    pthread_rwlock_rdlock(&log->lock);
    *new_start_offset = log->start_offset;
    pthread_rwlock_unlock(&log->lock);
    pthread_mutex_unlock(&log->mutate_mutex);
    return status;
}

static kstore_status fl_log_find_offset_by_time(kstore_log *handle, int64_t timestamp, int64_t *offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_log *log = (fl_log *)handle;
    fl_instance *instance = log->instance;
    if (offset == NULL) {
        fl_set_error(instance, "find_offset_by_time of log '%s': offset is NULL", log->name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    kstore_status status = KSTORE_OK;
    int64_t answer = -1;
    pthread_rwlock_rdlock(&log->lock);
    if (log->entry_count == 0 || log->max_timestamp < timestamp) {
        answer = -1;
    } else if (timestamp <= -1) {
        /* Every entry qualifies: the first one from the start, reported as the start. */
        answer = log->start_offset;
    } else {
        fl_reader reader;
        if (!fl_reader_init(&reader, instance, FL_READ_WINDOW_BYTES)) {
            pthread_rwlock_unlock(&log->lock);
            fl_set_error(instance, "find_offset_by_time of log '%s': out of memory", log->name);
            return KSTORE_ERR_NO_MEMORY;
        }
        for (size_t index = 0; index < log->segment_count; index++) {
            const fl_segment *segment = &log->segments[index];
            int64_t live_max = index == 0 ? log->first_live_max_timestamp : segment->max_timestamp;
            if (live_max < timestamp) continue;
            fl_files files;
            status = fl_files_open(log, segment, &files);
            if (status != KSTORE_OK) break;
            fl_reader_reset(&reader, files.log_fd, segment->size_bytes);
            fl_frame frame;
            bool found = false;
            status = fl_time_lookup(log, segment, &files, &reader, timestamp, &frame, &found);
            if (status == KSTORE_OK && found && frame.last_offset < log->start_offset) {
                /* The first such entry lies below the start: search from the entry holding the start. */
                fl_place place;
                status = fl_locate(log, segment, &files, &reader, log->start_offset, &place);
                int64_t ignored = -1;
                if (status == KSTORE_OK) {
                    status = fl_walk(log, segment, &files, &reader, place.position, true, timestamp, &ignored, &found,
                                     &frame);
                }
            }
            fl_files_close(&files);
            if (status == KSTORE_OK && found) answer = fl_max64(frame.first_offset, log->start_offset);
            if (status != KSTORE_OK || found) break;
        }
        fl_reader_free(&reader);
    }
    pthread_rwlock_unlock(&log->lock);
    if (status == KSTORE_OK) *offset = answer;
    return status;
}

static kstore_status fl_log_control(kstore_log *handle, int32_t op, void *argument) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_log *log = (fl_log *)handle;
    if (op == KSTORE_FILE_LOG_CONTROL_RECOVERY_INFO) {
        kstore_file_recovery_info *info = argument;
        if (info == NULL || info->struct_size < offsetof(kstore_file_recovery_info, clean) + sizeof(uint32_t)) {
            fl_set_error(log->instance, "control of log '%s': the recovery info argument is NULL or too small",
                         log->name);
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        size_t size = info->struct_size < sizeof(*info) ? info->struct_size : sizeof(*info);
        pthread_mutex_lock(&log->mutate_mutex);
        kstore_file_recovery_info copy = log->recovery;
        pthread_mutex_unlock(&log->mutate_mutex);
        copy.struct_size = info->struct_size;
        memcpy(info, &copy, size);
        return KSTORE_OK;
    }
    fl_set_error(log->instance, "control of log '%s': op %d is not supported by the file backend", log->name, (int)op);
    return KSTORE_ERR_UNSUPPORTED;
}

static const kstore_log_methods fl_log_methods = {
    .abi_version = KSTORE_ABI_VERSION,
    .struct_size = sizeof(kstore_log_methods),
    .close = fl_log_close,
    .append = fl_log_append,
    .read = fl_log_read,
    .sync = fl_log_sync,
    .state = fl_log_state,
    .truncate_to = fl_log_truncate_to,
    .delete_before = fl_log_delete_before,
    .enforce_retention = fl_log_enforce_retention,
    .find_offset_by_time = fl_log_find_offset_by_time,
    .control = fl_log_control,
};

/* MARK: - Instance members */

/* Marks `name` busy (open, being opened or deleted); false if it already is. */
static int fl_claim_name(fl_instance *instance, const char *name) {
    pthread_mutex_lock(&instance->mutex);
    for (size_t index = 0; index < instance->busy_count; index++) {
        if (strcmp(instance->busy_names[index], name) == 0) {
            pthread_mutex_unlock(&instance->mutex);
            return KSTORE_ERR_BUSY;
        }
    }
    if (instance->busy_count == instance->busy_capacity) {
        size_t capacity = instance->busy_capacity == 0 ? 16 : instance->busy_capacity * 2;
        char **names = realloc(instance->busy_names, capacity * sizeof(char *));
        if (names == NULL) {
            pthread_mutex_unlock(&instance->mutex);
            return KSTORE_ERR_NO_MEMORY;
        }
        instance->busy_names = names;
        instance->busy_capacity = capacity;
    }
    char *copy = strdup(name);
    if (copy == NULL) {
        pthread_mutex_unlock(&instance->mutex);
        return KSTORE_ERR_NO_MEMORY;
    }
    instance->busy_names[instance->busy_count++] = copy;
    pthread_mutex_unlock(&instance->mutex);
    return KSTORE_OK;
}

static void fl_release_name(fl_instance *instance, const char *name) {
    pthread_mutex_lock(&instance->mutex);
    for (size_t index = 0; index < instance->busy_count; index++) {
        if (strcmp(instance->busy_names[index], name) == 0) {
            free(instance->busy_names[index]);
            instance->busy_names[index] = instance->busy_names[--instance->busy_count];
            break;
        }
    }
    pthread_mutex_unlock(&instance->mutex);
}

/* Removes the directory `name` in `parent_fd` and everything in it. */
static int fl_remove_tree(int parent_fd, const char *name) {
    int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    DIR *directory = fdopendir(fd);
    if (directory == NULL) {
        fl_close_fd(fd);
        return -1;
    }
    struct dirent *entry;
    int result = 0;
    while ((entry = readdir(directory)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        if (unlinkat(dirfd(directory), entry->d_name, 0) != 0) {
            if (errno == EISDIR || errno == EPERM) {
                if (fl_remove_tree(dirfd(directory), entry->d_name) != 0) result = -1;
            } else if (errno != ENOENT) {
                result = -1;
            }
        }
    }
    closedir(directory);
    if (unlinkat(parent_fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) result = -1;
    return result;
}

__attribute__((format(printf, 3, 4))) static kstore_status fl_open_failed(char *error_message, size_t error_capacity,
                                                                          const char *format, ...) {
    if (error_message != NULL && error_capacity > 0) {
        va_list arguments;
        va_start(arguments, format);
        if (vsnprintf(error_message, error_capacity, format, arguments) < 0) error_message[0] = '\0';
        va_end(arguments);
    }
    return KSTORE_OK; /* the caller returns its own status */
}

static void fl_free_instance(fl_instance *instance) {
    fl_close_fd(instance->logs_fd);
    fl_close_fd(instance->deleted_fd);
    fl_close_fd(instance->root_fd);
    /* Closing the lock file releases the flock. */
    fl_close_fd(instance->lock_fd);
    for (size_t index = 0; index < instance->busy_count; index++) free(instance->busy_names[index]);
    free(instance->busy_names);
    pthread_mutex_destroy(&instance->mutex);
    pthread_mutex_destroy(&instance->error_mutex);
    pthread_mutex_destroy(&instance->fault_mutex);
    free(instance->path);
    free(instance);
}

/* Checks (or writes) the format marker: a data directory belongs to one backend and format. */
static kstore_status fl_check_marker(fl_instance *instance, char *error_message, size_t error_capacity) {
    const char *path = instance->path;
    int fd = openat(instance->root_fd, ".fjord-backend", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char text[64];
        ssize_t got = fl_io_pread(instance, fd, text, sizeof(text) - 1, 0);
        fl_close_fd(fd);
        if (got < 0) {
            fl_open_failed(error_message, error_capacity, "reading %s/.fjord-backend failed: %s", path,
                           strerror(errno));
            return KSTORE_ERR_IO;
        }
        text[got] = '\0';
        if (strcmp(text, FL_FORMAT_MARKER) == 0) return KSTORE_OK;
        char owner[sizeof(text)];
        size_t length = strcspn(text, " \n");
        memcpy(owner, text, length);
        owner[length] = '\0';
        if (strcmp(owner, "file") == 0) {
            text[strcspn(text, "\n")] = '\0';
            fl_open_failed(error_message, error_capacity,
                           "data directory %s holds data of backend 'file' in format '%s', which this build cannot "
                           "read (it reads format 1)",
                           path, text + length + (text[length] == ' ' ? 1 : 0));
        } else {
            fl_open_failed(error_message, error_capacity, "data directory %s holds data of backend '%s'", path,
                           length > 0 ? owner : "(unreadable marker)");
        }
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (errno != ENOENT) {
        fl_open_failed(error_message, error_capacity, "opening %s/.fjord-backend failed: %s", path, strerror(errno));
        return KSTORE_ERR_IO;
    }
    fd = openat(instance->root_fd, ".fjord-backend.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int error = fd < 0 ? errno : fl_pwrite_all(instance, fd, FL_FORMAT_MARKER, strlen(FL_FORMAT_MARKER), 0);
    if (error == 0 && fl_io_fdatasync(instance, fd) != 0) error = errno;
    fl_close_fd(fd);
    if (error == 0 && renameat(instance->root_fd, ".fjord-backend.tmp", instance->root_fd, ".fjord-backend") != 0) {
        error = errno;
    }
    if (error == 0 && fl_io_fsync(instance, instance->root_fd) != 0) error = errno;
    if (error != 0) {
        unlinkat(instance->root_fd, ".fjord-backend.tmp", 0);
        fl_open_failed(error_message, error_capacity, "writing the format marker %s/.fjord-backend failed: %s", path,
                       strerror(error));
        return fl_status_for_errno(error);
    }
    return KSTORE_OK;
}

static kstore_status fl_open(const kstore_option *options, uint32_t option_count, kstore_instance **instance_out,
                             char *error_message, size_t error_capacity) {
    if (instance_out == NULL) {
        fl_open_failed(error_message, error_capacity, "file backend: instance pointer is NULL");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    *instance_out = NULL;
    if (options == NULL && option_count > 0) {
        fl_open_failed(error_message, error_capacity, "file backend: options is NULL");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    const char *path = NULL;
    for (uint32_t index = 0; index < option_count; index++) {
        if (options[index].key == NULL || options[index].value == NULL) {
            fl_open_failed(error_message, error_capacity, "file backend: an option key or value is NULL");
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        if (strcmp(options[index].key, "path") == 0) path = options[index].value;
    }
    if (path == NULL || path[0] == '\0') {
        fl_open_failed(error_message, error_capacity,
                       "file backend: the option 'path' (the data directory) is required");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    struct stat status;
    if (stat(path, &status) != 0) {
        int error = errno;
        if (error == ENOENT) {
            fl_open_failed(error_message, error_capacity, "data directory %s does not exist", path);
            return KSTORE_ERR_NOT_FOUND;
        }
        fl_open_failed(error_message, error_capacity, "data directory %s cannot be examined: %s", path,
                       strerror(error));
        return fl_status_for_errno(error);
    }
    if (!S_ISDIR(status.st_mode)) {
        fl_open_failed(error_message, error_capacity, "data directory %s is not a directory", path);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (access(path, W_OK | X_OK) != 0) {
        fl_open_failed(error_message, error_capacity, "data directory %s is not writable: %s", path, strerror(errno));
        return KSTORE_ERR_IO;
    }
    fl_instance *instance = calloc(1, sizeof(fl_instance));
    char *path_copy = strdup(path);
    if (instance == NULL || path_copy == NULL) {
        free(instance);
        free(path_copy);
        fl_open_failed(error_message, error_capacity, "file backend: out of memory");
        return KSTORE_ERR_NO_MEMORY;
    }
    instance->base.backend = &fl_backend;
    instance->path = path_copy;
    instance->root_fd = instance->logs_fd = instance->deleted_fd = instance->lock_fd = -1;
    pthread_mutex_init(&instance->mutex, NULL);
    pthread_mutex_init(&instance->error_mutex, NULL);
    pthread_mutex_init(&instance->fault_mutex, NULL);

    kstore_status result = KSTORE_OK;
    instance->root_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (instance->root_fd < 0) {
        fl_open_failed(error_message, error_capacity, "opening data directory %s failed: %s", path, strerror(errno));
        result = fl_status_for_errno(errno);
        goto failed;
    }
    instance->lock_fd = openat(instance->root_fd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (instance->lock_fd < 0) {
        int error = errno;
        fl_open_failed(error_message, error_capacity, "data directory %s is not writable: %s (creating .lock)", path,
                       strerror(error));
        result = error == ENOSPC || error == EDQUOT ? KSTORE_ERR_NO_SPACE : KSTORE_ERR_IO;
        goto failed;
    }
    for (;;) {
        if (flock(instance->lock_fd, LOCK_EX | LOCK_NB) == 0) break;
        if (errno == EINTR) continue;
        int error = errno;
        if (error == EWOULDBLOCK) {
            char pid[32];
            ssize_t got = pread(instance->lock_fd, pid, sizeof(pid) - 1, 0);
            pid[got > 0 ? got : 0] = '\0';
            pid[strcspn(pid, "\n")] = '\0';
            fl_open_failed(error_message, error_capacity, "data directory %s is locked by another process (pid %s)",
                           path, pid[0] != '\0' ? pid : "unknown");
            result = KSTORE_ERR_BUSY;
        } else {
            fl_open_failed(error_message, error_capacity, "locking %s/.lock failed: %s", path, strerror(error));
            result = KSTORE_ERR_IO;
        }
        goto failed;
    }
    {
        char pid[32];
        int length = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
        if (ftruncate(instance->lock_fd, 0) != 0 ||
            fl_pwrite_all(instance, instance->lock_fd, pid, (size_t)length, 0) != 0) {
            int error = errno;
            fl_open_failed(error_message, error_capacity, "writing %s/.lock failed: %s", path, strerror(error));
            result = fl_status_for_errno(error);
            goto failed;
        }
    }
    result = fl_check_marker(instance, error_message, error_capacity);
    if (result != KSTORE_OK) goto failed;
    bool created = false;
    static const char *const directories[] = {"logs", "deleted"};
    for (size_t index = 0; index < 2; index++) {
        if (mkdirat(instance->root_fd, directories[index], 0755) == 0) {
            created = true;
        } else if (errno != EEXIST) {
            int error = errno;
            fl_open_failed(error_message, error_capacity, "creating %s/%s failed: %s", path, directories[index],
                           strerror(error));
            result = fl_status_for_errno(error);
            goto failed;
        }
    }
    if (created && fl_io_fsync(instance, instance->root_fd) != 0) {
        fl_open_failed(error_message, error_capacity, "fsync of data directory %s failed: %s", path, strerror(errno));
        result = KSTORE_ERR_IO;
        goto failed;
    }
    instance->logs_fd = openat(instance->root_fd, "logs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    instance->deleted_fd = openat(instance->root_fd, "deleted", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (instance->logs_fd < 0 || instance->deleted_fd < 0) {
        fl_open_failed(error_message, error_capacity, "opening %s/logs or %s/deleted failed: %s", path, path,
                       strerror(errno));
        result = KSTORE_ERR_IO;
        goto failed;
    }
    {
        /* Finish deletions a crash interrupted (their renames were durable). */
        int fd = dup(instance->deleted_fd);
        DIR *directory = fd >= 0 ? fdopendir(fd) : NULL;
        if (directory == NULL) {
            fl_close_fd(fd);
        } else {
            struct dirent *entry;
            bool removed = false;
            while ((entry = readdir(directory)) != NULL) {
                if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
                fl_remove_tree(instance->deleted_fd, entry->d_name);
                removed = true;
            }
            closedir(directory);
            if (removed) fl_io_fsync(instance, instance->deleted_fd);
        }
    }
    *instance_out = &instance->base;
    return KSTORE_OK;

failed:
    fl_free_instance(instance);
    return result;
}

static void fl_close(kstore_instance *handle) {
    if (handle == NULL) return;
    fl_free_instance((fl_instance *)handle);
}

static size_t fl_last_error(kstore_instance *handle, char *buf, size_t capacity) {
    if (handle == NULL) {
        if (buf != NULL && capacity > 0) buf[0] = '\0';
        return 0;
    }
    fl_instance *instance = (fl_instance *)handle;
    pthread_mutex_lock(&instance->error_mutex);
    size_t length = instance->error_length;
    kstore_copy_error(instance->error_message, length, buf, capacity);
    pthread_mutex_unlock(&instance->error_mutex);
    return length;
}

static kstore_status fl_open_log(kstore_instance *handle, const char *name, uint32_t flags,
                                 const kstore_option *options, uint32_t option_count, kstore_log **log_out) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_instance *instance = (fl_instance *)handle;
    char message[512];
    kstore_status invalid =
        kstore_check_open_log_arguments(name, flags, options, option_count, log_out, message, sizeof(message));
    if (invalid != KSTORE_OK) {
        fl_set_error(instance, "%s", message);
        return invalid;
    }
    int64_t segment_bytes = (int64_t)FL_SEGMENT_BYTES_DEFAULT, segment_ms = FL_SEGMENT_MS_DEFAULT;
    int64_t interval_bytes = (int64_t)FL_INDEX_INTERVAL_DEFAULT;
    for (uint32_t index = 0; index < option_count; index++) {
        const kstore_option *option = &options[index];
        int64_t *target = strcmp(option->key, "segment.bytes") == 0         ? &segment_bytes
                          : strcmp(option->key, "segment.ms") == 0          ? &segment_ms
                          : strcmp(option->key, "index.interval.bytes") == 0 ? &interval_bytes
                                                                             : NULL;
        if (target != NULL && !kstore_parse_positive_decimal(option->value, target)) {
            fl_set_error(instance, "open_log '%s': option %s has bad value '%s' (a positive decimal)", name,
                         option->key, option->value);
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
    }
    kstore_status status = fl_claim_name(instance, name);
    struct stat entry;
    if (status == KSTORE_ERR_BUSY && (flags & KSTORE_OPEN_EXCLUSIVE) != 0 &&
        fstatat(instance->logs_fd, name, &entry, AT_SYMLINK_NOFOLLOW) == 0) {
        fl_set_error(instance, "open_log '%s': the log exists (exclusive create)", name);
        return KSTORE_ERR_EXISTS;
    }
    if (status != KSTORE_OK) {
        fl_set_error(instance, status == KSTORE_ERR_BUSY ? "open_log '%s': the log is already open (or being deleted)"
                                                         : "open_log '%s': out of memory",
                     name);
        return status;
    }
    bool exists = fstatat(instance->logs_fd, name, &entry, AT_SYMLINK_NOFOLLOW) == 0;
    if (!exists && errno != ENOENT) {
        status = fl_errno_error(instance, errno, "open_log '%s': examining %s/logs/%s failed", name, instance->path,
                                name);
    } else if (exists && !S_ISDIR(entry.st_mode)) {
        fl_set_error(instance, "open_log '%s': %s/logs/%s is not a directory", name, instance->path, name);
        status = KSTORE_ERR_IO;
    } else if (!exists && (flags & KSTORE_OPEN_CREATE) == 0) {
        fl_set_error(instance, "open_log '%s': no such log", name);
        status = KSTORE_ERR_NOT_FOUND;
    } else if (exists && (flags & KSTORE_OPEN_EXCLUSIVE) != 0) {
        fl_set_error(instance, "open_log '%s': the log exists (exclusive create)", name);
        status = KSTORE_ERR_EXISTS;
    } else if (!exists && mkdirat(instance->logs_fd, name, 0755) != 0) {
        status = fl_errno_error(instance, errno, "open_log '%s': creating %s/logs/%s failed", name, instance->path,
                                name);
    }
    if (status != KSTORE_OK) {
        fl_release_name(instance, name);
        return status;
    }
    bool created = !exists;

    fl_log *log = calloc(1, sizeof(fl_log));
    char *name_copy = strdup(name);
    char *path = malloc(strlen(instance->path) + strlen(name) + 7);
    if (log == NULL || name_copy == NULL || path == NULL) {
        free(log);
        free(name_copy);
        free(path);
        if (created) fl_remove_tree(instance->logs_fd, name);
        fl_release_name(instance, name);
        fl_set_error(instance, "open_log '%s': out of memory", name);
        return KSTORE_ERR_NO_MEMORY;
    }
    sprintf(path, "%s/logs/%s", instance->path, name);
    log->base.methods = &fl_log_methods;
    log->instance = instance;
    log->name = name_copy;
    log->path = path;
    log->segment_bytes_max = (uint64_t)segment_bytes;
    log->segment_ms = segment_ms;
    log->index_interval_bytes = (uint64_t)interval_bytes;
    log->active_fd = log->active_index_fd = log->active_time_fd = -1;
    pthread_mutex_init(&log->mutate_mutex, NULL);
    pthread_mutex_init(&log->state_mutex, NULL);
    pthread_rwlockattr_t attributes;
    pthread_rwlockattr_init(&attributes);
    /* Writer-preferring, so a stream of readers cannot starve appends. */
    pthread_rwlockattr_setkind_np(&attributes, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&log->lock, &attributes);
    pthread_rwlockattr_destroy(&attributes);
    log->dir_fd = fl_io_openat(instance, instance->logs_fd, name, O_RDONLY | O_DIRECTORY, 0);
    if (log->dir_fd < 0) {
        status = fl_errno_error(instance, errno, "open_log '%s': opening %s failed", name, path);
    }
    bool trusted = false;
    if (status == KSTORE_OK) {
        trusted = !created && faccessat(log->dir_fd, "clean-shutdown", F_OK, 0) == 0;
        status = fl_recover(log, trusted);
    }
    if (status == KSTORE_OK && created && fl_io_fsync(instance, instance->logs_fd) != 0) {
        status = fl_errno_error(instance, errno, "open_log '%s': fsync of %s/logs failed", name, instance->path);
    }
    if (status == KSTORE_OK && trusted) {
        /* From now on the log may hold unsynced data: a crash must not find it marked clean. */
        if ((unlinkat(log->dir_fd, "clean-shutdown", 0) != 0 && errno != ENOENT) ||
            fl_io_fsync(instance, log->dir_fd) != 0) {
            status = fl_errno_error(instance, errno, "open_log '%s': removing %s/clean-shutdown failed", name, path);
        }
    }
    if (status != KSTORE_OK) {
        fl_close_fd(log->active_fd);
        fl_close_fd(log->active_index_fd);
        fl_close_fd(log->active_time_fd);
        fl_close_fd(log->dir_fd);
        fl_log_free(log);
        if (created) fl_remove_tree(instance->logs_fd, name);
        fl_release_name(instance, name);
        return status;
    }
    *log_out = &log->base;
    return KSTORE_OK;
}

static kstore_status fl_delete_log(kstore_instance *handle, const char *name) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_instance *instance = (fl_instance *)handle;
    if (!kstore_log_name_is_valid(name)) {
        fl_set_error(instance, "delete_log: invalid log name");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    kstore_status status = fl_claim_name(instance, name);
    if (status != KSTORE_OK) {
        fl_set_error(instance,
                     status == KSTORE_ERR_BUSY ? "delete_log '%s': the log is open" : "delete_log '%s': out of memory",
                     name);
        return status;
    }
    struct stat entry;
    if (fstatat(instance->logs_fd, name, &entry, AT_SYMLINK_NOFOLLOW) != 0) {
        status = errno == ENOENT ? KSTORE_ERR_NOT_FOUND : KSTORE_ERR_IO;
        if (status == KSTORE_ERR_NOT_FOUND) {
            fl_set_error(instance, "delete_log '%s': no such log", name);
        } else {
            fl_errno_error(instance, errno, "delete_log '%s': examining %s/logs/%s failed", name, instance->path, name);
        }
        fl_release_name(instance, name);
        return status;
    }
    /* Rename first, durably: a crash then finds the log gone, and the next open finishes the removal. */
    char target[64];
    pthread_mutex_lock(&instance->mutex);
    uint64_t sequence = ++instance->delete_sequence;
    pthread_mutex_unlock(&instance->mutex);
    snprintf(target, sizeof(target), "%d-%llu-%llu.deleted", (int)getpid(), (unsigned long long)sequence,
             (unsigned long long)fl_monotonic_ns());
    if (renameat(instance->logs_fd, name, instance->deleted_fd, target) != 0) {
        status = fl_errno_error(instance, errno, "delete_log '%s': renaming %s/logs/%s failed", name, instance->path,
                                name);
    } else if (fl_io_fsync(instance, instance->logs_fd) != 0 || fl_io_fsync(instance, instance->deleted_fd) != 0) {
        status = fl_errno_error(instance, errno, "delete_log '%s': fsync of %s/logs failed", name, instance->path);
    } else {
        fl_remove_tree(instance->deleted_fd, target);
        fl_io_fsync(instance, instance->deleted_fd);
    }
    fl_release_name(instance, name);
    return status;
}

static kstore_status fl_list_logs(kstore_instance *handle, kstore_list_callback callback, void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_instance *instance = (fl_instance *)handle;
    if (callback == NULL) {
        fl_set_error(instance, "list_logs: callback is NULL");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    int fd = dup(instance->logs_fd);
    DIR *directory = fd >= 0 ? fdopendir(fd) : NULL;
    if (directory == NULL) {
        int error = errno;
        fl_close_fd(fd);
        return fl_errno_error(instance, error, "list_logs: listing %s/logs failed", instance->path);
    }
    rewinddir(directory);
    /* Collect first, so the callback runs without the directory stream open. */
    char **names = NULL;
    size_t count = 0, capacity = 0;
    bool failed = false;
    struct dirent *entry;
    while (!failed && (entry = readdir(directory)) != NULL) {
        if (!kstore_log_name_is_valid(entry->d_name)) continue;
        struct stat status;
        if (fstatat(instance->logs_fd, entry->d_name, &status, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(status.st_mode)) {
            continue;
        }
        if (count == capacity) {
            size_t grown = capacity == 0 ? 16 : capacity * 2;
            char **larger = realloc(names, grown * sizeof(char *));
            if (larger == NULL) {
                failed = true;
                break;
            }
            names = larger;
            capacity = grown;
        }
        names[count] = strdup(entry->d_name);
        if (names[count] == NULL) {
            failed = true;
            break;
        }
        count++;
    }
    closedir(directory);
    if (!failed) {
        for (size_t index = 0; index < count; index++) callback(context, names[index]);
    }
    for (size_t index = 0; index < count; index++) free(names[index]);
    free(names);
    if (failed) {
        fl_set_error(instance, "list_logs: out of memory");
        return KSTORE_ERR_NO_MEMORY;
    }
    return KSTORE_OK;
}

static kstore_status fl_control(kstore_instance *handle, int32_t op, void *argument) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_instance *instance = (fl_instance *)handle;
    if (op == KSTORE_FILE_CONTROL_INJECT_FAULT) {
        const kstore_file_fault *fault = argument;
        if (fault == NULL || fault->struct_size < sizeof(kstore_file_fault) || fault->operation < FL_OP_WRITE ||
            fault->operation >= FL_OP_COUNT ||
            (fault->fault != KSTORE_FILE_FAULT_NO_SPACE && fault->fault != KSTORE_FILE_FAULT_IO)) {
            fl_set_error(instance, "control: bad kstore_file_fault (operation %u, fault %u)",
                         fault == NULL ? 0u : fault->operation, fault == NULL ? 0u : fault->fault);
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        pthread_mutex_lock(&instance->fault_mutex);
        instance->faults[fault->operation] = (fl_fault_slot){
            .fault = fault->fault,
            .skip_count = fault->skip_count,
            .fail_count = fault->fail_count,
            .partial = fault->partial,
        };
        if (fault->fail_count > 0) atomic_store(&instance->faults_armed, 1);
        pthread_mutex_unlock(&instance->fault_mutex);
        return KSTORE_OK;
    }
    if (op == KSTORE_FILE_CONTROL_CLEAR_FAULTS) {
        pthread_mutex_lock(&instance->fault_mutex);
        memset(instance->faults, 0, sizeof(instance->faults));
        instance->pending_write_error = 0;
        atomic_store(&instance->faults_armed, 0);
        pthread_mutex_unlock(&instance->fault_mutex);
        return KSTORE_OK;
    }
    fl_set_error(instance, "control: op %d is not supported by the file backend", (int)op);
    return KSTORE_ERR_UNSUPPORTED;
}

static const kstore_backend fl_backend = {
    .abi_version = KSTORE_ABI_VERSION,
    .struct_size = sizeof(kstore_backend),
    .name = "file",
    .description = "Plain files: a directory of segments per log, pwrite + fdatasync, CRC-checked recovery",
    .capabilities = KSTORE_CAP_DURABLE,
    .reserved = 0,
    .open = fl_open,
    .close = fl_close,
    .last_error = fl_last_error,
    .open_log = fl_open_log,
    .delete_log = fl_delete_log,
    .list_logs = fl_list_logs,
    .control = fl_control,
};

const kstore_backend *kstore_file_backend(void) { return &fl_backend; }
