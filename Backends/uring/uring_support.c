/* Helpers every part of the uring backend uses: the instance's last-error message, errno mapping
 * to kstore statuses, array growth, and the file calls, which retry EINTR (STYLE.md rule 15).
 * Invariants and lock order: uring_internal.h. */
#include "uring_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UR_ZERO_BYTES ((size_t)1024 * 1024)

void ur_set_error(ur_instance *instance, const char *format, ...) {
    char message[UR_ERROR_BYTES_MAX];
    va_list arguments;
    va_start(arguments, format);
    if (vsnprintf(message, sizeof(message), format, arguments) < 0) message[0] = '\0';
    va_end(arguments);
    pthread_mutex_lock(&instance->error_lock);
    memcpy(instance->error_message, message, sizeof(message));
    instance->error_length = strlen(instance->error_message);
    pthread_mutex_unlock(&instance->error_lock);
}

/* Maps an errno to the ABI status (STYLE.md rule 15). */
kstore_status ur_status_from_errno(int error) {
    switch (error) {
    case ENOSPC:
    case EDQUOT:
        return KSTORE_ERR_NO_SPACE;
    case ENOMEM:
        return KSTORE_ERR_NO_MEMORY;
    default:
        return KSTORE_ERR_IO;
    }
}

bool ur_grow(void **array, size_t *capacity, size_t needed, size_t element_bytes, size_t minimum) {
    if (needed <= *capacity) return true;
    size_t grown = *capacity == 0 ? minimum : *capacity;
    while (grown < needed) {
        if (grown > SIZE_MAX / 2) return false;
        grown *= 2;
    }
    if (grown > SIZE_MAX / element_bytes) return false;
    void *resized = realloc(*array, grown * element_bytes);
    if (resized == NULL) return false;
    *array = resized;
    *capacity = grown;
    return true;
}

ssize_t ur_pwrite_all(int fd, const void *bytes, size_t count, uint64_t position) {
    size_t done = 0;
    while (done < count) {
        ssize_t written = pwrite(fd, (const uint8_t *)bytes + done, count - done, (off_t)(position + done));
        if (written < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (written == 0) {
            errno = ENOSPC;
            return -1;
        }
        done += (size_t)written;
    }
    return (ssize_t)done;
}

/* Reads exactly count bytes unless the file ends; returns the bytes read or -1. */
ssize_t ur_pread_all(int fd, void *bytes, size_t count, uint64_t position) {
    size_t done = 0;
    while (done < count) {
        ssize_t got = pread(fd, (uint8_t *)bytes + done, count - done, (off_t)(position + done));
        if (got < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (got == 0) break;
        done += (size_t)got;
    }
    return (ssize_t)done;
}

int ur_fdatasync(int fd) {
    while (fdatasync(fd) != 0) {
        if (errno != EINTR) return -1;
    }
    return 0;
}

int ur_fsync(int fd) {
    while (fsync(fd) != 0) {
        if (errno != EINTR) return -1;
    }
    return 0;
}

void ur_segment_name(char *buffer, size_t capacity, uint64_t generation, const char *suffix) {
    snprintf(buffer, capacity, "wal-%016" PRIx64 ".%s", generation, suffix);
}

void ur_spare_name(char *buffer, size_t capacity, uint64_t generation) {
    snprintf(buffer, capacity, "spare-%016" PRIx64 ".log", generation);
}

/* Writes zeros over [position, position + count) of fd; stops with ECANCELED when *cancel
 * becomes true (a segment being prepared while the instance closes). The buffer is aligned for
 * O_DIRECT descriptors (whose callers pass aligned positions and counts). */
int ur_write_zeros_cancellable(int fd, uint64_t position, uint64_t count, _Atomic bool *cancel,
                               _Atomic bool *hurry) {
    uint8_t *buffer = NULL;
    if (posix_memalign((void **)&buffer, UR_DIRECT_ALIGN_MAX, UR_ZERO_BYTES) != 0) {
        errno = ENOMEM;
        return -1;
    }
    memset(buffer, 0, UR_ZERO_BYTES);
    int result = 0;
    while (count > 0) {
        if (cancel != NULL && atomic_load_explicit(cancel, memory_order_relaxed)) {
            free(buffer);
            errno = ECANCELED;
            return -1;
        }
        if (hurry != NULL && atomic_load_explicit(hurry, memory_order_relaxed)) break;
        size_t step = count < UR_ZERO_BYTES ? (size_t)count : UR_ZERO_BYTES;
        if (ur_pwrite_all(fd, buffer, step, position) < 0) {
            result = -1;
            break;
        }
        position += step;
        count -= step;
    }
    int saved = errno;
    free(buffer);
    errno = saved;
    return result;
}

int ur_write_zeros(int fd, uint64_t position, uint64_t count) {
    return ur_write_zeros_cancellable(fd, position, count, NULL, NULL);
}

int ur_write_segment_zeros(const ur_segment *segment, uint64_t position, uint64_t count) {
    return ur_write_zeros(ur_segment_wfd(segment), position, count);
}
