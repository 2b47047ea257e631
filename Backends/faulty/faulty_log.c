/* The faulty shim's log table: each member asks the ABI-level schedule, injects or forwards to the
 * inner log, and hands completions to the host in order (see faulty_internal.h).
 */
#include "faulty_internal.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

/* MARK: - In-order completions */

static void fy_enqueue(fy_log *log, fy_item *item) {
    item->next = NULL;
    if (log->tail == NULL) {
        log->head = log->tail = item;
    } else {
        log->tail->next = item;
        log->tail = item;
    }
}

/* Removes an item the inner backend rejected (it will never complete). Caller holds log->mutex. */
static void fy_unlink_item(fy_log *log, fy_item *item) {
    fy_item *previous = NULL;
    for (fy_item *current = log->head; current != NULL; previous = current, current = current->next) {
        if (current != item) continue;
        if (previous == NULL) {
            log->head = item->next;
        } else {
            previous->next = item->next;
        }
        if (log->tail == item) log->tail = previous;
        return;
    }
}

void fy_drain(fy_log *log) {
    pthread_mutex_lock(&log->mutex);
    if (log->delivering) {
        pthread_mutex_unlock(&log->mutex);
        return;
    }
    log->delivering = true;
    while (log->head != NULL && log->head->done &&
           !(log->head->is_sync && __atomic_load_n(&log->instance->hold_syncs, __ATOMIC_ACQUIRE))) {
        fy_item *item = log->head;
        log->head = item->next;
        if (log->head == NULL) log->tail = NULL;
        if (!item->is_sync && item->status == KSTORE_OK) log->confirmed_end = item->end_after;
        int64_t covered = log->confirmed_end;
        pthread_mutex_unlock(&log->mutex);
        if (item->is_sync && item->status == KSTORE_OK) {
            /* Every append before this sync has been delivered: the sync covers what succeeded. */
            fy_instance *instance = log->instance;
            pthread_mutex_lock(&instance->mutex);
            log->record->synced_end = covered;
            pthread_mutex_unlock(&instance->mutex);
        }
        item->completion(item->context, item->status);
        free(item);
        pthread_mutex_lock(&log->mutex);
    }
    log->delivering = false;
    pthread_mutex_unlock(&log->mutex);
}

/* The inner backend's callback for appends and syncs. */
static void fy_inner_done(void *context, kstore_status status) {
    fy_item *item = context;
    fy_log *log = item->log;
    pthread_mutex_lock(&log->mutex);
    item->status = status;
    item->done = true;
    /* kstore.h: the end returns to the failed entry's first offset. The inner log answers for its
     * own state after the failure (failed after KSTORE_ERR_IO): the shim does not add to it. */
    if (status != KSTORE_OK && !item->is_sync && item->offset < log->end) log->end = item->offset;
    log->completing++;
    pthread_mutex_unlock(&log->mutex);
    /* last_error after this completion describes the inner backend's failure. */
    fy_inner_failed(log->instance, status);
    fy_drain(log);
    pthread_mutex_lock(&log->mutex);
    log->completing--;
    pthread_mutex_unlock(&log->mutex);
}

static fy_item *fy_new_item(fy_log *log, kstore_completion completion, void *context, bool is_sync, int64_t offset,
                            int64_t end_after) {
    fy_item *item = calloc(1, sizeof(fy_item));
    if (item == NULL) return NULL;
    item->completion = completion;
    item->context = context;
    item->is_sync = is_sync;
    item->offset = offset;
    item->end_after = end_after;
    item->log = log;
    return item;
}

/* MARK: - Log members */

static fy_log *fy_log_of(kstore_log *handle) { return (fy_log *)handle; }

static const kstore_log_methods *fy_inner_methods(fy_log *log) { return log->inner->methods; }

/* KSTORE_ERR_IO for a dead (crashed) or failed handle, else KSTORE_OK. */
static kstore_status fy_check_alive(fy_log *log, const char *what, bool mutating) {
    pthread_mutex_lock(&log->mutex);
    bool crashed = log->crashed, failed = log->failed && mutating;
    pthread_mutex_unlock(&log->mutex);
    if (crashed) {
        fy_set_error(log->instance,
                     "faulty: %s of log '%s': the instance crashed (KSTORE_FAULTY_CONTROL_CRASH); "
                     "reopen the log",
                     what, log->record->name);
        return KSTORE_ERR_IO;
    }
    if (failed) {
        fy_set_error(log->instance, "faulty: %s of log '%s': the log failed after an I/O error; reopen it", what,
                     log->record->name);
        return KSTORE_ERR_IO;
    }
    return KSTORE_OK;
}

