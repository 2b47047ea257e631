/* file_internal.h — the file backend's private header: its formats' constants, its in-memory
 * types, and the functions its concept files share. Nothing here is part of the ABI.
 *
 * The backend (kstore.h, ABI version 1) is DURABLE and blocking: the host calls it on its blocking
 * thread pool with one serial lane per log, so plain blocking system calls are right. The on-disk
 * formats (frames, offset and time index records, the summary header, meta, the markers) and the
 * recovery rules are documented once, in docs/storage-formats.md ("file backend"); the code keeps
 * only the invariants it relies on.
 *
 * Files, one concept each (as Kafka's LogSegment, OffsetIndex, TimeIndex, LogLoader):
 *   file_instance.c  the backend table and instance members: options, data directory, logs
 *   file_names.c     the busy log names of an instance
 *   file_log.c       the log table: the members, their argument checks, locking, failed state
 *   file_recovery.c  open_log's recovery: the crash path and the clean path
 *   file_retention.c deleting old segments (delete_before, retention) and truncating the tail
 *   file_verify.c    verifying and rebuilding a segment, trusting a cleanly closed one, restoring
 *                    the active segment's index state
 *   file_lookup.c    finding frames by offset and by time; reads of entries
 *   file_segment.c   segment files: create, open, seal, roll, append a frame, the start (meta)
 *                    file, the totals state() reports
 *   file_index.c     offset and time index maintenance: the builder, record reads and counts
 *   file_buffers.c   buffered windows over files (reads) and buffered index writes (rebuilds)
 *   file_descriptor_cache.c  the bounded LRU cache every descriptor of a log is leased from, and
 *                    the files of one segment during a call (fl_files)
 *   file_format.c    encoding and decoding of frames, index records, summaries, meta; file names
 * A file calls only files listed after it (file_names.c serves instance and log).
 *
 * Locking, per log: `mutate_mutex` serializes the mutating members (the host already does); the
 * rwlock `lock` protects the segment array and every published size, and is held shared by read,
 * find_offset_by_time and sync for their I/O, exclusively only to publish changes (and for the rare
 * structural changes: truncation, deletion of segments); `state_mutex` guards the snapshot that
 * state() copies, so state never waits for I/O. Per instance, the descriptor cache's `mutex` is a
 * leaf below all of them. Lock order: mutate_mutex → lock → cache mutex (→ the error slot's mutex);
 * state_mutex is a leaf too and never held with the cache mutex.
 *
 * Descriptors: a log holds none of its own. Every descriptor of a log directory and of a segment's
 * three files is leased from the instance's descriptor cache for the duration of one call and
 * stays cached (idle) afterwards until the cache needs room (file_descriptor_cache.c), so an
 * instance keeps at most `file.open.files.max` descriptors open however many logs are open.
 * Files are opened, created, renamed and unlinked by their path relative to X/logs.
 *
 * Memory: per log, the segment array and the active segment's index state. Index entries live in
 * the index files and are read with pread.
 *
 * Symbols: functions shared between these files are fl_*, with hidden visibility, so a build as a
 * shared library still exports only kstore_* (STYLE: exported symbols are kstore_*).
 */
#ifndef FILE_INTERNAL_H
#define FILE_INTERNAL_H

#include "kstore_file.h"
#include "kstore_kit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#pragma GCC visibility push(hidden)

/* MARK: - Formats (docs/storage-formats.md, "file backend") */

#define FL_FRAME_MAGIC        0x52464A46u /* "FJFR" */
#define FL_FRAME_HEADER_BYTES 40u
#define FL_INDEX_MAGIC        0x58494A46u /* "FJIX" */
#define FL_INDEX_VERSION      1u
#define FL_INDEX_HEADER_BYTES 64u
#define FL_INDEX_ENTRY_BYTES  32u
#define FL_TIME_ENTRY_BYTES   32u
#define FL_SUMMARY_VALID      1u
#define FL_META_MAGIC         0x544D4A46u /* "FJMT" */
#define FL_META_VERSION       1u
#define FL_META_BYTES         32u
#define FL_FORMAT_MARKER      "file 1\n"

/* MARK: - Limits and defaults */

