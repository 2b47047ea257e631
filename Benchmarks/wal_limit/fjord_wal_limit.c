/*
 * fjord-wal-limit: the physical limit of a shared write-ahead log with group commit on this disk,
 * measured with io_uring and nothing else — the row the uring backend is judged against.
 *
 *   fjord-wal-limit --dir DIR [--partitions 64] [--frame-bytes 1024] [--inflight 64] [--duration 5]
 *                   [--pipeline 1|2|…] [--direct] [--dsync] [--file-bytes 268435456] [--no-prezero]
 *
 * What it does, and why that is the ideal:
 *   - One WAL file in DIR (the data disk), preallocated with fallocate and, unless --no-prezero,
 *     written with zeros once and fdatasync'd, so later overwrites change no extent metadata and a
 *     flush writes data only (the uring backend prepares its segments the same way). Writes wrap
 *     around the file: disk use is bounded by --file-bytes and the file is removed at exit.
 *   - N partitions, each with at most --inflight frames outstanding (not yet durable) — the same
 *     closed loop as `fjord-storage-bench --durable --inflight`, and the same cap of 32 MiB
 *     outstanding over all partitions, so the two are comparable. A partition produces its next
 *     frame as soon as one of its frames is durable.
 *   - Every frame is what a real WAL frame needs and no more: a 32-byte header (magic, CRC-32C,
 *     payload length, partition, offset, global sequence), the payload copied in from a source
 *     buffer (as a WAL copies it from the network buffer), padded to 8 bytes; the CRC-32C covers
 *     the payload, then header bytes [8, 32), computed with the CPU's crc32 instruction.
 *   - A ROUND gathers every pending frame of every partition into one contiguous buffer and writes
 *     it with one IORING_OP_WRITE, followed by one IORING_OP_FSYNC with IORING_FSYNC_DATASYNC linked
 *     behind it (--dsync: one write with RWF_DSYNC instead). Frames count as durable when their
 *     round's flush completes and every earlier round's has (acknowledged in WAL order).
 *   - --pipeline D keeps up to D rounds in flight: with 2, the next round is prepared and its write
 *     submitted while the previous round's fsync runs. Each round then takes at most 1/D of the
 *     outstanding frames (otherwise the first round would take them all and the pipeline never
 *     fills).
 *   - --direct opens the file O_DIRECT and writes from aligned buffers, each round padded with zeros
 *     to the direct-I/O alignment (statx STATX_DIOALIGN, else 4096); the next round starts at the
 *     next aligned position, as a WAL that skips padding would. Buffered writes (the default) go
 *     through the page cache.
 *
 * Output: one JSON line on stdout — payload MB/s, disk MB/s, frames/s, rounds/s, bytes per round,
 * round latency p50/p99 (write submitted → flush complete), the process's user and system CPU
 * seconds during the measurement (io_uring's io-wq workers are threads of this process, so the
 * kernel's copies into the page cache count), and the mode. Exit status 0 on success, 1 on an I/O
 * error (named on stderr), 2 on bad arguments.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define LIMIT_CRC_X86 1
#else
#define LIMIT_CRC_X86 0
#endif

#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif

#define LIMIT_HEADER_BYTES          32u
#define LIMIT_FRAME_ALIGN_BYTES     8u
#define LIMIT_MAGIC                 0x4c574a46u        /* "FJWL" */
#define LIMIT_OUTSTANDING_BYTES_MAX ((size_t)32 << 20) /* as fjord-storage-bench */
#define LIMIT_SOURCE_BYTES          ((size_t)1 << 20)  /* payloads are copied from here, in turn */
#define LIMIT_PIPELINE_MAX          16
#define LIMIT_LATENCY_SAMPLES_MAX   ((size_t)1 << 22)
#define LIMIT_STALL_SECONDS         60 /* no completion for this long: the disk is stuck, give up */
#define LIMIT_ZERO_CHUNK_BYTES      ((size_t)1 << 20)

