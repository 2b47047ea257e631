/* Segments (Kafka's LogSegment): a log is a directory of segments named by base offset, each a
 * <base>.log of frames with its <base>.index and <base>.timeindex. Only the last segment (the
 * active one) is written to; rolling seals it and starts a new one at the log's end. The log start
 * offset lives in the segment names and, when it lies inside a segment, in the `meta` file.
 *
 * Invariants: a sealed segment's frames were fdatasync'ed when it was rolled, so sync only ever
 * syncs the active segment; new files are directory changes, so the directory is fsync'ed before a
 * new segment is used; a failed append leaves the active segment (and its indexes) cut back to
 * their old length, or the log failed (kstore.h "state after failure").
 */
#include "file_internal.h"

#include "fjord_crc32c.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* MARK: - Segment files */

/* Removes a file of the log directory (by its path relative to X/logs; a missing one is fine). */
void fl_unlink_file(fl_log *log, const char *file) {
    char path[FL_PATH_BYTES];
    fl_log_path(log, path, file);
    unlinkat(log->instance->logs_fd, path, 0);
}

static const char *const fl_segment_suffixes[] = {".log", ".index", ".timeindex"};

/* Removes a segment's three files (missing ones are fine), closing their cached descriptors. */
void fl_unlink_segment(fl_log *log, int64_t base_offset) {
    fl_cache_forget_segment(log, base_offset);
    for (size_t index = 0; index < 3; index++) {
        char name[FL_FILE_NAME_BYTES];
        fl_segment_name(name, base_offset, fl_segment_suffixes[index]);
        fl_unlink_file(log, name);
    }
}

/* Creates an empty segment's files (truncating leftovers of the same name) and leases their
 * descriptors into *files. The offset index gets no header until the segment is sealed: a
 * zero-filled hole reads as "no summary". On failure nothing is leased and no file is left. */
kstore_status fl_create_segment_files(fl_log *log, int64_t base_offset, fl_files *files) {
    *files = fl_files_none(base_offset);
    fl_cache_forget_segment(log, base_offset);
    kstore_status status = KSTORE_OK;
    for (fl_file_kind kind = FL_FILE_LOG; status == KSTORE_OK && kind <= FL_FILE_TIME; kind++) {
        char name[FL_FILE_NAME_BYTES];
        char path[FL_PATH_BYTES];
        fl_segment_name(name, base_offset, fl_segment_suffixes[kind]);
        fl_log_path(log, path, name);
        int fd = fl_open_transient(log->instance, log->instance->logs_fd, path, O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            status = fl_open_error(log->instance, errno, "log '%s': creating %s/%s failed", log->name, log->path, name);
        } else {
            status = fl_lease_adopt(log, base_offset, kind, fd, &files->leases[kind]);
        }
    }
    files->fds = (fl_fds){.log_fd = files->leases[FL_FILE_LOG].fd,
                          .index_fd = files->leases[FL_FILE_INDEX].fd,
                          .time_fd = files->leases[FL_FILE_TIME].fd};
    files->index_tried = files->time_tried = true;
    if (status != KSTORE_OK) {
        fl_files_close(log, files);
        fl_unlink_segment(log, base_offset);
    }
    return status;
}

kstore_status fl_sync_directory(fl_log *log, const char *member) {
    fl_lease lease;
    kstore_status status = fl_lease_file(log, 0, FL_FILE_DIRECTORY, false, &lease);
    if (status != KSTORE_OK) return status;
    if (kstore_kit_fsync(&log->instance->io, lease.fd) != 0) {
        status = kstore_kit_error_errno(&log->instance->errors, errno, "%slog '%s': fsync of directory %s failed",
                                        member, log->name, log->path);
    }
    fl_release(log, &lease);
    return status;
}

/* Writes the segment's summary header. Failure only costs a rebuild at the next open. */
bool fl_write_summary(fl_log *log, int index_fd, const fl_segment *segment) {
    uint8_t bytes[FL_INDEX_HEADER_BYTES];
    fl_summary_encode(bytes, segment);
    return kstore_kit_pwrite_all(&log->instance->io, index_fd, bytes, sizeof(bytes), 0) == 0;
}

/* MARK: - The start offset file */

