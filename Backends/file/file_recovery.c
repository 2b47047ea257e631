/* open_log's recovery (Kafka's LogLoader): from the files of a log directory to its segment array,
 * start offset, active segment and published state. The rules are in docs/storage-formats.md
 * ("Recovery"); in short:
 *   - After a crash (no clean-shutdown marker: fl_recover_crashed_segment) every frame of every segment is
 *     verified and both indexes rebuilt. A bad frame with nothing valid after it — in its segment or
 *     any later one — is a torn write: the segment is truncated there and the later (garbage-only)
 *     segments deleted. A bad frame followed by a valid one is damage to acknowledged data: CORRUPT,
 *     naming the file and position.
 *   - After a clean close (fl_recover_clean_segment) each segment is trusted from its summary when the
 *     summary, the file sizes and the last index entries agree, and the frames after the last
 *     segment's last index entry are verified; a segment that does not add up is rebuilt, and any
 *     bad frame is CORRUPT (everything was synced at close).
 *   - The start offset is max(meta, oldest segment's base); segments wholly below it are deleted.
 */
#include "file_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One recovery's working state. */
typedef struct fl_loader {
    fl_log *log;
    /* Base offsets of the segment files, sorted; bases[first, end) are the ones to load. */
    int64_t *bases;
    size_t first;
    size_t end;
    /* The recovered log start offset. */
    int64_t start;
    /* Files were created, removed or renamed: the directory must be fsync'ed. */
    bool changed;
    /* A window of FL_SCAN_WINDOW_BYTES for the large sequential reads of verification. */
    fl_reader reader;
    /* The index state of the segment rebuilt last; the active segment's when have_builder. */
    fl_builder builder;
    bool have_builder;
} fl_loader;

/* MARK: - Listing */

