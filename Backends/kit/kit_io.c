/* System-call wrappers with EINTR retried and the optional fault hook (kstore_kit_io.h). */
#include "kstore_kit_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <unistd.h>

/* iovecs per pwritev call (well below IOV_MAX); larger writes take several calls. */
#define KIT_IOVECS_PER_CALL 64

void kstore_kit_io_init(kstore_kit_io *io) { __atomic_store_n(&io->hook, NULL, __ATOMIC_RELEASE); }

kstore_status kstore_kit_io_set_hook(kstore_kit_io *io, const kstore_kit_fault_hook *hook) {
    if (hook != NULL && (hook->struct_size < sizeof(kstore_kit_fault_hook) || hook->decide == NULL)) {
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    __atomic_store_n(&io->hook, hook, __ATOMIC_RELEASE);
    return KSTORE_OK;
}

int kstore_kit_fault_ask(const kstore_kit_fault_hook *hook, const kstore_kit_io_call *call, uint64_t *landed_bytes) {
    int error = hook->decide(hook->context, call, landed_bytes);
    if (error == 0 || call->operation != KSTORE_KIT_IO_WRITE || *landed_bytes >= call->length) *landed_bytes = 0;
    return error;
}

/* Writes pieces[0..piece_count) at `position` with pwritev, skipping the first `skip` bytes and
 * writing at most `limit` bytes. 0 or an errno. */
static int kit_write_pieces(int fd, const struct iovec *pieces, size_t piece_count, uint64_t position, uint64_t limit) {
    size_t piece = 0, done = 0; /* done: bytes of pieces[piece] already written */
    uint64_t left = limit;
    while (piece < piece_count && left > 0) {
        struct iovec batch[KIT_IOVECS_PER_CALL];
        int count = 0;
        uint64_t batch_bytes = 0;
        for (size_t index = piece; index < piece_count && count < KIT_IOVECS_PER_CALL && batch_bytes < left; index++) {
            size_t offset = index == piece ? done : 0;
            size_t length = pieces[index].iov_len - offset;
            if (length == 0) continue;
            if (length > left - batch_bytes) length = (size_t)(left - batch_bytes);
            batch[count].iov_base = (uint8_t *)pieces[index].iov_base + offset;
            batch[count].iov_len = length;
            batch_bytes += length;
            count++;
        }
        if (count == 0) break;
        ssize_t written = pwritev(fd, batch, count, (off_t)position);
        if (written < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (written == 0) return EIO;
        position += (uint64_t)written;
        left -= (uint64_t)written;
        size_t advance = (size_t)written;
        while (advance > 0 && piece < piece_count) {
            size_t rest = pieces[piece].iov_len - done;
            if (advance < rest) {
                done += advance;
                advance = 0;
            } else {
                advance -= rest;
                piece++;
                done = 0;
            }
        }
    }
    return 0;
}

int kstore_kit_pwritev_all(kstore_kit_io *io, int fd, const struct iovec *pieces, size_t piece_count,
                           uint64_t position) {
    uint64_t total = 0;
    for (size_t index = 0; index < piece_count; index++) total += pieces[index].iov_len;
    uint64_t landed = 0;
    int injected = kstore_kit_fault_check(io, KSTORE_KIT_IO_WRITE, fd, position, total, &landed);
    int error = kit_write_pieces(fd, pieces, piece_count, position, injected != 0 ? landed : total);
    if (error == 0) error = injected;
    if (error != 0) errno = error;
    return error;
}

int kstore_kit_pwrite_all(kstore_kit_io *io, int fd, const void *bytes, size_t length, uint64_t position) {
    struct iovec piece = {.iov_base = (void *)bytes, .iov_len = length};
    return kstore_kit_pwritev_all(io, fd, &piece, 1, position);
}

/* Fails the call with the errno the hook chose (-1 and errno), or returns 0 to run it. */
static int kit_injected(kstore_kit_io *io, int32_t operation, int fd, uint64_t position, uint64_t length) {
    uint64_t landed = 0;
    int injected = kstore_kit_fault_check(io, operation, fd, position, length, &landed);
    if (injected == 0) return 0;
    errno = injected;
    return -1;
}

ssize_t kstore_kit_pread_full(kstore_kit_io *io, int fd, void *buffer, size_t length, uint64_t position) {
    if (kit_injected(io, KSTORE_KIT_IO_READ, fd, position, length) != 0) return -1;
    size_t done = 0;
    while (done < length) {
        ssize_t got = pread(fd, (uint8_t *)buffer + done, length - done, (off_t)(position + done));
        if (got < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (got == 0) break;
        done += (size_t)got;
    }
    return (ssize_t)done;
}

int kstore_kit_fdatasync(kstore_kit_io *io, int fd) {
    if (kit_injected(io, KSTORE_KIT_IO_SYNC, fd, 0, 0) != 0) return -1;
    for (;;) {
        if (fdatasync(fd) == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

int kstore_kit_fsync(kstore_kit_io *io, int fd) {
    if (kit_injected(io, KSTORE_KIT_IO_SYNC, fd, 0, 0) != 0) return -1;
    for (;;) {
        if (fsync(fd) == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

int kstore_kit_ftruncate(kstore_kit_io *io, int fd, uint64_t length) {
    if (kit_injected(io, KSTORE_KIT_IO_TRUNCATE, fd, 0, length) != 0) return -1;
    for (;;) {
        if (ftruncate(fd, (off_t)length) == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

int kstore_kit_fallocate(kstore_kit_io *io, int fd, int mode, uint64_t position, uint64_t length) {
    if (kit_injected(io, KSTORE_KIT_IO_ALLOCATE, fd, position, length) != 0) return -1;
    for (;;) {
        if (fallocate(fd, mode, (off_t)position, (off_t)length) == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

int kstore_kit_openat(kstore_kit_io *io, int dir_fd, const char *name, int flags, mode_t mode) {
    if (kit_injected(io, KSTORE_KIT_IO_OPEN, dir_fd, 0, 0) != 0) return -1;
    for (;;) {
        int fd = openat(dir_fd, name, flags | O_CLOEXEC, mode);
        if (fd >= 0 || errno != EINTR) return fd;
    }
}

void kstore_kit_close_fd(int fd) {
    if (fd >= 0) close(fd);
}

int kstore_kit_file_size(int fd, uint64_t *size) {
    struct stat status;
    if (fstat(fd, &status) != 0) return -1;
    *size = (uint64_t)status.st_size;
    return 0;
}
