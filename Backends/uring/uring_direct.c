/* Direct I/O for the WAL (uring.direct): whether the data directory's file system takes O_DIRECT,
 * the alignment its writes need, and the aligned memory they are made from.
 *
 * Why: a buffered write to ext4 copies every byte into the page cache, and io_uring cannot do that
 * copy without blocking, so it hands each such write to an io-wq kernel worker (a thread hop per
 * write, and on this project's benchmark machine the copy alone cost more CPU than everything else
 * the broker does per byte). An O_DIRECT write into written (zero-filled or reused) blocks is
 * submitted without blocking and moves no bytes through the page cache. The format rules it brings
 * (each write starts aligned and ends with a pad frame) are in docs/storage-formats.md ("uring backend").
 * Invariants and lock order: uring_internal.h. */
#include "uring_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Created, written once and removed by the probe; a leftover one (a crash during open) is
 * truncated by the next probe and ignored by recovery. */
#define UR_DIRECT_PROBE_NAME ".fjord-direct-probe"
/* The alignment assumed where the file system takes O_DIRECT but does not report one
 * (uring.direct=on only). */
#define UR_DIRECT_ALIGN_DEFAULT 4096u

/* The alignment statx reports for direct I/O on fd (offsets and memory), or 0 if it reports none. */
static uint32_t ur_statx_dio_align(int fd) {
#ifdef STATX_DIOALIGN
    struct statx info;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &info) == 0 && (info.stx_mask & STATX_DIOALIGN) != 0 &&
        info.stx_dio_offset_align > 0) {
        return info.stx_dio_offset_align > info.stx_dio_mem_align ? info.stx_dio_offset_align : info.stx_dio_mem_align;
    }
#else
    (void)fd;
#endif
    return 0;
}

/* Opens the probe file with O_DIRECT and writes one aligned block through it. Returns the
 * alignment to use, or 0 (with *error) if direct writes do not work here. */
static uint32_t ur_direct_try(ur_instance *instance, bool need_statx, int *error) {
    int fd;
    do {
        fd = openat(instance->directory.root_fd, UR_DIRECT_PROBE_NAME,
                    O_RDWR | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        *error = errno;
        return 0;
    }
    uint32_t reported = ur_statx_dio_align(fd);
    /* The block the file system allocates in: a write that starts inside a block holding earlier
     * frames would make the device rewrite that block (a torn rewrite could destroy them). */
    struct stat info;
    uint32_t block = fstat(fd, &info) == 0 && info.st_blksize > 0 ? (uint32_t)info.st_blksize : 0;
    uint32_t align = reported > block ? reported : block;
    if (reported == 0 && need_statx) {
        *error = EINVAL; /* O_DIRECT accepted without a reported alignment (tmpfs): not trusted */
        align = 0;
    } else if (align == 0) {
        align = UR_DIRECT_ALIGN_DEFAULT;
    }
    if (align != 0 && (align > UR_DIRECT_ALIGN_MAX || (align & (align - 1)) != 0 || align < UR_FRAME_ALIGN_BYTES)) {
        *error = EINVAL;
        align = 0;
    }
    if (align != 0) {
        void *block_bytes = NULL;
        if (posix_memalign(&block_bytes, UR_DIRECT_ALIGN_MAX, align) != 0) {
            *error = ENOMEM;
            align = 0;
        } else {
            memset(block_bytes, 0, align);
            if (kstore_kit_pwrite_all(&instance->io, fd, block_bytes, align, 0) != 0) {
                *error = errno;
                align = 0;
            }
            free(block_bytes);
        }
    }
    close(fd);
    unlinkat(instance->directory.root_fd, UR_DIRECT_PROBE_NAME, 0);
    return align;
}

kstore_status ur_direct_probe(ur_instance *instance, enum ur_direct_mode mode, char *message, size_t capacity) {
    instance->direct = false;
    instance->write_align = UR_FRAME_ALIGN_BYTES;
    if (mode == UR_DIRECT_OFF) return KSTORE_OK;
    int error = 0;
    uint32_t align = ur_direct_try(instance, mode == UR_DIRECT_AUTO, &error);
    if (align == 0) {
        if (mode == UR_DIRECT_AUTO) return KSTORE_OK; /* buffered writes, as on tmpfs */
        snprintf(message, capacity,
                 "uring.direct=on: the file system of data directory %s does not take O_DIRECT writes (%s); use "
                 "uring.direct=auto or off",
                 instance->directory.path, strerror(error));
        return KSTORE_ERR_UNSUPPORTED;
    }
    instance->direct = true;
    instance->write_align = align;
    return KSTORE_OK;
}

/* Whether ur_aligned_alloc maps its memory (the page alignment is enough) or takes it from malloc. */
static bool ur_aligned_maps(const ur_instance *instance) {
    return instance->write_align <= (uint32_t)sysconf(_SC_PAGESIZE);
}

void *ur_aligned_alloc(const ur_instance *instance, size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (ur_aligned_maps(instance)) {
        void *memory = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return memory != MAP_FAILED ? memory : NULL;
    }
    void *memory = NULL;
    return posix_memalign(&memory, instance->write_align, bytes) == 0 ? memory : NULL;
}

void ur_aligned_free(const ur_instance *instance, void *memory, size_t bytes) {
    if (memory == NULL) return;
    if (ur_aligned_maps(instance)) {
        munmap(memory, bytes > 0 ? bytes : 1);
    } else {
        free(memory);
    }
}

bool ur_open_wfd(const ur_instance *instance, const char *name, int *wfd) {
    *wfd = -1;
    if (!instance->direct) return true;
    int fd;
    do {
        fd = openat(instance->directory.root_fd, name, O_WRONLY | O_DIRECT | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return false;
    *wfd = fd;
    return true;
}