static int fl_compare_offsets(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Lists the segment files of the log directory (sorted base offsets) and removes leftovers: temporary
 * files and index files without their segment. */
static kstore_status fl_list_segments(fl_log *log, int64_t **bases_out, size_t *count_out, bool *changed) {
    int fd = fl_open_transient(log->instance, log->instance->logs_fd, log->name, O_RDONLY | O_DIRECTORY, 0);
    DIR *directory = fd >= 0 ? fdopendir(fd) : NULL;
    if (directory == NULL) {
        int error = errno;
        kstore_kit_close_fd(fd);
        return fl_open_error(log->instance, error, "log '%s': listing %s failed", log->name, log->path);
    }
    int64_t *bases = NULL;
    size_t count = 0, capacity = 0;
    kstore_status status = KSTORE_OK;
    struct dirent *entry;
    while (status == KSTORE_OK && (entry = readdir(directory)) != NULL) {
        const char *name = entry->d_name;
        size_t length = strlen(name);
        int64_t base = 0;
        if (fl_parse_segment_name(name, &base)) {
            if (count == capacity) {
                size_t grown = capacity == 0 ? 16 : capacity * 2;
                int64_t *larger = realloc(bases, grown * sizeof(int64_t));
                if (larger == NULL) {
                    kstore_kit_error_set(&log->instance->errors, "log '%s': out of memory listing segments", log->name);
                    status = KSTORE_ERR_NO_MEMORY;
                    break;
                }
                bases = larger;
                capacity = grown;
            }
            bases[count++] = base;
        } else if (length > 4 && strcmp(name + length - 4, ".tmp") == 0) {
            fl_unlink_file(log, name);
            *changed = true;
        } else if (length >= 26 && length <= 30 &&
                   (strcmp(name + 20, ".index") == 0 || strcmp(name + 20, ".timeindex") == 0)) {
            char segment_name[FL_FILE_NAME_BYTES];
            char path[FL_PATH_BYTES];
            memcpy(segment_name, name, 20);
            memcpy(segment_name + 20, ".log", 5);
            fl_log_path(log, path, segment_name);
            if (faccessat(log->instance->logs_fd, path, F_OK, 0) != 0 && errno == ENOENT) {
                fl_unlink_file(log, name);
                *changed = true;
            }
        }
    }
    closedir(directory);
    if (status != KSTORE_OK) {
        free(bases);
        return status;
    }
    if (count > 1) qsort(bases, count, sizeof(int64_t), fl_compare_offsets);
    *bases_out = bases;
    *count_out = count;
    return KSTORE_OK;
}

/* Lists the segments and reads the start offset: segments wholly below the start (left over from
 * retention interrupted by a crash) are deleted; the segment array and the scan window are
 * allocated. */
static kstore_status fl_loader_begin(fl_log *log, fl_loader *loader) {
    *loader = (fl_loader){.log = log};
    size_t base_count = 0;
    kstore_status status = fl_list_segments(log, &loader->bases, &base_count, &loader->changed);
    if (status != KSTORE_OK) return status;
    int64_t meta_start = -1;
    int meta = fl_read_meta(log, &meta_start);
    if (meta <= 0) meta_start = -1;
    if (meta < 0) log->recovery.meta_damaged = 1;
    int64_t start = meta_start < 0 ? 0 : meta_start;
    if (base_count > 0) start = fl_max64(start, loader->bases[0]);
    size_t first = 0;
    while (base_count - first >= 2 && loader->bases[first + 1] <= start) {
        fl_unlink_segment(log, loader->bases[first]);
        first++;
        loader->changed = true;
    }
    loader->start = start;
    loader->first = first;
    loader->end = base_count;
    size_t capacity = base_count - first + 4;
    log->segments = calloc(capacity, sizeof(fl_segment));
    bool have_reader = fl_reader_init(&loader->reader, log->instance, FL_SCAN_WINDOW_BYTES);
    if (log->segments == NULL || !have_reader) {
        free(loader->bases);
        loader->bases = NULL;
        if (have_reader) fl_reader_free(&loader->reader);
        kstore_kit_error_set(&log->instance->errors, "log '%s': out of memory for %zu segments", log->name, capacity);
        return KSTORE_ERR_NO_MEMORY;
    }
    log->segment_capacity = capacity;
    log->segment_count = 0;
    return KSTORE_OK;
}

/* MARK: - Steps shared by both paths */

/* Leases a segment's .log into files and reads its size. */
static kstore_status fl_open_segment_log(fl_log *log, int64_t base_offset, fl_files *files, uint64_t *file_size) {
    *files = fl_files_none(base_offset);
    fl_segment segment = {.base_offset = base_offset};
    kstore_status status = fl_files_open(log, &segment, files);
    if (status != KSTORE_OK) return status;
    if (kstore_kit_file_size(files->fds.log_fd, file_size) == 0) return KSTORE_OK;
    return kstore_kit_error_errno(&log->instance->errors, errno, "log '%s': examining %s/%020lld.log failed", log->name,
                                  log->path, (long long)base_offset);
}

/* Rebuilds a segment from its frames: leases (creating) its index files into files and verifies
 * every frame into *segment and loader->builder; verify says whether a bad frame stopped it. */
static kstore_status fl_rebuild(fl_loader *loader, fl_segment *segment, fl_files *files, uint64_t file_size,
                                fl_verify *verify) {
    fl_log *log = loader->log;
    kstore_status status = fl_files_indexes(log, files, true);
    if (status != KSTORE_OK) return status;
    const fl_fds *fds = &files->fds;
    status = fl_verify_segment(log, segment, &loader->builder, fds, file_size, &loader->reader, verify);
    log->recovery.rebuilt_index_count++;
    return status;
}

/* After a rebuild: a sealed segment (not the last) gets its final time entry and its summary, so a
 * clean open trusts it; the index files are synced. Failures cost only a rebuild at the next open. */
static void fl_seal_rebuilt(fl_loader *loader, fl_segment *segment, const fl_fds *fds, bool last) {
    fl_log *log = loader->log;
    kstore_kit_io *io = &log->instance->io;
    if (!last) {
        fl_time_record time;
        uint8_t bytes[FL_TIME_ENTRY_BYTES];
        if (fl_builder_final_time(segment, &loader->builder, &time)) {
            fl_time_encode(bytes, &time);
            if (kstore_kit_pwrite_all(io, fds->time_fd, bytes, sizeof(bytes),
                                      (segment->time_count - 1) * FL_TIME_ENTRY_BYTES) != 0) {
                atomic_store(&log->index_suspect, 1);
            }
        }
        if (!fl_write_summary(log, fds->index_fd, segment)) atomic_store(&log->index_suspect, 1);
    }
    if (kstore_kit_fdatasync(io, fds->index_fd) != 0 || kstore_kit_fdatasync(io, fds->time_fd) != 0) {
        atomic_store(&log->index_suspect, 1);
    }
}

/* Appends a loaded segment to the array once its offsets continue the previous one's. */
static kstore_status fl_loader_add(fl_loader *loader, const fl_segment *segment, bool last, bool rebuilt) {
    fl_log *log = loader->log;
    if (log->segment_count > 0) {
        const fl_segment *previous = &log->segments[log->segment_count - 1];
        if (previous->end_offset != segment->base_offset) {
            return fl_frame_error(log, previous->base_offset, previous->size_bytes,
                                  "the segment ends at offset %lld but the next segment %020lld.log begins at "
                                  "offset %lld: offsets are missing",
                                  (long long)previous->end_offset, (long long)segment->base_offset,
                                  (long long)segment->base_offset);
        }
    }
    log->segments[log->segment_count++] = *segment;
    if (last) loader->have_builder = rebuilt;
    return KSTORE_OK;
}

/* MARK: - The crash path */

/* A bad frame at verify->valid_bytes of segment bases[i] after a crash: damage to acknowledged data
 * (CORRUPT) when a valid frame follows, in this segment or a later one; otherwise a torn write, cut
 * off with the later (garbage-only) segments. */
static kstore_status fl_cut_torn_tail(fl_loader *loader, size_t i, const fl_files *files, uint64_t file_size,
                                      const fl_verify *verify) {
    fl_log *log = loader->log;
    fl_instance *instance = log->instance;
    int64_t base_offset = loader->bases[i];
    uint64_t bad = verify->valid_bytes;
    int64_t later = fl_find_valid_frame(&loader->reader, files->fds.log_fd, bad + 1, file_size);
    if (later >= 0) {
        return fl_frame_error(log, base_offset, bad,
                              "%s, followed by a valid frame at position %lld: acknowledged data is damaged",
                              verify->reason, (long long)later);
    }
    for (size_t j = i + 1; j < loader->end; j++) {
        fl_lease lease;
        uint64_t size = 0;
        int64_t found = -1;
        if (fl_lease_file(log, loader->bases[j], FL_FILE_LOG, false, &lease) == KSTORE_OK &&
            kstore_kit_file_size(lease.fd, &size) == 0) {
            found = fl_find_valid_frame(&loader->reader, lease.fd, 0, size);
        }
        fl_release(log, &lease);
        if (found >= 0) {
            return fl_frame_error(log, base_offset, bad,
                                  "%s, followed by a valid frame in %020lld.log at position %lld: acknowledged data "
                                  "is damaged",
                                  verify->reason, (long long)loader->bases[j], (long long)found);
        }
    }
    kstore_status status = KSTORE_OK;
    int error = kstore_kit_ftruncate(&instance->io, files->fds.log_fd, bad) != 0 ? errno : 0;
    fl_lease_note_write(&files->leases[FL_FILE_LOG]);
    if (error == 0) error = fl_lease_fdatasync(log, &files->leases[FL_FILE_LOG]);
    if (error != 0) {
        status = kstore_kit_error_errno(&instance->errors, error, "log '%s': truncating %s/%020lld.log to %llu failed",
                                        log->name, log->path, (long long)base_offset, (unsigned long long)bad);
    }
    log->recovery.truncated_bytes += file_size - bad;
    for (size_t j = i + 1; j < loader->end; j++) {
        char name[FL_FILE_NAME_BYTES];
        char path[FL_PATH_BYTES];
        struct stat entry;
        fl_segment_name(name, loader->bases[j], ".log");
        fl_log_path(log, path, name);
        if (fstatat(instance->logs_fd, path, &entry, 0) == 0) log->recovery.truncated_bytes += (uint64_t)entry.st_size;
        fl_unlink_segment(log, loader->bases[j]);
        loader->changed = true;
    }
    loader->end = i + 1;
    return status;
}

/* The crash path for segment bases[i] (its .log leased in files): every frame is verified and both
 * indexes rebuilt; a bad frame is a torn tail (cut) or damage (CORRUPT). */
static kstore_status fl_recover_crashed_segment(fl_loader *loader, size_t i, fl_segment *segment, fl_files *files,
                                                uint64_t file_size) {
    fl_verify verify;
    kstore_status status = fl_rebuild(loader, segment, files, file_size, &verify);
    if (status == KSTORE_OK && verify.bad) status = fl_cut_torn_tail(loader, i, files, file_size, &verify);
    if (status == KSTORE_OK) fl_seal_rebuilt(loader, segment, &files->fds, i + 1 == loader->end);
    return status;
}

/* MARK: - The clean path */

/* The clean path for segment bases[i] (its .log leased in files): trusted from its summary, or rebuilt
 * when it does not add up; a bad frame is damage either way (everything was synced at close).
 * *rebuilt says which. */
static kstore_status fl_recover_clean_segment(fl_loader *loader, size_t i, fl_segment *segment, fl_files *files,
                                              uint64_t file_size, bool *rebuilt) {
    fl_log *log = loader->log;
    bool last = i + 1 == loader->end;
    int64_t next_base = last ? -1 : loader->bases[i + 1];
    *rebuilt = false;
    if (fl_trust_segment(log, segment, files, file_size, next_base, last, &loader->reader)) return KSTORE_OK;
    *segment = (fl_segment){.base_offset = loader->bases[i]};
    fl_verify verify;
    kstore_status status = fl_rebuild(loader, segment, files, file_size, &verify);
    *rebuilt = true;
    if (status == KSTORE_OK && verify.bad) {
        status = fl_frame_error(log, segment->base_offset, verify.valid_bytes, "%s in a log that was closed cleanly",
                                verify.reason);
    }
    if (status == KSTORE_OK) fl_seal_rebuilt(loader, segment, &files->fds, last);
    return status;
}

/* MARK: - Loading every segment */

/* Loads bases[first, end) in order through the clean path (`trusted`) or the crash path. */
static kstore_status fl_load_segments(fl_loader *loader, bool trusted) {
    fl_log *log = loader->log;
    kstore_status status = KSTORE_OK;
    for (size_t i = loader->first; status == KSTORE_OK && i < loader->end; i++) {
        fl_segment segment = {.base_offset = loader->bases[i]};
        fl_files files;
        uint64_t file_size = 0;
        status = fl_open_segment_log(log, segment.base_offset, &files, &file_size);
        bool rebuilt = true;
        if (status == KSTORE_OK) {
            status = trusted ? fl_recover_clean_segment(loader, i, &segment, &files, file_size, &rebuilt)
                             : fl_recover_crashed_segment(loader, i, &segment, &files, file_size);
        }
        /* One segment's descriptors at a time: they stay cached (the last one's for the active
         * segment) until the cache needs room. */
        fl_files_close(log, &files);
        /* After a torn tail the crash path ended the log at this segment. */
        bool last = i + 1 == loader->end;
        if (status == KSTORE_OK) status = fl_loader_add(loader, &segment, last, rebuilt);
    }
    return status;
}

/* MARK: - Finishing */

/* No segment at all (a new log), or every entry below a start that a crash made lie beyond the
 * recovered end: begin afresh with one empty segment at the start. */
static kstore_status fl_start_afresh(fl_loader *loader) {
    fl_log *log = loader->log;
    for (size_t index = 0; index < log->segment_count; index++) {
        fl_unlink_segment(log, log->segments[index].base_offset);
    }
    loader->changed = true;
    fl_files files;
    kstore_status status = fl_create_segment_files(log, loader->start, &files);
    fl_files_close(log, &files);
    if (status != KSTORE_OK) return status;
    log->segments[0] = (fl_segment){.base_offset = loader->start, .end_offset = loader->start, .max_timestamp = -1};
    log->segment_count = 1;
    fl_builder_start(&loader->builder, log->index_interval_bytes);
    loader->have_builder = true;
    return KSTORE_OK;
}

/* Makes the last segment the active one: its descriptors, its index state (restored from its index
 * files, or rebuilt when they do not add up), and the derived state of the first segment. */
static kstore_status fl_activate(fl_loader *loader) {
    fl_log *log = loader->log;
    fl_segment *active = &log->segments[log->segment_count - 1];
    fl_files files;
    kstore_status status = fl_files_all(log, active->base_offset, true, &files);
    if (status != KSTORE_OK) return status;
    if (loader->have_builder) {
        log->builder = loader->builder;
    } else if (!fl_restore_builder(log, active, &files.fds, false, &loader->reader)) {
        /* The last segment's indexes do not add up after all: rebuild them. */
        fl_verify verify;
        status =
            fl_verify_segment(log, active, &log->builder, &files.fds, active->size_bytes, &loader->reader, &verify);
        log->recovery.rebuilt_index_count++;
        if (status == KSTORE_OK && verify.bad) {
            status = fl_frame_error(log, active->base_offset, verify.valid_bytes, "%s in a log that was closed cleanly",
                                    verify.reason);
        }
    }
    if (status == KSTORE_OK) {
        if (active->created_ms == 0 && active->entry_count > 0) active->created_ms = fl_now_ms();
        uint64_t index_bytes = 0;
        if (kstore_kit_file_size(files.fds.index_fd, &index_bytes) != 0) index_bytes = 0;
        log->active_index_bytes = index_bytes;
        log->active_time_bytes = active->time_count * FL_TIME_ENTRY_BYTES;
        log->start_offset = loader->start;
    }
    fl_files_close(log, &files);
    if (status == KSTORE_OK) status = fl_compute_dead(log);
    return status;
}

kstore_status fl_recover(fl_log *log, bool trusted) {
    uint64_t started = fl_monotonic_ns();
    log->recovery.struct_size = sizeof(kstore_file_recovery_info);
    log->recovery.clean = trusted ? 1 : 0;
    fl_loader loader;
    kstore_status status = fl_loader_begin(log, &loader);
    if (status != KSTORE_OK) return status;
    status = fl_load_segments(&loader, trusted);
    free(loader.bases);
    loader.bases = NULL;
    if (status == KSTORE_OK &&
        (log->segment_count == 0 || loader.start > log->segments[log->segment_count - 1].end_offset)) {
        status = fl_start_afresh(&loader);
    }
    if (status == KSTORE_OK && loader.changed) status = fl_sync_directory(log, "");
    if (status == KSTORE_OK) status = fl_activate(&loader);
    fl_reader_free(&loader.reader);
    if (status != KSTORE_OK) return status;
    fl_recompute_totals(log);
    log->snapshot.struct_size = sizeof(kstore_log_state);
    log->snapshot.durable_end_offset = log->end_offset;
    fl_publish_state(log);
    log->recovery.segment_count = log->segment_count;
    log->recovery.scan_nanoseconds = fl_monotonic_ns() - started;
    return KSTORE_OK;
}
