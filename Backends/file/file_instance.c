/* The file backend's table and instance members: opening an instance (options → the data directory
 * with its lock and format marker → X/logs and X/deleted → deletions a crash interrupted), opening,
 * deleting and listing logs, and the instance control ops.
 *
 * Layout of a data directory X (docs/storage-formats.md, "file backend"): X/.lock, X/.fjord-backend,
 * X/logs/<name>/ one directory per log, X/deleted/ logs being deleted.
 *
 * Invariants: a log name is busy (open, being opened or being deleted) in at most one call at a
 * time; a log is deleted by a durable rename into X/deleted first, so a crash finds it gone and the
 * next open finishes the removal.
 */
#include "file_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const kstore_backend fl_backend;

/* Removes the directory `name` in `parent_fd` and everything in it. */
static int fl_remove_tree(int parent_fd, const char *name) {
    int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    DIR *directory = fdopendir(fd);
    if (directory == NULL) {
        kstore_kit_close_fd(fd);
        return -1;
    }
    struct dirent *entry;
    int result = 0;
    while ((entry = readdir(directory)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        if (unlinkat(dirfd(directory), entry->d_name, 0) != 0) {
            if (errno == EISDIR || errno == EPERM) {
                if (fl_remove_tree(dirfd(directory), entry->d_name) != 0) result = -1;
            } else if (errno != ENOENT) {
                result = -1;
            }
        }
    }
    closedir(directory);
    if (unlinkat(parent_fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) result = -1;
    return result;
}

/* MARK: - Opening and closing an instance */

static void fl_free_instance(fl_instance *instance) {
    kstore_kit_close_fd(instance->logs_fd);
    kstore_kit_close_fd(instance->deleted_fd);
    /* Closing the lock file (with the directory) releases the flock. */
    kstore_kit_data_directory_close(&instance->directory);
    for (size_t index = 0; index < instance->busy_count; index++) free(instance->busy_names[index]);
    free(instance->busy_names);
    pthread_mutex_destroy(&instance->mutex);
    fl_cache_destroy(&instance->cache);
    kstore_kit_error_destroy(&instance->errors);
    free(instance);
}

/* Creates (first open) and opens X/logs and X/deleted. */
static kstore_status fl_open_subdirectories(fl_instance *instance, char *error_message, size_t error_capacity) {
    const char *path = instance->directory.path;
    int root_fd = instance->directory.root_fd;
    bool created = false;
    static const char *const directories[] = {"logs", "deleted"};
    for (size_t index = 0; index < 2; index++) {
        if (mkdirat(root_fd, directories[index], 0755) == 0) {
            created = true;
        } else if (errno != EEXIST) {
            int error = errno;
            kstore_kit_message(error_message, error_capacity, "creating %s/%s failed: %s", path, directories[index],
                               strerror(error));
            return kstore_kit_status_for_errno(error);
        }
    }
    if (created && kstore_kit_fsync(&instance->io, root_fd) != 0) {
        kstore_kit_message(error_message, error_capacity, "fsync of data directory %s failed: %s", path,
                           strerror(errno));
        return KSTORE_ERR_IO;
    }
    instance->logs_fd = openat(root_fd, "logs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    instance->deleted_fd = openat(root_fd, "deleted", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (instance->logs_fd < 0 || instance->deleted_fd < 0) {
        kstore_kit_message(error_message, error_capacity, "opening %s/logs or %s/deleted failed: %s", path, path,
                           strerror(errno));
        return KSTORE_ERR_IO;
    }
    return KSTORE_OK;
}

/* Finishes deletions a crash interrupted (their renames were durable). */
static void fl_finish_deletions(fl_instance *instance) {
    int fd = dup(instance->deleted_fd);
    DIR *directory = fd >= 0 ? fdopendir(fd) : NULL;
    if (directory == NULL) {
        kstore_kit_close_fd(fd);
        return;
    }
    struct dirent *entry;
    bool removed = false;
    while ((entry = readdir(directory)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        fl_remove_tree(instance->deleted_fd, entry->d_name);
        removed = true;
    }
    closedir(directory);
    if (removed) kstore_kit_fsync(&instance->io, instance->deleted_fd);
}

/* The default of file.open.files.max: a fraction of the soft RLIMIT_NOFILE now (fjord raises the soft
 * limit to the hard one before it opens the backend), leaving the rest for sockets. */
static uint64_t fl_default_open_files(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY)
        return FL_OPEN_FILES_UNLIMITED_DEFAULT;
    uint64_t open_files = (uint64_t)limit.rlim_cur / FL_OPEN_FILES_DEFAULT_DIVISOR;
    if (open_files < FL_OPEN_FILES_MIN) return FL_OPEN_FILES_MIN;
    return open_files > FL_OPEN_FILES_MAX ? FL_OPEN_FILES_MAX : open_files;
}

static kstore_status fl_open(const kstore_option *options, uint32_t option_count, kstore_instance **instance_out,
                             char *error_message, size_t error_capacity) {
    if (instance_out == NULL) {
        kstore_kit_message(error_message, error_capacity, "file backend: instance pointer is NULL");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    *instance_out = NULL;
    const char *path = NULL;
    uint64_t open_files = 0;
    const kstore_kit_option_spec specs[] = {
        {.key = "path",
         .kind = KSTORE_KIT_OPTION_TEXT,
         .required = true,
         .meaning = "the data directory",
         .target = &path},
        {.key = "file.open.files.max",
         .kind = KSTORE_KIT_OPTION_SIZE,
         .minimum = FL_OPEN_FILES_MIN,
         .maximum = FL_OPEN_FILES_MAX,
         .target = &open_files},
    };
    kstore_status status =
        kstore_kit_parse_options("file backend", options, option_count, specs, 2, error_message, error_capacity);
    if (status != KSTORE_OK) return status;
    if (open_files == 0) open_files = fl_default_open_files();
    fl_instance *instance = calloc(1, sizeof(fl_instance));
    if (instance == NULL || fl_cache_init(&instance->cache, (size_t)open_files) != KSTORE_OK) {
        free(instance);
        kstore_kit_message(error_message, error_capacity, "file backend: out of memory");
        return KSTORE_ERR_NO_MEMORY;
    }
    instance->base.backend = &fl_backend;
    instance->directory = (kstore_kit_data_directory){.path = NULL, .root_fd = -1, .lock_fd = -1};
    instance->logs_fd = instance->deleted_fd = -1;
    kstore_kit_io_init(&instance->io);
    kstore_kit_error_init(&instance->errors);
    pthread_mutex_init(&instance->mutex, NULL);
    status = kstore_kit_data_directory_open(&instance->directory, path, FL_FORMAT_MARKER, &instance->io, error_message,
                                            error_capacity);
    if (status == KSTORE_OK) status = fl_open_subdirectories(instance, error_message, error_capacity);
    if (status != KSTORE_OK) {
        fl_free_instance(instance);
        return status;
    }
    fl_finish_deletions(instance);
    *instance_out = &instance->base;
    return KSTORE_OK;
}

static void fl_close(kstore_instance *handle) {
    if (handle == NULL) return;
    fl_free_instance((fl_instance *)handle);
}

static size_t fl_last_error(kstore_instance *handle, char *buf, size_t capacity) {
    return kstore_kit_error_copy(handle == NULL ? NULL : &((fl_instance *)handle)->errors, buf, capacity);
}

/* MARK: - Opening a log */

/* Claims `name` and makes sure its directory exists (creating it with KSTORE_OPEN_CREATE; *created
 * says whether it did). On failure the name is not claimed. */
static kstore_status fl_claim_log_directory(fl_instance *instance, const char *name, uint32_t flags, bool *created) {
    kstore_kit_error *errors = &instance->errors;
    const char *path = instance->directory.path;
    kstore_status status = fl_claim_name(instance, name);
    struct stat entry;
    if (status == KSTORE_ERR_BUSY && (flags & KSTORE_OPEN_EXCLUSIVE) != 0 &&
        fstatat(instance->logs_fd, name, &entry, AT_SYMLINK_NOFOLLOW) == 0) {
        kstore_kit_error_set(errors, "open_log '%s': the log exists (exclusive create)", name);
        return KSTORE_ERR_EXISTS;
    }
    if (status != KSTORE_OK) {
        kstore_kit_error_set(errors,
                             status == KSTORE_ERR_BUSY ? "open_log '%s': the log is already open (or being deleted)"
                                                       : "open_log '%s': out of memory",
                             name);
        return status;
    }
    bool exists = fstatat(instance->logs_fd, name, &entry, AT_SYMLINK_NOFOLLOW) == 0;
    if (!exists && errno != ENOENT) {
        status = kstore_kit_error_errno(errors, errno, "open_log '%s': examining %s/logs/%s failed", name, path, name);
    } else if (exists && !S_ISDIR(entry.st_mode)) {
        kstore_kit_error_set(errors, "open_log '%s': %s/logs/%s is not a directory", name, path, name);
        status = KSTORE_ERR_IO;
    } else if (!exists && (flags & KSTORE_OPEN_CREATE) == 0) {
        kstore_kit_error_set(errors, "open_log '%s': no such log", name);
        status = KSTORE_ERR_NOT_FOUND;
    } else if (exists && (flags & KSTORE_OPEN_EXCLUSIVE) != 0) {
        kstore_kit_error_set(errors, "open_log '%s': the log exists (exclusive create)", name);
        status = KSTORE_ERR_EXISTS;
    } else if (!exists && mkdirat(instance->logs_fd, name, 0755) != 0) {
        status = kstore_kit_error_errno(errors, errno, "open_log '%s': creating %s/logs/%s failed", name, path, name);
    }
    if (status != KSTORE_OK) fl_release_name(instance, name);
    *created = !exists;
    return status;
}

/* The log options (kstore.h "kstore_option" and kstore_file.h). */
typedef struct fl_log_options {
    int64_t segment_bytes;
    int64_t segment_ms;
    int64_t interval_bytes;
} fl_log_options;

/* A new, not yet recovered log handle; NULL when out of memory. */
static fl_log *fl_new_log(fl_instance *instance, const char *name, const fl_log_options *options) {
    fl_log *log = calloc(1, sizeof(fl_log));
    char *name_copy = strdup(name);
    char *path = malloc(strlen(instance->directory.path) + strlen(name) + 7);
    if (log == NULL || name_copy == NULL || path == NULL) {
        free(log);
        free(name_copy);
        free(path);
        return NULL;
    }
    sprintf(path, "%s/logs/%s", instance->directory.path, name);
    log->base.methods = &fl_log_methods;
    log->instance = instance;
    log->name = name_copy;
    log->path = path;
    log->segment_bytes_max = (uint64_t)options->segment_bytes;
    log->segment_ms = options->segment_ms;
    log->index_interval_bytes = (uint64_t)options->interval_bytes;
    pthread_mutex_init(&log->mutate_mutex, NULL);
    pthread_mutex_init(&log->state_mutex, NULL);
    pthread_rwlockattr_t attributes;
    pthread_rwlockattr_init(&attributes);
    /* Writer-preferring, so a stream of readers cannot starve appends. */
    pthread_rwlockattr_setkind_np(&attributes, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&log->lock, &attributes);
    pthread_rwlockattr_destroy(&attributes);
    return log;
}

/* Recovers the log. A log found clean loses its clean-shutdown marker before it is used: from then on
 * it may hold unsynced data, and a crash must not find it marked. */
static kstore_status fl_open_and_recover(fl_log *log, bool created) {
    fl_instance *instance = log->instance;
    char marker[FL_PATH_BYTES];
    fl_log_path(log, marker, "clean-shutdown");
    bool trusted = !created && faccessat(instance->logs_fd, marker, F_OK, 0) == 0;
    kstore_status status = fl_recover(log, trusted);
    if (status == KSTORE_OK) {
        fl_count(&instance->stats.recovered_logs, 1);
        fl_count(&instance->stats.recovery_ns, log->recovery.scan_nanoseconds);
    }
    if (status == KSTORE_OK && created && kstore_kit_fsync(&instance->io, instance->logs_fd) != 0) {
        status = kstore_kit_error_errno(&instance->errors, errno, "open_log '%s': fsync of %s/logs failed", log->name,
                                        instance->directory.path);
    }
    if (status == KSTORE_OK && trusted) {
        if (unlinkat(instance->logs_fd, marker, 0) != 0 && errno != ENOENT) {
            status = kstore_kit_error_errno(&instance->errors, errno,
                                            "open_log '%s': removing %s/clean-shutdown failed", log->name, log->path);
        } else {
            status = fl_sync_directory(log, "open_log: ");
        }
    }
    return status;
}

static kstore_status fl_open_log(kstore_instance *handle, const char *name, uint32_t flags,
                                 const kstore_option *options, uint32_t option_count, kstore_log **log_out) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_instance *instance = (fl_instance *)handle;
    char message[512];
    kstore_status status =
        kstore_check_open_log_arguments(name, flags, options, option_count, log_out, message, sizeof(message));
    fl_log_options parsed = {.segment_bytes = (int64_t)FL_SEGMENT_BYTES_DEFAULT,
                             .segment_ms = FL_SEGMENT_MS_DEFAULT,
                             .interval_bytes = (int64_t)FL_INDEX_INTERVAL_DEFAULT};
    const kstore_kit_option_spec specs[] = {
        {.key = "segment.bytes", .kind = KSTORE_KIT_OPTION_POSITIVE, .target = &parsed.segment_bytes},
        {.key = "segment.ms", .kind = KSTORE_KIT_OPTION_POSITIVE, .target = &parsed.segment_ms},
        {.key = "index.interval.bytes", .kind = KSTORE_KIT_OPTION_POSITIVE, .target = &parsed.interval_bytes},
    };
    char owner[KSTORE_LOG_NAME_MAX + 16];
    if (status == KSTORE_OK) {
        snprintf(owner, sizeof(owner), "open_log '%s'", name);
        status = kstore_kit_parse_options(owner, options, option_count, specs, 3, message, sizeof(message));
    }
    if (status != KSTORE_OK) {
        kstore_kit_error_set(&instance->errors, "%s", message);
        return status;
    }
    bool created = false;
    status = fl_claim_log_directory(instance, name, flags, &created);
    if (status != KSTORE_OK) return status;
    fl_log *log = fl_new_log(instance, name, &parsed);
    if (log == NULL) {
        if (created) fl_remove_tree(instance->logs_fd, name);
        fl_release_name(instance, name);
        kstore_kit_error_set(&instance->errors, "open_log '%s': out of memory", name);
        return KSTORE_ERR_NO_MEMORY;
    }
    status = fl_open_and_recover(log, created);
    if (status != KSTORE_OK) {
        fl_cache_forget_log(log);
        fl_log_free(log);
        if (created) fl_remove_tree(instance->logs_fd, name);
        fl_release_name(instance, name);
        return status;
    }
    *log_out = &log->base;
    return KSTORE_OK;
}

/* MARK: - Deleting and listing logs */

static kstore_status fl_delete_log(kstore_instance *handle, const char *name) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_instance *instance = (fl_instance *)handle;
    if (!kstore_log_name_is_valid(name)) {
        kstore_kit_error_set(&instance->errors, "delete_log: invalid log name");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    kstore_status status = fl_claim_name(instance, name);
    if (status != KSTORE_OK) {
        kstore_kit_error_set(
            &instance->errors,
            status == KSTORE_ERR_BUSY ? "delete_log '%s': the log is open" : "delete_log '%s': out of memory", name);
        return status;
    }
    struct stat entry;
    if (fstatat(instance->logs_fd, name, &entry, AT_SYMLINK_NOFOLLOW) != 0) {
        status = errno == ENOENT ? KSTORE_ERR_NOT_FOUND : KSTORE_ERR_IO;
        if (status == KSTORE_ERR_NOT_FOUND) {
            kstore_kit_error_set(&instance->errors, "delete_log '%s': no such log", name);
        } else {
            kstore_kit_error_errno(&instance->errors, errno, "delete_log '%s': examining %s/logs/%s failed", name,
                                   instance->directory.path, name);
        }
        fl_release_name(instance, name);
        return status;
    }
    /* Rename first, durably: a crash then finds the log gone, and the next open finishes the removal. */
    char target[64];
    pthread_mutex_lock(&instance->mutex);
    uint64_t sequence = ++instance->delete_sequence;
    pthread_mutex_unlock(&instance->mutex);
    snprintf(target, sizeof(target), "%d-%llu-%llu.deleted", (int)getpid(), (unsigned long long)sequence,
             (unsigned long long)fl_monotonic_ns());
    if (renameat(instance->logs_fd, name, instance->deleted_fd, target) != 0) {
        status = kstore_kit_error_errno(&instance->errors, errno, "delete_log '%s': renaming %s/logs/%s failed", name,
                                        instance->directory.path, name);
    } else if (kstore_kit_fsync(&instance->io, instance->logs_fd) != 0 ||
               kstore_kit_fsync(&instance->io, instance->deleted_fd) != 0) {
        status = kstore_kit_error_errno(&instance->errors, errno, "delete_log '%s': fsync of %s/logs failed", name,
                                        instance->directory.path);
    } else {
        fl_remove_tree(instance->deleted_fd, target);
        kstore_kit_fsync(&instance->io, instance->deleted_fd);
    }
    fl_release_name(instance, name);
    return status;
}

static kstore_status fl_list_logs(kstore_instance *handle, kstore_list_callback callback, void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_instance *instance = (fl_instance *)handle;
    if (callback == NULL) {
        kstore_kit_error_set(&instance->errors, "list_logs: callback is NULL");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    int fd = dup(instance->logs_fd);
    DIR *directory = fd >= 0 ? fdopendir(fd) : NULL;
    if (directory == NULL) {
        int error = errno;
        kstore_kit_close_fd(fd);
        return kstore_kit_error_errno(&instance->errors, error, "list_logs: listing %s/logs failed",
                                      instance->directory.path);
    }
    rewinddir(directory);
    kstore_kit_names names = {0};
    bool failed = false;
    struct dirent *entry;
    while (!failed && (entry = readdir(directory)) != NULL) {
        if (!kstore_log_name_is_valid(entry->d_name)) continue;
        struct stat status;
        if (fstatat(instance->logs_fd, entry->d_name, &status, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(status.st_mode)) {
            continue;
        }
        failed = !kstore_kit_names_add(&names, entry->d_name);
    }
    closedir(directory);
    return kstore_kit_names_finish(&names, !failed, callback, context, &instance->errors);
}

/* MARK: - Control and the table */

static kstore_status fl_control(kstore_instance *handle, int32_t op, void *argument) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    fl_instance *instance = (fl_instance *)handle;
    if (op == KSTORE_KIT_CONTROL_SET_FAULT_HOOK) {
        kstore_status status = kstore_kit_io_set_hook(&instance->io, argument);
        if (status != KSTORE_OK) {
            kstore_kit_error_set(&instance->errors, "control: the fault hook is too small or has no decide function");
        }
        return status;
    }
    if (op == KSTORE_CONTROL_STATS) return fl_report_stats(instance, argument);
    if (op == KSTORE_FILE_CONTROL_DESCRIPTOR_INFO) {
        kstore_file_descriptor_info *info = argument;
        if (info == NULL || info->struct_size < offsetof(kstore_file_descriptor_info, limit) + sizeof(uint64_t)) {
            kstore_kit_error_set(&instance->errors, "control: the descriptor info argument is NULL or too small");
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        kstore_file_descriptor_info copy = {.struct_size = info->struct_size};
        fl_cache_info(&instance->cache, &copy);
        memcpy(info, &copy, info->struct_size < sizeof(copy) ? info->struct_size : sizeof(copy));
        return KSTORE_OK;
    }
    kstore_kit_error_set(&instance->errors, "control: op %d is not supported by the file backend", (int)op);
    return KSTORE_ERR_UNSUPPORTED;
}

static const kstore_backend fl_backend = {
    .abi_version = KSTORE_ABI_VERSION,
    .struct_size = sizeof(kstore_backend),
    .name = "file",
    .description = "Plain files: a directory of segments per log, pwrite + fdatasync, CRC-checked recovery",
    .capabilities = KSTORE_CAP_DURABLE,
    .reserved = 0,
    .open = fl_open,
    .close = fl_close,
    .last_error = fl_last_error,
    .open_log = fl_open_log,
    .delete_log = fl_delete_log,
    .list_logs = fl_list_logs,
    .control = fl_control,
};

const kstore_backend *kstore_file_backend(void) { return &fl_backend; }