static void fy_log_close(kstore_log *handle) {
    if (handle == NULL) return;
    fy_log *log = fy_log_of(handle);
    fy_instance *instance = log->instance;
    /* kstore.h: close comes after every completion was delivered, but the thread that delivered
     * the last one (or an inner completion whose item another thread delivered) may still be on
     * its way out of fy_drain / fy_inner_done: wait until none is, before freeing what they lock. */
    pthread_mutex_lock(&log->mutex);
    while (log->delivering || log->completing > 0) {
        pthread_mutex_unlock(&log->mutex);
        sched_yield();
        pthread_mutex_lock(&log->mutex);
    }
    pthread_mutex_unlock(&log->mutex);
    fy_inner_methods(log)->close(log->inner);
    pthread_mutex_lock(&instance->mutex);
    if (log->record->open == log) log->record->open = NULL;
    pthread_mutex_unlock(&instance->mutex);
    /* kstore.h: close comes after every completion, so the queue is empty. */
    pthread_mutex_destroy(&log->mutex);
    free(log);
}

typedef kstore_status (*fy_append_member)(kstore_log *log, int64_t first_offset, int64_t last_offset,
                                          int64_t max_timestamp, const kstore_iovec *iov, uint32_t iov_count,
                                          kstore_completion completion, void *context);

/* append and append_checked_batch: the same injection and crash model, and the inner backend's
 * member of the same name (the table has append_checked_batch only where the inner one has). */
static kstore_status fy_log_append_to(kstore_log *handle, bool checked_batch, int64_t first_offset, int64_t last_offset,
                                      int64_t max_timestamp, const kstore_iovec *iov, uint32_t iov_count,
                                      kstore_completion completion, void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fy_log *log = fy_log_of(handle);
    fy_instance *instance = log->instance;
    const kstore_log_methods *inner = fy_inner_methods(log);
    fy_append_member append = checked_batch ? inner->append_checked_batch : inner->append;
    if (completion == NULL) {
        /* Let the inner backend reject it with its own message. */
        return fy_inner_failed(instance, append(log->inner, first_offset, last_offset, max_timestamp, iov, iov_count,
                                                completion, context));
    }
    kstore_status status = fy_check_alive(log, "append", true);
    if (status != KSTORE_OK) return status;
    pthread_mutex_lock(&log->mutex);
    if (log->poisoned) {
        if (first_offset > log->poison_offset && first_offset == log->end) {
            /* Accepted behind an injected failure the host has not seen yet: fails the same way. */
            fy_item *item = fy_new_item(log, completion, context, false, first_offset, last_offset + 1);
            if (item == NULL) {
                pthread_mutex_unlock(&log->mutex);
                fy_set_error(instance, "faulty: out of memory");
                return KSTORE_ERR_NO_MEMORY;
            }
            item->status = log->poison_status;
            item->done = true;
            log->end = last_offset + 1;
            fy_enqueue(log, item);
            pthread_mutex_unlock(&log->mutex);
            fy_drain(log);
            return KSTORE_OK;
        }
        /* The host came back to the failed offset: the inner log's end is there. */
        log->poisoned = false;
        log->end = log->poison_offset;
    }
    pthread_mutex_unlock(&log->mutex);

    /* Appends that do not continue the log go to the inner backend, which rejects them. */
    kstore_status injected = KSTORE_OK;
    pthread_mutex_lock(&log->mutex);
    bool continues = first_offset == log->end;
    pthread_mutex_unlock(&log->mutex);
    if (continues) injected = fy_decide_for_log(log, KSTORE_FAULTY_OP_APPEND);
    fy_item *item = fy_new_item(log, completion, context, false, first_offset, last_offset + 1);
    if (item == NULL) {
        fy_set_error(instance, "faulty: out of memory");
        return KSTORE_ERR_NO_MEMORY;
    }
    pthread_mutex_lock(&log->mutex);
    if (injected != KSTORE_OK) {
        item->status = injected;
        item->done = true;
        if (kstore_status_is_retryable(injected)) {
            log->poisoned = true;
            log->poison_offset = first_offset;
            log->poison_status = injected;
        } else {
            log->failed = true;
        }
        /* The inner log never saw this entry, so its end already is first_offset (kstore.h "state
         * after failure"). `end` follows the host's view instead: appends it sends before it learns
         * of the failure continue from last_offset + 1 and fail the same way. */
        log->end = last_offset + 1;
        fy_enqueue(log, item);
        pthread_mutex_unlock(&log->mutex);
        fy_set_error(instance, "faulty: injected %s for append [%lld, %lld] to log '%s'", kstore_status_name(injected),
                     (long long)first_offset, (long long)last_offset, log->record->name);
        fy_drain(log);
        return KSTORE_OK;
    }
    int64_t previous_end = log->end;
    if (continues) log->end = last_offset + 1;
    fy_enqueue(log, item);
    pthread_mutex_unlock(&log->mutex);
    status = append(log->inner, first_offset, last_offset, max_timestamp, iov, iov_count, fy_inner_done, item);
    if (status != KSTORE_OK) {
        pthread_mutex_lock(&log->mutex);
        fy_unlink_item(log, item);
        if (continues && log->end == last_offset + 1) log->end = previous_end;
        pthread_mutex_unlock(&log->mutex);
        free(item);
        fy_drain(log);
        return fy_inner_failed(instance, status);
    }
    return KSTORE_OK;
}