enum { OP_WRITE = 1, OP_FSYNC = 2 };

typedef struct options {
    const char *directory;
    uint32_t partitions;
    uint32_t frame_bytes; /* payload bytes per frame */
    uint32_t inflight;    /* outstanding frames per partition */
    double duration_s;
    uint32_t pipeline;
    bool direct;
    bool dsync;
    bool prezero;
    uint64_t file_bytes;
} options;

/* One round: a contiguous run of frames, one write (+ one flush) at `position`. */
typedef struct round {
    uint8_t *buffer;
    size_t bytes;   /* to write, padding included */
    size_t written; /* completed by writes so far */
    uint64_t position;
    uint64_t frames;
    uint32_t *partition_frames; /* frames of each partition in this round */
    int pending_cqes;
    bool synced; /* the flush covering every byte has completed */
    int64_t submitted_ns;
} round;

typedef struct wal {
    options o;
    int fd;
    char path[PATH_MAX];
    struct io_uring ring;
    size_t align;        /* direct-I/O alignment (1 when buffered) */
    size_t frame_stride; /* header + payload, padded */
    uint32_t window;     /* outstanding frames per partition, after the 32 MiB cap */
    uint64_t round_frames_max;
    size_t round_capacity;
    uint8_t *source;
    uint32_t *available; /* per partition: frames it may produce now */
    uint64_t *next_offset;
    uint32_t cursor; /* partition the next round starts gathering at */
    uint64_t sequence;
    uint64_t wal_position;
    uint64_t wraps;
    round rounds[LIMIT_PIPELINE_MAX];
    uint32_t head, count; /* in-flight rounds, oldest first */
    /* results */
    uint64_t durable_frames, durable_rounds, disk_bytes;
    uint32_t *latency_us;
    size_t latency_count, latency_capacity;
} wal;

static volatile sig_atomic_t stop_requested = 0;
static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static char unlink_path[PATH_MAX]; /* removed at exit, however the program ends normally */
static void remove_wal_file(void) {
    if (unlink_path[0]) unlink(unlink_path);
}

static _Noreturn void die(const char *what, int error) {
    fprintf(stderr, "fjord-wal-limit: %s%s%s\n", what, error ? ": " : "", error ? strerror(error) : "");
    exit(1);
}

static _Noreturn void usage(const char *message) {
    if (message) fprintf(stderr, "fjord-wal-limit: %s\n", message);
    fprintf(stderr, "usage: fjord-wal-limit --dir DIR [--partitions N] [--frame-bytes B] [--inflight K] "
                    "[--duration S] [--pipeline D] [--direct] [--dsync] [--file-bytes B] [--no-prezero]\n");
    exit(2);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void cpu_times(double *user_s, double *system_s) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    *user_s = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6;
    *system_s = usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
}

/* ---- CRC-32C (Castagnoli, reflected 0x82F63B78): the crc32 instruction, a bitwise fallback ---- */

static bool crc_hardware;

static uint32_t crc32c_portable(uint32_t crc, const uint8_t *p, size_t length) {
    while (length--) {
        crc ^= *p++;
        for (int bit = 0; bit < 8; bit++) crc = (crc & 1u) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return crc;
}

#if LIMIT_CRC_X86
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p, size_t length) {
#if defined(__x86_64__)
    uint64_t crc64 = crc;
    for (; length >= 8; p += 8, length -= 8) {
        uint64_t word;
        memcpy(&word, p, sizeof word);
        crc64 = _mm_crc32_u64(crc64, word);
    }
    crc = (uint32_t)crc64;
#endif
    for (; length > 0; p++, length--) crc = _mm_crc32_u8(crc, *p);
    return crc;
}
#endif

/* The CRC of `length` bytes continuing from `seed` (0 to start), pre- and post-inverted. */
static uint32_t crc32c(uint32_t seed, const void *bytes, size_t length) {
    uint32_t crc = ~seed;
#if LIMIT_CRC_X86
    if (crc_hardware) return ~crc32c_sse42(crc, bytes, length);
#endif
    return ~crc32c_portable(crc, bytes, length);
}

