/* kstore_kit_data_directory.h — what every durable backend does first with its "path" option: the
 * data directory must exist, be a directory and be writable; one process at a time owns it (an
 * flock()ed X/.lock holding the owner's pid, so a second process is told who holds it); and it holds
 * the data of one backend in one format (X/.fjord-backend, e.g. "file 1\n" or "uring 2\n"), so a
 * directory is never read by a backend that would misunderstand it. docs/storage-formats.md
 * describes both files.
 */
#ifndef KSTORE_KIT_DATA_DIRECTORY_H
#define KSTORE_KIT_DATA_DIRECTORY_H

#include "kstore.h"
#include "kstore_kit_io.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KSTORE_KIT_LOCK_NAME   ".lock"
#define KSTORE_KIT_MARKER_NAME ".fjord-backend"

typedef struct kstore_kit_data_directory {
    /* A copy of the path, for messages. */
    char *path;
    /* The directory, opened O_DIRECTORY. */
    int root_fd;
    /* X/.lock, flock()ed exclusively while the instance lives: closing it releases the lock. */
    int lock_fd;
} kstore_kit_data_directory;

/* Opens `path` for a backend whose marker text is `marker` ("<backend> <format version>\n"):
 *   - KSTORE_ERR_NOT_FOUND "data directory <path> does not exist";
 *   - KSTORE_ERR_INVALID_ARGUMENT "data directory <path> is not a directory";
 *   - KSTORE_ERR_IO "data directory <path> is not writable: <reason>";
 *   - KSTORE_ERR_BUSY "data directory <path> is locked by another process (pid <pid>)";
 *   - KSTORE_ERR_INVALID_ARGUMENT "data directory <path> holds data of backend '<other>'", or
 *     "… holds data of backend '<this>' in format '<v>', which this build cannot read (it reads
 *     format <w>)";
 *   - a fresh directory gets the marker (written to a temporary file, fdatasync'ed, renamed, the
 *     directory fsync'ed).
 * On success *directory is filled; on failure it holds nothing to close, and message[capacity]
 * says why. I/O goes through `io` (the instance's, so a fault hook could reach it). */
kstore_status kstore_kit_data_directory_open(kstore_kit_data_directory *directory, const char *path, const char *marker,
                                             kstore_kit_io *io, char *message, size_t capacity);

/* kstore_kit_data_directory_open for a backend that also reads the older format `older` of its own
 * (a marker text, e.g. "uring 1\n"): a directory marked so is opened and its marker replaced by
 * `marker` (written as for a fresh directory) before the backend writes anything, so that a build
 * that reads only the older format refuses the directory instead of misreading what the newer
 * format adds. */
kstore_status kstore_kit_data_directory_open_upgrading(kstore_kit_data_directory *directory, const char *path,
                                                       const char *marker, const char *older, kstore_kit_io *io,
                                                       char *message, size_t capacity);

/* Closes the descriptors (releasing the lock) and frees the path. Safe on a zeroed struct whose
 * descriptors are -1, and twice. */
void kstore_kit_data_directory_close(kstore_kit_data_directory *directory);

#ifdef __cplusplus
}
#endif
#endif
