/* The log table of an instance: log objects, the table sorted by name (catalog_lock), and the
 * instance members that change it — open_log (a new log stages a CREATE frame), delete_log (a
 * DELETE frame, made durable before it returns) and list_logs. Formats: docs/storage-formats.md
 * ("uring backend"); invariants and lock order: uring_internal.h. */
#include "uring_internal.h"

#include <stdlib.h>
#include <string.h>

ur_log *ur_new_log(ur_instance *instance, uint64_t id) {
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

void ur_free_log(ur_log *log) {
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

bool ur_insert_log(ur_instance *instance, ur_log *log) {
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

kstore_status ur_open_log(kstore_instance *handle, const char *name, uint32_t flags, const kstore_option *options,
                          uint32_t option_count, kstore_log **log_out) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_instance *instance = (ur_instance *)handle;
    char message[512];
    kstore_status invalid =
        kstore_check_open_log_arguments(name, flags, options, option_count, log_out, message, sizeof(message));
    if (invalid != KSTORE_OK) {
        kstore_kit_error_set(&instance->errors, "%s", message);
        return invalid;
    }
    if (instance->failed_status == KSTORE_ERR_CORRUPT) {
        kstore_kit_error_set(&instance->errors, "open_log '%s': %s", name, instance->corrupt_message);
        return KSTORE_ERR_CORRUPT;
    }
    pthread_mutex_lock(&instance->catalog_lock);
    bool found = false;
    size_t position = ur_find_log(instance, name, &found);
    ur_log *log = found ? instance->logs[position] : NULL;
    kstore_status admitted = kstore_kit_open_log_admit(name, flags, found, found && log->open, &instance->errors);
    if (admitted != KSTORE_OK) {
        pthread_mutex_unlock(&instance->catalog_lock);
        return admitted;
    }
    if (!found) {
        log = ur_new_log(instance, instance->next_log_id);
        if (log != NULL) log->name = strdup(name);
        if (log == NULL || log->name == NULL ||
            !ur_grow((void **)&instance->logs, &instance->log_capacity, instance->log_count + 1, sizeof(ur_log *),
                     16)) {
            pthread_mutex_unlock(&instance->catalog_lock);
            ur_free_log(log);
            kstore_kit_error_set(&instance->errors, "open_log '%s': out of memory", name);
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
            kstore_kit_error_set(&instance->errors, "open_log '%s': cannot record its creation: %s", name, reason);
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

kstore_status ur_delete_log(kstore_instance *handle, const char *name) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_instance *instance = (ur_instance *)handle;
    if (!kstore_log_name_is_valid(name)) {
        kstore_kit_error_set(&instance->errors, "delete_log: invalid log name");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    pthread_mutex_lock(&instance->catalog_lock);
    bool found = false;
    size_t position = ur_find_log(instance, name, &found);
    if (!found) {
        pthread_mutex_unlock(&instance->catalog_lock);
        kstore_kit_error_set(&instance->errors, "delete_log '%s': no such log", name);
        return KSTORE_ERR_NOT_FOUND;
    }
    ur_log *log = instance->logs[position];
    if (log->open) {
        pthread_mutex_unlock(&instance->catalog_lock);
        kstore_kit_error_set(&instance->errors, "delete_log '%s': the log is open", name);
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
        kstore_kit_error_set(&instance->errors, "delete_log '%s': %s", name, reason);
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
        kstore_kit_error_set(&instance->errors, "delete_log '%s': the deletion could not be made durable", name);
        return status; /* the log is gone from memory; its memory is kept (the I/O thread may hold it) */
    }
    ur_free_log(log);
    ur_schedule_gc(instance);
    return KSTORE_OK;
}

kstore_status ur_list_logs(kstore_instance *handle, kstore_list_callback callback, void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_instance *instance = (ur_instance *)handle;
    if (callback == NULL) {
        kstore_kit_error_set(&instance->errors, "list_logs: callback is NULL");
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
        kstore_kit_error_set(&instance->errors, "list_logs: out of memory");
        return KSTORE_ERR_NO_MEMORY;
    }
    return KSTORE_OK;
}