/* Reads `meta`: 1 with *start_offset, 0 when missing, -1 when damaged. */
int fl_read_meta(fl_log *log, int64_t *start_offset) {
    char path[FL_PATH_BYTES];
    fl_log_path(log, path, "meta");
    int fd = fl_open_transient(log->instance, log->instance->logs_fd, path, O_RDONLY, 0);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    uint8_t bytes[FL_META_BYTES];
    ssize_t got = kstore_kit_pread_full(&log->instance->io, fd, bytes, sizeof(bytes), 0);
    kstore_kit_close_fd(fd);
    if (got != (ssize_t)sizeof(bytes) || !fl_meta_decode(bytes, start_offset)) return -1;
    return 1;
}

/* Persists the start offset: write a temporary file, fdatasync, rename over `meta`, fsync the
 * directory (the rename is a directory change). */
kstore_status fl_write_meta(fl_log *log, int64_t start_offset) {
    kstore_kit_io *io = &log->instance->io;
    kstore_kit_error *errors = &log->instance->errors;
    uint8_t bytes[FL_META_BYTES];
    fl_meta_encode(bytes, start_offset);
    int logs_fd = log->instance->logs_fd;
    char temporary[FL_PATH_BYTES], final[FL_PATH_BYTES];
    fl_log_path(log, temporary, "meta.tmp");
    fl_log_path(log, final, "meta");
    int fd = fl_open_transient(log->instance, logs_fd, temporary, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return fl_open_error(log->instance, errno, "log '%s': creating %s/meta.tmp failed", log->name, log->path);
    int error = kstore_kit_pwrite_all(io, fd, bytes, sizeof(bytes), 0);
    if (error == 0 && kstore_kit_fdatasync(io, fd) != 0) error = errno;
    kstore_kit_close_fd(fd);
    if (error != 0) {
        unlinkat(logs_fd, temporary, 0);
        return kstore_kit_error_errno(errors, error, "log '%s': writing %s/meta.tmp at position 0 failed", log->name,
                                      log->path);
    }
    if (renameat(logs_fd, temporary, logs_fd, final) != 0) {
        error = errno;
        unlinkat(logs_fd, temporary, 0);
        return kstore_kit_error_errno(errors, error, "log '%s': renaming %s/meta.tmp failed", log->name, log->path);
    }
    return fl_sync_directory(log, "");
}

/* MARK: - The totals state() reports */

/* Recomputes the log's totals from the segment descriptors. Caller holds `lock` exclusively. */
void fl_recompute_totals(fl_log *log) {
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
void fl_publish_state(fl_log *log) {
    pthread_mutex_lock(&log->state_mutex);
    log->snapshot.start_offset = log->start_offset;
    log->snapshot.end_offset = log->end_offset;
    log->snapshot.durable_end_offset = fl_min64(log->snapshot.durable_end_offset, log->end_offset);
    log->snapshot.max_timestamp = log->max_timestamp;
    log->snapshot.byte_count = log->byte_count;
    log->snapshot.entry_count = log->entry_count;
    pthread_mutex_unlock(&log->state_mutex);
}

/* MARK: - Sealing and rolling */

/* Seals the active segment once its frames are on disk: records the final time entry and the summary
 * and syncs the index files (through leases: an fdatasync of each file, whichever descriptor wrote
 * it). Failures cost only a rebuild at the next open. */
void fl_seal_active(fl_log *log) {
    kstore_kit_io *io = &log->instance->io;
    fl_segment *active = &log->segments[log->segment_count - 1];
    fl_files files = fl_files_none(active->base_offset);
    if (fl_files_indexes(log, &files, false) != KSTORE_OK) {
        fl_files_close(log, &files);
        atomic_store(&log->index_suspect, 1);
        return;
    }
    fl_segment sealed = *active;
    fl_builder builder = log->builder;
    fl_time_record time;
    bool ok = true;
    if (fl_builder_final_time(&sealed, &builder, &time)) {
        uint8_t bytes[FL_TIME_ENTRY_BYTES];
        fl_time_encode(bytes, &time);
        ok = kstore_kit_pwrite_all(io, files.fds.time_fd, bytes, sizeof(bytes),
                                   (sealed.time_count - 1) * FL_TIME_ENTRY_BYTES) == 0;
        if (ok) {
            log->builder = builder;
            log->active_time_bytes = sealed.time_count * FL_TIME_ENTRY_BYTES;
            pthread_rwlock_wrlock(&log->lock);
            active->time_count = sealed.time_count;
            pthread_rwlock_unlock(&log->lock);
        }
    }
    ok = ok && fl_write_summary(log, files.fds.index_fd, active);
    if (ok) log->active_index_bytes = fl_max64((int64_t)log->active_index_bytes, FL_INDEX_HEADER_BYTES);
    ok = ok && kstore_kit_fdatasync(io, files.fds.index_fd) == 0 && kstore_kit_fdatasync(io, files.fds.time_fd) == 0;
    fl_files_close(log, &files);
    if (!ok) atomic_store(&log->index_suspect, 1);
}

kstore_status fl_sync_active(fl_log *log, const char *member) {
    const fl_segment *active = &log->segments[log->segment_count - 1];
    fl_lease lease;
    /* Not open: every write to it was covered by an fdatasync (file_descriptor_cache.c). */
    /* Sampled before the fdatasync: only bytes written by then are credited (file_statistics.c). */
    uint64_t written = atomic_load(&log->written_bytes);
    if (!fl_lease_if_open(log, active->base_offset, FL_FILE_LOG, &lease)) {
        fl_stats_note_synced(log, written);
        return KSTORE_OK;
    }
    kstore_status status = KSTORE_OK;
    int error = fl_lease_fdatasync(log, &lease);
    if (error == 0) fl_stats_note_synced(log, written);
    if (error != 0) {
        atomic_store(&log->failed, 1);
        status = kstore_kit_error_errno(&log->instance->errors, error, "%slog '%s': fdatasync of %s/%020lld.log failed",
                                        member, log->name, log->path, (long long)active->base_offset);
    }
    fl_release(log, &lease);
    return status;
}

/* Starts a new segment at the log's end: fdatasync the old one and seal it, create the new files,
 * fsync the directory (new files are directory changes), then publish. */
kstore_status fl_roll(fl_log *log) {
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
            kstore_kit_error_set(&instance->errors, "log '%s': out of memory for %zu segments", log->name, capacity);
            return KSTORE_ERR_NO_MEMORY;
        }
    }
    fl_segment *active = &log->segments[log->segment_count - 1];
    int64_t base_offset = active->end_offset;
    kstore_status status = fl_sync_active(log, "");
    if (status != KSTORE_OK) return status;
    fl_seal_active(log);
    fl_files files;
    status = fl_create_segment_files(log, base_offset, &files);
    fl_files_close(log, &files);
    /* Out of space, memory or descriptors, nothing changed but the old segment's summary (which a
     * later append outdates, and the next open then rebuilds): the log stays usable. */
    if (status != KSTORE_OK) {
        if (status != KSTORE_ERR_NO_SPACE && status != KSTORE_ERR_NO_MEMORY && status != KSTORE_ERR_BUSY) {
            atomic_store(&log->failed, 1);
        }
        return status;
    }
    status = fl_sync_directory(log, "");
    if (status != KSTORE_OK) {
        fl_unlink_segment(log, base_offset);
        /* BUSY: the directory could not be opened, so nothing was synced and the new files are gone. */
        if (status != KSTORE_ERR_BUSY) atomic_store(&log->failed, 1);
        return status;
    }
    pthread_rwlock_wrlock(&log->lock);
    log->segments[log->segment_count++] =
        (fl_segment){.base_offset = base_offset, .end_offset = base_offset, .max_timestamp = -1};
    pthread_rwlock_unlock(&log->lock);
    fl_builder_start(&log->builder, log->index_interval_bytes);
    log->active_index_bytes = 0;
    log->active_time_bytes = 0;
    return KSTORE_OK;
}