/* ---- arguments ---- */

static uint64_t parse_unsigned(const char *flag, const char *value, uint64_t min, uint64_t max) {
    char *end = NULL;
    errno = 0;
    unsigned long long parsed = strtoull(value, &end, 10);
    if (errno || !end || *end || parsed < min || parsed > max) {
        char message[160];
        snprintf(message, sizeof message, "%s wants a whole number in %" PRIu64 "...%" PRIu64 ", got '%s'", flag, min,
                 max, value);
        usage(message);
    }
    return parsed;
}

static options parse(int argc, char **argv) {
    options o = {.partitions = 64,
                 .frame_bytes = 1024,
                 .inflight = 64,
                 .duration_s = 5,
                 .pipeline = 1,
                 .prezero = true,
                 .file_bytes = (uint64_t)256 << 20};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--direct")) {
            o.direct = true;
            continue;
        }
        if (!strcmp(a, "--dsync")) {
            o.dsync = true;
            continue;
        }
        if (!strcmp(a, "--no-prezero")) {
            o.prezero = false;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) usage(NULL);
        if (i + 1 >= argc) usage("a flag needs a value");
        const char *v = argv[++i];
        if (!strcmp(a, "--dir"))
            o.directory = v;
        else if (!strcmp(a, "--partitions"))
            o.partitions = (uint32_t)parse_unsigned(a, v, 1, 1000000);
        else if (!strcmp(a, "--frame-bytes"))
            o.frame_bytes = (uint32_t)parse_unsigned(a, v, 8, 16 << 20);
        else if (!strcmp(a, "--inflight"))
            o.inflight = (uint32_t)parse_unsigned(a, v, 1, 1 << 20);
        else if (!strcmp(a, "--pipeline"))
            o.pipeline = (uint32_t)parse_unsigned(a, v, 1, LIMIT_PIPELINE_MAX);
        else if (!strcmp(a, "--file-bytes"))
            o.file_bytes = parse_unsigned(a, v, 1 << 20, (uint64_t)1 << 40);
        else if (!strcmp(a, "--duration")) {
            char *end = NULL;
            o.duration_s = strtod(v, &end);
            if (!end || *end || !(o.duration_s > 0) || o.duration_s > 3600) usage("--duration wants 0 < S <= 3600");
        } else {
            usage("unknown argument");
        }
    }
    if (!o.directory) usage("--dir is required");
    return o;
}

/* ---- the file ---- */

static void *aligned_buffer(size_t alignment, size_t bytes) {
    void *p = NULL;
    int error = posix_memalign(&p, alignment < sizeof(void *) ? sizeof(void *) : alignment, bytes);
    if (error) die("cannot allocate buffers", error);
    memset(p, 0, bytes);
    return p;
}

/* The direct-I/O alignment the file system asks for (offsets, lengths and memory), at least 512. */
static size_t direct_alignment(int fd) {
    size_t alignment = 4096;
#ifdef STATX_DIOALIGN
    struct statx stx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 && (stx.stx_mask & STATX_DIOALIGN) &&
        stx.stx_dio_offset_align > 0) {
        alignment = stx.stx_dio_offset_align > stx.stx_dio_mem_align ? stx.stx_dio_offset_align : stx.stx_dio_mem_align;
    }
#else
    (void)fd;
#endif
    return alignment < 512 ? 512 : alignment;
}

static void write_fully(int fd, const uint8_t *bytes, size_t length, uint64_t position) {
    while (length > 0) {
        ssize_t n = pwrite(fd, bytes, length, (off_t)position);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("pre-zeroing the WAL file", errno);
        if (n == 0) die("pre-zeroing the WAL file: pwrite wrote nothing", 0);
        bytes += n;
        length -= (size_t)n;
        position += (uint64_t)n;
    }
}