static kstore_status fy_log_append(kstore_log *handle, int64_t first_offset, int64_t last_offset, int64_t max_timestamp,
                                   const kstore_iovec *iov, uint32_t iov_count, kstore_completion completion,
                                   void *context) {
    return fy_log_append_to(handle, false, first_offset, last_offset, max_timestamp, iov, iov_count, completion,
                            context);
}

static kstore_status fy_log_append_checked_batch(kstore_log *handle, int64_t first_offset, int64_t last_offset,
                                                 int64_t max_timestamp, const kstore_iovec *iov, uint32_t iov_count,
                                                 kstore_completion completion, void *context) {
    return fy_log_append_to(handle, true, first_offset, last_offset, max_timestamp, iov, iov_count, completion,
                            context);
}

static kstore_status fy_log_read(kstore_log *handle, int64_t offset, int64_t end_offset_limit, void *buf,
                                 uint64_t capacity, kstore_read_result *result) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fy_log *log = fy_log_of(handle);
    kstore_status status = fy_check_alive(log, "read", false);
    if (status != KSTORE_OK) return status;
    kstore_status injected = fy_decide_for_log(log, KSTORE_FAULTY_OP_READ);
    if (injected != KSTORE_OK) {
        fy_set_error(log->instance, "faulty: injected %s for read of log '%s' at %lld", kstore_status_name(injected),
                     log->record->name, (long long)offset);
        return injected;
    }
    return fy_inner_failed(log->instance,
                           fy_inner_methods(log)->read(log->inner, offset, end_offset_limit, buf, capacity, result));
}

static kstore_status fy_log_sync(kstore_log *handle, kstore_completion completion, void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fy_log *log = fy_log_of(handle);
    fy_instance *instance = log->instance;
    const kstore_log_methods *inner = fy_inner_methods(log);
    if (completion == NULL) return fy_inner_failed(instance, inner->sync(log->inner, completion, context));
    kstore_status status = fy_check_alive(log, "sync", true);
    if (status != KSTORE_OK) return status;
    kstore_status injected = fy_decide_for_log(log, KSTORE_FAULTY_OP_SYNC);
    pthread_mutex_lock(&log->mutex);
    fy_item *item = fy_new_item(log, completion, context, true, log->end, log->end);
    if (item == NULL) {
        pthread_mutex_unlock(&log->mutex);
        fy_set_error(instance, "faulty: out of memory");
        return KSTORE_ERR_NO_MEMORY;
    }
    fy_enqueue(log, item);
    if (injected != KSTORE_OK) {
        /* The entries it covered are not known to be durable; a non-retryable status fails the log. */
        item->status = injected;
        item->done = true;
        if (!kstore_status_is_retryable(injected)) log->failed = true;
        pthread_mutex_unlock(&log->mutex);
        fy_set_error(instance, "faulty: injected %s for sync of log '%s'", kstore_status_name(injected),
                     log->record->name);
        fy_drain(log);
        return KSTORE_OK;
    }
    pthread_mutex_unlock(&log->mutex);
    status = inner->sync(log->inner, fy_inner_done, item);
    if (status != KSTORE_OK) {
        pthread_mutex_lock(&log->mutex);
        fy_unlink_item(log, item);
        pthread_mutex_unlock(&log->mutex);
        free(item);
        fy_drain(log);
        return fy_inner_failed(instance, status);
    }
    return KSTORE_OK;
}

