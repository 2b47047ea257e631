/* Recovery at open (Kafka's LogLoader), before any thread starts, one function per phase:
 *   1. list the data directory: WAL segment files in generation order (spares kept for reuse,
 *      index files dropped: they are rebuilt);
 *   2. replay the frames while they continue the sequence, writing the index file of each segment
 *      the WAL continues past;
 *   3. check the tail after the end — a valid frame claiming a durable sequence at or beyond the
 *      end is damage to acknowledged data (CORRUPT); otherwise the torn tail is zeroed and the
 *      segments after the end go;
 *   4. resolve the logs by id (a data frame may precede its log's checkpointed CREATE);
 *   5. continue the WAL at the end (an empty directory gets its first segment).
 * The rules are in docs/storage-formats.md ("uring backend", "Recovery"); invariants: uring_internal.h. */
#include "uring_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Recovery's state across its phases. */
typedef struct ur_recovery {
    ur_instance *instance;
    char *message; /* what failed, naming file and position */
    size_t message_capacity;
    /* The logs by id, including ids whose CREATE record has not been seen yet. */
    ur_log **logs;
    size_t count;
    size_t capacity;
    ur_log *last; /* lookup cache */
    ur_scan scan;
    uint64_t expected; /* next sequence; 0 until the first frame */
    /* The largest durable_sequence the replayed frames claim (what a pad frame may claim again). */
    uint64_t durable_claimed;
    /* Where the replay stopped: the end of the WAL. */
    size_t end_index;
    uint64_t end_position;
    uint64_t frames;
    uint64_t scanned;
} ur_recovery;

static const uint8_t ur_zeros[4096];

static ur_log *ur_recovery_log(ur_recovery *recovery, uint64_t id) {
    ur_instance *instance = recovery->instance;
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
static bool ur_recovery_apply(ur_recovery *recovery, ur_segment *segment, uint64_t position,
                              const ur_frame_header *header, const uint8_t *payload) {
    if (header->kind == UR_FRAME_MARK) return true;
    ur_log *log = ur_recovery_log(recovery, header->log_id);
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
    default: return false;
    }
}

static int ur_compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* MARK: - 1. Segment files */

/* Lists the data directory: the generations of the WAL segment files, sorted. Spare segments are
 * taken back for reuse (or dropped beyond UR_RECYCLE_MAX); index files go (they are rebuilt). */
static kstore_status ur_recover_list(ur_recovery *recovery, uint64_t **generations_out, size_t *count_out) {
    ur_instance *instance = recovery->instance;
    int listing = dup(instance->directory.root_fd);
    DIR *directory = listing >= 0 ? fdopendir(listing) : NULL;
    if (directory == NULL) {
        snprintf(recovery->message, recovery->message_capacity, "cannot list data directory %s: %s",
                 instance->directory.path, strerror(errno));
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
                unlinkat(instance->directory.root_fd, item->d_name, 0);
            }
            continue;
        }
        if (sscanf(item->d_name, "wal-%16" SCNx64 ".%3s", &generation, suffix) != 2 || strlen(item->d_name) != 24) {
            continue;
        }
        if (strcmp(suffix, "idx") == 0) {
            unlinkat(instance->directory.root_fd, item->d_name, 0);
        } else if (strcmp(suffix, "log") == 0 && generation > 0) {
            if (!ur_grow((void **)&generations, &generation_capacity, generation_count + 1, sizeof(uint64_t), 16)) {
                closedir(directory);
                free(generations);
                snprintf(recovery->message, recovery->message_capacity, "out of memory listing %s",
                         instance->directory.path);
                return KSTORE_ERR_NO_MEMORY;
            }
            generations[generation_count++] = generation;
        }
    }
    closedir(directory);
    if (generation_count > 1) qsort(generations, generation_count, sizeof(uint64_t), ur_compare_u64);
    *generations_out = generations;
    *count_out = generation_count;
    return KSTORE_OK;
}