#define FL_SEGMENT_BYTES_DEFAULT  ((uint64_t)1 << 30)
#define FL_SEGMENT_MS_DEFAULT     ((int64_t)7 * 24 * 3600 * 1000)
#define FL_INDEX_INTERVAL_DEFAULT ((uint64_t)4096)
/* Reads of entries go through a window of this size; larger payloads are read straight into the
 * caller's buffer. */
#define FL_READ_WINDOW_BYTES ((size_t)64 * 1024)
/* Recovery verifies frames with large sequential reads. */
#define FL_SCAN_WINDOW_BYTES ((size_t)4 * 1024 * 1024)
/* Index entries written during a rebuild are buffered to this size. */
#define FL_WRITER_BYTES ((size_t)64 * 1024)
/* %020lld + ".timeindex" + NUL. */
#define FL_FILE_NAME_BYTES 40
/* "<log name>/<file name>", a path relative to X/logs. */
#define FL_PATH_BYTES (KSTORE_LOG_NAME_MAX + 1 + FL_FILE_NAME_BYTES)
/* file.open.files.max: the smallest allowed (one call leases at most four descriptors), the
 * largest, and the default: this fraction of the soft RLIMIT_NOFILE at instance open, leaving the
 * rest for sockets and the other backends' files. */
#define FL_OPEN_FILES_MIN             ((uint64_t)4)
#define FL_OPEN_FILES_MAX             ((uint64_t)1 << 30)
#define FL_OPEN_FILES_DEFAULT_DIVISOR 2
/* The default when the soft limit is unlimited. */
#define FL_OPEN_FILES_UNLIMITED_DEFAULT ((uint64_t)1 << 20)

/* MARK: - Types */

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

/* The three files of a segment during a call: <base>.log, <base>.index, <base>.timeindex (-1: not
 * leased). */
typedef struct fl_fds {
    int log_fd;
    int index_fd;
    int time_fd;
} fl_fds;

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

/* What one frame added to a segment asks of its indexes (fl_builder_add). */
typedef struct fl_emit {
    bool index;
    bool time;
    fl_index_record index_record;
    fl_time_record time_record;
} fl_emit;

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

/* What a cached descriptor is open on (file_descriptor_cache.c). The segment kinds index arrays. */
typedef enum fl_file_kind {
    FL_FILE_LOG = 0,       /* <base>.log */
    FL_FILE_INDEX = 1,     /* <base>.index */
    FL_FILE_TIME = 2,      /* <base>.timeindex */
    FL_FILE_DIRECTORY = 3, /* the log directory X/logs/<name> (base_offset 0) */
} fl_file_kind;

/* One descriptor of the cache (file_descriptor_cache.c). */
typedef struct fl_entry fl_entry;

/* A descriptor leased from the cache: open, and never closed under the holder, until released. */
typedef struct fl_lease {
    /* NULL: nothing leased. */
    fl_entry *entry;
    int fd;
} fl_lease;

/* The files of one segment during a call, leased from the descriptor cache: the .log when the
 * files are opened, the index files only when needed. `fds` mirrors the leases (-1: not leased). */
typedef struct fl_files {
    int64_t base_offset;
    fl_fds fds;
    fl_lease leases[3];
    bool index_tried;
    bool time_tried;
} fl_files;

/* The instance's descriptor cache (file_descriptor_cache.c). Everything is guarded by `mutex`. */
typedef struct fl_cache {
    pthread_mutex_t mutex;
    /* Broadcast when an entry that was being closed is gone. */
    pthread_cond_t closed;
    /* file.open.files.max: idle descriptors are closed while more than this many are open. */
    size_t limit;
    /* Entries with an open descriptor: leased, idle or being closed. */
    size_t open_count;
    size_t peak_open_count;
    /* Chained hash of the entries by (log, base offset, kind); bucket_count is a power of two. */
    fl_entry **buckets;
    size_t bucket_count;
    /* Idle entries (no lease), least recently used first: clean ones, and .log files with writes
     * no fdatasync has covered yet (closed only when no clean one is left, after an fdatasync). */
    fl_entry *clean_head, *clean_tail;
    fl_entry *dirty_head, *dirty_tail;
    /* What happened (KSTORE_FILE_CONTROL_DESCRIPTOR_INFO). */
    uint64_t open_calls;
    uint64_t hits;
    uint64_t evictions;
    uint64_t eviction_syncs;
    uint64_t exhausted_retries;
} fl_cache;

