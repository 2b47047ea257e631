/*
 * An LD_PRELOAD shim that lets valgrind 3.19 (Debian 12's) run fjord and fjord-storage-bench, for
 * counting their instructions (Benchmarks/produce_cost.py; nothing else loads it). A program run
 * with it behaves as without it; only how it waits changes.
 *
 * Why, 1: libdispatch parks the main thread (after dispatchMain() or an async main hands it over)
 * in sigsuspend() with a mask in read-only data. Valgrind 3.19's rt_sigsuspend wrapper edits the
 * mask in place, faults on the read-only page and aborts ("VALGRIND INTERNAL ERROR: signal 11").
 * This sigsuspend passes a writable copy of the mask to the same system call.
 *
 * Why, 2: valgrind runs one guest thread at a time and lets another run only while a thread sits
 * in a system call it knows may block. It does not know that of io_uring_enter, so a thread
 * waiting there for completions keeps every other thread out — and when the completion it waits
 * for needs another thread (the uring backend's I/O thread waits for an eventfd the appending
 * thread writes), the process hangs. liburing's waiting calls are wrapped here: submit without
 * waiting, poll(2) the ring's file descriptor (POLLIN once a completion is in the ring; valgrind
 * knows poll blocks), then call the real function, which then finds its completion at once.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int sigsuspend(const sigset_t *mask) {
    sigset_t copy = *mask;
    /* The kernel's signal set is 8 bytes (glibc's sigset_t is larger, its tail unused). */
    return (int)syscall(SYS_rt_sigsuspend, &copy, (size_t)8);
}

static void *real(const char *name) {
    void *function = dlsym(RTLD_NEXT, name);
    if (!function) {
        fprintf(stderr, "fjord_valgrind_shim: %s not found\n", name);
        abort();
    }
    return function;
}

/* Waits until a completion is in the ring or timeout_ms passes (-1: no limit); 0 or -ETIME. */
static int wait_ready(struct io_uring *ring, int timeout_ms) {
    while (io_uring_cq_ready(ring) == 0) {
        struct pollfd pfd = {.fd = ring->ring_fd, .events = POLLIN};
        int n = poll(&pfd, 1, timeout_ms);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (n == 0) return -ETIME;
    }
    return 0;
}

static int timeout_ms(const struct __kernel_timespec *ts) {
    if (!ts) return -1;
    long long ms = ts->tv_sec * 1000LL + (ts->tv_nsec + 999999) / 1000000;
    return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

static int submit_now(struct io_uring *ring) {
    static int (*submit)(struct io_uring *);
    if (!submit) submit = (int (*)(struct io_uring *))real("io_uring_submit");
    return submit(ring);
}

int io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr) {
    static int (*next)(struct io_uring *, unsigned);
    if (!next) next = (int (*)(struct io_uring *, unsigned))real("io_uring_submit_and_wait");
    if (wait_nr == 0) return next(ring, 0);
    int submitted = submit_now(ring);
    if (submitted < 0) return submitted;
    int error = wait_ready(ring, -1);
    if (error < 0) return error;
    int more = next(ring, wait_nr);
    return more < 0 ? more : submitted + more;
}

int io_uring_submit_and_wait_timeout(struct io_uring *ring, struct io_uring_cqe **cqe_ptr, unsigned wait_nr,
                                     struct __kernel_timespec *ts, sigset_t *sigmask) {
    static int (*next)(struct io_uring *, struct io_uring_cqe **, unsigned, struct __kernel_timespec *, sigset_t *);
    if (!next)
        next = (int (*)(struct io_uring *, struct io_uring_cqe **, unsigned, struct __kernel_timespec *,
                        sigset_t *))real("io_uring_submit_and_wait_timeout");
    if (wait_nr == 0) return next(ring, cqe_ptr, 0, ts, sigmask);
    int submitted = submit_now(ring);
    if (submitted < 0) return submitted;
    int error = wait_ready(ring, timeout_ms(ts));
    if (error < 0) return error;
    int more = next(ring, cqe_ptr, wait_nr, ts, sigmask);
    return more < 0 ? more : submitted + more;
}

int io_uring_wait_cqes(struct io_uring *ring, struct io_uring_cqe **cqe_ptr, unsigned wait_nr,
                       struct __kernel_timespec *ts, sigset_t *sigmask) {
    static int (*next)(struct io_uring *, struct io_uring_cqe **, unsigned, struct __kernel_timespec *, sigset_t *);
    if (!next)
        next = (int (*)(struct io_uring *, struct io_uring_cqe **, unsigned, struct __kernel_timespec *,
                        sigset_t *))real("io_uring_wait_cqes");
    if (wait_nr > 0) {
        int error = wait_ready(ring, timeout_ms(ts));
        if (error < 0) return error;
    }
    return next(ring, cqe_ptr, wait_nr, ts, sigmask);
}

int io_uring_wait_cqe_timeout(struct io_uring *ring, struct io_uring_cqe **cqe_ptr, struct __kernel_timespec *ts) {
    static int (*next)(struct io_uring *, struct io_uring_cqe **, struct __kernel_timespec *);
    if (!next)
        next = (int (*)(struct io_uring *, struct io_uring_cqe **, struct __kernel_timespec *))real(
            "io_uring_wait_cqe_timeout");
    int error = wait_ready(ring, timeout_ms(ts));
    if (error < 0) return error;
    return next(ring, cqe_ptr, ts);
}

/* Behind the inline io_uring_wait_cqe, io_uring_wait_cqe_nr and io_uring_peek_cqe. */
int __io_uring_get_cqe(struct io_uring *ring, struct io_uring_cqe **cqe_ptr, unsigned submit, unsigned wait_nr,
                       sigset_t *sigmask) {
    static int (*next)(struct io_uring *, struct io_uring_cqe **, unsigned, unsigned, sigset_t *);
    if (!next)
        next = (int (*)(struct io_uring *, struct io_uring_cqe **, unsigned, unsigned, sigset_t *))real(
            "__io_uring_get_cqe");
    if (wait_nr > 0) {
        if (submit > 0) {
            int submitted = submit_now(ring);
            if (submitted < 0) return submitted;
            submit = 0;
        }
        int error = wait_ready(ring, -1);
        if (error < 0) return error;
    }
    return next(ring, cqe_ptr, submit, wait_nr, sigmask);
}