static void open_file(wal *w) {
    snprintf(w->path, sizeof w->path, "%s/fjord-wal-limit-%ld.wal", w->o.directory, (long)getpid());
    int flags = O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | (w->o.direct ? O_DIRECT : 0);
    do w->fd = open(w->path, flags, 0600);
    while (w->fd < 0 && errno == EINTR);
    if (w->fd < 0) die(w->path, errno);
    snprintf(unlink_path, sizeof unlink_path, "%s", w->path);
    atexit(remove_wal_file);
    w->align = w->o.direct ? direct_alignment(w->fd) : 1;
    int error;
    do error = posix_fallocate(w->fd, 0, (off_t)w->o.file_bytes);
    while (error == EINTR);
    if (error == EOPNOTSUPP || error == EINVAL) {
        if (ftruncate(w->fd, (off_t)w->o.file_bytes) != 0) die("sizing the WAL file", errno);
        if (!w->o.prezero) fprintf(stderr, "fjord-wal-limit: no fallocate here; the file is sparse\n");
    } else if (error) {
        die("preallocating the WAL file", error);
    }
    if (w->o.prezero) {
        uint8_t *zeros = aligned_buffer(4096, LIMIT_ZERO_CHUNK_BYTES);
        for (uint64_t position = 0; position < w->o.file_bytes && !stop_requested; position += LIMIT_ZERO_CHUNK_BYTES) {
            uint64_t left = w->o.file_bytes - position;
            write_fully(w->fd, zeros, left < LIMIT_ZERO_CHUNK_BYTES ? (size_t)left : LIMIT_ZERO_CHUNK_BYTES, position);
        }
        free(zeros);
    }
    while (fdatasync(w->fd) != 0)
        if (errno != EINTR) die("fdatasync after preparing the WAL file", errno);
}

/* ---- rounds ---- */

static void setup(wal *w) {
    w->frame_stride =
        (LIMIT_HEADER_BYTES + w->o.frame_bytes + LIMIT_FRAME_ALIGN_BYTES - 1) & ~(size_t)(LIMIT_FRAME_ALIGN_BYTES - 1);
    uint64_t cap = LIMIT_OUTSTANDING_BYTES_MAX / ((uint64_t)w->o.partitions * w->o.frame_bytes);
    w->window = (uint32_t)(cap < 1 ? 1 : (cap < w->o.inflight ? cap : w->o.inflight));
    uint64_t outstanding = (uint64_t)w->window * w->o.partitions;
    w->round_frames_max = (outstanding + w->o.pipeline - 1) / w->o.pipeline;
    size_t page = 4096;
    w->round_capacity = (w->round_frames_max * w->frame_stride + w->align + page - 1) & ~(page - 1);
    /* Rounds in flight never share bytes of the file, even across a wrap. */
    if (w->o.file_bytes < 4 * (uint64_t)w->o.pipeline * w->round_capacity) {
        fprintf(stderr, "fjord-wal-limit: --file-bytes must be at least %" PRIu64 " for rounds of %zu bytes\n",
                4 * (uint64_t)w->o.pipeline * w->round_capacity, w->round_capacity);
        exit(2);
    }
    w->source = aligned_buffer(4096, LIMIT_SOURCE_BYTES + w->o.frame_bytes);
    uint32_t seed = 0x9e3779b9u;
    for (size_t i = 0; i < LIMIT_SOURCE_BYTES + w->o.frame_bytes; i++) {
        seed = seed * 1664525u + 1013904223u;
        w->source[i] = (uint8_t)(seed >> 24);
    }
    w->available = calloc(w->o.partitions, sizeof *w->available);
    w->next_offset = calloc(w->o.partitions, sizeof *w->next_offset);
    if (!w->available || !w->next_offset) die("cannot allocate partitions", ENOMEM);
    for (uint32_t p = 0; p < w->o.partitions; p++) w->available[p] = w->window;
    for (uint32_t i = 0; i < w->o.pipeline; i++) {
        w->rounds[i].buffer = aligned_buffer(w->align > page ? w->align : page, w->round_capacity);
        w->rounds[i].partition_frames = calloc(w->o.partitions, sizeof(uint32_t));
        if (!w->rounds[i].partition_frames) die("cannot allocate rounds", ENOMEM);
    }
    unsigned entries = 4 * w->o.pipeline + 8;
    int error = io_uring_queue_init(entries, &w->ring, 0);
    if (error < 0) die("io_uring_queue_init (is io_uring allowed here?)", -error);
}

