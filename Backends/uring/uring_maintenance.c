/* The maintenance thread: the blocking file work the event loop and the I/O thread never wait for.
 * It prepares segment files ahead of need (reusing retired spares, preallocating, zero-filling only
 * with slack), writes the index files of sealed segments, and retires segments no log needs once a
 * durable checkpoint of the catalog follows them (ur_schedule_gc). Formats: docs/storage-formats.md
 * ("uring backend"); invariants and lock order: uring_internal.h. */
#include "uring_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Number of prepared (or preparing) segments kept ahead of the one being written. */
#define UR_SPARE_SEGMENTS 2

/* Makes a retired segment file (spare-<generation>.log) the file of `segment` when one waits;
 * returns its fd, or -1 when there is none or it does not fit (it is removed then). */
/* Whether a retired segment file waits to be reused. */
static bool ur_has_spare(ur_instance *instance) {
    pthread_mutex_lock(&instance->wal_lock);
    bool waiting = instance->recycled_count > 0;
    pthread_mutex_unlock(&instance->wal_lock);
    return waiting;
}

static int ur_reuse_spare(ur_instance *instance, ur_segment *segment, const char *name, uint64_t capacity, int *wfd) {
    pthread_mutex_lock(&instance->wal_lock);
    bool recycle = instance->recycled_count > 0;
    uint64_t old_generation = recycle ? instance->recycled[--instance->recycled_count] : 0;
    pthread_mutex_unlock(&instance->wal_lock);
    if (!recycle) return -1;
    char spare[64];
    ur_spare_name(spare, sizeof(spare), old_generation);
    if (renameat(instance->directory.root_fd, spare, instance->directory.root_fd, name) != 0) {
        unlinkat(instance->directory.root_fd, spare, 0);
        return -1;
    }
    int fd;
    do {
        fd = openat(instance->directory.root_fd, name, O_RDWR | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    struct stat info;
    if (fd >= 0 && fstat(fd, &info) == 0 && (uint64_t)info.st_size >= capacity &&
        kstore_kit_fsync(&instance->io, instance->directory.root_fd) == 0 && ur_open_wfd(instance, name, wfd)) {
        /* Pages a reader cached in its earlier life would make every direct write over them wait
         * (the kernel must drop them first): drop them now, off the write path. */
        if (instance->direct) posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        pthread_mutex_lock(&instance->wal_lock);
        /* A larger file only gives the segment more room. */
        if ((uint64_t)info.st_size > segment->capacity) segment->capacity = (uint64_t)info.st_size;
        instance->stats.segments_recycled++;
        pthread_mutex_unlock(&instance->wal_lock);
        return fd;
    }
    if (fd >= 0) close(fd);
    unlinkat(instance->directory.root_fd, name, 0);
    return -1;
}

/* Creates a new segment file of `capacity` bytes; returns its fd (and the O_DIRECT one in *wfd in
 * direct mode) or -1 with *error. */
static int ur_create_segment_file(ur_instance *instance, ur_segment *segment, const char *name, uint64_t capacity,
                                  int *wfd, int *error) {
    int fd = kstore_kit_openat(&instance->io, instance->directory.root_fd, name, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        *error = errno;
        return -1;
    }
    int result = kstore_kit_fallocate(&instance->io, fd, 0, 0, capacity);
    if (result != 0 && errno == EOPNOTSUPP) result = kstore_kit_ftruncate(&instance->io, fd, capacity);
    if (result == 0 && !ur_open_wfd(instance, name, wfd)) result = -1;
    /* uring.segment.zero=write (the default in direct mode): real zeros, not unwritten extents:
     * later overwrites then change no extent metadata, so the WAL's fdatasync flushes data only, a
     * direct write never converts extents, and the end of valid data reads as zeros. In direct
     * mode the zeros go through the O_DIRECT descriptor, in whole aligned blocks. */
    int zero_fd = *wfd >= 0 ? *wfd : fd;
    uint64_t zero_bytes = ur_align_up(capacity, instance->write_align);
    if (result != 0 ||
        (!instance->zero_by_fallocate &&
         ur_write_zeros_cancellable(&instance->io, zero_fd, 0, zero_bytes, &instance->closing, &segment->hurry) != 0) ||
        (!atomic_load(&segment->hurry) && kstore_kit_fdatasync(&instance->io, fd) != 0) ||
        kstore_kit_fsync(&instance->io, instance->directory.root_fd) != 0) {
        *error = errno;
        close(fd);
        if (*wfd >= 0) close(*wfd);
        *wfd = -1;
        unlinkat(instance->directory.root_fd, name, 0);
        return -1;
    }
    return fd;
}

/* Creates (or reuses a spare), preallocates and, with uring.segment.zero=write, zero-fills a segment
 * file; returns its fd (and the O_DIRECT one in *wfd) or -1 with *error. */
int ur_prepare_segment_file(ur_instance *instance, ur_segment *segment, int *wfd, int *error) {
    *wfd = -1;
    char name[64];
    pthread_mutex_lock(&instance->wal_lock);
    uint64_t generation = segment->generation;
    uint64_t capacity = segment->capacity;
    ur_segment_name(name, sizeof(name), generation, "log");
    pthread_mutex_unlock(&instance->wal_lock);
    /* Reuse a retired segment file when one waits. A reused file is allocated already: the fault
     * hook (tests) is asked about its preparation here, as kstore_kit_fallocate asks for a new one. */
    uint64_t ignored = 0;
    int fault = ur_has_spare(instance)
                    ? kstore_kit_fault_check(&instance->io, KSTORE_KIT_IO_ALLOCATE, -1, 0, capacity, &ignored)
                    : 0;
    if (fault != 0) {
        *error = fault;
        return -1;
    }
    int fd = ur_reuse_spare(instance, segment, name, capacity, wfd);
    if (fd >= 0) return fd;
    return ur_create_segment_file(instance, segment, name, capacity, wfd, error);
}

static bool ur_write_index(ur_instance *instance, ur_segment *segment) {
    pthread_mutex_lock(&instance->catalog_lock);
    bool ok = ur_write_index_of(instance, segment, instance->logs, instance->log_count);
    pthread_mutex_unlock(&instance->catalog_lock);
    return ok;
}

void ur_unlink_segment(ur_instance *instance, ur_segment *segment) {
    char name[64];
    if (segment->fd >= 0) close(segment->fd);
    if (segment->wfd >= 0) close(segment->wfd);
    if (segment->idx_fd >= 0) close(segment->idx_fd);
    ur_segment_name(name, sizeof(name), segment->generation, "idx");
    unlinkat(instance->directory.root_fd, name, 0);
    ur_segment_name(name, sizeof(name), segment->generation, "log");
    unlinkat(instance->directory.root_fd, name, 0);
    free(segment);
}

/* Retires a deleted segment: kept for reuse (renamed out of the WAL's name space first, so
 * recovery never reads it as WAL) while fewer than UR_RECYCLE_MAX wait, else unlinked. Runs on
 * the maintenance thread without wal_lock. */
static void ur_retire_segment(ur_instance *instance, ur_segment *segment) {
    pthread_mutex_lock(&instance->wal_lock);
    bool keep = instance->recycled_count < UR_RECYCLE_MAX && segment->state == UR_SEGMENT_READY;
    pthread_mutex_unlock(&instance->wal_lock);
    if (keep) {
        char name[64], spare[64];
        ur_segment_name(name, sizeof(name), segment->generation, "log");
        ur_spare_name(spare, sizeof(spare), segment->generation);
        if (renameat(instance->directory.root_fd, name, instance->directory.root_fd, spare) == 0) {
            ur_segment_name(name, sizeof(name), segment->generation, "idx");
            unlinkat(instance->directory.root_fd, name, 0);
            if (segment->fd >= 0) close(segment->fd);
            if (segment->wfd >= 0) close(segment->wfd);
            if (segment->idx_fd >= 0) close(segment->idx_fd);
            pthread_mutex_lock(&instance->wal_lock);
            instance->recycled[instance->recycled_count++] = segment->generation;
            pthread_mutex_unlock(&instance->wal_lock);
            free(segment);
            return;
        }
    }
    ur_unlink_segment(instance, segment);
}

/* The maintenance loop's steps, in priority order. Each runs with wal_lock held (dropping it around
 * file work) and says whether it did something, after which the loop starts again from step 1. */

/* 1. Deletes segments below the durable checkpoint that no log needs (cheap, and it gives space
 * back before anything else). */
static bool ur_maintain_delete(ur_instance *instance) {
    size_t deletable = 0;
    while (deletable < instance->segment_count) {
        ur_segment *segment = instance->segments[deletable];
        if (segment->generation >= instance->gc_ready_below || segment == instance->cursor_segment ||
            !segment->sealed || segment->sealing || segment->dirty || segment->fsyncs_in_flight > 0) {
            break;
        }
        deletable++;
    }
    if (deletable == 0) return false;
    ur_segment **victims = malloc(deletable * sizeof(ur_segment *));
    if (victims == NULL) return false;
    memcpy(victims, instance->segments, deletable * sizeof(ur_segment *));
    memmove(instance->segments, instance->segments + deletable,
            (instance->segment_count - deletable) * sizeof(ur_segment *));
    instance->segment_count -= deletable;
    instance->stats.segments_deleted += deletable;
    pthread_mutex_unlock(&instance->wal_lock);
    for (size_t index = 0; index < deletable; index++) ur_retire_segment(instance, victims[index]);
    (void)kstore_kit_fsync(&instance->io, instance->directory.root_fd);
    free(victims);
    pthread_mutex_lock(&instance->wal_lock);
    /* Space came back: a failed segment may be preparable now. */
    instance->maintenance_poke = true;
    return true;
}

/* 2. Writes the index file of a sealed segment. */
static bool ur_maintain_seal(ur_instance *instance) {
    ur_segment *seal = NULL;
    for (size_t index = 0; index < instance->segment_count && seal == NULL; index++) {
        if (instance->segments[index]->sealing) seal = instance->segments[index];
    }
    if (seal == NULL) return false;
    pthread_mutex_unlock(&instance->wal_lock);
    (void)ur_write_index(instance, seal);
    pthread_mutex_lock(&instance->wal_lock);
    seal->sealing = false;
    return true;
}

/* 3. Prepares the next segment file (retries a failed one when poked, or every 200 ms). */
static bool ur_maintain_prepare(ur_instance *instance, uint64_t *last_retry_ns) {
    ur_segment *prepare = NULL;
    bool retry_due = instance->maintenance_poke || ur_now_ns() - *last_retry_ns > 200000000ull;
    for (size_t index = 0; index < instance->segment_count && prepare == NULL; index++) {
        ur_segment *segment = instance->segments[index];
        if (segment->state == UR_SEGMENT_PREPARING || (segment->state == UR_SEGMENT_FAILED && retry_due)) {
            prepare = segment;
        }
    }
    if (prepare == NULL) return false;
    instance->maintenance_poke = false;
    prepare->state = UR_SEGMENT_PREPARING;
    uint64_t generation = prepare->generation;
    pthread_mutex_unlock(&instance->wal_lock);
    int error = 0;
    int wfd = -1;
    int fd = ur_prepare_segment_file(instance, prepare, &wfd, &error);
    pthread_mutex_lock(&instance->wal_lock);
    if (fd >= 0) {
        prepare->fd = fd;
        prepare->wfd = wfd;
        prepare->state = UR_SEGMENT_READY;
        instance->stats.segments_created++;
    } else {
        prepare->state = UR_SEGMENT_FAILED;
        prepare->prepare_error = error;
        *last_retry_ns = ur_now_ns();
        kstore_kit_error_set(&instance->errors, "preparing write-ahead-log segment %016" PRIx64 " in %s failed: %s",
                             generation, instance->directory.path, strerror(error));
    }
    pthread_mutex_unlock(&instance->wal_lock);
    ur_wake_io(instance);
    pthread_mutex_lock(&instance->wal_lock);
    return true;
}

/* 4. Keeps spares ahead of the cursor. */
static bool ur_maintain_spares(ur_instance *instance) {
    size_t ahead = 0;
    bool failed = false;
    for (size_t index = 0; index < instance->segment_count; index++) {
        ur_segment *segment = instance->segments[index];
        if (segment->generation > instance->cursor_segment->generation) ahead++;
        failed = failed || segment->state == UR_SEGMENT_FAILED;
    }
    return ahead < UR_SPARE_SEGMENTS && !failed && !instance->stopping && ur_segment_add(instance) != NULL;
}

void *ur_maintenance_main(void *argument) {
    ur_instance *instance = argument;
    uint64_t last_retry_ns = 0;
    pthread_mutex_lock(&instance->wal_lock);
    while (!instance->maintenance_stop) {
        if (ur_maintain_delete(instance) || ur_maintain_seal(instance) ||
            ur_maintain_prepare(instance, &last_retry_ns) || ur_maintain_spares(instance)) {
            continue;
        }
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_nsec += 200000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&instance->maintenance_wake, &instance->wal_lock, &deadline);
    }
    pthread_mutex_unlock(&instance->wal_lock);
    return NULL;
}

/* The bound a durable checkpoint unlocks for deletion. */
typedef struct ur_gc_ticket {
    ur_instance *instance;
    uint64_t below;
} ur_gc_ticket;

static void ur_gc_checkpoint_durable(void *context, kstore_status status) {
    ur_gc_ticket *ticket = context;
    ur_instance *instance = ticket->instance;
    pthread_mutex_lock(&instance->wal_lock);
    if (status == KSTORE_OK && ticket->below > instance->gc_ready_below) instance->gc_ready_below = ticket->below;
    if (status != KSTORE_OK && instance->gc_scheduled_below >= ticket->below) instance->gc_scheduled_below = 0;
    pthread_cond_signal(&instance->maintenance_wake);
    pthread_mutex_unlock(&instance->wal_lock);
    free(ticket);
}

/* After a log's start moved or a log was deleted: if WAL segments at the front are no longer
 * needed by any log, write a checkpoint of the catalog after them and delete them once it is
 * durable. The caller holds no lock. */
void ur_schedule_gc(ur_instance *instance) {
    pthread_mutex_lock(&instance->catalog_lock);
    uint64_t needed = UINT64_MAX;
    size_t count = instance->log_count;
    int64_t *starts = malloc((count + 1) * sizeof(int64_t));
    for (size_t index = 0; index < count; index++) {
        ur_log *log = instance->logs[index];
        pthread_rwlock_rdlock(&log->lock);
        if (log->part_count > 0 && log->parts[0].segment->generation < needed) {
            needed = log->parts[0].segment->generation;
        }
        if (starts != NULL) starts[index] = log->start_offset;
        pthread_rwlock_unlock(&log->lock);
    }
    bool wake = false;
    pthread_mutex_lock(&instance->wal_lock);
    /* Below the oldest segment a log has entries in, and never at or past the one being written.
     * Unsigned: with no entries in any log needed stays UINT64_MAX, which a signed minimum took for
     * -1, so every sealed segment became deletable from then on, entries and catalog included. */
    uint64_t cursor_generation = instance->cursor_segment->generation;
    uint64_t below = needed < cursor_generation ? needed : cursor_generation;
    uint64_t oldest = instance->segments[0]->generation;
    if (starts != NULL && below > oldest && below > instance->gc_scheduled_below &&
        instance->failed_status == KSTORE_OK) {
        bool checkpoint = false;
        for (size_t index = 0; index < instance->segment_count; index++) {
            ur_segment *segment = instance->segments[index];
            if (segment->generation < below && segment->has_catalog) checkpoint = true;
        }
        if (!checkpoint) {
            instance->gc_scheduled_below = below;
            if (below > instance->gc_ready_below) instance->gc_ready_below = below;
            pthread_cond_signal(&instance->maintenance_wake);
        } else {
            ur_gc_ticket *ticket = malloc(sizeof(ur_gc_ticket));
            bool staged = ticket != NULL;
            const char *reason = NULL;
            for (size_t index = 0; staged && index < count; index++) {
                ur_log *log = instance->logs[index];
                staged = ur_stage_catalog(instance, UR_FRAME_CREATE, log, log->id, starts[index], log->name, &wake,
                                          &reason) == KSTORE_OK;
            }
            if (staged) {
                *ticket = (ur_gc_ticket){instance, below};
                staged =
                    ur_add_sync(instance, instance->next_sequence - 1, NULL, ur_gc_checkpoint_durable, ticket, &wake);
            }
            if (staged) {
                instance->gc_scheduled_below = below;
            } else {
                /* Not now (staging full, no space): a later retention call tries again. */
                free(ticket);
            }
        }
    }
    pthread_mutex_unlock(&instance->wal_lock);
    pthread_mutex_unlock(&instance->catalog_lock);
    free(starts);
    if (wake) ur_wake_io(instance);
}
