/* Changing a log's extent: moving its start forward (delete_before, retention: whole segments are
 * deleted from the front) and cutting its tail (truncate_to). Every function here runs with the
 * log's mutate_mutex held and takes `lock` exclusively only to publish.
 *
 * Invariants: the start never moves backwards; a start inside a segment is recorded in `meta` before
 * it is published, one at a segment's base is implied by the file names; deleted files are
 * directory changes, so the directory is fsync'ed before the call reports success.
 */
#include "file_internal.h"

#include <errno.h>
#include <string.h>

/* MARK: - Deleting from the front */

/* Deletes the `count` oldest segments (never all of them) and moves the start to the oldest
 * remaining one's base if that is further. */
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

/* delete_before (kstore.h): start <= offset <= end moves the start; a smaller offset is a no-op. */
kstore_status fl_delete_before_locked(fl_log *log, int64_t offset) {
    fl_instance *instance = log->instance;
    if (offset > log->end_offset) {
        kstore_kit_error_set(&instance->errors, "delete_before of log '%s': %lld is beyond the end %lld", log->name,
                             (long long)offset, (long long)log->end_offset);
        return KSTORE_ERR_OUT_OF_RANGE;
    }
    if (offset <= log->start_offset) return KSTORE_OK;
    size_t drop = 0;
    while (drop + 1 < log->segment_count && log->segments[drop].end_offset <= offset) drop++;
    /* A start inside a segment must be recorded; one at a segment's base is implied by the files. */
    kstore_status status = KSTORE_OK;
    if (offset > log->segments[drop].base_offset) status = fl_write_meta(log, offset);
    if (status != KSTORE_OK) return status;
    pthread_rwlock_wrlock(&log->lock);
    log->start_offset = offset;
    pthread_rwlock_unlock(&log->lock);
    if (drop > 0) {
        status = fl_delete_oldest(log, drop);
        if (status == KSTORE_OK) status = fl_sync_directory(log, "delete_before of ");
        return status;
    }
    pthread_rwlock_wrlock(&log->lock);
    status = fl_compute_dead(log);
    fl_recompute_totals(log);
    fl_publish_state(log);
    pthread_rwlock_unlock(&log->lock);
    return status;
}

/* enforce_retention (kstore.h): the unit is a whole segment, from the oldest. A segment with an
 * entry without timestamp never expires by time. */
kstore_status fl_enforce_retention_locked(fl_log *log, int64_t retain_bytes, int64_t retain_after_timestamp) {
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
    if (count == 0) return KSTORE_OK;
    /* Older segments go first: they free the space the roll below may need. */
    bool active_too = count == log->segment_count;
    kstore_status status = fl_delete_oldest(log, active_too ? count - 1 : count);
    if (status == KSTORE_OK && active_too) {
        /* The active segment is wholly expired: roll, so the log keeps its end, then delete it. */
        status = fl_roll(log);
        if (status == KSTORE_OK) status = fl_delete_oldest(log, 1);
    }
    kstore_status synced = fl_sync_directory(log, "enforce_retention of ");
    return status == KSTORE_OK ? synced : status;
}

/* MARK: - Truncating the tail */

/* Where a truncation cuts: the segment and frame where `offset` begins, and how many index and time
 * index records lie below that frame. */
typedef struct fl_cut {
    size_t segment_index;
    fl_place place;
    uint64_t index_below;
    uint64_t time_below;
    /* The index records below could be counted (else the segment's indexes are rebuilt). */
    bool indexes_ok;
} fl_cut;

/* Finds the frame beginning at `offset` (OUT_OF_RANGE when offset lies inside an entry) and counts
 * the index records below it. */
static kstore_status fl_plan_cut(fl_log *log, int64_t offset, fl_reader *reader, fl_cut *cut) {
    *cut = (fl_cut){.segment_index = fl_find_segment(log, offset), .indexes_ok = true};
    const fl_segment *segment = &log->segments[cut->segment_index];
    fl_files files;
    kstore_status status = fl_files_open(log, segment, &files);
    if (status == KSTORE_OK) {
        fl_reader_reset(reader, files.fds.log_fd, segment->size_bytes);
        status = fl_locate(log, segment, &files, reader, offset, &cut->place);
    }
    if (status == KSTORE_OK && cut->place.frame.first_offset != offset) {
        kstore_kit_error_set(&log->instance->errors,
                             "truncate_to of log '%s': %lld is not an entry boundary (the entry is [%lld, %lld])",
                             log->name, (long long)offset, (long long)cut->place.frame.first_offset,
                             (long long)cut->place.frame.last_offset);
        status = KSTORE_ERR_OUT_OF_RANGE;
    }
    if (status == KSTORE_OK) {
        uint64_t position = cut->place.position;
        int index_fd = segment->index_count > 0 ? fl_files_index(log, &files) : -1;
        int time_fd = segment->time_count > 0 ? fl_files_time(log, &files) : -1;
        cut->indexes_ok =
            (segment->index_count == 0 ||
             (index_fd >= 0 &&
              fl_count_records_below(log, index_fd, segment->index_count, false, position, &cut->index_below))) &&
            (segment->time_count == 0 || (time_fd >= 0 && fl_count_records_below(log, time_fd, segment->time_count,
                                                                                 true, position, &cut->time_below)));
    }
    fl_files_close(log, &files);
    return status;
}