/* A located frame. */
typedef struct fl_place {
    uint64_t position;
    uint64_t ordinal;
    fl_frame frame;
} fl_place;

/* A scan of frame headers (fl_scan_headers, fl_walk): it raises max_timestamp over the frames it
 * passes and, when `searching`, stops at the first frame whose max_timestamp >= threshold. */
typedef struct fl_search {
    bool searching;
    int64_t threshold;
    int64_t max_timestamp;
    bool found;
    fl_frame frame;
} fl_search;

/* What verifying a segment found. */
typedef struct fl_verify {
    /* The end of the last good frame. */
    uint64_t valid_bytes;
    /* A bad frame starts at valid_bytes (otherwise the file ended there). */
    bool bad;
    char reason[160];
} fl_verify;

struct fl_log {
    kstore_log base; /* first member: the handle the host holds */
    fl_instance *instance;
    char *name;
    /* data/logs/<name>, for messages. */
    char *path;
    uint64_t segment_bytes_max;
    int64_t segment_ms;
    uint64_t index_interval_bytes;

    pthread_mutex_t mutate_mutex;
    pthread_rwlock_t lock;
    /* Protected by `lock` (written with it held exclusively, and with mutate_mutex). */
    fl_segment *segments;
    size_t segment_count;
    size_t segment_capacity;
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

    /* This log's entries in the descriptor cache (guarded by the cache's mutex). */
    fl_entry *cache_entries;

    /* Frame bytes written to its segments (raised after each write returned), and how many of them
     * a completed sync covered (file_statistics.c: synced_bytes_total). */
    _Atomic uint64_t written_bytes;
    _Atomic uint64_t synced_bytes;
};

/* The instance's own figures (KSTORE_CONTROL_STATS, file_statistics.c): relaxed atomics bumped
 * on the paths that do the work anyway, so counting costs an uncontended add. */
typedef struct fl_stats {
    _Atomic uint64_t appends;
    _Atomic uint64_t append_bytes;
    _Atomic uint64_t written_bytes;
    _Atomic uint64_t sync_requests;
    _Atomic uint64_t syncs;
    _Atomic uint64_t synced_bytes;
    _Atomic uint64_t recovered_logs;
    _Atomic uint64_t recovery_ns;
} fl_stats;

struct fl_instance {
    kstore_instance base; /* first member: the handle the host holds */
    /* The data directory X, X/.lock and X/.fjord-backend (kstore_kit_data_directory.h). */
    kstore_kit_data_directory directory;
    /* X/logs and X/deleted. */
    int logs_fd;
    int deleted_fd;
    /* Every system call on data goes through the kit with this (and its optional fault hook). */
    kstore_kit_io io;
    kstore_kit_error errors;
    /* Every descriptor of every log is leased from here. */
    fl_cache cache;
    fl_stats stats;

    /* Names of logs that are open, being opened or being deleted. */
    pthread_mutex_t mutex;
    char **busy_names;
    size_t busy_count;
    size_t busy_capacity;
    uint64_t delete_sequence;
};

/* MARK: - Small helpers */

static inline void fl_put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void fl_put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t fl_get32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static inline uint64_t fl_get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static inline int64_t fl_max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t fl_min64(int64_t a, int64_t b) { return a < b ? a : b; }

static inline int64_t fl_now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static inline uint64_t fl_monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static inline uint64_t fl_payload_bytes(const fl_segment *segment) {
    return segment->size_bytes - segment->entry_count * FL_FRAME_HEADER_BYTES;
}

static inline fl_fds fl_fds_none(void) { return (fl_fds){.log_fd = -1, .index_fd = -1, .time_fd = -1}; }

/* MARK: - file_descriptor_cache.c: the descriptor cache */

