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
#include <sys/mman.h>
#include <unistd.h>

/* One huge page (x86-64), and a multiple of every write alignment (UR_DIRECT_ALIGN_MAX). */
#define UR_ZERO_BYTES ((size_t)2 * 1024 * 1024)

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

/* The zeros every zero-filling write of the process is made from: one block, made once and never
 * freed. Why: a block allocated per call was faulted in (a page fault and a clear_page per 4 KiB)
 * every time a segment was prepared, and each O_DIRECT write from it pinned 4 KiB pages one by one;
 * this one is a huge page where the kernel gives one (THP in madvise mode), written once so that
 * its pages are real (the shared zero page an untouched mapping reads as cannot be pinned by the
 * fast path), and aligned for O_DIRECT. */
static pthread_mutex_t ur_zeros_lock = PTHREAD_MUTEX_INITIALIZER;
static const uint8_t *ur_zeros;

static const uint8_t *ur_zero_block(void) {
    pthread_mutex_lock(&ur_zeros_lock);
    if (ur_zeros == NULL) {
        /* Twice the size, to cut a block aligned to its size out of it (the rest stays mapped:
         * the block is never freed, and untouched pages cost nothing). */
        void *mapping = mmap(NULL, 2 * UR_ZERO_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mapping != MAP_FAILED) {
            uint8_t *block = (uint8_t *)ur_align_up((uint64_t)(uintptr_t)mapping, UR_ZERO_BYTES);
            (void)madvise(block, UR_ZERO_BYTES, MADV_HUGEPAGE);
            memset(block, 0, UR_ZERO_BYTES);
            ur_zeros = block;
        }
    }
    const uint8_t *block = ur_zeros;
    pthread_mutex_unlock(&ur_zeros_lock);
    return block;
}

/* Writes zeros over [position, position + count) of fd; stops with ECANCELED when *cancel
 * becomes true (a segment being prepared while the instance closes). The zeros are aligned for
 * O_DIRECT descriptors (whose callers pass aligned positions and counts). */
int ur_write_zeros_cancellable(kstore_kit_io *io, int fd, uint64_t position, uint64_t count, _Atomic bool *cancel,
                               _Atomic bool *hurry) {
    const uint8_t *zeros = ur_zero_block();
    if (zeros == NULL) {
        errno = ENOMEM;
        return -1;
    }
    while (count > 0) {
        if (cancel != NULL && atomic_load_explicit(cancel, memory_order_relaxed)) {
            errno = ECANCELED;
            return -1;
        }
        if (hurry != NULL && atomic_load_explicit(hurry, memory_order_relaxed)) break;
        size_t step = count < UR_ZERO_BYTES ? (size_t)count : UR_ZERO_BYTES;
        if (kstore_kit_pwrite_all(io, fd, zeros, step, position) != 0) return -1;
        position += step;
        count -= step;
    }
    return 0;
}

int ur_write_zeros(kstore_kit_io *io, int fd, uint64_t position, uint64_t count) {
    return ur_write_zeros_cancellable(io, fd, position, count, NULL, NULL);
}

int ur_write_segment_zeros(kstore_kit_io *io, const ur_segment *segment, uint64_t position, uint64_t count) {
    return ur_write_zeros(io, ur_segment_wfd(segment), position, count);
}