/* Deletes the segments after the cut, so the cut segment becomes the active one. Caller holds `lock`
 * exclusively. */
static void fl_drop_later_segments(fl_log *log, const fl_cut *cut) {
    for (size_t index = cut->segment_index + 1; index < log->segment_count; index++) {
        fl_unlink_segment(log, log->segments[index].base_offset);
    }
}

/* Cuts the active segment's files (leased in `files`) at the cut and restores its index state (a
 * rebuild when the indexes do not add up). Caller holds `lock` exclusively. */
static kstore_status fl_cut_active(fl_log *log, const fl_cut *cut, int64_t offset, fl_files *files, fl_reader *reader) {
    fl_instance *instance = log->instance;
    fl_segment *segment = &log->segments[cut->segment_index];
    uint64_t position = cut->place.position;
    static const uint8_t zeros[FL_INDEX_HEADER_BYTES] = {0};
    uint64_t index_bytes = cut->index_below > 0 ? FL_INDEX_HEADER_BYTES + cut->index_below * FL_INDEX_ENTRY_BYTES : 0;
    const fl_fds *fds = &files->fds;
    bool cut_log = kstore_kit_ftruncate(&instance->io, fds->log_fd, position) == 0;
    fl_lease_note_write(&files->leases[FL_FILE_LOG]); /* keeps errno */
    if (!cut_log || kstore_kit_ftruncate(&instance->io, fds->index_fd, index_bytes) != 0 ||
        kstore_kit_ftruncate(&instance->io, fds->time_fd, cut->time_below * FL_TIME_ENTRY_BYTES) != 0 ||
        (index_bytes > 0 && kstore_kit_pwrite_all(&instance->io, fds->index_fd, zeros, sizeof(zeros), 0) != 0)) {
        return kstore_kit_error_errno(&instance->errors, errno,
                                      "truncate_to of log '%s': truncating %s/%020lld.log to %llu failed", log->name,
                                      log->path, (long long)segment->base_offset, (unsigned long long)position);
    }
    segment->size_bytes = position;
    segment->entry_count = cut->place.ordinal;
    segment->end_offset = offset;
    segment->index_count = cut->index_below;
    segment->time_count = cut->time_below;
    if (segment->entry_count == 0) segment->created_ms = 0;
    kstore_status status = KSTORE_OK;
    if (!cut->indexes_ok || !fl_restore_builder(log, segment, fds, true, reader)) {
        fl_verify verify;
        status = fl_verify_segment(log, segment, &log->builder, fds, position, reader, &verify);
        if (status == KSTORE_OK && verify.bad) {
            status = fl_frame_error(log, segment->base_offset, verify.valid_bytes, "%s", verify.reason);
        }
    }
    uint64_t size = 0;
    log->active_index_bytes = kstore_kit_file_size(fds->index_fd, &size) == 0 ? size : 0;
    log->active_time_bytes = segment->time_count * FL_TIME_ENTRY_BYTES;
    return status;
}

/* truncate_to an entry boundary strictly inside (start, end). */
kstore_status fl_truncate_inside(fl_log *log, int64_t offset) {
    fl_instance *instance = log->instance;
    fl_reader reader;
    if (!fl_reader_init(&reader, instance, FL_READ_WINDOW_BYTES)) {
        kstore_kit_error_set(&instance->errors, "truncate_to of log '%s': out of memory", log->name);
        return KSTORE_ERR_NO_MEMORY;
    }
    fl_cut cut;
    kstore_status status = fl_plan_cut(log, offset, &reader, &cut);
    if (status != KSTORE_OK) {
        fl_reader_free(&reader);
        return status;
    }
    /* The cut segment's files, before anything changes: out of descriptors, nothing is cut. */
    fl_files files;
    status = fl_files_all(log, log->segments[cut.segment_index].base_offset, true, &files);
    if (status != KSTORE_OK) {
        fl_reader_free(&reader);
        return status;
    }
    pthread_rwlock_wrlock(&log->lock);
    bool changed = cut.segment_index + 1 < log->segment_count;
    if (changed) fl_drop_later_segments(log, &cut);
    log->segment_count = cut.segment_index + 1;
    status = fl_cut_active(log, &cut, offset, &files, &reader);
    fl_files_close(log, &files);
    if (status == KSTORE_OK && cut.segment_index == 0) status = fl_compute_dead(log);
    if (status != KSTORE_OK) atomic_store(&log->failed, 1);
    fl_recompute_totals(log);
    fl_publish_state(log);
    pthread_rwlock_unlock(&log->lock);
    fl_reader_free(&reader);
    if (status == KSTORE_OK && changed) status = fl_sync_directory(log, "truncate_to of ");
    return status;
}

/* truncate_to the start: every entry goes; one empty segment at the start remains. */
kstore_status fl_wipe(fl_log *log) {
    int64_t base_offset = log->start_offset;
    pthread_rwlock_wrlock(&log->lock);
    for (size_t index = 0; index < log->segment_count; index++) {
        if (log->segments[index].base_offset != base_offset) fl_unlink_segment(log, log->segments[index].base_offset);
    }
    fl_files files;
    kstore_status status = fl_create_segment_files(log, base_offset, &files);
    fl_files_close(log, &files);
    if (status == KSTORE_OK) status = fl_sync_directory(log, "truncate_to of ");
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
