/* kstore_kit_error.h — the instance error slot every backend keeps for last_error (kstore.h
 * "Errors"), and the messages open() writes before an instance exists.
 *
 * A slot is a mutex and one message. Setting it formats outside the mutex and copies in, so a slow
 * formatter never holds other threads up; last_error copies out under the mutex, so it never sees a
 * message half written. With concurrent failures the slot holds one of them (kstore.h allows it).
 */
#ifndef KSTORE_KIT_ERROR_H
#define KSTORE_KIT_ERROR_H

#include "kstore.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest message kept, including the NUL; longer ones are truncated (last_error then reports the
 * truncated length: the message itself is what is stored). */
#define KSTORE_KIT_ERROR_BYTES_MAX ((size_t)1024)

typedef struct kstore_kit_error {
    pthread_mutex_t mutex;
    /* strlen(message); 0 when no failure was recorded (or the slot was cleared). */
    size_t length;
    char message[KSTORE_KIT_ERROR_BYTES_MAX];
} kstore_kit_error;

void kstore_kit_error_init(kstore_kit_error *slot);
void kstore_kit_error_destroy(kstore_kit_error *slot);

/* Records a formatted message. */
__attribute__((format(printf, 2, 3))) void kstore_kit_error_set(kstore_kit_error *slot, const char *format, ...);
void kstore_kit_error_vset(kstore_kit_error *slot, const char *format, va_list arguments);

/* Records "<what>: <strerror(error)>" — plus " (not writable)" for EACCES, EROFS and EPERM, so an
 * operator reads the cause, not only the errno text — and returns kstore_kit_status_for_errno(error). */
__attribute__((format(printf, 3, 4))) kstore_status kstore_kit_error_errno(kstore_kit_error *slot, int error,
                                                                           const char *format, ...);

/* Forgets the recorded message (a shim whose inner backend failed lets last_error ask the inner one). */
void kstore_kit_error_clear(kstore_kit_error *slot);

/* last_error (kstore.h): copies the message (NUL-terminated, truncated to capacity) into buf and
 * returns its full length; "" and 0 when slot is NULL (a NULL instance) or nothing was recorded. */
size_t kstore_kit_error_copy(kstore_kit_error *slot, char *buf, size_t capacity);

/* Like kstore_kit_error_copy, but only when a message is recorded: returns false (and writes
 * nothing) otherwise. */
bool kstore_kit_error_copy_if_set(kstore_kit_error *slot, char *buf, size_t capacity, size_t *length);

/* Writes a formatted message into open()'s error_message (which may be NULL or of capacity 0). */
__attribute__((format(printf, 3, 4))) void kstore_kit_message(char *buf, size_t capacity, const char *format, ...);

/* The kstore.h status for an errno (errno never crosses the ABI): ENOSPC and EDQUOT are
 * KSTORE_ERR_NO_SPACE, ENOENT KSTORE_ERR_NOT_FOUND, ENOMEM KSTORE_ERR_NO_MEMORY, anything else
 * (EIO, EACCES, EROFS, EPERM, the unexpected) KSTORE_ERR_IO. */
kstore_status kstore_kit_status_for_errno(int error);

#ifdef __cplusplus
}
#endif
#endif
