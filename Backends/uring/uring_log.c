/* The log table members (kstore.h "The log table") of the uring backend, except read
 * (uring_read.c): append (and append_checked_batch) stages a DATA frame and indexes it under the log's lock;
 * truncate_to, delete_before and retention stage catalog frames (TRUNCATE, START) first, so recovery replays them in
 * WAL order; sync queues a request the I/O thread's next group commit answers. Invariants and lock order:
 * uring_internal.h. */
#include "uring_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

static void ur_log_close(kstore_log *handle) {
    if (handle == NULL) return;
    ur_log *log = (ur_log *)handle;
    pthread_mutex_lock(&log->instance->catalog_lock);
    log->open = false;
    pthread_mutex_unlock(&log->instance->catalog_lock);
}

/* Checks an append's arguments (kstore.h append) and sets frame->payload_bytes to the entry's size. */
static kstore_status ur_append_check(ur_log *log, ur_frame *frame) {
    ur_instance *instance = log->instance;
    const kstore_iovec *iov = frame->iov;
    uint32_t iov_count = frame->iov_count;
    if (frame->completion == NULL) {
        kstore_kit_error_set(&instance->errors, "append to log '%s': completion is NULL", log->name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (iov == NULL || iov_count == 0) {
        kstore_kit_error_set(&instance->errors, "append to log '%s': no iovecs (iov_count %u)", log->name, iov_count);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    uint64_t total_bytes = 0;
    for (uint32_t index = 0; index < iov_count; index++) {
        if (iov[index].len > 0 && iov[index].base == NULL) {
            kstore_kit_error_set(&instance->errors, "append to log '%s': iov[%u].base is NULL with length %zu",
                                 log->name, index, iov[index].len);
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        if (iov[index].len > instance->segment_bytes) {
            total_bytes = UINT64_MAX;
            break;
        }
        total_bytes += iov[index].len;
    }
    if (total_bytes == 0) {
        kstore_kit_error_set(&instance->errors, "append to log '%s': the entry is empty", log->name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (total_bytes == UINT64_MAX ||
        ur_frame_bytes(total_bytes) > instance->segment_bytes - ur_catalog_reserve(instance->segment_bytes)) {
        kstore_kit_error_set(&instance->errors,
                             "append to log '%s': the entry (%" PRIu64
                             " bytes) does not fit in a write-ahead-log segment "
                             "(uring.segment.bytes %" PRIu64 ")",
                             log->name, total_bytes, instance->segment_bytes);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (frame->last_offset < frame->first_offset || frame->last_offset == INT64_MAX) {
        kstore_kit_error_set(&instance->errors, "append to log '%s': bad offset range [%lld, %lld]", log->name,
                             (long long)frame->first_offset, (long long)frame->last_offset);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (frame->max_timestamp < -1) {
        kstore_kit_error_set(&instance->errors, "append to log '%s': max_timestamp %lld is neither -1 nor >= 0",
                             log->name, (long long)frame->max_timestamp);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    frame->payload_bytes = total_bytes;
    return KSTORE_OK;
}

/* Sets the CRC-32C the frame's checksum takes of the payload, before any lock: of every byte, or
 * for a checked batch (kstore.h append_checked_batch) of its first 21 bytes only, flagging the
 * frame so that recovery and reads check the batch's own CRC over the rest. */
static void ur_frame_checksum(ur_frame *frame, bool checked_batch) {
    uint8_t prefix[KSTORE_BATCH_CRC_FROM];
    size_t have = 0;
    if (checked_batch && frame->payload_bytes >= KSTORE_BATCH_BYTES_MIN) {
        for (uint32_t index = 0; index < frame->iov_count && have < sizeof(prefix); index++) {
            size_t take = frame->iov[index].len < sizeof(prefix) - have ? frame->iov[index].len : sizeof(prefix) - have;
            if (take > 0) memcpy(prefix + have, frame->iov[index].base, take);
            have += take;
        }
    }
    if (have == sizeof(prefix) && prefix[KSTORE_BATCH_MAGIC_AT] == 2) {
        frame->flags = UR_FRAME_FLAG_BATCH_CRC;
        frame->payload_crc = fjord_crc32c(0, prefix, sizeof(prefix));
        return;
    }
    frame->payload_crc = 0;
    for (uint32_t index = 0; index < frame->iov_count; index++) {
        frame->payload_crc = fjord_crc32c(frame->payload_crc, frame->iov[index].base, frame->iov[index].len);
    }
}

/* append and append_checked_batch (kstore.h): they differ in the frame's checksum only. */
static kstore_status ur_log_append_frame(kstore_log *handle, bool checked_batch, int64_t first_offset,
                                         int64_t last_offset, int64_t max_timestamp, const kstore_iovec *iov,
                                         uint32_t iov_count, kstore_completion completion, void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_log *log = (ur_log *)handle;
    ur_instance *instance = log->instance;
    ur_frame frame = {
        .kind = UR_FRAME_DATA,
        .log = log,
        .log_id = log->id,
        .first_offset = first_offset,
        .last_offset = last_offset,
        .max_timestamp = max_timestamp,
        .iov = iov,
        .iov_count = iov_count,
        .completion = completion,
        .context = context,
    };
    kstore_status status = ur_append_check(log, &frame);
    if (status != KSTORE_OK) return status;
    ur_frame_checksum(&frame, checked_batch);

    pthread_rwlock_wrlock(&log->lock);
    if (atomic_load(&log->failed_status) != KSTORE_OK) {
        pthread_rwlock_unlock(&log->lock);
        kstore_kit_error_set(&instance->errors, "append to log '%s': the log failed earlier; reopen the instance",
                             log->name);
        return KSTORE_ERR_IO;
    }
    if (first_offset != log->end_offset) {
        int64_t end_offset = log->end_offset;
        if (log->stale_status != KSTORE_OK && first_offset == log->stale_end) {
            kstore_status stale = log->stale_status;
            log->stale_end = last_offset + 1;
            pthread_rwlock_unlock(&log->lock);
            kstore_kit_error_set(
                &instance->errors,
                "append [%lld, %lld] to log '%s': an earlier append failed (%s) and the log's end returned "
                "to %lld; append again from there",
                (long long)first_offset, (long long)last_offset, log->name, kstore_status_name(stale),
                (long long)end_offset);
            return stale;
        }
        pthread_rwlock_unlock(&log->lock);
        kstore_kit_error_set(&instance->errors,
                             "append to log '%s': first_offset %lld does not continue the log (end %lld)", log->name,
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
        kstore_kit_error_set(&instance->errors,
                             "append [%lld, %lld] to log '%s': an earlier append failed (%s); append again once "
                             "the log's end has returned",
                             (long long)first_offset, (long long)last_offset, log->name, kstore_status_name(stale));
        return stale;
    }
    log->stale_status = KSTORE_OK;
    ur_reservation reservation;
    const char *reason = NULL;
    status = ur_reserve(instance, ur_frame_bytes(frame.payload_bytes), false, &reservation, &reason);
    if (status == KSTORE_OK && !ur_log_reserve_entry(log, reservation.segment)) {
        if (reservation.new_chunk) ur_chunk_release(instance, reservation.chunk);
        ur_log_unreserve(log);
        status = KSTORE_ERR_NO_MEMORY;
        reason = "out of memory";
    }
    if (status != KSTORE_OK) {
        pthread_mutex_unlock(&instance->wal_lock);
        pthread_rwlock_unlock(&log->lock);
        kstore_kit_error_set(&instance->errors, "append [%lld, %lld] to log '%s': %s", (long long)first_offset,
                             (long long)last_offset, log->name, reason != NULL ? reason : "refused");
        return status;
    }
    bool wake = ur_commit(instance, &reservation, &frame, NULL);
    pthread_mutex_unlock(&instance->wal_lock);
    ur_log_add_entry(log, reservation.segment, first_offset, last_offset, max_timestamp, (uint32_t)reservation.position,
                     (uint32_t)frame.payload_bytes);
    log->end_offset = last_offset + 1;
    pthread_rwlock_unlock(&log->lock);
    if (wake) ur_wake_io(instance);
    return KSTORE_OK;
}

static kstore_status ur_log_append(kstore_log *handle, int64_t first_offset, int64_t last_offset, int64_t max_timestamp,
                                   const kstore_iovec *iov, uint32_t iov_count, kstore_completion completion,
                                   void *context) {
    return ur_log_append_frame(handle, false, first_offset, last_offset, max_timestamp, iov, iov_count, completion,
                               context);
}

static kstore_status ur_log_append_checked_batch(kstore_log *handle, int64_t first_offset, int64_t last_offset,
                                                 int64_t max_timestamp, const kstore_iovec *iov, uint32_t iov_count,
                                                 kstore_completion completion, void *context) {
    return ur_log_append_frame(handle, true, first_offset, last_offset, max_timestamp, iov, iov_count, completion,
                               context);
}

static kstore_status ur_log_sync(kstore_log *handle, kstore_completion completion, void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_log *log = (ur_log *)handle;
    ur_instance *instance = log->instance;
    if (completion == NULL) {
        kstore_kit_error_set(&instance->errors, "sync of log '%s': completion is NULL", log->name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (atomic_load(&log->failed_status) != KSTORE_OK) {
        kstore_kit_error_set(&instance->errors, "sync of log '%s': the log failed earlier; reopen the instance",
                             log->name);
        return KSTORE_ERR_IO;
    }
    bool wake = false;
    bool now = false;
    pthread_mutex_lock(&instance->wal_lock);
    if (instance->failed_status != KSTORE_OK) {
        pthread_mutex_unlock(&instance->wal_lock);
        kstore_kit_error_set(&instance->errors,
                             "sync of log '%s': the write-ahead log failed earlier; reopen the instance", log->name);
        return KSTORE_ERR_IO;
    }
    if (atomic_load_explicit(&log->undelivered, memory_order_relaxed) == 0 &&
        log->last_sequence <= instance->durable_sequence && instance->sync_count == 0 &&
        atomic_load_explicit(&instance->sync_callbacks_queued, memory_order_acquire) == 0) {
        /* Nothing of this log waits, and no earlier sync does: complete before returning (kstore.h
         * "Completions"). */
        now = true;
    } else if (!ur_add_sync(instance, log->last_sequence, log, completion, context, &wake)) {
        pthread_mutex_unlock(&instance->wal_lock);
        kstore_kit_error_set(&instance->errors, "sync of log '%s': out of memory", log->name);
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
        kstore_kit_error_set(&log->instance->errors, "state of log '%s': state is NULL", log->name);
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
        kstore_kit_error_set(&instance->errors, "%s of log '%s': %s", operation, log->name,
                             reason != NULL ? reason : "refused");
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
        kstore_kit_error_set(&log->instance->errors,
                             "truncate_to of log '%s': %lld is not an entry boundary in [%lld, %lld]", log->name,
                             (long long)offset, (long long)start_offset, (long long)end_offset);
        return KSTORE_ERR_OUT_OF_RANGE;
    }
    if (atomic_load(&log->failed_status) != KSTORE_OK) {
        pthread_rwlock_unlock(&log->lock);
        kstore_kit_error_set(&log->instance->errors, "truncate_to of log '%s': the log failed earlier", log->name);
        return KSTORE_ERR_IO;
    }
    /* The record goes first: recovery replays it after the frames it cuts. */
    kstore_status status = ur_log_record(log, UR_FRAME_TRUNCATE, offset, "truncate_to");
    if (status == KSTORE_OK) {
        if (!ur_log_cut(log, offset)) {
            status = KSTORE_ERR_IO;
            kstore_kit_error_set(&log->instance->errors, "truncate_to of log '%s': reading its index failed: %s",
                                 log->name, strerror(errno));
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
        kstore_kit_error_set(&log->instance->errors, "%s of log '%s': the log failed earlier", operation, log->name);
        return KSTORE_ERR_IO;
    }
    kstore_status status = ur_log_record(log, UR_FRAME_START, offset, operation);
    if (status != KSTORE_OK) return status;
    if (!ur_log_advance_start(log, offset)) {
        kstore_kit_error_set(&log->instance->errors, "%s of log '%s': reading its index failed: %s", operation,
                             log->name, strerror(errno));
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
        kstore_kit_error_set(&log->instance->errors, "delete_before of log '%s': %lld is beyond the end %lld",
                             log->name, (long long)offset, (long long)end_offset);
        return KSTORE_ERR_OUT_OF_RANGE;
    }
    uint64_t first_generation = log->part_count > 0 ? log->parts[0].segment->generation : 0;
    kstore_status status = ur_log_move_start(log, offset, "delete_before");
    bool freed = log->part_count == 0 || log->parts[0].segment->generation != first_generation;
    pthread_rwlock_unlock(&log->lock);
    if (status == KSTORE_OK && freed) ur_schedule_gc(log->instance);
    return status;
}

/* The start retention asks for: the first entry to keep, or the end when none is kept; false (errno
 * set) if the index cannot be read. The unit is one entry: in a shared WAL a log's share of a
 * segment frees nothing by itself (space comes back when no log needs a whole segment), so the
 * finest unit costs no more and keeps exactly what the limits ask for. Whole parts are skipped
 * without reading entries. */
static bool ur_retention_start(const ur_log *log, int64_t retain_bytes, int64_t retain_after_timestamp,
                               int64_t *start) {
    uint64_t remaining = 0, entries = 0;
    int64_t maximum = -1;
    ur_log_totals(log, &remaining, &entries, &maximum);
    *start = log->end_offset;
    for (size_t part_index = 0; part_index < log->part_count; part_index++) {
        const ur_part *part = &log->parts[part_index];
        bool last_part = part_index + 1 == log->part_count;
        bool part_expired =
            retain_after_timestamp >= 0 && part->untimed_count == 0 && part->max_timestamp < retain_after_timestamp;
        bool part_over = retain_bytes >= 0 && !last_part && remaining - part->byte_count > (uint64_t)retain_bytes;
        if (part_expired || part_over) {
            remaining -= part->byte_count;
            continue;
        }
        ur_entry block[128];
        for (size_t index = part->begin; index < part->end;) {
            size_t count = part->end - index < 128 ? part->end - index : 128;
            if (!ur_part_entries(part, index, count, block)) return false;
            for (size_t k = 0; k < count; k++) {
                const ur_entry *entry = &block[k];
                bool expired = retain_after_timestamp >= 0 && entry->max_timestamp >= 0 &&
                               entry->max_timestamp < retain_after_timestamp;
                bool over = retain_bytes >= 0 && remaining > (uint64_t)retain_bytes;
                bool is_last = last_part && index + k + 1 == part->end;
                if (!(expired || (over && !is_last))) {
                    *start = entry->first_offset;
                    return true;
                }
                remaining -= entry->payload_bytes;
            }
            index += count;
        }
    }
    return true;
}

static kstore_status ur_log_enforce_retention(kstore_log *handle, int64_t retain_bytes, int64_t retain_after_timestamp,
                                              int64_t *new_start_offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_log *log = (ur_log *)handle;
    if (new_start_offset == NULL) {
        kstore_kit_error_set(&log->instance->errors, "enforce_retention of log '%s': new_start_offset is NULL",
                             log->name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    pthread_rwlock_wrlock(&log->lock);
    int64_t start = log->end_offset;
    kstore_status status =
        ur_retention_start(log, retain_bytes, retain_after_timestamp, &start) ? KSTORE_OK : KSTORE_ERR_IO;
    uint64_t first_generation = log->part_count > 0 ? log->parts[0].segment->generation : 0;
    if (status == KSTORE_OK) {
        status = ur_log_move_start(log, ur_max64(start, log->start_offset), "enforce_retention");
    } else {
        kstore_kit_error_set(&log->instance->errors, "enforce_retention of log '%s': reading its index failed: %s",
                             log->name, strerror(errno));
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
        kstore_kit_error_set(&log->instance->errors, "find_offset_by_time of log '%s': offset is NULL", log->name);
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
        if (!ur_part_find_timestamp(part, timestamp, &found)) {
            status = KSTORE_ERR_IO;
        } else if (found < part->end && ur_part_entries(part, found, 1, &entry)) {
            *offset = ur_max64(entry.first_offset, log->start_offset);
        }
        break;
    }
    pthread_rwlock_unlock(&log->lock);
    if (status != KSTORE_OK) {
        kstore_kit_error_set(&log->instance->errors, "find_offset_by_time of log '%s': reading its index failed: %s",
                             log->name, strerror(errno));
    }
    return status;
}

static kstore_status ur_log_control(kstore_log *handle, int32_t op, void *argument) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_log *log = (ur_log *)handle;
    (void)argument;
    kstore_kit_error_set(&log->instance->errors, "control of log '%s': op %d is not supported by the uring backend",
                         log->name, (int)op);
    return KSTORE_ERR_UNSUPPORTED;
}

const kstore_log_methods ur_log_methods = {
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
    .append_checked_batch = ur_log_append_checked_batch,
};