kstore_status fl_cache_init(fl_cache *cache, size_t limit);
/* After every log was closed (then the cache holds no entry). */
void fl_cache_destroy(fl_cache *cache);
/* Leases the descriptor of (log, base_offset, kind), opening it (read-write; directories read-only)
 * on a miss, creating a missing segment file when `create`. On failure the message is recorded;
 * descriptor exhaustion (EMFILE, ENFILE), after idle descriptors were closed and the open retried
 * once, answers KSTORE_ERR_BUSY with a message naming the limits. */
kstore_status fl_lease_file(fl_log *log, int64_t base_offset, fl_file_kind kind, bool create, fl_lease *lease);
/* Leases the descriptor only if it is open (waiting while it is being closed): false when it is not.
 * A .log file whose descriptor is not open has no write that an fdatasync has not covered. */
bool fl_lease_if_open(fl_log *log, int64_t base_offset, fl_file_kind kind, fl_lease *lease);
/* Puts a descriptor the caller just opened (a created file) into the cache, leased. A .log counts as
 * written (its creation truncated it). On failure the descriptor is closed. */
kstore_status fl_lease_adopt(fl_log *log, int64_t base_offset, fl_file_kind kind, int fd, fl_lease *lease);
/* Ends a lease (nothing when none is held); the descriptor stays cached, idle. */
void fl_release(fl_log *log, fl_lease *lease);
/* After every write or truncation through a leased .log descriptor (once the system call returned,
 * whatever its result): it now has unsynced writes. Leaves errno alone. */
void fl_lease_note_write(const fl_lease *lease);
/* fdatasync through a leased .log descriptor if it has writes no fdatasync covered yet: 0 or the
 * errno (errno is set too). */
int fl_lease_fdatasync(fl_log *log, const fl_lease *lease);
/* The files of a segment are deleted or replaced: their cached descriptors are closed (without an
 * fdatasync: the content goes). A leased one is closed when its lease ends. */
void fl_cache_forget_segment(fl_log *log, int64_t base_offset);
/* The log closes: every descriptor it has in the cache is closed (none may be leased). */
void fl_cache_forget_log(fl_log *log);
/* An open that is not cached (meta, markers, directory listings): openat through the kit with the
 * same answer to descriptor exhaustion (close idle descriptors, retry once). */
int fl_open_transient(fl_instance *instance, int dir_fd, const char *name, int flags, mode_t mode);
/* Records the failure of an open: "<what>: <reason>" and, for EMFILE or ENFILE, the limits; returns
 * KSTORE_ERR_BUSY for those, the kit's status for the errno otherwise. */
__attribute__((format(printf, 3, 4))) kstore_status fl_open_error(fl_instance *instance, int error, const char *format,
                                                                  ...);
void fl_cache_info(fl_cache *cache, kstore_file_descriptor_info *info);

/* "<log name>/<file>", the path of a file of the log relative to X/logs. */
void fl_log_path(const fl_log *log, char *buffer, const char *file);

kstore_status fl_files_open(fl_log *log, const fl_segment *segment, fl_files *files);
/* The offset index's descriptor, or -1 when it cannot be opened (lookups then scan). */
int fl_files_index(fl_log *log, fl_files *files);
int fl_files_time(fl_log *log, fl_files *files);
/* Leases the index files too, creating missing ones when `create`: an error when one fails. */
kstore_status fl_files_indexes(fl_log *log, fl_files *files, bool create);
/* Leases all three files of the segment at base_offset (index files created when `create`). */
kstore_status fl_files_all(fl_log *log, int64_t base_offset, bool create, fl_files *files);
/* Ends the leases (the descriptors stay cached). */
void fl_files_close(fl_log *log, fl_files *files);
static inline fl_files fl_files_none(int64_t base_offset) {
    fl_files files = {.base_offset = base_offset, .fds = fl_fds_none()};
    for (int kind = 0; kind < 3; kind++) files.leases[kind] = (fl_lease){.entry = NULL, .fd = -1};
    return files;
}

/* MARK: - file_format.c: the on-disk format */

