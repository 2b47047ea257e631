/* Helpers every part of the uring backend uses: array growth, segment file names, zero-filling. The
 * error slot, errno mapping and system calls are the kit's (Backends/kit).
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

/* No hook is ever installed here (ur_pread_all's reads are not fault-injected). */
static kstore_kit_io ur_unhooked_io;

ssize_t ur_pread_all(int fd, void *bytes, size_t count, uint64_t position) {
    return kstore_kit_pread_full(&ur_unhooked_io, fd, bytes, count, position);
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
int ur_write_zeros_cancellable(kstore_kit_io *io, int fd, uint64_t position, uint64_t count, _Atomic bool *cancel,
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
        if (kstore_kit_pwrite_all(io, fd, buffer, step, position) != 0) {
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

int ur_write_zeros(kstore_kit_io *io, int fd, uint64_t position, uint64_t count) {
    return ur_write_zeros_cancellable(io, fd, position, count, NULL, NULL);
}

int ur_write_segment_zeros(kstore_kit_io *io, const ur_segment *segment, uint64_t position, uint64_t count) {
    return ur_write_zeros(io, ur_segment_wfd(segment), position, count);
}
