/* The data directory: existence and permission checks, the .lock file and the format marker
 * (kstore_kit_data_directory.h). */
#include "kstore_kit_data_directory.h"

#include "kstore_kit_error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Checks that `path` exists, is a directory and is writable (before anything is created in it). */
static kstore_status kit_check_path(const char *path, char *message, size_t capacity) {
    struct stat status;
    if (stat(path, &status) != 0) {
        int error = errno;
        if (error == ENOENT) {
            kstore_kit_message(message, capacity, "data directory %s does not exist", path);
            return KSTORE_ERR_NOT_FOUND;
        }
        kstore_kit_message(message, capacity, "data directory %s cannot be examined: %s", path, strerror(error));
        return kstore_kit_status_for_errno(error);
    }
    if (!S_ISDIR(status.st_mode)) {
        kstore_kit_message(message, capacity, "data directory %s is not a directory", path);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    if (access(path, W_OK | X_OK) != 0) {
        kstore_kit_message(message, capacity, "data directory %s is not writable: %s", path, strerror(errno));
        return KSTORE_ERR_IO;
    }
    return KSTORE_OK;
}

/* Takes X/.lock (flock, without waiting) and writes our pid into it for the message a second
 * process gets. */
static kstore_status kit_take_lock(kstore_kit_data_directory *directory, kstore_kit_io *io, char *message,
                                   size_t capacity) {
    const char *path = directory->path;
    directory->lock_fd = openat(directory->root_fd, KSTORE_KIT_LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (directory->lock_fd < 0) {
        int error = errno;
        kstore_kit_message(message, capacity, "data directory %s is not writable: %s (creating .lock)", path,
                           strerror(error));
        return error == ENOSPC || error == EDQUOT ? KSTORE_ERR_NO_SPACE : KSTORE_ERR_IO;
    }
    for (;;) {
        if (flock(directory->lock_fd, LOCK_EX | LOCK_NB) == 0) break;
        if (errno == EINTR) continue;
        int error = errno;
        if (error != EWOULDBLOCK) {
            kstore_kit_message(message, capacity, "locking %s/.lock failed: %s", path, strerror(error));
            return KSTORE_ERR_IO;
        }
        char pid[32];
        ssize_t got = kstore_kit_pread_full(io, directory->lock_fd, pid, sizeof(pid) - 1, 0);
        pid[got > 0 ? got : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        kstore_kit_message(message, capacity, "data directory %s is locked by another process (pid %s)", path,
                           pid[0] != '\0' ? pid : "unknown");
        return KSTORE_ERR_BUSY;
    }
    char pid[32];
    int length = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    int error = ftruncate(directory->lock_fd, 0) != 0 ? errno : 0;
    if (error == 0) error = kstore_kit_pwrite_all(io, directory->lock_fd, pid, (size_t)length, 0);
    if (error != 0) {
        kstore_kit_message(message, capacity, "writing %s/.lock failed: %s", path, strerror(error));
        return kstore_kit_status_for_errno(error);
    }
    return KSTORE_OK;
}

/* A marker that is not ours: whose data, in which format. */
static kstore_status kit_refuse_marker(const char *path, const char *text, const char *marker, char *message,
                                       size_t capacity) {
    char owner[64];
    size_t length = strcspn(text, " \n");
    memcpy(owner, text, length);
    owner[length] = '\0';
    size_t ours = strcspn(marker, " \n");
    if (length == ours && strncmp(text, marker, ours) == 0) {
        char version[64], expected[64];
        snprintf(version, sizeof(version), "%s", text + length + (text[length] == ' ' ? 1 : 0));
        version[strcspn(version, "\n")] = '\0';
        snprintf(expected, sizeof(expected), "%s", marker + ours + (marker[ours] == ' ' ? 1 : 0));
        expected[strcspn(expected, "\n")] = '\0';
        kstore_kit_message(message, capacity,
                           "data directory %s holds data of backend '%s' in format '%s', which this build cannot "
                           "read (it reads format %s)",
                           path, owner, version, expected);
    } else {
        kstore_kit_message(message, capacity, "data directory %s holds data of backend '%s'", path,
                           length > 0 ? owner : "(unreadable marker)");
    }
    return KSTORE_ERR_INVALID_ARGUMENT;
}

/* Writes the marker into a fresh directory: temporary file, fdatasync, rename, directory fsync. */
static kstore_status kit_write_marker(kstore_kit_data_directory *directory, const char *marker, kstore_kit_io *io,
                                      char *message, size_t capacity) {
    int root = directory->root_fd;
    int fd = openat(root, KSTORE_KIT_MARKER_NAME ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int error = fd < 0 ? errno : kstore_kit_pwrite_all(io, fd, marker, strlen(marker), 0);
    if (error == 0 && kstore_kit_fdatasync(io, fd) != 0) error = errno;
    kstore_kit_close_fd(fd);
    if (error == 0 && renameat(root, KSTORE_KIT_MARKER_NAME ".tmp", root, KSTORE_KIT_MARKER_NAME) != 0) {
        error = errno;
    }
    if (error == 0 && kstore_kit_fsync(io, root) != 0) error = errno;
    if (error != 0) {
        unlinkat(root, KSTORE_KIT_MARKER_NAME ".tmp", 0);
        kstore_kit_message(message, capacity, "writing the format marker %s/.fjord-backend failed: %s", directory->path,
                           strerror(error));
        return kstore_kit_status_for_errno(error);
    }
    return KSTORE_OK;
}

/* Checks the format marker, or writes it into a directory that has none (or has `older`, when not
 * NULL). */
static kstore_status kit_check_marker(kstore_kit_data_directory *directory, const char *marker, const char *older,
                                      kstore_kit_io *io, char *message, size_t capacity) {
    const char *path = directory->path;
    int fd = openat(directory->root_fd, KSTORE_KIT_MARKER_NAME, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return kit_write_marker(directory, marker, io, message, capacity);
        kstore_kit_message(message, capacity, "opening %s/.fjord-backend failed: %s", path, strerror(errno));
        return KSTORE_ERR_IO;
    }
    char text[64];
    ssize_t got = kstore_kit_pread_full(io, fd, text, sizeof(text) - 1, 0);
    int error = errno;
    kstore_kit_close_fd(fd);
    if (got < 0) {
        kstore_kit_message(message, capacity, "reading %s/.fjord-backend failed: %s", path, strerror(error));
        return KSTORE_ERR_IO;
    }
    text[got] = '\0';
    if (strcmp(text, marker) == 0) return KSTORE_OK;
    if (older != NULL && strcmp(text, older) == 0) return kit_write_marker(directory, marker, io, message, capacity);
    return kit_refuse_marker(path, text, marker, message, capacity);
}

kstore_status kstore_kit_data_directory_open(kstore_kit_data_directory *directory, const char *path, const char *marker,
                                             kstore_kit_io *io, char *message, size_t capacity) {
    return kstore_kit_data_directory_open_upgrading(directory, path, marker, NULL, io, message, capacity);
}

kstore_status kstore_kit_data_directory_open_upgrading(kstore_kit_data_directory *directory, const char *path,
                                                       const char *marker, const char *older, kstore_kit_io *io,
                                                       char *message, size_t capacity) {
    *directory = (kstore_kit_data_directory){.path = NULL, .root_fd = -1, .lock_fd = -1};
    kstore_status status = kit_check_path(path, message, capacity);
    if (status != KSTORE_OK) return status;
    directory->path = strdup(path);
    if (directory->path == NULL) {
        kstore_kit_message(message, capacity, "data directory %s: out of memory", path);
        return KSTORE_ERR_NO_MEMORY;
    }
    directory->root_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (directory->root_fd < 0) {
        int error = errno;
        kstore_kit_message(message, capacity, "opening data directory %s failed: %s", path, strerror(error));
        status = kstore_kit_status_for_errno(error);
    }
    if (status == KSTORE_OK) status = kit_take_lock(directory, io, message, capacity);
    if (status == KSTORE_OK) status = kit_check_marker(directory, marker, older, io, message, capacity);
    if (status != KSTORE_OK) kstore_kit_data_directory_close(directory);
    return status;
}

void kstore_kit_data_directory_close(kstore_kit_data_directory *directory) {
    kstore_kit_close_fd(directory->root_fd);
    /* Closing the lock file releases the flock. */
    kstore_kit_close_fd(directory->lock_fd);
    directory->root_fd = directory->lock_fd = -1;
    free(directory->path);
    directory->path = NULL;
}
