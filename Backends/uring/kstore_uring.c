/* The io_uring write-ahead-log storage backend (kstore.h, ABI version 2): DURABLE, NONBLOCKING,
 * SHARED_SYNC; DESIGN.md §6 "uring". One write-ahead log per instance, shared by every log, so one
 * group-committed fdatasync makes many logs' appends durable. On-disk formats and recovery rules:
 * docs/storage-formats.md ("uring backend"). Threads, failure handling, locks and their order, and the map
 * of the files: uring_internal.h.
 *
 * This file: the backend table and the instance — options, open (parse → lock → probe io_uring →
 * recover → start threads), close, last_error and control. */
#include "uring_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define UR_SEGMENT_BYTES_DEFAULT ((uint64_t)256 * 1024 * 1024)
#define UR_SEGMENT_BYTES_MIN     ((uint64_t)64 * 1024)
/* Positions inside a segment are stored as uint32. */
#define UR_SEGMENT_BYTES_MAX       ((uint64_t)1024 * 1024 * 1024)
#define UR_STAGING_BYTES_DEFAULT   ((uint64_t)64 * 1024 * 1024)
#define UR_WRITE_BYTES_DEFAULT     ((uint64_t)1024 * 1024)
#define UR_WRITES_INFLIGHT_DEFAULT 8u
#define UR_WRITES_INFLIGHT_MAX     64u
/* uring.read.cache.bytes: the tail consumers read, kept in memory (direct writes bypass the page
 * cache). 32 MiB holds tens of milliseconds of a busy broker's writes. */
#define UR_READ_CACHE_BYTES_DEFAULT ((uint64_t)32 * 1024 * 1024)
#define UR_RING_ENTRIES             256u
/* The data directory's format marker (kstore_kit_data_directory.h). Format 2 added the frames'
 * BATCH_CRC flag; a format-1 directory is read alike and marked 2 when opened (builds that read
 * format 1 only would take a flagged frame for a damaged one and cut the WAL there). */
#define UR_MARKER_TEXT          "uring 2\n"
#define UR_MARKER_TEXT_FORMAT_1 "uring 1\n"

static const kstore_backend ur_backend;

static void ur_destroy(ur_instance *instance) {
    if (instance->ring_ready) io_uring_queue_exit(&instance->ring);
    if (instance->event_fd >= 0) close(instance->event_fd);
    for (size_t index = 0; index < instance->log_count; index++) ur_free_log(instance->logs[index]);
    free(instance->logs);
    for (size_t index = 0; index < instance->segment_count; index++) {
        ur_segment *segment = instance->segments[index];
        if (segment->fd >= 0) close(segment->fd);
        if (segment->wfd >= 0) close(segment->wfd);
        if (segment->idx_fd >= 0) close(segment->idx_fd);
        if (segment->state != UR_SEGMENT_READY) {
            /* A spare that never became ready leaves no half-made file behind. */
            char name[64];
            ur_segment_name(name, sizeof(name), segment->generation, "log");
            if (segment->state == UR_SEGMENT_FAILED) unlinkat(instance->directory.root_fd, name, 0);
        }
        free(segment);
    }
    free(instance->segments);
    while (instance->chunk_head != NULL) {
        ur_chunk *next = instance->chunk_head->next;
        ur_chunk_free(instance, instance->chunk_head);
        instance->chunk_head = next;
    }
    ur_chunks_free_idle(instance);
    ur_cache_destroy(instance);
    free(instance->syncs);
    free(instance->dirty_logs);
    free(instance->fsync_logs);
    pthread_mutex_destroy(&instance->catalog_lock);
    pthread_mutex_destroy(&instance->wal_lock);
    pthread_cond_destroy(&instance->wal_changed);
    pthread_cond_destroy(&instance->maintenance_wake);
    kstore_kit_data_directory_close(&instance->directory); /* releases the lock */
    kstore_kit_error_destroy(&instance->errors);
    free(instance);
}

/* The instance options (kstore_uring.h), parsed and checked. */
typedef struct ur_options {
    const char *path;
    const char *simulated_error; /* uring.test.io_uring_error */
    enum ur_direct_mode direct;
    /* uring.segment.zero: fallocate, write, or (auto) write in direct mode and fallocate otherwise. */
    bool zero_auto;
    bool zero_by_fallocate;
    uint64_t read_cache_bytes;
    uint64_t segment_bytes;
    uint64_t staging_bytes;
    uint64_t write_bytes;
    uint64_t writes_inflight;
} ur_options;