/* Writes one frame of `partition` at `destination`: header, payload copied in, CRC, zero padding. */
static void put_frame(wal *w, uint8_t *destination, uint32_t partition) {
    uint8_t *payload = destination + LIMIT_HEADER_BYTES;
    size_t source_position = (size_t)((w->sequence * w->o.frame_bytes) % LIMIT_SOURCE_BYTES);
    memcpy(payload, w->source + source_position, w->o.frame_bytes);
    uint32_t header[LIMIT_HEADER_BYTES / 4] = {LIMIT_MAGIC, 0, w->o.frame_bytes, partition};
    uint64_t offset = w->next_offset[partition]++;
    uint64_t sequence = w->sequence++;
    memcpy(&header[4], &offset, sizeof offset);
    memcpy(&header[6], &sequence, sizeof sequence);
    uint32_t crc = crc32c(0, payload, w->o.frame_bytes);
    header[1] = crc32c(crc, (const uint8_t *)header + 8, LIMIT_HEADER_BYTES - 8);
    memcpy(destination, header, LIMIT_HEADER_BYTES);
    size_t used = LIMIT_HEADER_BYTES + w->o.frame_bytes;
    if (used < w->frame_stride) memset(destination + used, 0, w->frame_stride - used);
}

/* Gathers pending frames of every partition into `r`; returns false when none is pending. */
static bool build_round(wal *w, round *r) {
    memset(r->partition_frames, 0, w->o.partitions * sizeof(uint32_t));
    r->frames = 0;
    uint32_t visited = 0;
    while (visited < w->o.partitions && r->frames < w->round_frames_max) {
        uint32_t p = w->cursor;
        w->cursor = (w->cursor + 1) % w->o.partitions;
        visited++;
        uint64_t take = w->available[p];
        if (take > w->round_frames_max - r->frames) take = w->round_frames_max - r->frames;
        for (uint64_t k = 0; k < take; k++) put_frame(w, r->buffer + r->frames++ * w->frame_stride, p);
        w->available[p] -= (uint32_t)take;
        r->partition_frames[p] = (uint32_t)take;
    }
    if (r->frames == 0) return false;
    size_t bytes = r->frames * w->frame_stride;
    size_t padded = (bytes + w->align - 1) / w->align * w->align;
    memset(r->buffer + bytes, 0, padded - bytes);
    if (w->wal_position + padded > w->o.file_bytes) {
        w->wal_position = 0;
        w->wraps++;
    }
    r->bytes = padded;
    r->written = 0;
    r->position = w->wal_position;
    w->wal_position += padded;
    r->synced = false;
    r->pending_cqes = 0;
    return true;
}

static struct io_uring_sqe *get_sqe(wal *w) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
    if (!sqe) die("submission queue full (bug: it is sized for every round in flight)", 0);
    return sqe;
}

/* Submits what `r` still needs: the rest of its write (with the flush linked behind it, or with
 * RWF_DSYNC), or only the flush when the write is complete. */
