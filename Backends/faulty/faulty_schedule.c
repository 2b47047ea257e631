/* The faulty shim's ABI-level schedule (kstore_faulty.h): whether the n-th call of an operation on a
 * log fails depends only on (seed, log name, operation, n) — FAIL_NEXT first — so a run replays by
 * its seed. And the shim's error slot: its own failures, or the inner backend's (then last_error
 * asks the inner backend).
 */
#include "faulty_internal.h"

#include <stdlib.h>
#include <string.h>

void fy_set_error(fy_instance *instance, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    kstore_kit_error_vset(&instance->errors, format, arguments);
    va_end(arguments);
}

kstore_status fy_inner_failed(fy_instance *instance, kstore_status status) {
    if (status != KSTORE_OK) kstore_kit_error_clear(&instance->errors);
    return status;
}

uint64_t fy_mix(uint64_t x) {
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
fy_record *fy_record_for(fy_instance *instance, const char *name) {
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
kstore_status fy_decide(fy_instance *instance, fy_record *record, int operation) {
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

kstore_status fy_decide_for_log(fy_log *log, int operation) {
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