/* MARK: - Appending a frame */

/* Whether the frame about to be appended must go to a new segment: the active one is full, old, or
 * would overflow the 32-bit relative offsets and ordinals of its index records. */
static bool fl_must_roll(const fl_log *log, const fl_segment *active, int64_t first_offset, uint64_t total_bytes,
                         int64_t now_ms) {
    return active->entry_count > 0 &&
           (active->size_bytes + FL_FRAME_HEADER_BYTES + total_bytes > log->segment_bytes_max ||
            now_ms - active->created_ms >= log->segment_ms ||
            first_offset - active->base_offset > (int64_t)UINT32_MAX || active->entry_count >= UINT32_MAX - 1);
}

/* pwritev of the frame header followed by the entry's pieces at `position`: *error is 0 or an errno.
 * False when the iovec array cannot be allocated (then nothing was written). */
static bool fl_write_frame(fl_log *log, const fl_files *files, const uint8_t *header, const kstore_kit_append *append,
                           uint64_t position, int *error) {
    struct iovec stack_pieces[17];
    struct iovec *pieces = stack_pieces;
    uint32_t iov_count = append->iov_count;
    if (iov_count + 1 > 17) {
        pieces = malloc(((size_t)iov_count + 1) * sizeof(struct iovec));
        if (pieces == NULL) return false;
    }
    pieces[0].iov_base = (void *)header;
    pieces[0].iov_len = FL_FRAME_HEADER_BYTES;
    for (uint32_t index = 0; index < iov_count; index++) {
        pieces[index + 1].iov_base = (void *)append->iov[index].base;
        pieces[index + 1].iov_len = append->iov[index].len;
    }
    *error = kstore_kit_pwritev_all(&log->instance->io, files->fds.log_fd, pieces, (size_t)iov_count + 1, position);
    fl_lease_note_write(&files->leases[FL_FILE_LOG]);
    if (pieces != stack_pieces) free(pieces);
    return true;
}