/* Opens the segment files, in generation order, as the instance's segments. */
static kstore_status ur_recover_segments(ur_recovery *recovery) {
    ur_instance *instance = recovery->instance;
    uint64_t *generations = NULL;
    size_t generation_count = 0;
    kstore_status status = ur_recover_list(recovery, &generations, &generation_count);
    if (status != KSTORE_OK) return status;
    for (size_t index = 0; index < generation_count; index++) {
        char name[64];
        ur_segment_name(name, sizeof(name), generations[index], "log");
        ur_segment *segment = calloc(1, sizeof(ur_segment));
        int fd = openat(instance->directory.root_fd, name, O_RDWR | O_CLOEXEC);
        int wfd = -1;
        struct stat info;
        if (segment == NULL || fd < 0 || fstat(fd, &info) != 0 || !ur_open_wfd(instance, name, &wfd) ||
            !ur_grow((void **)&instance->segments, &instance->segment_capacity, instance->segment_count + 1,
                     sizeof(ur_segment *), 8)) {
            snprintf(recovery->message, recovery->message_capacity, "cannot open write-ahead-log segment %s in %s: %s",
                     name, instance->directory.path, strerror(errno));
            if (fd >= 0) close(fd);
            if (wfd >= 0) close(wfd);
            free(segment);
            status = KSTORE_ERR_IO;
            break;
        }
        segment->generation = generations[index];
        segment->capacity = (uint64_t)info.st_size;
        segment->fd = fd;
        segment->wfd = wfd;
        segment->idx_fd = -1;
        segment->state = UR_SEGMENT_READY;
        instance->segments[instance->segment_count++] = segment;
    }
    free(generations);
    return status;
}

/* MARK: - 2. Replay */

/* Replays the frames of one segment while they continue the sequence; the WAL's end is where they
 * stop. */
