/* kstore.h's own helpers: status names, retryability, and the argument checks and error copies
 * every backend does the same way. It lives with the kit but is compiled by the CKStore target, so
 * the host and any backend get these with kstore.h alone (the rest of the kit is KStoreKit).
 * Compiling this file also evaluates the header's layout _Static_asserts once for the host. */
#include "kstore.h"

#include <stdio.h>
#include <string.h>

const char *kstore_status_name(kstore_status status) {
    switch (status) {
    case KSTORE_OK: return "KSTORE_OK";
    case KSTORE_ERR_NOT_FOUND: return "KSTORE_ERR_NOT_FOUND";
    case KSTORE_ERR_OUT_OF_RANGE: return "KSTORE_ERR_OUT_OF_RANGE";
    case KSTORE_ERR_CORRUPT: return "KSTORE_ERR_CORRUPT";
    case KSTORE_ERR_NO_SPACE: return "KSTORE_ERR_NO_SPACE";
    case KSTORE_ERR_IO: return "KSTORE_ERR_IO";
    case KSTORE_ERR_UNSUPPORTED: return "KSTORE_ERR_UNSUPPORTED";
    case KSTORE_ERR_BUSY: return "KSTORE_ERR_BUSY";
    case KSTORE_ERR_INVALID_ARGUMENT: return "KSTORE_ERR_INVALID_ARGUMENT";
    case KSTORE_ERR_EXISTS: return "KSTORE_ERR_EXISTS";
    case KSTORE_ERR_NO_MEMORY: return "KSTORE_ERR_NO_MEMORY";
    default: return "KSTORE_UNKNOWN";
    }
}

int kstore_status_is_retryable(kstore_status status) {
    switch (status) {
    case KSTORE_ERR_NO_SPACE:
    case KSTORE_ERR_BUSY:
    case KSTORE_ERR_NO_MEMORY: return 1;
    default: return 0;
    }
}

int kstore_log_name_is_valid(const char *name) {
    if (name == NULL) return 0;
    size_t length = strnlen(name, KSTORE_LOG_NAME_MAX + 1);
    if (length == 0 || length > KSTORE_LOG_NAME_MAX) return 0;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return 0;
    for (size_t index = 0; index < length; index++) {
        char c = name[index];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                 c == '-';
        if (!ok) return 0;
    }
    return 1;
}

int kstore_parse_positive_decimal(const char *text, int64_t *value_out) {
    if (text == NULL || *text == '\0') return 0;
    int64_t value = 0;
    for (const char *c = text; *c != '\0'; c++) {
        if (*c < '0' || *c > '9') return 0;
        int digit = *c - '0';
        if (value > (INT64_MAX - digit) / 10) return 0;
        value = value * 10 + digit;
    }
    if (value <= 0) return 0;
    if (value_out != NULL) *value_out = value;
    return 1;
}

kstore_status kstore_check_open_log_arguments(const char *name, uint32_t flags, const kstore_option *options,
                                              uint32_t option_count, kstore_log **log_out, char *message,
                                              size_t capacity) {
    if (log_out == NULL) {
        snprintf(message, capacity, "open_log: log pointer is NULL");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    *log_out = NULL;
    if (!kstore_log_name_is_valid(name)) {
        snprintf(message, capacity, "open_log: invalid log name (1..%d bytes of [A-Za-z0-9._-], not '.' or '..')",
                 KSTORE_LOG_NAME_MAX);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if ((flags & ~(uint32_t)(KSTORE_OPEN_CREATE | KSTORE_OPEN_EXCLUSIVE)) != 0 ||
        ((flags & KSTORE_OPEN_EXCLUSIVE) != 0 && (flags & KSTORE_OPEN_CREATE) == 0)) {
        snprintf(message, capacity, "open_log '%s': bad flags 0x%x (EXCLUSIVE needs CREATE)", name, (unsigned)flags);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (options == NULL && option_count > 0) {
        snprintf(message, capacity, "open_log '%s': options is NULL", name);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    for (uint32_t index = 0; index < option_count; index++) {
        const kstore_option *option = &options[index];
        if (option->key == NULL || option->value == NULL) {
            snprintf(message, capacity, "open_log '%s': an option key or value is NULL", name);
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        if ((strcmp(option->key, "segment.bytes") == 0 || strcmp(option->key, "segment.ms") == 0) &&
            !kstore_parse_positive_decimal(option->value, NULL)) {
            snprintf(message, capacity, "open_log '%s': option %s has bad value '%s' (a positive decimal)", name,
                     option->key, option->value);
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
    }
    return KSTORE_OK;
}

size_t kstore_copy_error(const char *message, size_t length, char *buf, size_t capacity) {
    if (buf != NULL && capacity > 0) {
        size_t copied = length < capacity - 1 ? length : capacity - 1;
        if (copied > 0) memcpy(buf, message, copied);
        buf[copied] = '\0';
    }
    return length;
}

int kstore_stats_visitor_is_valid(const kstore_stats_visitor *visitor) {
    return visitor != NULL && visitor->struct_size >= sizeof(kstore_stats_visitor) && visitor->callback != NULL;
}

void kstore_stats_report(const kstore_stats_visitor *visitor, uint32_t kind, const char *name, const char *help,
                         double value) {
    const kstore_stat stat = {
        .struct_size = sizeof(kstore_stat),
        .kind = kind,
        .name = name,
        .help = help,
        .value = value,
    };
    visitor->callback(visitor->context, &stat);
}