/* Writes the index entries the frame asked for; *what names the step that failed. 0 or an errno. */
static int fl_write_index_entries(fl_log *log, const fl_files *files, const fl_segment *next, const fl_emit *emit,
                                  uint64_t *index_bytes, uint64_t *time_bytes, const char **what) {
    kstore_kit_io *io = &log->instance->io;
    int error = 0;
    if (emit->index) {
        uint8_t bytes[FL_INDEX_ENTRY_BYTES];
        fl_index_encode(bytes, &emit->index_record);
        uint64_t at = FL_INDEX_HEADER_BYTES + (next->index_count - 1) * FL_INDEX_ENTRY_BYTES;
        *what = "indexing";
        error = kstore_kit_pwrite_all(io, files->fds.index_fd, bytes, sizeof(bytes), at);
        if (error == 0) *index_bytes = at + sizeof(bytes);
    }
    if (error == 0 && emit->time) {
        uint8_t bytes[FL_TIME_ENTRY_BYTES];
        fl_time_encode(bytes, &emit->time_record);
        uint64_t at = (next->time_count - 1) * FL_TIME_ENTRY_BYTES;
        *what = "time-indexing";
        error = kstore_kit_pwrite_all(io, files->fds.time_fd, bytes, sizeof(bytes), at);
        if (error == 0) *time_bytes = at + sizeof(bytes);
    }
    return error;
}

/* A write of the frame or its index entries failed with `error`: cut the segment and its indexes
 * back to their old length (kstore.h append "state after failure": the log's end returns to
 * first_offset), or fail the log when that fails too. */
static kstore_status fl_undo_append(fl_log *log, const fl_files *files, const kstore_kit_append *append,
                                    const fl_emit *emit, uint64_t position, int error, const char *what) {
    fl_instance *instance = log->instance;
    const fl_segment *active = &log->segments[log->segment_count - 1];
    kstore_status status = kstore_kit_error_errno(
        &instance->errors, error, "log '%s': %s [%lld, %lld] at %s/%020lld.log position %llu failed", log->name, what,
        (long long)append->first_offset, (long long)append->last_offset, log->path, (long long)active->base_offset,
        (unsigned long long)position);
    bool restored = kstore_kit_ftruncate(&instance->io, files->fds.log_fd, position) == 0;
    fl_lease_note_write(&files->leases[FL_FILE_LOG]);
    if (restored && emit->index) {
        restored = kstore_kit_ftruncate(&instance->io, files->fds.index_fd, log->active_index_bytes) == 0;
    }
    if (restored && emit->time) {
        restored = kstore_kit_ftruncate(&instance->io, files->fds.time_fd, log->active_time_bytes) == 0;
    }
    if (!restored) {
        kstore_kit_error_set(&instance->errors,
                             "log '%s': %s [%lld, %lld] at %s/%020lld.log position %llu failed (%s), and cutting the "
                             "segment back failed too: the log is failed until reopened",
                             log->name, what, (long long)append->first_offset, (long long)append->last_offset,
                             log->path, (long long)active->base_offset, (unsigned long long)position,
                             kstore_status_name(status));
        status = KSTORE_ERR_IO;
    }
    if (status == KSTORE_ERR_IO) atomic_store(&log->failed, 1);
    return status;
}

