/* Shared checks and copies of kstore.h's members (kstore_kit_log.h). */
#include "kstore_kit_log.h"

#include <stdlib.h>
#include <string.h>

void kstore_kit_put_state(kstore_log_state *state, const kstore_log_state *values) {
    if (KSTORE_KIT_FITS(state, kstore_log_state, reserved)) state->reserved = 0;
    if (KSTORE_KIT_FITS(state, kstore_log_state, start_offset)) state->start_offset = values->start_offset;
    if (KSTORE_KIT_FITS(state, kstore_log_state, end_offset)) state->end_offset = values->end_offset;
    if (KSTORE_KIT_FITS(state, kstore_log_state, durable_end_offset)) {
        state->durable_end_offset = values->durable_end_offset;
    }
    if (KSTORE_KIT_FITS(state, kstore_log_state, max_timestamp)) state->max_timestamp = values->max_timestamp;
    if (KSTORE_KIT_FITS(state, kstore_log_state, byte_count)) state->byte_count = values->byte_count;
    if (KSTORE_KIT_FITS(state, kstore_log_state, entry_count)) state->entry_count = values->entry_count;
}

void kstore_kit_put_read_result(kstore_read_result *result, const kstore_read_result *values) {
    if (KSTORE_KIT_FITS(result, kstore_read_result, entry_count)) result->entry_count = values->entry_count;
    if (KSTORE_KIT_FITS(result, kstore_read_result, byte_count)) result->byte_count = values->byte_count;
    if (KSTORE_KIT_FITS(result, kstore_read_result, next_offset)) result->next_offset = values->next_offset;
    if (KSTORE_KIT_FITS(result, kstore_read_result, first_entry_bytes)) {
        result->first_entry_bytes = values->first_entry_bytes;
    }
}

kstore_status kstore_kit_check_append(const kstore_kit_append *append, uint64_t entry_bytes_max, const char *log_name,
                                      kstore_kit_error *errors, uint64_t *total_bytes) {
    if (append->completion == NULL) {
        kstore_kit_error_set(errors, "append to log '%s': completion is NULL", log_name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (append->iov == NULL || append->iov_count == 0) {
        kstore_kit_error_set(errors, "append to log '%s': no iovecs (iov_count %u)", log_name, append->iov_count);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    uint64_t total = 0;
    for (uint32_t index = 0; index < append->iov_count; index++) {
        const kstore_iovec *piece = &append->iov[index];
        if (piece->len > 0 && piece->base == NULL) {
            kstore_kit_error_set(errors, "append to log '%s': iov[%u].base is NULL with length %zu", log_name, index,
                                 piece->len);
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        if (piece->len > entry_bytes_max - total) {
            kstore_kit_error_set(errors,
                                 "append to log '%s': the entry is larger than %llu bytes, the largest entry "
                                 "this backend stores",
                                 log_name, (unsigned long long)entry_bytes_max);
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        total += piece->len;
    }
    if (total == 0) {
        kstore_kit_error_set(errors, "append to log '%s': the entry is empty", log_name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (append->first_offset < 0 || append->last_offset < append->first_offset || append->last_offset == INT64_MAX) {
        kstore_kit_error_set(errors, "append to log '%s': bad offset range [%lld, %lld]", log_name,
                             (long long)append->first_offset, (long long)append->last_offset);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (append->max_timestamp < -1) {
        kstore_kit_error_set(errors, "append to log '%s': max_timestamp %lld is neither -1 nor >= 0", log_name,
                             (long long)append->max_timestamp);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    *total_bytes = total;
    return KSTORE_OK;
}

kstore_status kstore_kit_check_read(const void *buf, uint64_t capacity, const kstore_read_result *result,
                                    const char *log_name, kstore_kit_error *errors) {
    if (result == NULL || (buf == NULL && capacity > 0)) {
        kstore_kit_error_set(errors, "read from log '%s': %s is NULL", log_name, result == NULL ? "result" : "buf");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    return KSTORE_OK;
}

kstore_status kstore_kit_check_read_offset(int64_t offset, int64_t start_offset, int64_t end_offset,
                                           const char *log_name, kstore_kit_error *errors) {
    if (offset >= start_offset && offset <= end_offset) return KSTORE_OK;
    kstore_kit_error_set(errors, "read from log '%s': offset %lld outside [%lld, %lld]", log_name, (long long)offset,
                         (long long)start_offset, (long long)end_offset);
    return KSTORE_ERR_OUT_OF_RANGE;
}

kstore_status kstore_kit_require(bool present, const char *member, const char *argument, const char *log_name,
                                 kstore_kit_error *errors) {
    if (present) return KSTORE_OK;
    kstore_kit_error_set(errors, "%s of log '%s': %s is NULL", member, log_name, argument);
    return KSTORE_ERR_INVALID_ARGUMENT;
}

bool kstore_kit_names_add(kstore_kit_names *names, const char *name) {
    if (names->count == names->capacity) {
        size_t capacity = names->capacity == 0 ? 16 : names->capacity * 2;
        char **larger = capacity <= SIZE_MAX / sizeof(char *) ? realloc(names->names, capacity * sizeof(char *)) : NULL;
        if (larger == NULL) return false;
        names->names = larger;
        names->capacity = capacity;
    }
    char *copy = strdup(name);
    if (copy == NULL) return false;
    names->names[names->count++] = copy;
    return true;
}

kstore_status kstore_kit_names_finish(kstore_kit_names *names, bool complete, kstore_list_callback callback,
                                      void *context, kstore_kit_error *errors) {
    for (size_t index = 0; complete && index < names->count; index++) callback(context, names->names[index]);
    for (size_t index = 0; index < names->count; index++) free(names->names[index]);
    free(names->names);
    *names = (kstore_kit_names){0};
    if (complete) return KSTORE_OK;
    kstore_kit_error_set(errors, "list_logs: out of memory");
    return KSTORE_ERR_NO_MEMORY;
}

kstore_status kstore_kit_open_log_admit(const char *name, uint32_t flags, bool found, bool open,
                                        kstore_kit_error *errors) {
    if (found && (flags & KSTORE_OPEN_EXCLUSIVE) != 0) {
        kstore_kit_error_set(errors, "open_log '%s': the log exists (exclusive create)", name);
        return KSTORE_ERR_EXISTS;
    }
    if (found && open) {
        kstore_kit_error_set(errors, "open_log '%s': the log is already open", name);
        return KSTORE_ERR_BUSY;
    }
    if (!found && (flags & KSTORE_OPEN_CREATE) == 0) {
        kstore_kit_error_set(errors, "open_log '%s': no such log", name);
        return KSTORE_ERR_NOT_FOUND;
    }
    return KSTORE_OK;
}
