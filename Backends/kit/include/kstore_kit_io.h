/* kstore_kit_io.h — the system calls a durable backend makes on its data, in one place (as
 * swift-nio's System.swift wraps every syscall): EINTR is retried, reads and writes are whole or an
 * error, and every call first asks one optional fault hook whether it should fail.
 *
 * The fault hook is the single way tests inject I/O faults (ENOSPC, EIO, a failed fsync, a torn
 * write, a failed segment preparation) into a backend: the faulty shim (Backends/faulty) installs
 * one into the instance it wraps with KSTORE_KIT_CONTROL_SET_FAULT_HOOK and drives it seeded and
 * replayable. Production code never installs one; then every wrapper costs one load of a NULL
 * pointer and one predictable branch more than the bare system call.
 *
 * I/O a backend submits another way (io_uring) asks the same hook through kstore_kit_fault_check
 * before it is submitted, and fails it with the returned errno as the kernel would have.
 */
#ifndef KSTORE_KIT_IO_H
#define KSTORE_KIT_IO_H

#include "kstore.h"

#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Which kind of call a fault hook is asked about (kstore_kit_io_call.operation). */
#define KSTORE_KIT_IO_WRITE    1 /* pwrite/pwritev (and io_uring writes) */
#define KSTORE_KIT_IO_SYNC     2 /* fdatasync/fsync of files and directories */
#define KSTORE_KIT_IO_READ     3 /* pread */
#define KSTORE_KIT_IO_TRUNCATE 4 /* ftruncate */
#define KSTORE_KIT_IO_OPEN     5 /* openat: opening and creating files */
#define KSTORE_KIT_IO_ALLOCATE 6 /* fallocate: preparing (preallocating) a segment */
/* One more than the largest operation: arrays indexed by operation have this many slots. */
#define KSTORE_KIT_IO_OPERATION_LIMIT 7

/* What a fault hook is asked about. */
typedef struct kstore_kit_io_call {
    /* KSTORE_KIT_IO_*. */
    int32_t operation;
    /* The file (OPEN: the directory the name is opened in). */
    int32_t fd;
    /* Byte position of a read or write; 0 for the others. */
    uint64_t position;
    /* Bytes to write, read or allocate; the new length for TRUNCATE; 0 for SYNC and OPEN. */
    uint64_t length;
} kstore_kit_io_call;

/* A fault hook. `decide` returns 0 to let the call run, or the errno (ENOSPC, EIO, …) the call
 * fails with instead. For a WRITE it may also store a count below call->length in *landed_bytes
 * (0 on entry): that many leading bytes are really written before the call fails — a torn write,
 * as when a device fills up in the middle of one. It is called from whatever thread makes the call,
 * possibly with backend locks held, so it must be quick and must not call into the backend. */
typedef struct kstore_kit_fault_hook {
    /* sizeof(kstore_kit_fault_hook). */
    uint32_t struct_size;
    uint32_t reserved;
    int (*decide)(void *context, const kstore_kit_io_call *call, uint64_t *landed_bytes);
    void *context;
} kstore_kit_fault_hook;

/* Instance control op of every durable backend built on the kit: installs a fault hook into the
 * instance's I/O (argument: const kstore_kit_fault_hook *, which must stay valid until it is
 * replaced or the instance is closed), or removes it (argument NULL). Tests only. */
#define KSTORE_KIT_CONTROL_SET_FAULT_HOOK 0x4B490001

/* The I/O context of one backend instance: where its fault hook hangs. */
typedef struct kstore_kit_io {
    /* Read and written with __atomic builtins: NULL in production. */
    const kstore_kit_fault_hook *hook;
} kstore_kit_io;

void kstore_kit_io_init(kstore_kit_io *io);

/* KSTORE_KIT_CONTROL_SET_FAULT_HOOK: KSTORE_ERR_INVALID_ARGUMENT for a hook that is too small or
 * has no decide function. */
kstore_status kstore_kit_io_set_hook(kstore_kit_io *io, const kstore_kit_fault_hook *hook);

/* Asks an installed hook (the slow path of kstore_kit_fault_check). */
int kstore_kit_fault_ask(const kstore_kit_fault_hook *hook, const kstore_kit_io_call *call, uint64_t *landed_bytes);

/* Whether a call of `operation` should fail: 0 (run it) or the errno to fail it with; for a WRITE
 * *landed_bytes (set to 0 first) says how many leading bytes to write before failing. Every wrapper
 * below calls it; I/O submitted through io_uring calls it directly. */
static inline int kstore_kit_fault_check(kstore_kit_io *io, int32_t operation, int32_t fd, uint64_t position,
                                         uint64_t length, uint64_t *landed_bytes) {
    *landed_bytes = 0;
    const kstore_kit_fault_hook *hook = __atomic_load_n(&io->hook, __ATOMIC_ACQUIRE);
    if (__builtin_expect(hook == NULL, 1)) return 0;
    kstore_kit_io_call call = {.operation = operation, .fd = fd, .position = position, .length = length};
    return kstore_kit_fault_ask(hook, &call, landed_bytes);
}

/* Writes every byte of pieces[0..piece_count) at `position`, in as many pwritev calls as needed.
 * Returns 0, or the errno of the failure (errno is set to it too). */
int kstore_kit_pwritev_all(kstore_kit_io *io, int fd, const struct iovec *pieces, size_t piece_count,
                           uint64_t position);
int kstore_kit_pwrite_all(kstore_kit_io *io, int fd, const void *bytes, size_t length, uint64_t position);

/* Reads `length` bytes at `position` (fewer only at end of file). Returns the count, or -1 with
 * errno set. */
ssize_t kstore_kit_pread_full(kstore_kit_io *io, int fd, void *buffer, size_t length, uint64_t position);

/* fdatasync (file data), fsync (directories: their entries are metadata), ftruncate, fallocate:
 * 0, or -1 with errno set, like the calls. */
int kstore_kit_fdatasync(kstore_kit_io *io, int fd);
int kstore_kit_fsync(kstore_kit_io *io, int fd);
int kstore_kit_ftruncate(kstore_kit_io *io, int fd, uint64_t length);
int kstore_kit_fallocate(kstore_kit_io *io, int fd, int mode, uint64_t position, uint64_t length);

/* openat with O_CLOEXEC added: the descriptor, or -1 with errno set. */
int kstore_kit_openat(kstore_kit_io *io, int dir_fd, const char *name, int flags, mode_t mode);

/* Closes fd if it is >= 0. Never retried: Linux closes the descriptor even when close reports EINTR. */
void kstore_kit_close_fd(int fd);

/* The file's size: 0, or -1 with errno set. */
int kstore_kit_file_size(int fd, uint64_t *size);

#ifdef __cplusplus
}
#endif
#endif