/* Leases the active segment's .log and the index files the frame writes to, before anything is
 * written: a failure to open them (KSTORE_ERR_BUSY when out of descriptors) changes nothing. */
static kstore_status fl_lease_for_append(fl_log *log, const fl_segment *active, const fl_emit *emit, fl_files *files) {
    kstore_status status = fl_files_open(log, active, files);
    if (status == KSTORE_OK && (emit->index || emit->time)) status = fl_files_indexes(log, files, false);
    if (status != KSTORE_OK) fl_files_close(log, files);
    return status;
}

/* Appends one frame to the active segment (mutate_mutex held, the offsets continue the log): roll
 * if needed, pwritev header and entry, write index entries, publish. On failure the segment is cut
 * back to its old length, so the log is unchanged. */
kstore_status fl_append_frame(fl_log *log, const kstore_kit_append *append, uint64_t total_bytes) {
    fl_segment *active = &log->segments[log->segment_count - 1];
    int64_t now_ms = fl_now_ms();
    if (fl_must_roll(log, active, append->first_offset, total_bytes, now_ms)) {
        kstore_status status = fl_roll(log);
        if (status != KSTORE_OK) return status;
        active = &log->segments[log->segment_count - 1];
    }
    uint64_t position = active->size_bytes;
    uint8_t header[FL_FRAME_HEADER_BYTES];
    fl_frame_encode(header, (uint32_t)total_bytes, append->first_offset, append->last_offset, append->max_timestamp);
    uint32_t crc = fjord_crc32c(0, header + 8, FL_FRAME_HEADER_BYTES - 8);
    for (uint32_t index = 0; index < append->iov_count; index++) {
        crc = fjord_crc32c(crc, append->iov[index].base, append->iov[index].len);
    }
    fl_put32(header + 4, crc);

    fl_segment next = *active;
    fl_builder builder = log->builder;
    if (next.entry_count == 0) next.created_ms = now_ms;
    fl_frame frame = {.crc = crc,
                      .payload_bytes = (uint32_t)total_bytes,
                      .first_offset = append->first_offset,
                      .last_offset = append->last_offset,
                      .max_timestamp = append->max_timestamp};
    fl_emit emit;
    fl_builder_add(&next, &builder, &frame, position, &emit);

    fl_files files;
    kstore_status status = fl_lease_for_append(log, active, &emit, &files);
    if (status != KSTORE_OK) return status;
    int error = 0;
    if (!fl_write_frame(log, &files, header, append, position, &error)) {
        fl_files_close(log, &files);
        kstore_kit_error_set(&log->instance->errors, "log '%s': out of memory for %u iovecs", log->name,
                             append->iov_count);
        return KSTORE_ERR_NO_MEMORY;
    }
    const char *what = "appending";
    uint64_t index_bytes = log->active_index_bytes, time_bytes = log->active_time_bytes;
    if (error == 0) error = fl_write_index_entries(log, &files, &next, &emit, &index_bytes, &time_bytes, &what);
    if (error != 0) status = fl_undo_append(log, &files, append, &emit, position, error, what);
    fl_files_close(log, &files);
    if (error != 0) return status;

    uint64_t frame_bytes = FL_FRAME_HEADER_BYTES + total_bytes;
    atomic_fetch_add(&log->written_bytes, frame_bytes);
    fl_count(&log->instance->stats.written_bytes, frame_bytes);
    pthread_rwlock_wrlock(&log->lock);
    *active = next;
    log->end_offset = append->last_offset + 1;
    log->byte_count += total_bytes;
    log->entry_count++;
    log->max_timestamp = fl_max64(log->max_timestamp, append->max_timestamp);
    if (log->segment_count == 1) {
        log->first_live_max_timestamp = fl_max64(log->first_live_max_timestamp, append->max_timestamp);
    }
    fl_publish_state(log);
    pthread_rwlock_unlock(&log->lock);
    log->builder = builder;
    log->active_index_bytes = index_bytes;
    log->active_time_bytes = time_bytes;
    return KSTORE_OK;
}
