/* The faulty shim (kstore_faulty.h): seeded ABI-level failures and a crash model over any backend.
 *
 * Completions: every accepted append and sync of a log becomes an item in the log's FIFO; the
 * inner backend's callbacks and the shim's injected failures mark items done, and items are handed
 * to the host strictly in order (kstore.h "Completions"), by whichever thread finds the head done.
 * An injected failure never reaches the inner log, so the inner log's end already is the failed
 * entry's first offset; appends accepted after it (the host had not seen the failure yet) fail with
 * the same status without reaching the inner log, until the host appends from that offset again.
 */
#include "kstore_faulty.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FY_SLOT_COUNT 64
#define FY_ERROR_BYTES_MAX 512
#define FY_OP_COUNT 5

typedef struct fy_instance fy_instance;
typedef struct fy_log fy_log;

/* A member exists if the table's version and size cover it and it is non-NULL (kstore.h). */
#define FY_HAS(table, type, member)                                                                   \
    ((table)->abi_version >= 1 && offsetof(type, member) + sizeof(void *) <= (size_t)(table)->struct_size && \
     (table)->member != NULL)

typedef struct fy_slot {
    kstore_backend table; /* first member: the pointer kstore_faulty_wrap returns */
    bool in_use;
    const kstore_backend *inner;
    kstore_faulty_config config;
    char description[256];
} fy_slot;

/* What the shim remembers about one log name for the life of an instance. */
typedef struct fy_record {
    char *name;
    uint64_t name_hash;
    /* The end covered by the last completed sync; -1 until the log is first opened. */
    int64_t synced_end;
    /* Calls per operation: the schedule's clock. */
    uint64_t calls[FY_OP_COUNT];
    /* The open handle, or NULL. */
    fy_log *open;
} fy_record;

typedef struct fy_item {
    struct fy_item *next;
    kstore_completion completion;
    void *context;
    kstore_status status;
    bool done;
    bool is_sync;
    /* append: its first offset and the end after it. */
    int64_t offset;
    int64_t end_after;
    fy_log *log;
} fy_item;

struct fy_log {
    kstore_log base; /* first member: the handle the host holds */
    kstore_log_methods methods;
    fy_instance *instance;
    fy_record *record;
    kstore_log *inner;

    pthread_mutex_t mutex;
    fy_item *head;
    fy_item *tail;
    bool delivering;
    /* The end after every accepted append (the inner log's, plus pending ones). */
    int64_t end;
    /* The end after the last append whose success was delivered, in delivery order: what a sync
     * delivered now covers. */
    int64_t confirmed_end;
    bool poisoned;
    int64_t poison_offset;
    kstore_status poison_status;
    bool failed;
    bool crashed;
};

struct fy_instance {
    kstore_instance base; /* first member: the handle the host holds */
    const kstore_backend *inner;
    kstore_instance *inner_instance;

    pthread_mutex_t mutex;
    kstore_faulty_config config;
    fy_record **records;
    size_t record_count;
    size_t record_capacity;
    kstore_status fail_next_status[FY_OP_COUNT];
    uint32_t fail_next_count[FY_OP_COUNT];
    kstore_faulty_stats stats;
    /* KSTORE_FAULTY_CONTROL_HOLD_SYNCS: sync completions (and what follows them) wait. Read without
     * the instance mutex by fy_drain, which holds a log mutex, hence atomic. */
    bool hold_syncs;

    pthread_mutex_t error_mutex;
    char error_message[FY_ERROR_BYTES_MAX];
    /* Whether the latest failure was the shim's (else last_error asks the inner backend). */
    bool own_error;
};

static pthread_mutex_t fy_slots_mutex = PTHREAD_MUTEX_INITIALIZER;
static fy_slot fy_slots[FY_SLOT_COUNT];

/* MARK: - Helpers */

