/* The faulty shim (kstore_faulty.h): its tables — one per wrapped backend, in a fixed set of slots
 * — the instance members, and the crash model. The log members are in faulty_log.c, the schedules
 * in faulty_schedule.c and faulty_io.c (see faulty_internal.h).
 */
#include "faulty_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fy_slot {
    kstore_backend table; /* first member: the pointer kstore_faulty_wrap returns */
    bool in_use;
    const kstore_backend *inner;
    kstore_faulty_config config;
    char description[256];
} fy_slot;

static pthread_mutex_t fy_slots_mutex = PTHREAD_MUTEX_INITIALIZER;
static fy_slot fy_slots[FY_SLOT_COUNT];

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
        kstore_kit_message(error_message, error_capacity, "faulty: this table was released");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    kstore_instance *inner_instance = NULL;
    kstore_status status = inner->open(options, option_count, &inner_instance, error_message, error_capacity);
    if (status != KSTORE_OK) return status;
    fy_instance *instance = calloc(1, sizeof(fy_instance));
    if (instance == NULL) {
        inner->close(inner_instance);
        kstore_kit_message(error_message, error_capacity, "faulty: out of memory");
        return KSTORE_ERR_NO_MEMORY;
    }
    instance->base.backend = &fy_slots[slot].table;
    instance->inner = inner;
    instance->inner_instance = inner_instance;
    instance->config = config;
    instance->stats.struct_size = sizeof(kstore_faulty_stats);
    pthread_mutex_init(&instance->mutex, NULL);
    kstore_kit_error_init(&instance->errors);
    fy_io_init(&instance->io);
    *instance_out = &instance->base;
    return KSTORE_OK;
}

/* One open function per table slot: kstore_backend.open receives no table pointer. */
#define FY_OPEN(n)                                                                                                     \
    static kstore_status fy_open_##n(const kstore_option *options, uint32_t option_count, kstore_instance **out,       \
                                     char *message, size_t capacity) {                                                 \
        return fy_open_in_slot(n, options, option_count, out, message, capacity);                                      \
    }
#define FY_OPEN8(a, b, c, d, e, f, g, h)                                                                               \
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
    /* First: the inner instance may call the I/O fault hook, whose context is this instance. */
    instance->inner->close(instance->inner_instance);
    for (size_t index = 0; index < instance->record_count; index++) {
        free(instance->records[index]->name);
        free(instance->records[index]);
    }
    free(instance->records);
    pthread_mutex_destroy(&instance->mutex);
    kstore_kit_error_destroy(&instance->errors);
    fy_io_destroy(&instance->io);
    free(instance);
}

static size_t fy_last_error(kstore_instance *handle, char *buf, size_t capacity) {
    if (handle == NULL) {
        if (buf != NULL && capacity > 0) buf[0] = '\0';
        return 0;
    }
    fy_instance *instance = fy_instance_of(handle);
    size_t length = 0;
    if (kstore_kit_error_copy_if_set(&instance->errors, buf, capacity, &length)) return length;
    return instance->inner->last_error(instance->inner_instance, buf, capacity);
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
        pthread_mutex_lock(&instance->io.mutex);
        copy.io_failures = instance->io.failures;
        pthread_mutex_unlock(&instance->io.mutex);
        copy.struct_size = stats->struct_size;
        memcpy(stats, &copy, size);
        return KSTORE_OK;
    }
    case KSTORE_FAULTY_CONTROL_FAIL_IO:
    case KSTORE_FAULTY_CONTROL_SET_IO_SCHEDULE:
    case KSTORE_FAULTY_CONTROL_CLEAR_IO: return fy_io_control(instance, op, argument);
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
