/* The instance error slot and open()'s messages (kstore_kit_error.h). */
#include "kstore_kit_error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void kstore_kit_error_init(kstore_kit_error *slot) {
    pthread_mutex_init(&slot->mutex, NULL);
    slot->length = 0;
    slot->message[0] = '\0';
}

void kstore_kit_error_destroy(kstore_kit_error *slot) { pthread_mutex_destroy(&slot->mutex); }

void kstore_kit_error_vset(kstore_kit_error *slot, const char *format, va_list arguments) {
    char message[KSTORE_KIT_ERROR_BYTES_MAX];
    if (vsnprintf(message, sizeof(message), format, arguments) < 0) message[0] = '\0';
    size_t length = strlen(message);
    pthread_mutex_lock(&slot->mutex);
    memcpy(slot->message, message, length + 1);
    slot->length = length;
    pthread_mutex_unlock(&slot->mutex);
}

void kstore_kit_error_set(kstore_kit_error *slot, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    kstore_kit_error_vset(slot, format, arguments);
    va_end(arguments);
}

kstore_status kstore_kit_status_for_errno(int error) {
    switch (error) {
    case ENOSPC:
    case EDQUOT: return KSTORE_ERR_NO_SPACE;
    case ENOENT: return KSTORE_ERR_NOT_FOUND;
    case ENOMEM: return KSTORE_ERR_NO_MEMORY;
    default: return KSTORE_ERR_IO; /* EIO, EACCES, EROFS, EPERM and anything unexpected */
    }
}

kstore_status kstore_kit_error_errno(kstore_kit_error *slot, int error, const char *format, ...) {
    char what[KSTORE_KIT_ERROR_BYTES_MAX];
    va_list arguments;
    va_start(arguments, format);
    if (vsnprintf(what, sizeof(what), format, arguments) < 0) what[0] = '\0';
    va_end(arguments);
    char reason[256];
    const char *text = strerror_r(error, reason, sizeof(reason));
    int not_writable = error == EACCES || error == EROFS || error == EPERM;
    kstore_kit_error_set(slot, "%s: %s%s", what, text, not_writable ? " (not writable)" : "");
    return kstore_kit_status_for_errno(error);
}

void kstore_kit_error_clear(kstore_kit_error *slot) {
    pthread_mutex_lock(&slot->mutex);
    slot->length = 0;
    slot->message[0] = '\0';
    pthread_mutex_unlock(&slot->mutex);
}

bool kstore_kit_error_copy_if_set(kstore_kit_error *slot, char *buf, size_t capacity, size_t *length) {
    pthread_mutex_lock(&slot->mutex);
    bool set = slot->length > 0;
    if (set) *length = kstore_copy_error(slot->message, slot->length, buf, capacity);
    pthread_mutex_unlock(&slot->mutex);
    return set;
}

size_t kstore_kit_error_copy(kstore_kit_error *slot, char *buf, size_t capacity) {
    size_t length = 0;
    if (slot == NULL || !kstore_kit_error_copy_if_set(slot, buf, capacity, &length)) {
        if (buf != NULL && capacity > 0) buf[0] = '\0';
        return 0;
    }
    return length;
}

void kstore_kit_message(char *buf, size_t capacity, const char *format, ...) {
    if (buf == NULL || capacity == 0) return;
    va_list arguments;
    va_start(arguments, format);
    if (vsnprintf(buf, capacity, format, arguments) < 0) buf[0] = '\0';
    va_end(arguments);
}