static void submit_round(wal *w, uint32_t slot) {
    round *r = &w->rounds[slot];
    if (io_uring_sq_space_left(&w->ring) < 2) die("submission queue full (bug)", 0);
    if (r->written < r->bytes) {
        struct io_uring_sqe *sqe = get_sqe(w);
        io_uring_prep_write(sqe, w->fd, r->buffer + r->written, (unsigned)(r->bytes - r->written),
                            r->position + r->written);
        io_uring_sqe_set_data64(sqe, ((uint64_t)slot << 8) | OP_WRITE);
        r->pending_cqes++;
        if (w->o.dsync) {
            sqe->rw_flags = RWF_DSYNC;
        } else {
            sqe->flags |= IOSQE_IO_LINK;
        }
    }
    if (!w->o.dsync) {
        struct io_uring_sqe *sqe = get_sqe(w);
        io_uring_prep_fsync(sqe, w->fd, IORING_FSYNC_DATASYNC);
        io_uring_sqe_set_data64(sqe, ((uint64_t)slot << 8) | OP_FSYNC);
        r->pending_cqes++;
    }
}

static void record_latency(wal *w, int64_t ns) {
    if (w->latency_count == w->latency_capacity) {
        if (w->latency_capacity >= LIMIT_LATENCY_SAMPLES_MAX) return;
        size_t capacity = w->latency_capacity ? w->latency_capacity * 2 : 4096;
        uint32_t *grown = realloc(w->latency_us, capacity * sizeof *grown);
        if (!grown) return; /* drop the sample rather than the run */
        w->latency_us = grown;
        w->latency_capacity = capacity;
    }
    int64_t us = ns / 1000;
    w->latency_us[w->latency_count++] = us < 0 ? 0 : (us > UINT32_MAX ? UINT32_MAX : (uint32_t)us);
}

static bool transient(int error) { return error == EINTR || error == EAGAIN; }

static void handle_cqe(wal *w, const struct io_uring_cqe *cqe) {
    uint64_t data = io_uring_cqe_get_data64(cqe);
    uint32_t slot = (uint32_t)(data >> 8);
    if (slot >= w->o.pipeline) die("completion for an unknown round (bug)", 0);
    round *r = &w->rounds[slot];
    int res = cqe->res;
    if ((data & 0xff) == OP_WRITE) {
        if (res < 0 && !transient(-res)) die("write", -res);
        if (res == 0 && r->written < r->bytes) die("write wrote nothing", 0);
        if (res > 0) {
            r->written += (size_t)res;
            /* A direct write resumes at an aligned position: the partial block is written again. */
            if (r->written < r->bytes) r->written = r->written / w->align * w->align;
            if (w->o.dsync && r->written == r->bytes) r->synced = true;
        }
    } else {
        /* -ECANCELED: a short or failed write broke the link; the flush is submitted again. */
        if (res < 0 && res != -ECANCELED && !transient(-res)) die("fdatasync", -res);
        if (res == 0 && r->written == r->bytes) r->synced = true;
    }
    if (--r->pending_cqes == 0 && !r->synced) submit_round(w, slot);
}

/* Acknowledges completed rounds in WAL order: their frames are durable, their windows reopen. */
static void retire_rounds(wal *w) {
    while (w->count > 0) {
        round *r = &w->rounds[w->head];
        if (!r->synced || r->pending_cqes > 0) break;
        w->durable_frames += r->frames;
        w->durable_rounds++;
        w->disk_bytes += r->bytes;
        for (uint32_t p = 0; p < w->o.partitions; p++) w->available[p] += r->partition_frames[p];
        record_latency(w, now_ns() - r->submitted_ns);
        w->head = (w->head + 1) % w->o.pipeline;
        w->count--;
    }
}

static int compare_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile_us(const wal *w, double p) {
    if (w->latency_count == 0) return -1;
    return w->latency_us[(size_t)(p / 100.0 * (double)(w->latency_count - 1) + 0.5)];
}