__attribute__((format(printf, 2, 3))) static void fy_set_error(fy_instance *instance, const char *format, ...) {
    char message[FY_ERROR_BYTES_MAX];
    va_list arguments;
    va_start(arguments, format);
    if (vsnprintf(message, sizeof(message), format, arguments) < 0) message[0] = '\0';
    va_end(arguments);
    pthread_mutex_lock(&instance->error_mutex);
    memcpy(instance->error_message, message, sizeof(message));
    instance->own_error = true;
    pthread_mutex_unlock(&instance->error_mutex);
}

/* The inner backend failed: last_error reads its message. */
static kstore_status fy_inner_failed(fy_instance *instance, kstore_status status) {
    if (status != KSTORE_OK) {
        pthread_mutex_lock(&instance->error_mutex);
        instance->own_error = false;
        pthread_mutex_unlock(&instance->error_mutex);
    }
    return status;
}

static uint64_t fy_mix(uint64_t x) {
    /* splitmix64's finalizer. */
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t fy_hash_name(const char *name) {
    uint64_t hash = 0xCBF29CE484222325ull; /* FNV-1a */
    for (const char *c = name; *c != '\0'; c++) hash = (hash ^ (uint8_t)*c) * 0x100000001B3ull;
    return hash;
}

/* The record of `name`, created if missing. Caller holds instance->mutex. NULL: out of memory. */
static fy_record *fy_record_for(fy_instance *instance, const char *name) {
    for (size_t index = 0; index < instance->record_count; index++) {
        if (strcmp(instance->records[index]->name, name) == 0) return instance->records[index];
    }
    if (instance->record_count == instance->record_capacity) {
        size_t capacity = instance->record_capacity == 0 ? 16 : instance->record_capacity * 2;
        fy_record **records = realloc(instance->records, capacity * sizeof(fy_record *));
        if (records == NULL) return NULL;
        instance->records = records;
        instance->record_capacity = capacity;
    }
    fy_record *record = calloc(1, sizeof(fy_record));
    if (record == NULL || (record->name = strdup(name)) == NULL) {
        free(record);
        return NULL;
    }
    record->name_hash = fy_hash_name(name);
    record->synced_end = -1;
    instance->records[instance->record_count++] = record;
    return record;
}

/* The status the `operation` call on `record` fails with (KSTORE_OK: none). Advances the schedule.
 * Caller holds instance->mutex. */
static kstore_status fy_decide(fy_instance *instance, fy_record *record, int operation) {
    uint64_t call = record->calls[operation]++;
    if (instance->fail_next_count[operation] > 0) {
        instance->fail_next_count[operation]--;
        return instance->fail_next_status[operation];
    }
    const kstore_faulty_config *config = &instance->config;
    uint64_t draw = fy_mix(config->seed ^ fy_mix(record->name_hash ^ fy_mix(((uint64_t)operation << 56) ^ call)));
    uint32_t point = (uint32_t)(draw % 1000000u);
    switch (operation) {
    case KSTORE_FAULTY_OP_APPEND:
        if (point < config->append_no_space_ppm) return KSTORE_ERR_NO_SPACE;
        if (point - config->append_no_space_ppm < config->append_io_ppm) return KSTORE_ERR_IO;
        return KSTORE_OK;
    case KSTORE_FAULTY_OP_SYNC: return point < config->sync_io_ppm ? KSTORE_ERR_IO : KSTORE_OK;
    case KSTORE_FAULTY_OP_READ: return point < config->read_io_ppm ? KSTORE_ERR_IO : KSTORE_OK;
    case KSTORE_FAULTY_OP_OPEN_LOG: return point < config->open_log_busy_ppm ? KSTORE_ERR_BUSY : KSTORE_OK;
    default: return KSTORE_OK;
    }
}

static kstore_status fy_decide_for_log(fy_log *log, int operation) {
    fy_instance *instance = log->instance;
    pthread_mutex_lock(&instance->mutex);
    kstore_status status = fy_decide(instance, log->record, operation);
    if (status != KSTORE_OK) {
        switch (operation) {
        case KSTORE_FAULTY_OP_APPEND: instance->stats.append_failures++; break;
        case KSTORE_FAULTY_OP_SYNC: instance->stats.sync_failures++; break;
        case KSTORE_FAULTY_OP_READ: instance->stats.read_failures++; break;
        default: break;
        }
    }
    pthread_mutex_unlock(&instance->mutex);
    return status;
}

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

/* Hands done items to the host in order. */
static void fy_drain(fy_log *log) {
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
    if (status != KSTORE_OK && !item->is_sync) {
        /* kstore.h: the end returns to the failed entry's first offset. */
        if (item->offset < log->end) log->end = item->offset;
        if (!kstore_status_is_retryable(status)) log->failed = true;
    }
    if (status != KSTORE_OK && item->is_sync) log->failed = true;
    pthread_mutex_unlock(&log->mutex);
    fy_drain(log);
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
        fy_set_error(log->instance, "faulty: %s of log '%s': the instance crashed (KSTORE_FAULTY_CONTROL_CRASH); "
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
    fy_inner_methods(log)->close(log->inner);
    pthread_mutex_lock(&instance->mutex);
    if (log->record->open == log) log->record->open = NULL;
    pthread_mutex_unlock(&instance->mutex);
    /* kstore.h: close comes after every completion, so the queue is empty. */
    pthread_mutex_destroy(&log->mutex);
    free(log);
}

static kstore_status fy_log_append(kstore_log *handle, int64_t first_offset, int64_t last_offset,
                                   int64_t max_timestamp, const kstore_iovec *iov, uint32_t iov_count,
                                   kstore_completion completion, void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fy_log *log = fy_log_of(handle);
    fy_instance *instance = log->instance;
    const kstore_log_methods *inner = fy_inner_methods(log);
    if (completion == NULL) {
        /* Let the inner backend reject it with its own message. */
        return fy_inner_failed(instance, inner->append(log->inner, first_offset, last_offset, max_timestamp, iov,
                                                       iov_count, completion, context));
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
    status = inner->append(log->inner, first_offset, last_offset, max_timestamp, iov, iov_count, fy_inner_done, item);
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

static kstore_status fy_log_enforce_retention(kstore_log *handle, int64_t retain_bytes,
                                              int64_t retain_after_timestamp, int64_t *new_start_offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fy_log *log = fy_log_of(handle);
    kstore_status status = fy_check_alive(log, "enforce_retention", true);
    if (status != KSTORE_OK) return status;
    return fy_inner_failed(log->instance, fy_inner_methods(log)->enforce_retention(log->inner, retain_bytes,
                                                                                   retain_after_timestamp,
                                                                                   new_start_offset));
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
static void fy_build_methods(kstore_log_methods *methods, const kstore_log_methods *inner) {
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
}

/* MARK: - Instance members */

static fy_instance *fy_instance_of(kstore_instance *handle) { return (fy_instance *)handle; }

static kstore_status fy_open_in_slot(size_t slot, const kstore_option *options, uint32_t option_count,
                                     kstore_instance **instance_out, char *error_message, size_t error_capacity) {
    if (instance_out == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    *instance_out = NULL;
    pthread_mutex_lock(&fy_slots_mutex);
    bool in_use = fy_slots[slot].in_use;
    const kstore_backend *inner = fy_slots[slot].inner;
    kstore_faulty_config config = fy_slots[slot].config;
    pthread_mutex_unlock(&fy_slots_mutex);
    if (!in_use) {
        if (error_message != NULL && error_capacity > 0) {
            snprintf(error_message, error_capacity, "faulty: this table was released");
        }
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    kstore_instance *inner_instance = NULL;
    kstore_status status = inner->open(options, option_count, &inner_instance, error_message, error_capacity);
    if (status != KSTORE_OK) return status;
    fy_instance *instance = calloc(1, sizeof(fy_instance));
    if (instance == NULL) {
        inner->close(inner_instance);
        if (error_message != NULL && error_capacity > 0) {
            snprintf(error_message, error_capacity, "faulty: out of memory");
        }
        return KSTORE_ERR_NO_MEMORY;
    }
    instance->base.backend = &fy_slots[slot].table;
    instance->inner = inner;
    instance->inner_instance = inner_instance;
    instance->config = config;
    instance->stats.struct_size = sizeof(kstore_faulty_stats);
    pthread_mutex_init(&instance->mutex, NULL);
    pthread_mutex_init(&instance->error_mutex, NULL);
    *instance_out = &instance->base;
    return KSTORE_OK;
}

/* One open function per table slot: kstore_backend.open receives no table pointer. */
#define FY_OPEN(n)                                                                                                  \
    static kstore_status fy_open_##n(const kstore_option *options, uint32_t option_count, kstore_instance **out,    \
                                     char *message, size_t capacity) {                                             \
        return fy_open_in_slot(n, options, option_count, out, message, capacity);                                  \
    }
#define FY_OPEN8(a, b, c, d, e, f, g, h) \
    FY_OPEN(a) FY_OPEN(b) FY_OPEN(c) FY_OPEN(d) FY_OPEN(e) FY_OPEN(f) FY_OPEN(g) FY_OPEN(h)
FY_OPEN8(0, 1, 2, 3, 4, 5, 6, 7)
FY_OPEN8(8, 9, 10, 11, 12, 13, 14, 15)
FY_OPEN8(16, 17, 18, 19, 20, 21, 22, 23)
FY_OPEN8(24, 25, 26, 27, 28, 29, 30, 31)
FY_OPEN8(32, 33, 34, 35, 36, 37, 38, 39)
FY_OPEN8(40, 41, 42, 43, 44, 45, 46, 47)
FY_OPEN8(48, 49, 50, 51, 52, 53, 54, 55)
FY_OPEN8(56, 57, 58, 59, 60, 61, 62, 63)
typedef kstore_status (*fy_open_function)(const kstore_option *, uint32_t, kstore_instance **, char *, size_t);
static const fy_open_function fy_open_functions[FY_SLOT_COUNT] = {
    fy_open_0,  fy_open_1,  fy_open_2,  fy_open_3,  fy_open_4,  fy_open_5,  fy_open_6,  fy_open_7,
    fy_open_8,  fy_open_9,  fy_open_10, fy_open_11, fy_open_12, fy_open_13, fy_open_14, fy_open_15,
    fy_open_16, fy_open_17, fy_open_18, fy_open_19, fy_open_20, fy_open_21, fy_open_22, fy_open_23,
    fy_open_24, fy_open_25, fy_open_26, fy_open_27, fy_open_28, fy_open_29, fy_open_30, fy_open_31,
    fy_open_32, fy_open_33, fy_open_34, fy_open_35, fy_open_36, fy_open_37, fy_open_38, fy_open_39,
    fy_open_40, fy_open_41, fy_open_42, fy_open_43, fy_open_44, fy_open_45, fy_open_46, fy_open_47,
    fy_open_48, fy_open_49, fy_open_50, fy_open_51, fy_open_52, fy_open_53, fy_open_54, fy_open_55,
    fy_open_56, fy_open_57, fy_open_58, fy_open_59, fy_open_60, fy_open_61, fy_open_62, fy_open_63,
};

static void fy_close(kstore_instance *handle) {
    if (handle == NULL) return;
    fy_instance *instance = fy_instance_of(handle);
    instance->inner->close(instance->inner_instance);
    for (size_t index = 0; index < instance->record_count; index++) {
        free(instance->records[index]->name);
        free(instance->records[index]);
    }
    free(instance->records);
    pthread_mutex_destroy(&instance->mutex);
    pthread_mutex_destroy(&instance->error_mutex);
    free(instance);
}

static size_t fy_last_error(kstore_instance *handle, char *buf, size_t capacity) {
    if (handle == NULL) {
        if (buf != NULL && capacity > 0) buf[0] = '\0';
        return 0;
    }
    fy_instance *instance = fy_instance_of(handle);
    pthread_mutex_lock(&instance->error_mutex);
    if (!instance->own_error) {
        pthread_mutex_unlock(&instance->error_mutex);
        return instance->inner->last_error(instance->inner_instance, buf, capacity);
    }
    size_t length = kstore_copy_error(instance->error_message, strlen(instance->error_message), buf, capacity);
    pthread_mutex_unlock(&instance->error_mutex);
    return length;
}

static kstore_status fy_open_log(kstore_instance *handle, const char *name, uint32_t flags,
                                 const kstore_option *options, uint32_t option_count, kstore_log **log_out) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fy_instance *instance = fy_instance_of(handle);
    const kstore_backend *inner = instance->inner;
    if (name == NULL || log_out == NULL) {
        return fy_inner_failed(instance,
                               inner->open_log(instance->inner_instance, name, flags, options, option_count, log_out));
    }
    pthread_mutex_lock(&instance->mutex);
    fy_record *record = fy_record_for(instance, name);
    kstore_status injected =
        record == NULL ? KSTORE_ERR_NO_MEMORY : fy_decide(instance, record, KSTORE_FAULTY_OP_OPEN_LOG);
    if (record != NULL && injected != KSTORE_OK) instance->stats.open_log_failures++;
    pthread_mutex_unlock(&instance->mutex);
    if (injected != KSTORE_OK) {
        *log_out = NULL;
        fy_set_error(instance, "faulty: injected %s for open_log '%s'", kstore_status_name(injected), name);
        return injected;
    }
    kstore_log *inner_log = NULL;
    kstore_status status = inner->open_log(instance->inner_instance, name, flags, options, option_count, &inner_log);
    if (status != KSTORE_OK) return fy_inner_failed(instance, status);
    const kstore_log_methods *methods = inner_log->methods;
    kstore_log_state state;
    memset(&state, 0, sizeof(state));
    state.struct_size = sizeof(state);
    fy_log *log = calloc(1, sizeof(fy_log));
    if (methods == NULL || !FY_HAS(methods, kstore_log_methods, close) ||
        !FY_HAS(methods, kstore_log_methods, append) || !FY_HAS(methods, kstore_log_methods, read) ||
        !FY_HAS(methods, kstore_log_methods, sync) || !FY_HAS(methods, kstore_log_methods, state) || log == NULL ||
        methods->state(inner_log, &state) != KSTORE_OK) {
        if (methods != NULL && FY_HAS(methods, kstore_log_methods, close)) methods->close(inner_log);
        free(log);
        fy_set_error(instance, "faulty: open_log '%s': the inner log is unusable or memory ran out", name);
        return log == NULL ? KSTORE_ERR_NO_MEMORY : KSTORE_ERR_UNSUPPORTED;
    }
    fy_build_methods(&log->methods, methods);
    log->base.methods = &log->methods;
    log->instance = instance;
    log->record = record;
    log->inner = inner_log;
    log->end = state.end_offset;
    log->confirmed_end = state.end_offset;
    pthread_mutex_init(&log->mutex, NULL);
    pthread_mutex_lock(&instance->mutex);
    /* First sight of the log: what the inner backend reports durable. Reopened: keep what the last
     * sync covered (close does not make entries durable, kstore.h). */
    if (record->synced_end < 0) {
        record->synced_end = state.durable_end_offset;
    } else if (record->synced_end > state.end_offset) {
        record->synced_end = state.end_offset;
    }
    record->open = log;
    pthread_mutex_unlock(&instance->mutex);
    *log_out = &log->base;
    return KSTORE_OK;
}

static kstore_status fy_delete_log(kstore_instance *handle, const char *name) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fy_instance *instance = fy_instance_of(handle);
    kstore_status status = instance->inner->delete_log(instance->inner_instance, name);
    if (status == KSTORE_OK && name != NULL) {
        pthread_mutex_lock(&instance->mutex);
        for (size_t index = 0; index < instance->record_count; index++) {
            fy_record *record = instance->records[index];
            if (strcmp(record->name, name) != 0) continue;
            /* Forget what was synced; keep the schedule's clock so a replay stays the same. */
            record->synced_end = -1;
            break;
        }
        pthread_mutex_unlock(&instance->mutex);
    }
    return fy_inner_failed(instance, status);
}

static kstore_status fy_list_logs(kstore_instance *handle, kstore_list_callback callback, void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fy_instance *instance = fy_instance_of(handle);
    return fy_inner_failed(instance, instance->inner->list_logs(instance->inner_instance, callback, context));
}

/* KSTORE_FAULTY_CONTROL_CRASH: see kstore_faulty.h. */
static kstore_status fy_crash(fy_instance *instance) {
    const kstore_backend *inner = instance->inner;
    kstore_status result = KSTORE_OK;
    pthread_mutex_lock(&instance->mutex);
    for (size_t index = 0; index < instance->record_count; index++) {
        fy_record *record = instance->records[index];
        if (record->synced_end < 0) continue;
        kstore_log *inner_log = NULL;
        bool opened_here = false;
        if (record->open != NULL) {
            pthread_mutex_lock(&record->open->mutex);
            record->open->crashed = true;
            pthread_mutex_unlock(&record->open->mutex);
            inner_log = record->open->inner;
        } else {
            kstore_status status = inner->open_log(instance->inner_instance, record->name, 0, NULL, 0, &inner_log);
            if (status == KSTORE_ERR_NOT_FOUND) continue;
            if (status != KSTORE_OK) {
                result = status;
                continue;
            }
            opened_here = true;
        }
        const kstore_log_methods *methods = inner_log->methods;
        kstore_log_state state;
        memset(&state, 0, sizeof(state));
        state.struct_size = sizeof(state);
        kstore_status status = methods->state(inner_log, &state);
        int64_t target = record->synced_end > state.start_offset ? record->synced_end : state.start_offset;
        if (status == KSTORE_OK && target < state.end_offset) {
            if (!FY_HAS(methods, kstore_log_methods, truncate_to)) {
                status = KSTORE_ERR_UNSUPPORTED;
            } else {
                status = methods->truncate_to(inner_log, target);
                if (status == KSTORE_OK) instance->stats.dropped_offsets += (uint64_t)(state.end_offset - target);
            }
        }
        if (status == KSTORE_OK) record->synced_end = target < state.end_offset ? target : state.end_offset;
        if (status != KSTORE_OK) result = status;
        if (opened_here) methods->close(inner_log);
    }
    instance->stats.crashes++;
    pthread_mutex_unlock(&instance->mutex);
    if (result != KSTORE_OK) {
        fy_set_error(instance,
                     "faulty: crash could not drop every unsynced entry (%s; the inner logs need truncate_to)",
                     kstore_status_name(result));
    }
    return result;
}

static kstore_status fy_control(kstore_instance *handle, int32_t op, void *argument) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fy_instance *instance = fy_instance_of(handle);
    switch (op) {
    case KSTORE_FAULTY_CONTROL_CRASH: return fy_crash(instance);
    case KSTORE_FAULTY_CONTROL_SET_CONFIG: {
        const kstore_faulty_config *config = argument;
        if (config == NULL || config->struct_size < sizeof(kstore_faulty_config)) {
            fy_set_error(instance, "faulty: SET_CONFIG needs a kstore_faulty_config");
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        pthread_mutex_lock(&instance->mutex);
        instance->config = *config;
        pthread_mutex_unlock(&instance->mutex);
        return KSTORE_OK;
    }
    case KSTORE_FAULTY_CONTROL_HOLD_SYNCS:
        __atomic_store_n(&instance->hold_syncs, true, __ATOMIC_RELEASE);
        return KSTORE_OK;
    case KSTORE_FAULTY_CONTROL_RELEASE_SYNCS: {
        __atomic_store_n(&instance->hold_syncs, false, __ATOMIC_RELEASE);
        /* Drain every open log outside the instance mutex (a drain may take it). */
        pthread_mutex_lock(&instance->mutex);
        size_t count = 0;
        fy_log **open = calloc(instance->record_count + 1, sizeof(fy_log *));
        for (size_t index = 0; open != NULL && index < instance->record_count; index++) {
            if (instance->records[index]->open != NULL) open[count++] = instance->records[index]->open;
        }
        pthread_mutex_unlock(&instance->mutex);
        if (open == NULL) return KSTORE_ERR_NO_MEMORY;
        for (size_t index = 0; index < count; index++) fy_drain(open[index]);
        free(open);
        return KSTORE_OK;
    }
    case KSTORE_FAULTY_CONTROL_FAIL_NEXT: {
        const kstore_faulty_fail_next *next = argument;
        if (next == NULL || next->struct_size < sizeof(kstore_faulty_fail_next) || next->operation < 1 ||
            next->operation >= FY_OP_COUNT || next->status <= KSTORE_OK || next->status > KSTORE_STATUS_MAX) {
            fy_set_error(instance, "faulty: FAIL_NEXT needs an operation 1...4 and a KSTORE_ERR_* status");
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        pthread_mutex_lock(&instance->mutex);
        instance->fail_next_status[next->operation] = next->status;
        instance->fail_next_count[next->operation] = next->count;
        pthread_mutex_unlock(&instance->mutex);
        return KSTORE_OK;
    }
    case KSTORE_FAULTY_CONTROL_STATS: {
        kstore_faulty_stats *stats = argument;
        if (stats == NULL || stats->struct_size < 8) {
            fy_set_error(instance, "faulty: STATS needs a kstore_faulty_stats");
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        size_t size = stats->struct_size < sizeof(*stats) ? stats->struct_size : sizeof(*stats);
        pthread_mutex_lock(&instance->mutex);
        kstore_faulty_stats copy = instance->stats;
        pthread_mutex_unlock(&instance->mutex);
        copy.struct_size = stats->struct_size;
        memcpy(stats, &copy, size);
        return KSTORE_OK;
    }
    default: break;
    }
    if (FY_HAS(instance->inner, kstore_backend, control)) {
        return fy_inner_failed(instance, instance->inner->control(instance->inner_instance, op, argument));
    }
    fy_set_error(instance, "faulty: control op %d is supported neither by the shim nor by backend '%s'", (int)op,
                 instance->inner->name);
    return KSTORE_ERR_UNSUPPORTED;
}

/* MARK: - Tables */

const kstore_backend *kstore_faulty_wrap(const kstore_backend *inner, const kstore_faulty_config *config) {
    if (inner == NULL || inner->abi_version < 1 || inner->struct_size < offsetof(kstore_backend, control) ||
        inner->name == NULL || inner->open == NULL || inner->close == NULL || inner->last_error == NULL ||
        inner->open_log == NULL || inner->delete_log == NULL || inner->list_logs == NULL) {
        return NULL;
    }
    if (config != NULL && config->struct_size < sizeof(kstore_faulty_config)) return NULL;
    pthread_mutex_lock(&fy_slots_mutex);
    const kstore_backend *result = NULL;
    for (size_t index = 0; index < FY_SLOT_COUNT; index++) {
        fy_slot *slot = &fy_slots[index];
        if (slot->in_use) continue;
        memset(slot, 0, sizeof(*slot));
        slot->in_use = true;
        slot->inner = inner;
        if (config != NULL) slot->config = *config;
        slot->config.struct_size = sizeof(kstore_faulty_config);
        snprintf(slot->description, sizeof(slot->description), "Fault injection and crash simulation over '%s'",
                 inner->name);
        slot->table = (kstore_backend){
            .abi_version = KSTORE_ABI_VERSION,
            .struct_size = sizeof(kstore_backend),
            .name = "faulty",
            .description = slot->description,
            .capabilities = inner->capabilities,
            .reserved = 0,
            .open = fy_open_functions[index],
            .close = fy_close,
            .last_error = fy_last_error,
            .open_log = fy_open_log,
            .delete_log = fy_delete_log,
            .list_logs = fy_list_logs,
            .control = fy_control,
        };
        result = &slot->table;
        break;
    }
    pthread_mutex_unlock(&fy_slots_mutex);
    return result;
}

void kstore_faulty_release(const kstore_backend *table) {
    pthread_mutex_lock(&fy_slots_mutex);
    for (size_t index = 0; index < FY_SLOT_COUNT; index++) {
        if (&fy_slots[index].table == table) {
            fy_slots[index].in_use = false;
            break;
        }
    }
    pthread_mutex_unlock(&fy_slots_mutex);
}
