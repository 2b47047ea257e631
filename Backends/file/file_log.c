/* The file backend's log table (kstore_log_methods): argument checks, locking and the failed state
 * here; the work in the concept files (segments, lookups, retention). state() copies a snapshot the
 * mutating paths publish (fl_publish_state), so it never waits for I/O.
 *
 * Invariants: after a failed write or fdatasync the log is failed — every later mutating call and
 * sync answers KSTORE_ERR_IO until it is closed and reopened (kstore.h); the clean-shutdown marker is
 * written at close only when everything was synced and summarized, so it never lies.
 */
#include "file_internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* MARK: - Log members */

void fl_log_free(fl_log *log) {
    free(log->segments);
    pthread_mutex_destroy(&log->mutate_mutex);
    pthread_rwlock_destroy(&log->lock);
    pthread_mutex_destroy(&log->state_mutex);
    free(log->path);
    free(log->name);
    free(log);
}

/* The answer of a mutating call (or sync) on a failed log. */
static kstore_status fl_refuse_failed(fl_log *log, const char *what) {
    kstore_kit_error_set(&log->instance->errors, "%s log '%s': the log failed after an I/O error; close and reopen it",
                         what, log->name);
    return KSTORE_ERR_IO;
}

static void fl_log_close(kstore_log *handle) {
    if (handle == NULL) return;
    fl_log *log = (fl_log *)handle;
    fl_instance *instance = log->instance;
    pthread_mutex_lock(&log->mutate_mutex);
    /* Everything synced and summarized: the next open may trust the indexes. kstore.h only promises
     * synced entries survive close; syncing here is what makes the clean marker honest. */
    bool clean = atomic_load(&log->failed) == 0 && atomic_load(&log->index_suspect) == 0;
    if (clean) clean = fl_sync_active(log, "close of ") == KSTORE_OK;
    if (clean) {
        fl_seal_active(log);
        clean = atomic_load(&log->index_suspect) == 0;
    }
    if (clean) {
        char path[FL_PATH_BYTES];
        fl_log_path(log, path, "clean-shutdown");
        int fd = fl_open_transient(instance, instance->logs_fd, path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        clean = fd >= 0;
        kstore_kit_close_fd(fd);
        if (clean && fl_sync_directory(log, "close of ") != KSTORE_OK) {
            unlinkat(instance->logs_fd, path, 0);
            clean = false;
        }
    }
    fl_cache_forget_log(log);
    pthread_mutex_unlock(&log->mutate_mutex);
    fl_release_name(instance, log->name);
    fl_log_free(log);
}

static kstore_status fl_log_append(kstore_log *handle, int64_t first_offset, int64_t last_offset, int64_t max_timestamp,
                                   const kstore_iovec *iov, uint32_t iov_count, kstore_completion completion,
                                   void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_log *log = (fl_log *)handle;
    fl_instance *instance = log->instance;
    const kstore_kit_append append = {first_offset, last_offset, max_timestamp, iov, iov_count, completion};
    uint64_t total_bytes = 0;
    /* A frame's payload length is 32 bits. */
    kstore_status invalid = kstore_kit_check_append(&append, UINT32_MAX, log->name, &instance->errors, &total_bytes);
    if (invalid != KSTORE_OK) return invalid;
    pthread_mutex_lock(&log->mutate_mutex);
    if (atomic_load(&log->failed) != 0) {
        pthread_mutex_unlock(&log->mutate_mutex);
        return fl_refuse_failed(log, "append to");
    }
    if (first_offset != log->end_offset) {
        int64_t end_offset = log->end_offset;
        pthread_mutex_unlock(&log->mutate_mutex);
        kstore_kit_error_set(&instance->errors,
                             "append to log '%s': first_offset %lld does not continue the log (end %lld)", log->name,
                             (long long)first_offset, (long long)end_offset);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    kstore_status status = fl_append_frame(log, &append, total_bytes);
    pthread_mutex_unlock(&log->mutate_mutex);
    if (status == KSTORE_OK) {
        fl_count(&instance->stats.appends, 1);
        fl_count(&instance->stats.append_bytes, total_bytes);
    }
    /* Out of descriptors before anything was written: refused, so the host tries again later
     * (kstore.h "Completions": BUSY is backpressure). */
    if (status == KSTORE_ERR_BUSY) return status;
    /* Synchronous: the entry is readable (or the append failed) before append returns. */
    completion(context, status);
    return KSTORE_OK;
}

static kstore_status fl_log_read(kstore_log *handle, int64_t offset, int64_t end_offset_limit, void *buf,
                                 uint64_t capacity, kstore_read_result *result) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_log *log = (fl_log *)handle;
    kstore_status status = kstore_kit_check_read(buf, capacity, result, log->name, &log->instance->errors);
    if (status != KSTORE_OK) return status;
    kstore_read_result values = {.next_offset = offset};
    pthread_rwlock_rdlock(&log->lock);
    status =
        kstore_kit_check_read_offset(offset, log->start_offset, log->end_offset, log->name, &log->instance->errors);
    if (status == KSTORE_OK && offset < log->end_offset && offset < end_offset_limit) {
        status = fl_read_entries(log, offset, end_offset_limit, buf, capacity, &values);
    }
    pthread_rwlock_unlock(&log->lock);
    if (status != KSTORE_OK) return status;
    kstore_kit_put_read_result(result, &values);
    return KSTORE_OK;
}

static kstore_status fl_log_sync(kstore_log *handle, kstore_completion completion, void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_log *log = (fl_log *)handle;
    fl_instance *instance = log->instance;
    kstore_status invalid = kstore_kit_require(completion != NULL, "sync", "completion", log->name, &instance->errors);
    if (invalid != KSTORE_OK) return invalid;
    fl_count(&instance->stats.sync_requests, 1);
    pthread_rwlock_rdlock(&log->lock);
    if (atomic_load(&log->failed) != 0) {
        pthread_rwlock_unlock(&log->lock);
        return fl_refuse_failed(log, "sync of");
    }
    /* Sealed segments were synced when they were rolled, and indexes are rebuilt after a crash, so
     * the active segment is the only file with unsynced entries — and only if its descriptor is open
     * with writes no fdatasync covered (file_descriptor_cache.c: a descriptor closed to make room was
     * fdatasync'ed first, and a failure there failed the log, checked again below). */
    int64_t end_offset = log->end_offset;
    kstore_status status = fl_sync_active(log, "sync of ");
    if (status == KSTORE_OK && atomic_load(&log->failed) != 0) {
        pthread_rwlock_unlock(&log->lock);
        return fl_refuse_failed(log, "sync of");
    }
    if (status == KSTORE_OK) {
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
    kstore_status invalid = kstore_kit_require(state != NULL, "state", "state", log->name, &log->instance->errors);
    if (invalid != KSTORE_OK) return invalid;
    pthread_mutex_lock(&log->state_mutex);
    kstore_log_state copy = log->snapshot;
    pthread_mutex_unlock(&log->state_mutex);
    kstore_kit_put_state(state, &copy);
    return KSTORE_OK;
}

static kstore_status fl_log_truncate_to(kstore_log *handle, int64_t offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_log *log = (fl_log *)handle;
    pthread_mutex_lock(&log->mutate_mutex);
    kstore_status status = KSTORE_OK;
    if (atomic_load(&log->failed) != 0) {
        status = fl_refuse_failed(log, "truncate_to of");
    } else if (offset == log->end_offset) {
        status = KSTORE_OK;
    } else if (offset == log->start_offset && offset < log->end_offset) {
        /* Only when the start is an entry boundary (kstore.h also allows a start inside an entry; the
         * memory backend and the conformance suite refuse it, the conservative reading). */
        bool boundary = false;
        status = fl_is_boundary(log, offset, &boundary);
        if (status == KSTORE_OK && boundary) {
            status = fl_wipe(log);
        } else if (status == KSTORE_OK) {
            kstore_kit_error_set(&log->instance->errors, "truncate_to of log '%s': the start %lld lies inside an entry",
                                 log->name, (long long)offset);
            status = KSTORE_ERR_OUT_OF_RANGE;
        }
    } else if (offset > log->start_offset && offset < log->end_offset) {
        status = fl_truncate_inside(log, offset);
    } else {
        kstore_kit_error_set(&log->instance->errors, "truncate_to of log '%s': %lld is outside [%lld, %lld]", log->name,
                             (long long)offset, (long long)log->start_offset, (long long)log->end_offset);
        status = KSTORE_ERR_OUT_OF_RANGE;
    }
    pthread_mutex_unlock(&log->mutate_mutex);
    return status;
}

static kstore_status fl_log_delete_before(kstore_log *handle, int64_t offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_log *log = (fl_log *)handle;
    pthread_mutex_lock(&log->mutate_mutex);
    kstore_status status = atomic_load(&log->failed) != 0 ? fl_refuse_failed(log, "delete_before of")
                                                          : fl_delete_before_locked(log, offset);
    pthread_mutex_unlock(&log->mutate_mutex);
    return status;
}

static kstore_status fl_log_enforce_retention(kstore_log *handle, int64_t retain_bytes, int64_t retain_after_timestamp,
                                              int64_t *new_start_offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_log *log = (fl_log *)handle;
    kstore_status invalid = kstore_kit_require(new_start_offset != NULL, "enforce_retention", "new_start_offset",
                                               log->name, &log->instance->errors);
    if (invalid != KSTORE_OK) return invalid;
    pthread_mutex_lock(&log->mutate_mutex);
    if (atomic_load(&log->failed) != 0) {
        pthread_mutex_unlock(&log->mutate_mutex);
        return fl_refuse_failed(log, "enforce_retention of");
    }
    kstore_status status = fl_enforce_retention_locked(log, retain_bytes, retain_after_timestamp);
    pthread_rwlock_rdlock(&log->lock);
    *new_start_offset = log->start_offset;
    pthread_rwlock_unlock(&log->lock);
    pthread_mutex_unlock(&log->mutate_mutex);
    return status;
}

static kstore_status fl_log_find_offset_by_time(kstore_log *handle, int64_t timestamp, int64_t *offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_log *log = (fl_log *)handle;
    kstore_status invalid =
        kstore_kit_require(offset != NULL, "find_offset_by_time", "offset", log->name, &log->instance->errors);
    if (invalid != KSTORE_OK) return invalid;
    kstore_status status = KSTORE_OK;
    int64_t answer = -1;
    pthread_rwlock_rdlock(&log->lock);
    if (log->entry_count == 0 || log->max_timestamp < timestamp) {
        answer = -1;
    } else if (timestamp <= -1) {
        /* Every entry qualifies: the first one from the start, reported as the start. */
        answer = log->start_offset;
    } else {
        status = fl_find_by_time(log, timestamp, &answer);
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
            kstore_kit_error_set(&log->instance->errors,
                                 "control of log '%s': the recovery info argument is NULL or too small", log->name);
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
    kstore_kit_error_set(&log->instance->errors, "control of log '%s': op %d is not supported by the file backend",
                         log->name, (int)op);
    return KSTORE_ERR_UNSUPPORTED;
}

const kstore_log_methods fl_log_methods = {
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