static kstore_status fy_log_state(kstore_log *handle, kstore_log_state *state) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fy_log *log = fy_log_of(handle);
    return fy_inner_failed(log->instance, fy_inner_methods(log)->state(log->inner, state));
}

static kstore_status fy_log_truncate_to(kstore_log *handle, int64_t offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fy_log *log = fy_log_of(handle);
    kstore_status status = fy_check_alive(log, "truncate_to", true);
    if (status != KSTORE_OK) return status;
    status = fy_inner_failed(log->instance, fy_inner_methods(log)->truncate_to(log->inner, offset));
    if (status == KSTORE_OK) {
        pthread_mutex_lock(&log->mutex);
        log->end = offset;
        if (log->confirmed_end > offset) log->confirmed_end = offset;
        log->poisoned = false;
        pthread_mutex_unlock(&log->mutex);
    }
    return status;
}

static kstore_status fy_log_delete_before(kstore_log *handle, int64_t offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fy_log *log = fy_log_of(handle);
    kstore_status status = fy_check_alive(log, "delete_before", true);
    if (status != KSTORE_OK) return status;
    return fy_inner_failed(log->instance, fy_inner_methods(log)->delete_before(log->inner, offset));
}

static kstore_status fy_log_enforce_retention(kstore_log *handle, int64_t retain_bytes, int64_t retain_after_timestamp,
                                              int64_t *new_start_offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fy_log *log = fy_log_of(handle);
    kstore_status status = fy_check_alive(log, "enforce_retention", true);
    if (status != KSTORE_OK) return status;
    return fy_inner_failed(log->instance, fy_inner_methods(log)->enforce_retention(
                                              log->inner, retain_bytes, retain_after_timestamp, new_start_offset));
}

static kstore_status fy_log_find_offset_by_time(kstore_log *handle, int64_t timestamp, int64_t *offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fy_log *log = fy_log_of(handle);
    kstore_status status = fy_check_alive(log, "find_offset_by_time", false);
    if (status != KSTORE_OK) return status;
    return fy_inner_failed(log->instance, fy_inner_methods(log)->find_offset_by_time(log->inner, timestamp, offset));
}

static kstore_status fy_log_control(kstore_log *handle, int32_t op, void *argument) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fy_log *log = fy_log_of(handle);
    kstore_status status = fy_check_alive(log, "control", false);
    if (status != KSTORE_OK) return status;
    return fy_inner_failed(log->instance, fy_inner_methods(log)->control(log->inner, op, argument));
}

/* The shim's table for one log: the members the inner log's table has, and no others. */
void fy_build_methods(kstore_log_methods *methods, const kstore_log_methods *inner) {
    memset(methods, 0, sizeof(*methods));
    methods->abi_version = KSTORE_ABI_VERSION;
    methods->struct_size = sizeof(kstore_log_methods);
    methods->close = fy_log_close;
    methods->append = fy_log_append;
    methods->read = fy_log_read;
    methods->sync = fy_log_sync;
    methods->state = fy_log_state;
    if (FY_HAS(inner, kstore_log_methods, truncate_to)) methods->truncate_to = fy_log_truncate_to;
    if (FY_HAS(inner, kstore_log_methods, delete_before)) methods->delete_before = fy_log_delete_before;
    if (FY_HAS(inner, kstore_log_methods, enforce_retention)) methods->enforce_retention = fy_log_enforce_retention;
    if (FY_HAS(inner, kstore_log_methods, find_offset_by_time)) {
        methods->find_offset_by_time = fy_log_find_offset_by_time;
    }
    if (FY_HAS(inner, kstore_log_methods, control)) methods->control = fy_log_control;
    if (FY_HAS_SINCE(inner, kstore_log_methods, append_checked_batch, 2)) {
        methods->append_checked_batch = fy_log_append_checked_batch;
    }
}