void fl_segment_name(char *buffer, int64_t base_offset, const char *suffix);
/* Parses "%020lld.log"; false for anything else. */
bool fl_parse_segment_name(const char *name, int64_t *base_offset);
void fl_frame_encode(uint8_t *header, uint32_t payload_bytes, int64_t first_offset, int64_t last_offset,
                     int64_t max_timestamp);
bool fl_frame_decode(const uint8_t *header, fl_frame *frame);
void fl_index_encode(uint8_t *bytes, const fl_index_record *record);
bool fl_index_decode(const uint8_t *bytes, fl_index_record *record);
void fl_time_encode(uint8_t *bytes, const fl_time_record *record);
bool fl_time_decode(const uint8_t *bytes, fl_time_record *record);
void fl_summary_encode(uint8_t *bytes, const fl_segment *segment);
bool fl_summary_decode(const uint8_t *bytes, fl_segment *segment);
void fl_meta_encode(uint8_t *bytes, int64_t start_offset);
bool fl_meta_decode(const uint8_t *bytes, int64_t *start_offset);

/* MARK: - file_buffers.c: buffered reads and writes */

bool fl_reader_init(fl_reader *reader, fl_instance *instance, size_t capacity);
void fl_reader_free(fl_reader *reader);
void fl_reader_reset(fl_reader *reader, int fd, uint64_t limit);
/* Refills the window at `position` (the slow path of fl_reader_get). */
const uint8_t *fl_reader_fill(fl_reader *reader, uint64_t position, size_t length);

/* The bytes [position, position + length) (length <= capacity), or NULL at end of data or on a read
 * error (then reader->error is set). */
static inline const uint8_t *fl_reader_get(fl_reader *reader, uint64_t position, size_t length) {
    if (length > reader->capacity || position > reader->limit || length > reader->limit - position) return NULL;
    if (position >= reader->window_position && position - reader->window_position <= reader->window_bytes &&
        length <= reader->window_bytes - (position - reader->window_position)) {
        return reader->buffer + (position - reader->window_position);
    }
    return fl_reader_fill(reader, position, length);
}

bool fl_reader_copy(fl_reader *reader, uint64_t position, uint64_t length, uint8_t *destination);
bool fl_reader_crc(fl_reader *reader, uint64_t position, uint64_t length, uint32_t *crc);
bool fl_writer_init(fl_writer *writer, fl_instance *instance, int fd, uint64_t position);
void fl_writer_flush(fl_writer *writer);
void fl_writer_put(fl_writer *writer, const uint8_t *bytes, size_t length);
void fl_writer_free(fl_writer *writer);

/* MARK: - file_index.c: offset and time index maintenance */

void fl_builder_start(fl_builder *builder, uint64_t interval_bytes);
void fl_builder_add(fl_segment *segment, fl_builder *builder, const fl_frame *frame, uint64_t position, fl_emit *emit);
bool fl_builder_final_time(fl_segment *segment, fl_builder *builder, fl_time_record *time);
bool fl_index_read(fl_log *log, int fd, uint64_t index, fl_index_record *record);
bool fl_time_read(fl_log *log, int fd, uint64_t index, fl_time_record *record);
bool fl_count_records_below(fl_log *log, int fd, uint64_t count, bool time_index, uint64_t position, uint64_t *below);

/* MARK: - file_lookup.c: finding frames, reading entries */

size_t fl_find_segment(const fl_log *log, int64_t offset);
__attribute__((format(printf, 4, 5))) kstore_status fl_frame_error(fl_log *log, int64_t base_offset, uint64_t position,
                                                                   const char *format, ...);
kstore_status fl_read_header(fl_log *log, const fl_segment *segment, fl_reader *reader, uint64_t position,
                             fl_frame *frame);
kstore_status fl_locate(fl_log *log, const fl_segment *segment, fl_files *files, fl_reader *reader, int64_t offset,
                        fl_place *place);
kstore_status fl_walk(fl_log *log, const fl_segment *segment, fl_files *files, fl_reader *reader, uint64_t position,
                      fl_search *search);
kstore_status fl_read_entries(fl_log *log, int64_t offset, int64_t end_offset_limit, uint8_t *destination,
                              uint64_t capacity, kstore_read_result *result);