/* uring.read.cache.bytes: "0" (no cache) or a size; the kit's SIZE kind takes positive values only. */
static kstore_status ur_parse_read_cache(const char *text, uint64_t *bytes, char *error_message,
                                         size_t error_capacity) {
    if (text == NULL) return KSTORE_OK;
    if (strcmp(text, "0") == 0) {
        *bytes = 0;
        return KSTORE_OK;
    }
    const kstore_option option = {.key = "uring.read.cache.bytes", .value = text};
    const kstore_kit_option_spec spec = {
        .key = option.key, .kind = KSTORE_KIT_OPTION_SIZE, .minimum = 1, .maximum = (uint64_t)1 << 40, .target = bytes};
    return kstore_kit_parse_options("uring backend", &option, 1, &spec, 1, error_message, error_capacity);
}

/* Parses the options; the message of a bad one goes to error_message. */
static kstore_status ur_parse_options(const kstore_option *options, uint32_t option_count, ur_options *parsed,
                                      char *error_message, size_t error_capacity) {
    /* Default: unwritten extents. Writing zeros doubles the disk writes and the page-cache copies
     * of a growing WAL; on this project's 2-core benchmark machine fallocate gave about twice the
     * durable throughput (1 KiB x 64 logs) despite the extent conversions fdatasync journals. */
    *parsed = (ur_options){
        .direct = UR_DIRECT_AUTO,
        .read_cache_bytes = UR_READ_CACHE_BYTES_DEFAULT,
        .segment_bytes = UR_SEGMENT_BYTES_DEFAULT,
        .staging_bytes = UR_STAGING_BYTES_DEFAULT,
        .write_bytes = UR_WRITE_BYTES_DEFAULT,
        .writes_inflight = UR_WRITES_INFLIGHT_DEFAULT,
    };
    static const char *const zero_choices[] = {"auto", "write", "fallocate", NULL};
    /* In enum ur_direct_mode's order. */
    static const char *const direct_choices[] = {"auto", "on", "off", NULL};
    int zero = 0;
    int direct = UR_DIRECT_AUTO;
    const char *read_cache = NULL;
    const kstore_kit_option_spec specs[] = {
        {.key = "path",
         .kind = KSTORE_KIT_OPTION_TEXT,
         .required = true,
         .meaning = "the data directory",
         .target = &parsed->path},
        {.key = "uring.segment.zero", .kind = KSTORE_KIT_OPTION_CHOICE, .choices = zero_choices, .target = &zero},
        {.key = "uring.direct", .kind = KSTORE_KIT_OPTION_CHOICE, .choices = direct_choices, .target = &direct},
        {.key = "uring.read.cache.bytes", .kind = KSTORE_KIT_OPTION_TEXT, .target = &read_cache},
        {.key = "uring.test.io_uring_error", .kind = KSTORE_KIT_OPTION_TEXT, .target = &parsed->simulated_error},
        {.key = "uring.segment.bytes",
         .kind = KSTORE_KIT_OPTION_SIZE,
         .minimum = UR_SEGMENT_BYTES_MIN,
         .maximum = UR_SEGMENT_BYTES_MAX,
         .multiple = 4096,
         .target = &parsed->segment_bytes},
        {.key = "uring.staging.bytes",
         .kind = KSTORE_KIT_OPTION_SIZE,
         .minimum = 64 * 1024,
         .maximum = (uint64_t)1 << 40,
         .target = &parsed->staging_bytes},
        {.key = "uring.write.bytes",
         .kind = KSTORE_KIT_OPTION_SIZE,
         .minimum = 4096,
         .maximum = (uint64_t)64 * 1024 * 1024,
         .target = &parsed->write_bytes},
        {.key = "uring.writes.inflight",
         .kind = KSTORE_KIT_OPTION_SIZE,
         .minimum = 1,
         .maximum = UR_WRITES_INFLIGHT_MAX,
         .target = &parsed->writes_inflight},
    };
    kstore_status status = kstore_kit_parse_options("uring backend", options, option_count, specs,
                                                    sizeof(specs) / sizeof(specs[0]), error_message, error_capacity);
    if (status == KSTORE_OK)
        status = ur_parse_read_cache(read_cache, &parsed->read_cache_bytes, error_message, error_capacity);
    if (status != KSTORE_OK) return status;
    parsed->zero_auto = zero == 0;
    parsed->zero_by_fallocate = zero != 1;
    parsed->direct = (enum ur_direct_mode)direct;
    if (parsed->staging_bytes < 2 * parsed->write_bytes) {
        /* One write's chunk being written and one filling: less and appends could only wait. */
        kstore_kit_message(error_message, error_capacity,
                           "uring backend: uring.staging.bytes (%llu) must be at least twice uring.write.bytes (%llu)",
                           (unsigned long long)parsed->staging_bytes, (unsigned long long)parsed->write_bytes);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    return KSTORE_OK;
}

/* A new instance with its options, locks and condition variables; no file opened yet. */
static ur_instance *ur_instance_new(const ur_options *options) {
    ur_instance *instance = calloc(1, sizeof(ur_instance));
    if (instance == NULL) return NULL;
    instance->base.backend = &ur_backend;
    instance->directory = (kstore_kit_data_directory){.path = NULL, .root_fd = -1, .lock_fd = -1};
    instance->event_fd = -1;
    kstore_kit_io_init(&instance->io);
    kstore_kit_error_init(&instance->errors);
    atomic_init(&instance->closing, false);
    instance->segment_bytes = options->segment_bytes;
    instance->staging_bytes_max = options->staging_bytes;
    instance->zero_by_fallocate = options->zero_by_fallocate;
    instance->write_bytes = options->write_bytes;
    instance->writes_inflight_max = (uint32_t)options->writes_inflight;
    instance->write_align = UR_FRAME_ALIGN_BYTES;
    ur_cache_init(&instance->cache, options->read_cache_bytes);
    instance->next_log_id = 1;
    pthread_mutex_init(&instance->catalog_lock, NULL);
    pthread_mutex_init(&instance->wal_lock, NULL);
    pthread_cond_init(&instance->wal_changed, NULL);
    pthread_cond_init(&instance->maintenance_wake, NULL);
    return instance;
}

/* io_uring: containers (seccomp), kernel.io_uring_disabled or old kernels refuse it. Sets up the
 * ring and checks the ops the I/O thread uses; `simulated_error` (tests) fails as if the kernel
 * had refused it. */
static kstore_status ur_probe_io_uring(ur_instance *instance, const char *simulated_error, char *message,
                                       size_t capacity) {
    int result = 0;
    if (simulated_error != NULL) {
        result = strcmp(simulated_error, "EPERM") == 0 ? -EPERM : -ENOSYS;
    } else {
        result = io_uring_queue_init(UR_RING_ENTRIES, &instance->ring, 0);
    }
    if (result < 0) {
        snprintf(message, capacity, "io_uring is not available (%s); use --backend file", strerror(-result));
        return KSTORE_ERR_UNSUPPORTED;
    }
    instance->ring_ready = true;
    struct io_uring_probe *probe = io_uring_get_probe_ring(&instance->ring);
    const char *missing = NULL;
    if (probe == NULL) {
        missing = "the op probe (IORING_REGISTER_PROBE)";
    } else if (!io_uring_opcode_supported(probe, IORING_OP_WRITE)) {
        missing = "IORING_OP_WRITE";
    } else if (!io_uring_opcode_supported(probe, IORING_OP_READ)) {
        missing = "IORING_OP_READ";
    } else if (!io_uring_opcode_supported(probe, IORING_OP_FSYNC)) {
        missing = "IORING_OP_FSYNC";
    }
    if (probe != NULL) io_uring_free_probe(probe);
    if (missing != NULL) {
        snprintf(message, capacity, "io_uring is not available (the kernel lacks %s); use --backend file", missing);
        return KSTORE_ERR_UNSUPPORTED;
    }
    instance->event_fd = eventfd(0, EFD_CLOEXEC);
    if (instance->event_fd < 0) {
        snprintf(message, capacity, "eventfd: %s", strerror(errno));
        return kstore_kit_status_for_errno(errno);
    }
    return KSTORE_OK;
}

/* Starts the I/O thread, then the maintenance thread (stopping the first if the second fails). */
static kstore_status ur_start_threads(ur_instance *instance, char *message, size_t capacity) {
    if (pthread_create(&instance->io_thread, NULL, ur_io_main, instance) != 0) {
        snprintf(message, capacity, "cannot start the I/O thread");
        return KSTORE_ERR_NO_MEMORY;
    }
    instance->io_thread_started = true;
    pthread_setname_np(instance->io_thread, "fjord-uring-io");
    if (pthread_create(&instance->maintenance_thread, NULL, ur_maintenance_main, instance) != 0) {
        pthread_mutex_lock(&instance->wal_lock);
        instance->stopping = true;
        pthread_mutex_unlock(&instance->wal_lock);
        ur_wake_io(instance);
        pthread_join(instance->io_thread, NULL);
        snprintf(message, capacity, "cannot start the maintenance thread");
        return KSTORE_ERR_NO_MEMORY;
    }
    instance->maintenance_thread_started = true;
    pthread_setname_np(instance->maintenance_thread, "fjord-uring-mnt");
    return KSTORE_OK;
}

/* open: parse the options → open and lock the data directory, check its marker → probe io_uring →
 * recover the WAL → start the threads. */
static kstore_status ur_open(const kstore_option *options, uint32_t option_count, kstore_instance **instance_out,
                             char *error_message, size_t error_capacity) {
    if (instance_out == NULL) {
        kstore_kit_message(error_message, error_capacity, "uring backend: instance pointer is NULL");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    *instance_out = NULL;
    ur_options parsed;
    kstore_status status = ur_parse_options(options, option_count, &parsed, error_message, error_capacity);
    if (status != KSTORE_OK) return status;
    ur_instance *instance = ur_instance_new(&parsed);
    if (instance == NULL) {
        kstore_kit_message(error_message, error_capacity, "uring backend: out of memory");
        return KSTORE_ERR_NO_MEMORY;
    }

    char message[UR_ERROR_BYTES_MAX + 256];
    status = kstore_kit_data_directory_open_upgrading(&instance->directory, parsed.path, UR_MARKER_TEXT,
                                                      UR_MARKER_TEXT_FORMAT_1, &instance->io, message, sizeof(message));
    if (status == KSTORE_OK) status = ur_direct_probe(instance, parsed.direct, message, sizeof(message));
    /* Direct writes into unwritten extents would convert extents on every write: zero-fill then. */
    if (parsed.zero_auto) instance->zero_by_fallocate = !instance->direct;
    if (status == KSTORE_OK) status = ur_probe_io_uring(instance, parsed.simulated_error, message, sizeof(message));
    if (status == KSTORE_OK) status = ur_recover(instance, message, sizeof(message));
    if (status == KSTORE_ERR_CORRUPT) {
        /* Acknowledged data is damaged. The instance opens, writes nothing, and every open_log
         * answers CORRUPT with the file and position (kstore.h open_log), so the operator sees
         * which log and where rather than a broker that cannot start. */
        instance->failed_status = KSTORE_ERR_CORRUPT;
        snprintf(instance->corrupt_message, sizeof(instance->corrupt_message), "%s", message);
        kstore_kit_error_set(&instance->errors, "%s", message);
        *instance_out = &instance->base;
        return KSTORE_OK;
    }
    if (status == KSTORE_OK) status = ur_start_threads(instance, message, sizeof(message));
    if (status != KSTORE_OK) {
        kstore_kit_message(error_message, error_capacity, "%s", message);
        ur_destroy(instance);
        return status;
    }
    *instance_out = &instance->base;
    return KSTORE_OK;
}

static void ur_close(kstore_instance *handle) {
    if (handle == NULL) return;
    ur_instance *instance = (ur_instance *)handle;
    /* Everything staged becomes durable before the threads stop (logs survive close). */
    (void)ur_wait_durable(instance);
    pthread_mutex_lock(&instance->wal_lock);
    instance->stopping = true;
    instance->maintenance_stop = true;
    atomic_store(&instance->closing, true);
    pthread_cond_signal(&instance->maintenance_wake);
    pthread_mutex_unlock(&instance->wal_lock);
    ur_wake_io(instance);
    if (instance->io_thread_started) pthread_join(instance->io_thread, NULL);
    if (instance->maintenance_thread_started) pthread_join(instance->maintenance_thread, NULL);
    ur_destroy(instance);
}

static size_t ur_last_error(kstore_instance *handle, char *buf, size_t capacity) {
    return kstore_kit_error_copy(handle == NULL ? NULL : &((ur_instance *)handle)->errors, buf, capacity);
}

static kstore_status ur_control(kstore_instance *handle, int32_t op, void *argument) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_instance *instance = (ur_instance *)handle;
    switch (op) {
    case KSTORE_CONTROL_STATS: return ur_report_stats(instance, argument);
    case KSTORE_URING_CONTROL_STATS: return ur_control_stats(instance, argument);
    case KSTORE_KIT_CONTROL_SET_FAULT_HOOK: {
        kstore_status status = kstore_kit_io_set_hook(&instance->io, argument);
        if (status != KSTORE_OK)
            kstore_kit_error_set(&instance->errors, "control SET_FAULT_HOOK: the hook is malformed");
        return status;
    }
    default:
        kstore_kit_error_set(&instance->errors, "control: op %d is not supported by the uring backend", (int)op);
        return KSTORE_ERR_UNSUPPORTED;
    }
}

static const kstore_backend ur_backend = {
    .abi_version = KSTORE_ABI_VERSION,
    .struct_size = sizeof(kstore_backend),
    .name = "uring",
    .description = "io_uring write-ahead log shared by all logs: group-committed durability (Linux)",
    .capabilities = KSTORE_CAP_DURABLE | KSTORE_CAP_NONBLOCKING | KSTORE_CAP_SHARED_SYNC,
    .reserved = 0,
    .open = ur_open,
    .close = ur_close,
    .last_error = ur_last_error,
    .open_log = ur_open_log,
    .delete_log = ur_delete_log,
    .list_logs = ur_list_logs,
    .control = ur_control,
};

const kstore_backend *kstore_uring_backend(void) { return &ur_backend; }