static void run(wal *w, double *seconds) {
    int64_t start = now_ns();
    int64_t deadline = start + (int64_t)(w->o.duration_s * 1e9);
    int64_t last_progress = start;
    for (;;) {
        bool open = !stop_requested && now_ns() < deadline;
        while (open && w->count < w->o.pipeline) {
            uint32_t slot = (w->head + w->count) % w->o.pipeline;
            round *r = &w->rounds[slot];
            if (!build_round(w, r)) break;
            r->submitted_ns = now_ns();
            submit_round(w, slot);
            w->count++;
        }
        if (w->count == 0) break;
        int submitted = io_uring_submit(&w->ring);
        if (submitted < 0 && !transient(-submitted) && submitted != -EBUSY) die("io_uring_submit", -submitted);
        struct io_uring_cqe *cqe = NULL;
        struct __kernel_timespec timeout = {.tv_sec = 1, .tv_nsec = 0};
        int error = io_uring_wait_cqe_timeout(&w->ring, &cqe, &timeout);
        if (error == -ETIME || error == -EINTR) {
            if (now_ns() - last_progress > (int64_t)LIMIT_STALL_SECONDS * 1000000000LL)
                die("no I/O completed for 60 s", 0);
            continue;
        }
        if (error < 0) die("io_uring_wait_cqe", -error);
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&w->ring, head, cqe) {
            handle_cqe(w, cqe);
            seen++;
        }
        io_uring_cq_advance(&w->ring, seen);
        last_progress = now_ns();
        retire_rounds(w);
    }
    *seconds = (now_ns() - start) / 1e9;
}

int main(int argc, char **argv) {
    wal w = {.o = parse(argc, argv)};
#if LIMIT_CRC_X86
    __builtin_cpu_init();
    crc_hardware = __builtin_cpu_supports("sse4.2");
#endif
    struct sigaction action = {.sa_handler = on_signal};
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGHUP, &action, NULL);
    open_file(&w);
    setup(&w);
    double user0, system0, user1, system1, seconds;
    cpu_times(&user0, &system0);
    run(&w, &seconds);
    cpu_times(&user1, &system1);
    qsort(w.latency_us, w.latency_count, sizeof(uint32_t), compare_u32);
    double payload_mb = w.durable_frames * (double)w.o.frame_bytes / 1e6;
    double cpu_s = (user1 - user0) + (system1 - system0);
    printf("{\"tool\":\"fjord-wal-limit\",\"mode\":\"%s+%s\",\"write_mode\":\"%s\",\"sync_mode\":\"%s\","
           "\"pipeline\":%u,\"partitions\":%u,\"frame_bytes\":%u,\"frame_stride_bytes\":%zu,\"inflight\":%u,"
           "\"align_bytes\":%zu,\"file_bytes\":%" PRIu64 ",\"prezero\":%s,\"crc\":\"%s\",\"seconds\":%.3f,"
           "\"frames\":%" PRIu64 ",\"frames_per_s\":%.0f,\"mb_per_s\":%.1f,\"disk_mb_per_s\":%.1f,"
           "\"rounds\":%" PRIu64 ",\"rounds_per_s\":%.1f,\"bytes_per_round\":%.0f,\"round_p50_us\":%.0f,"
           "\"round_p99_us\":%.0f,\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,\"cpu_s_per_gb\":%.3f,\"wraps\":%" PRIu64
           "}\n",
           w.o.direct ? "direct" : "buffered", w.o.dsync ? "dsync" : "fdatasync", w.o.direct ? "direct" : "buffered",
           w.o.dsync ? "dsync" : "fdatasync", w.o.pipeline, w.o.partitions, w.o.frame_bytes, w.frame_stride, w.window,
           w.o.direct ? w.align : 0, w.o.file_bytes, w.o.prezero ? "true" : "false",
           crc_hardware ? "sse4.2" : "portable", seconds, w.durable_frames, w.durable_frames / seconds,
           payload_mb / seconds, w.disk_bytes / 1e6 / seconds, w.durable_rounds, w.durable_rounds / seconds,
           w.durable_rounds ? (double)w.disk_bytes / w.durable_rounds : 0, percentile_us(&w, 50), percentile_us(&w, 99),
           user1 - user0, system1 - system0, payload_mb > 0 ? cpu_s / (payload_mb / 1e3) : 0, w.wraps);
    fflush(stdout);
    io_uring_queue_exit(&w.ring);
    close(w.fd);
    return 0;
}