kstore_status fl_find_by_time(fl_log *log, int64_t timestamp, int64_t *offset);
kstore_status fl_is_boundary(fl_log *log, int64_t offset, bool *boundary);
/* Recomputes the entries of segments[0] lying wholly below the start, their bytes, and the largest
 * timestamp of the rest. Caller holds `lock` exclusively. */
kstore_status fl_compute_dead(fl_log *log);

/* MARK: - file_segment.c: segment files, rolling, appending, the start offset file */

void fl_unlink_file(fl_log *log, const char *file);
void fl_unlink_segment(fl_log *log, int64_t base_offset);
kstore_status fl_create_segment_files(fl_log *log, int64_t base_offset, fl_files *files);
/* fsync of the log directory through a leased descriptor; `member` prefixes the message ("" or
 * "delete_before of "). */
kstore_status fl_sync_directory(fl_log *log, const char *member);
/* fdatasync of the active segment's .log if it has writes no fdatasync covered; a failure fails the
 * log. */
kstore_status fl_sync_active(fl_log *log, const char *member);
bool fl_write_summary(fl_log *log, int index_fd, const fl_segment *segment);
int fl_read_meta(fl_log *log, int64_t *start_offset);
kstore_status fl_write_meta(fl_log *log, int64_t start_offset);
void fl_seal_active(fl_log *log);
kstore_status fl_roll(fl_log *log);
kstore_status fl_append_frame(fl_log *log, const kstore_kit_append *append, uint64_t total_bytes);
/* The totals from the segment descriptors; the snapshot state() copies. Caller holds `lock`. */
void fl_recompute_totals(fl_log *log);
void fl_publish_state(fl_log *log);

/* MARK: - file_retention.c: deleting from the front, truncating the tail */

kstore_status fl_delete_before_locked(fl_log *log, int64_t offset);
kstore_status fl_enforce_retention_locked(fl_log *log, int64_t retain_bytes, int64_t retain_after_timestamp);
kstore_status fl_truncate_inside(fl_log *log, int64_t offset);
kstore_status fl_wipe(fl_log *log);

/* MARK: - file_verify.c: verifying, rebuilding and trusting segments */

kstore_status fl_verify_segment(fl_log *log, fl_segment *segment, fl_builder *builder, const fl_fds *fds,
                                uint64_t file_size, fl_reader *reader, fl_verify *verify);
bool fl_valid_frame_at(fl_reader *reader, uint64_t position, uint64_t file_size);
int64_t fl_find_valid_frame(fl_reader *reader, int fd, uint64_t from, uint64_t file_size);
bool fl_trust_segment(fl_log *log, fl_segment *segment, fl_files *files, uint64_t file_size, int64_t next_base,
                      bool last, fl_reader *reader);
bool fl_restore_builder(fl_log *log, fl_segment *segment, const fl_fds *fds, bool recount, fl_reader *reader);

/* MARK: - file_statistics.c: KSTORE_CONTROL_STATS */

/* Adds n to a figure (relaxed: only the sum matters, nothing is ordered by it). */
static inline void fl_count(_Atomic uint64_t *figure, uint64_t n) {
    atomic_fetch_add_explicit(figure, n, memory_order_relaxed);
}
/* A sync of `log` that started once `written` of its bytes were written succeeded: count them. */
void fl_stats_note_synced(fl_log *log, uint64_t written);
kstore_status fl_report_stats(fl_instance *instance, const kstore_stats_visitor *visitor);

/* MARK: - file_recovery.c */

/* Recovers a log at open_log (docs/storage-formats.md, "Recovery"): fills the segment array, the
 * start offset, the active segment's descriptors and index state, and the published state.
 * `trusted`: the log was closed cleanly. */
kstore_status fl_recover(fl_log *log, bool trusted);

/* MARK: - file_log.c: the log table */

extern const kstore_log_methods fl_log_methods;
void fl_log_free(fl_log *log);

/* MARK: - file_names.c */

/* Marks `name` busy (open, being opened or deleted): KSTORE_ERR_BUSY if it already is. */
kstore_status fl_claim_name(fl_instance *instance, const char *name);
void fl_release_name(fl_instance *instance, const char *name);

#pragma GCC visibility pop

#endif