static kstore_status ur_replay_segment(ur_recovery *recovery, size_t index) {
    ur_segment *segment = recovery->instance->segments[index];
    kstore_status status = KSTORE_OK;
    struct stat info;
    fstat(segment->fd, &info);
    recovery->scan.fd = segment->fd;
    recovery->scan.file_bytes = (uint64_t)info.st_size;
    recovery->scan.buffer_length = 0;
    posix_fadvise(segment->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    uint64_t position = 0;
    for (;;) {
        ur_frame_header header;
        const uint8_t *payload = NULL;
        if (!ur_scan_frame(&recovery->scan, position, segment->generation, &header, &payload) ||
            (recovery->expected != 0 && header.sequence != recovery->expected)) {
            break;
        }
        if (!ur_recovery_apply(recovery, segment, position, &header, payload)) {
            snprintf(recovery->message, recovery->message_capacity, "out of memory recovering %s",
                     recovery->instance->directory.path);
            status = KSTORE_ERR_NO_MEMORY;
            break;
        }
        if (ur_frame_is_catalog(header.kind)) segment->has_catalog = true;
        if (header.durable_sequence > recovery->durable_claimed) recovery->durable_claimed = header.durable_sequence;
        recovery->expected = header.sequence + 1;
        position += ur_frame_bytes(header.payload_bytes);
        recovery->frames++;
    }
    recovery->scanned += position;
    recovery->end_index = index;
    recovery->end_position = position;
    return status;
}

/* Whether the segment after `index` continues the WAL: its first frame carries the next sequence. */
static bool ur_replay_continues(ur_recovery *recovery, size_t index) {
    ur_instance *instance = recovery->instance;
    if (index + 1 >= instance->segment_count) return false;
    ur_segment *next = instance->segments[index + 1];
    struct stat next_info;
    fstat(next->fd, &next_info);
    ur_frame_header header;
    bool valid = false;
    return ur_check_frame_at(next->fd, (uint64_t)next_info.st_size, 0, next->generation, &header, &valid) && valid &&
           (recovery->expected == 0 || header.sequence == recovery->expected);
}

/* Replays segment after segment while the next one continues the WAL. */
static kstore_status ur_recover_replay(ur_recovery *recovery) {
    ur_instance *instance = recovery->instance;
    kstore_status status = KSTORE_OK;
    bool ended = false;
    for (size_t index = 0; index < instance->segment_count && status == KSTORE_OK && !ended; index++) {
        status = ur_replay_segment(recovery, index);
        ended = status != KSTORE_OK || !ur_replay_continues(recovery, index);
        if (!ended) {
            /* Sealed: write its index now so memory holds one segment's fine index at a time. */
            ur_segment *segment = instance->segments[index];
            segment->sealed = true;
            if (!ur_write_index_of(instance, segment, recovery->logs, recovery->count)) {
                snprintf(recovery->message, recovery->message_capacity,
                         "cannot write the index of segment %016" PRIx64 " in %s: %s", segment->generation,
                         instance->directory.path, strerror(errno));
                status = kstore_kit_status_for_errno(errno);
            }
        }
    }
    return status;
}

/* MARK: - 3. The tail */

/* Checks the magic-looking positions of a block read at `base` of segment `index`: a valid frame
 * claiming a durable sequence at or beyond the end means acknowledged data was damaged. Frames of
 * the end segment's generation also extend the torn tail that is zeroed. */
static kstore_status ur_tail_check_block(ur_recovery *recovery, size_t index, const uint8_t *bytes, size_t block,
                                         uint64_t base, uint64_t *dirty_end) {
    ur_instance *instance = recovery->instance;
    ur_segment *segment = instance->segments[index];
    for (size_t k = 0; k < block; k += UR_FRAME_ALIGN_BYTES) {
        uint32_t magic;
        memcpy(&magic, bytes + k, sizeof(magic));
        if (magic != UR_FRAME_MAGIC) continue;
        ur_frame_header header;
        bool valid = false;
        if (!ur_check_frame_at(segment->fd, recovery->scan.file_bytes, base + k, segment->generation, &header,
                               &valid)) {
            continue;
        }
        if (index == recovery->end_index && header.generation == segment->generation) {
            uint64_t claimed = base + k + ur_frame_bytes(header.payload_bytes);
            if (claimed > recovery->scan.file_bytes) claimed = base + k + UR_FRAME_HEADER_BYTES;
            if (claimed > *dirty_end) *dirty_end = claimed;
        }
        if (valid && recovery->expected != 0 && header.durable_sequence >= recovery->expected) {
            char name[64];
            ur_segment_name(name, sizeof(name), instance->segments[recovery->end_index]->generation, "log");
            snprintf(recovery->message, recovery->message_capacity,
                     "write-ahead log %s/%s is damaged at position %" PRIu64
                     ": the frame there is missing or fails its checksum, but a later frame (%s/wal-%016" PRIx64
                     ".log at position %" PRIu64 ") shows sequence %" PRIu64 " was already durable",
                     instance->directory.path, name, recovery->end_position, instance->directory.path,
                     segment->generation, base + k, recovery->expected);
            return KSTORE_ERR_CORRUPT;
        }
    }
    return KSTORE_OK;
}

/* Scans segment `index` after the end of the WAL (from the end position in the end segment, from
 * its start in later ones), reading only the data regions of the file. */
static kstore_status ur_tail_scan_segment(ur_recovery *recovery, size_t index, uint64_t *dirty_end) {
    ur_segment *segment = recovery->instance->segments[index];
    ur_scan *scan = &recovery->scan;
    kstore_status status = KSTORE_OK;
    struct stat info;
    fstat(segment->fd, &info);
    scan->fd = segment->fd;
    scan->file_bytes = (uint64_t)info.st_size;
    scan->buffer_length = 0;
    uint64_t position = index == recovery->end_index ? recovery->end_position : 0;
    /* Cached pages of unwritten extents count as data for SEEK_DATA below, and the replay's
     * readahead cached zeros past the end: drop the clean pages (dirty ones, written by a
     * process that was killed, are real data) and read without readahead. */
    posix_fadvise(segment->fd, 0, 0, POSIX_FADV_DONTNEED);
    posix_fadvise(segment->fd, 0, 0, POSIX_FADV_RANDOM);
    while (position + UR_FRAME_HEADER_BYTES <= scan->file_bytes && status == KSTORE_OK) {
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
        uint64_t region_end = scan->file_bytes;
        off_t hole = lseek(segment->fd, (off_t)position, SEEK_HOLE);
        if (hole > (off_t)position && (uint64_t)hole < region_end) {
            region_end = ((uint64_t)hole + UR_FRAME_ALIGN_BYTES - 1) & ~(uint64_t)(UR_FRAME_ALIGN_BYTES - 1);
            if (region_end > scan->file_bytes) region_end = scan->file_bytes;
        }
        size_t block = (size_t)(region_end - position < UR_SCAN_BYTES ? region_end - position : UR_SCAN_BYTES);
        block &= ~(size_t)(UR_FRAME_ALIGN_BYTES - 1);
        /* Read no further than the data region (ur_scan_get reads ahead up to file_bytes). */
        uint64_t file_bytes = scan->file_bytes;
        scan->file_bytes = region_end;
        const uint8_t *bytes = ur_scan_get(scan, position, block);
        scan->file_bytes = file_bytes;
        if (bytes == NULL || block == 0) break;
        uint64_t base = position;
        status = ur_tail_check_block(recovery, index, bytes, block, base, dirty_end);
        position = base + block;
        recovery->scanned += block;
    }
    return status;
}

/* A torn tail: zero it, so no later recovery can take its bytes for frames. */
static kstore_status ur_tail_zero(ur_recovery *recovery, uint64_t dirty_end) {
    ur_instance *instance = recovery->instance;
    ur_segment *end_segment = instance->segments[recovery->end_index];
    uint64_t end_position = recovery->end_position;
    uint64_t zero_end =
        dirty_end > end_position + UR_FRAME_HEADER_BYTES ? dirty_end : end_position + UR_FRAME_HEADER_BYTES;
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
    if (nonzero && (ur_write_zeros(&instance->io, end_segment->fd, end_position, zero_end - end_position) != 0 ||
                    kstore_kit_fdatasync(&instance->io, end_segment->fd) != 0)) {
        snprintf(recovery->message, recovery->message_capacity,
                 "cannot zero the torn tail of wal-%016" PRIx64 ".log in %s at %" PRIu64 ": %s",
                 end_segment->generation, instance->directory.path, end_position, strerror(errno));
        return kstore_kit_status_for_errno(errno);
    }
    return KSTORE_OK;
}

/* Segments after the end hold no acknowledged frame: delete them; the cursor is the end. */
static void ur_tail_drop_later_segments(ur_recovery *recovery) {
    ur_instance *instance = recovery->instance;
    ur_segment *end_segment = instance->segments[recovery->end_index];
    uint64_t max_generation = instance->segments[instance->segment_count - 1]->generation;
    for (size_t index = recovery->end_index + 1; index < instance->segment_count; index++) {
        ur_unlink_segment(instance, instance->segments[index]);
    }
    instance->segment_count = recovery->end_index + 1;
    if (max_generation + 1 > instance->generation_floor) instance->generation_floor = max_generation + 1;
    (void)kstore_kit_fsync(&instance->io, instance->directory.root_fd);
    instance->cursor_segment = end_segment;
    instance->cursor_position = recovery->end_position;
    end_segment->sealed = false;
}

/* Direct mode: the WAL continues at an aligned position. If the end is not one (a write torn after
 * some whole frames, or a WAL written buffered), a pad frame with the next sequence fills the gap —
 * written here, through the page cache, over bytes no acknowledged frame shares a block with (the
 * torn write started at an aligned position) — or, where none fits before the segment's end, the
 * next frame starts the next segment. Then the segment's cached pages are dropped, so direct writes
 * do not find them. */
static kstore_status ur_tail_align(ur_recovery *recovery) {
    ur_instance *instance = recovery->instance;
    ur_segment *segment = instance->cursor_segment;
    if (!instance->direct) return KSTORE_OK;
    ur_pad pad = ur_pad_for(instance, segment, instance->cursor_position);
    if (pad.frame_bytes > 0) {
        uint8_t *frame = malloc((size_t)pad.frame_bytes);
        uint64_t sequence = recovery->expected != 0 ? recovery->expected : 1;
        if (frame != NULL) {
            ur_pad_frame_encode(frame, pad.frame_bytes, segment->generation, sequence, recovery->durable_claimed);
        }
        if (frame == NULL ||
            kstore_kit_pwrite_all(&instance->io, segment->fd, frame, (size_t)pad.frame_bytes,
                                  instance->cursor_position) != 0 ||
            kstore_kit_fdatasync(&instance->io, segment->fd) != 0) {
            int error = frame == NULL ? ENOMEM : errno;
            free(frame);
            snprintf(recovery->message, recovery->message_capacity,
                     "cannot pad the end of wal-%016" PRIx64 ".log in %s at %" PRIu64 ": %s", segment->generation,
                     instance->directory.path, instance->cursor_position, strerror(error));
            return kstore_kit_status_for_errno(error);
        }
        free(frame);
        recovery->expected = sequence + 1;
    }
    instance->cursor_position = pad.cursor;
    posix_fadvise(segment->fd, 0, 0, POSIX_FADV_DONTNEED);
    return KSTORE_OK;
}

/* The tail: any frame after the end that claims an acknowledged (durable) sequence at or beyond
 * the end means a frame in between was damaged after it was acknowledged (CORRUPT); otherwise the
 * bytes after the end are a torn, never-acknowledged tail, zeroed, and later segments go. */
static kstore_status ur_recover_tail(ur_recovery *recovery) {
    ur_instance *instance = recovery->instance;
    kstore_status status = KSTORE_OK;
    uint64_t dirty_end = recovery->end_position;
    for (size_t index = recovery->end_index; index < instance->segment_count && status == KSTORE_OK; index++) {
        status = ur_tail_scan_segment(recovery, index, &dirty_end);
    }
    if (status == KSTORE_OK) status = ur_tail_zero(recovery, dirty_end);
    if (status == KSTORE_OK) ur_tail_drop_later_segments(recovery);
    if (status == KSTORE_OK) status = ur_tail_align(recovery);
    return status;
}

/* MARK: - 4. Logs */

/* Ids are resolved at the end: logs that never got a name (deleted long ago) and deleted ones are
 * dropped, the others enter the log table. Only a successful recovery keeps any. */
static void ur_recover_logs(ur_recovery *recovery, bool succeeded) {
    for (size_t index = 0; index < recovery->count; index++) {
        ur_log *log = recovery->logs[index];
        bool keep = succeeded && log->name != NULL && !log->open;
        if (keep) {
            if (log->end_offset < log->start_offset) log->end_offset = log->start_offset;
            atomic_store(&log->readable_end, log->end_offset);
            atomic_store(&log->durable_end, log->end_offset);
            log->open = false;
            keep = ur_insert_log(recovery->instance, log);
        }
        if (!keep) ur_free_log(log);
    }
    free(recovery->logs);
    recovery->logs = NULL;
    recovery->count = 0;
}

/* MARK: - 5. The WAL continues */

/* The WAL continues at the end; an empty directory gets its first segment. */
static kstore_status ur_recover_continue(ur_recovery *recovery, uint64_t started) {
    ur_instance *instance = recovery->instance;
    if (instance->segment_count == 0) {
        ur_segment *segment = ur_segment_add(instance);
        int error = 0;
        int wfd = -1;
        int fd = segment != NULL ? ur_prepare_segment_file(instance, segment, &wfd, &error) : -1;
        if (fd < 0) {
            snprintf(recovery->message, recovery->message_capacity,
                     "cannot create the first write-ahead-log segment in %s: %s", instance->directory.path,
                     strerror(segment != NULL ? error : ENOMEM));
            return kstore_kit_status_for_errno(segment != NULL ? error : ENOMEM);
        }
        segment->fd = fd;
        segment->wfd = wfd;
        segment->state = UR_SEGMENT_READY;
        instance->stats.segments_created++;
        instance->cursor_segment = segment;
        instance->cursor_position = 0;
    }
    instance->next_sequence = recovery->expected != 0 ? recovery->expected : 1;
    instance->durable_sequence = instance->next_sequence - 1;
    instance->written_sequence = instance->next_sequence - 1;
    instance->stats.recovery_bytes = recovery->scanned;
    instance->stats.recovery_frames = recovery->frames;
    instance->stats.recovery_ns = ur_now_ns() - started;
    return KSTORE_OK;
}

kstore_status ur_recover(ur_instance *instance, char *message, size_t capacity) {
    uint64_t started = ur_now_ns();
    ur_recovery recovery = {.instance = instance, .message = message, .message_capacity = capacity, .scan = {.fd = -1}};
    /* 1. The segment files, in generation order; index files are rebuilt, so old ones go. */
    kstore_status status = ur_recover_segments(&recovery);
    if (status != KSTORE_OK) return status;
    /* 2. Replay frames in order while they continue the sequence. */
    status = ur_recover_replay(&recovery);
    instance->stats.recovery_replay_bytes = recovery.scanned;
    instance->stats.recovery_replay_ns = ur_now_ns() - started;
    /* 3. The tail after the end: damage to acknowledged data, or a torn tail. */
    if (status == KSTORE_OK && instance->segment_count > 0) status = ur_recover_tail(&recovery);
    free(recovery.scan.buffer);
    /* 4. Logs: ids resolved, unnamed and deleted ones dropped. */
    ur_recover_logs(&recovery, status == KSTORE_OK);
    if (status != KSTORE_OK) return status;
    /* 5. The WAL continues at the end. */
    return ur_recover_continue(&recovery, started);
}
