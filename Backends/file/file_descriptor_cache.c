/* The descriptor cache: file descriptors as a bounded, managed resource of the instance (as LevelDB's
 * TableCache bounds its open tables). A log holds no descriptor of its own: each call leases the
 * descriptors it needs — the log directory, a segment's .log, .index, .timeindex — by (log, base
 * offset, kind), and releases them when it returns; released descriptors stay open, idle, in LRU
 * order, so the next call on a busy log finds them open. While more than `limit`
 * (file.open.files.max) descriptors are open, the least recently used idle ones are closed. A leased
 * descriptor is never closed under its holder, so calls in progress may keep the count above the
 * limit by what they hold (at most four each).
 *
 * Durability across a close (the argument the sync path relies on):
 *   1. Every write or truncation of a .log goes through a leased descriptor, and bumps the entry's
 *      `written` count when the system call has returned (fl_lease_note_write); a created .log
 *      counts as written. fl_lease_fdatasync raises `synced` to the `written` it sampled before a
 *      successful fdatasync. Counting after the call matters: a sync running concurrently with an
 *      append (kstore.h allows it) must not sample a count that includes a write still in flight,
 *      or its fdatasync could finish before the data reached the page cache while the write is
 *      marked covered — the next sync would then skip the fdatasync and claim the entry durable. A
 *      write that is counted only after the sample keeps the descriptor dirty, which is safe.
 *   2. An idle .log descriptor with written != synced is closed only after an fdatasync through it
 *      (clean idle descriptors are closed first; these only when none is left). When that
 *      fdatasync fails, the log is marked failed before the descriptor is closed, so its next sync
 *      and mutating calls answer KSTORE_ERR_IO (kstore.h) instead of trusting writes whose flush
 *      failed. While it is being closed the entry stays findable and a lease of the same file
 *      waits until it is gone, so no call on that file overtakes the fdatasync or its verdict.
 *   3. The other closes discard the content on purpose (files being deleted or replaced) or happen
 *      at log close, after close's own fdatasync (kstore.h promises only synced entries survive).
 * Hence every write to a .log that no completed fdatasync covers was made through the descriptor
 * open now, and is counted by it; with no descriptor open there is none. sync leases the active
 * .log only if it is open and fdatasyncs only when written != synced. We never rely on a
 * descriptor opened after a write to report that write's failure: the page cache and the
 * writeback of a file are per inode, so an fdatasync through any descriptor does flush it, but a
 * writeback error that struck while no descriptor was open can be forgotten when the kernel drops
 * the inode — the hole point 2 closes by syncing before the close.
 *
 * Index files (.index, .timeindex) are derived data: their writes are not tracked and an idle index
 * descriptor is closed without an fdatasync. They need to be durable only when the segment is
 * sealed (rolled or the log closed), where they are fdatasync'ed through a lease — an fdatasync of
 * the inode, which covers writes made through earlier descriptors. Should a writeback error of an
 * index page have been forgotten in between, the next clean open may trust a damaged index: every
 * index entry carries a CRC and points at a frame that lookups verify, so a damaged entry makes the
 * lookup scan and marks the indexes for a rebuild, never a wrong answer. Directory changes (files
 * created, renamed, unlinked — by path relative to X/logs) are fsync'ed in the call that made them,
 * through a leased directory descriptor: an fsync of the directory inode, whichever descriptor.
 *
 * Locking: one mutex per instance guards the hash, the idle lists, the counts and every entry's
 * lease count and state; no system call runs under it (opens, fdatasyncs and closes run outside,
 * the entry marked `closing` meanwhile). It is taken with the log's locks held (mutate_mutex →
 * lock → this mutex) and takes no other lock while held; an eviction takes no log lock at all (it
 * marks a log failed with an atomic store), so a call on one log may evict another log's idle
 * descriptor without any lock order between logs. A lease waits (on `closed`) only for a close in
 * progress, which waits for nothing, so waiting cannot deadlock.
 */
#include "file_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* One descriptor: open (leased, idle, or being closed). */
struct fl_entry {
    fl_log *log;
    int64_t base_offset;
    fl_file_kind kind;
    int fd;
    uint32_t leases;
    /* Being closed outside the mutex: still findable, so a lease of the same file waits. */
    bool closing;
    /* Its file was deleted or replaced: out of the hash and the log's list; closed when idle. */
    bool forgotten;
    /* Which idle list holds it (only when idle and not closing). */
    bool idle;
    bool idle_dirty;
    /* .log files: writes started through this descriptor, and the count a completed fdatasync
     * covered (file header, point 1). */
    _Atomic uint64_t written;
    _Atomic uint64_t synced;
    fl_entry *hash_next;
    fl_entry *idle_prev, *idle_next;
    fl_entry *log_prev, *log_next;
};

static const char *const fl_kind_suffixes[] = {".log", ".index", ".timeindex"};

#define FL_BUCKETS_INITIAL ((size_t)256)

void fl_log_path(const fl_log *log, char *buffer, const char *file) {
    snprintf(buffer, FL_PATH_BYTES, "%s/%s", log->name, file);
}

/* MARK: - The table */

kstore_status fl_cache_init(fl_cache *cache, size_t limit) {
    memset(cache, 0, sizeof(*cache));
    cache->limit = limit;
    cache->buckets = calloc(FL_BUCKETS_INITIAL, sizeof(fl_entry *));
    if (cache->buckets == NULL) return KSTORE_ERR_NO_MEMORY;
    cache->bucket_count = FL_BUCKETS_INITIAL;
    pthread_mutex_init(&cache->mutex, NULL);
    pthread_cond_init(&cache->closed, NULL);
    return KSTORE_OK;
}

void fl_cache_destroy(fl_cache *cache) {
    if (cache->buckets == NULL) return;
    free(cache->buckets);
    cache->buckets = NULL;
    pthread_cond_destroy(&cache->closed);
    pthread_mutex_destroy(&cache->mutex);
}

static size_t fl_hash(const fl_log *log, int64_t base_offset, fl_file_kind kind) {
    uint64_t x = (uint64_t)(uintptr_t)log ^ ((uint64_t)base_offset * 0x9E3779B97F4A7C15u) ^ ((uint64_t)kind << 60);
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDu;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53u;
    x ^= x >> 33;
    return (size_t)x;
}

/* The link that points at the entry of the key (or at NULL where it would go). Caller holds mutex. */
static fl_entry **fl_slot(fl_cache *cache, const fl_log *log, int64_t base_offset, fl_file_kind kind) {
    fl_entry **slot = &cache->buckets[fl_hash(log, base_offset, kind) & (cache->bucket_count - 1)];
    while (*slot != NULL && !((*slot)->log == log && (*slot)->base_offset == base_offset && (*slot)->kind == kind)) {
        slot = &(*slot)->hash_next;
    }
    return slot;
}

/* Doubles the buckets when the table gets crowded; a failed allocation only lengthens chains. */
static void fl_grow(fl_cache *cache) {
    if (cache->open_count <= cache->bucket_count) return;
    size_t count = cache->bucket_count * 2;
    fl_entry **buckets = calloc(count, sizeof(fl_entry *));
    if (buckets == NULL) return;
    for (size_t index = 0; index < cache->bucket_count; index++) {
        fl_entry *entry = cache->buckets[index];
        while (entry != NULL) {
            fl_entry *next = entry->hash_next;
            size_t bucket = fl_hash(entry->log, entry->base_offset, entry->kind) & (count - 1);
            entry->hash_next = buckets[bucket];
            buckets[bucket] = entry;
            entry = next;
        }
    }
    free(cache->buckets);
    cache->buckets = buckets;
    cache->bucket_count = count;
}

/* Takes the entry out of the hash and its log's list (it stays reachable only through leases). */
static void fl_unlink_entry(fl_cache *cache, fl_entry *entry) {
    if (entry->forgotten) return;
    entry->forgotten = true;
    fl_entry **slot = &cache->buckets[fl_hash(entry->log, entry->base_offset, entry->kind) & (cache->bucket_count - 1)];
    while (*slot != entry) slot = &(*slot)->hash_next;
    *slot = entry->hash_next;
    if (entry->log_prev != NULL) {
        entry->log_prev->log_next = entry->log_next;
    } else {
        entry->log->cache_entries = entry->log_next;
    }
    if (entry->log_next != NULL) entry->log_next->log_prev = entry->log_prev;
}

/* MARK: - The idle lists */

static bool fl_entry_dirty(const fl_entry *entry) {
    return entry->kind == FL_FILE_LOG && atomic_load(&entry->written) != atomic_load(&entry->synced);
}

static void fl_idle_append(fl_cache *cache, fl_entry *entry) {
    entry->idle = true;
    entry->idle_dirty = fl_entry_dirty(entry);
    fl_entry **head = entry->idle_dirty ? &cache->dirty_head : &cache->clean_head;
    fl_entry **tail = entry->idle_dirty ? &cache->dirty_tail : &cache->clean_tail;
    entry->idle_next = NULL;
    entry->idle_prev = *tail;
    if (*tail != NULL) {
        (*tail)->idle_next = entry;
    } else {
        *head = entry;
    }
    *tail = entry;
}

static void fl_idle_remove(fl_cache *cache, fl_entry *entry) {
    if (!entry->idle) return;
    fl_entry **head = entry->idle_dirty ? &cache->dirty_head : &cache->clean_head;
    fl_entry **tail = entry->idle_dirty ? &cache->dirty_tail : &cache->clean_tail;
    if (entry->idle_prev != NULL) {
        entry->idle_prev->idle_next = entry->idle_next;
    } else {
        *head = entry->idle_next;
    }
    if (entry->idle_next != NULL) {
        entry->idle_next->idle_prev = entry->idle_prev;
    } else {
        *tail = entry->idle_prev;
    }
    entry->idle = false;
    entry->idle_prev = entry->idle_next = NULL;
}

/* MARK: - Closing */

/* Picks the least recently used idle entry (a clean one first) and marks it closing; NULL when every
 * open descriptor is leased. Caller holds mutex. */
static fl_entry *fl_begin_eviction(fl_cache *cache) {
    fl_entry *victim = cache->clean_head != NULL ? cache->clean_head : cache->dirty_head;
    if (victim == NULL) return NULL;
    fl_idle_remove(cache, victim);
    victim->closing = true;
    return victim;
}

/* Closes an entry marked closing, outside the mutex — after an fdatasync when `sync` and it has
 * unsynced writes (the file header, point 2) — then frees it. */
static void fl_finish_close(fl_cache *cache, fl_entry *entry, bool sync) {
    bool synced = false;
    if (sync && fl_entry_dirty(entry)) {
        fl_log *log = entry->log;
        fl_instance *instance = log->instance;
        synced = true;
        fl_count(&instance->stats.syncs, 1);
        if (kstore_kit_fdatasync(&instance->io, entry->fd) != 0) {
            int error = errno;
            atomic_store(&log->failed, 1);
            kstore_kit_error_errno(&instance->errors, error,
                                   "log '%s': fdatasync of %s/%020lld.log before closing its idle descriptor failed; "
                                   "the log is failed until reopened",
                                   log->name, log->path, (long long)entry->base_offset);
        }
    }
    kstore_kit_close_fd(entry->fd);
    pthread_mutex_lock(&cache->mutex);
    fl_unlink_entry(cache, entry);
    cache->open_count--;
    if (sync) cache->evictions++;
    if (synced) cache->eviction_syncs++;
    pthread_cond_broadcast(&cache->closed);
    pthread_mutex_unlock(&cache->mutex);
    free(entry);
}

/* Closes idle descriptors, least recently used first, while more than `keep` are open. Caller
 * holds mutex; it is released and taken again around each close. */
static void fl_trim_locked(fl_cache *cache, size_t keep) {
    while (cache->open_count > keep) {
        fl_entry *victim = fl_begin_eviction(cache);
        if (victim == NULL) return;
        pthread_mutex_unlock(&cache->mutex);
        fl_finish_close(cache, victim, true);
        pthread_mutex_lock(&cache->mutex);
    }
}

/* Forgets an entry whose file goes: closed now (without an fdatasync) when idle, else when its last
 * lease ends. Caller holds mutex (released and taken again around the close). */
static void fl_forget_locked(fl_cache *cache, fl_entry *entry) {
    fl_unlink_entry(cache, entry);
    if (entry->leases > 0) return;
    fl_idle_remove(cache, entry);
    entry->closing = true;
    pthread_mutex_unlock(&cache->mutex);
    fl_finish_close(cache, entry, false);
    pthread_mutex_lock(&cache->mutex);
}

/* The entry of the key, waiting while it is being closed; NULL when none. Caller holds mutex. */
static fl_entry *fl_find_settled(fl_cache *cache, const fl_log *log, int64_t base_offset, fl_file_kind kind) {
    for (;;) {
        fl_entry *entry = *fl_slot(cache, log, base_offset, kind);
        if (entry == NULL || !entry->closing) return entry;
        pthread_cond_wait(&cache->closed, &cache->mutex);
    }
}

static void fl_take(fl_cache *cache, fl_entry *entry, fl_lease *lease) {
    if (entry->leases++ == 0) fl_idle_remove(cache, entry);
    *lease = (fl_lease){.entry = entry, .fd = entry->fd};
}

/* MARK: - Opening */

/* Whether an errno says the process (EMFILE) or the system (ENFILE) is out of descriptors. */
static bool fl_exhausted(int error) { return error == EMFILE || error == ENFILE; }

/* After EMFILE or ENFILE: closes every idle descriptor, so the retry has room. */
static void fl_shrink(fl_cache *cache) {
    pthread_mutex_lock(&cache->mutex);
    cache->exhausted_retries++;
    fl_trim_locked(cache, 0);
    pthread_mutex_unlock(&cache->mutex);
}

int fl_open_transient(fl_instance *instance, int dir_fd, const char *name, int flags, mode_t mode) {
    int fd = kstore_kit_openat(&instance->io, dir_fd, name, flags, mode);
    if (fd < 0 && fl_exhausted(errno)) {
        fl_shrink(&instance->cache);
        fd = kstore_kit_openat(&instance->io, dir_fd, name, flags, mode);
    }
    return fd;
}

kstore_status fl_open_error(fl_instance *instance, int error, const char *format, ...) {
    char what[768];
    va_list arguments;
    va_start(arguments, format);
    if (vsnprintf(what, sizeof(what), format, arguments) < 0) what[0] = '\0';
    va_end(arguments);
    if (!fl_exhausted(error)) return kstore_kit_error_errno(&instance->errors, error, "%s", what);
    struct rlimit limit = {0};
    getrlimit(RLIMIT_NOFILE, &limit);
    pthread_mutex_lock(&instance->cache.mutex);
    size_t open_count = instance->cache.open_count;
    size_t cache_limit = instance->cache.limit;
    pthread_mutex_unlock(&instance->cache.mutex);
    char soft[32];
    if (limit.rlim_cur == RLIM_INFINITY) {
        snprintf(soft, sizeof(soft), "unlimited");
    } else {
        snprintf(soft, sizeof(soft), "%llu", (unsigned long long)limit.rlim_cur);
    }
    kstore_kit_error_set(&instance->errors,
                         "%s: %s, even after closing every idle descriptor: the process may open %s files "
                         "(RLIMIT_NOFILE, ulimit -n) and the file backend held %zu of its limit of %zu "
                         "(file.open.files.max); raise the limit or lower file.open.files.max",
                         what, strerror(error), soft, open_count, cache_limit);
    return KSTORE_ERR_BUSY;
}

/* Opens the file of the key: the log directory read-only, a segment file read-write (created when
 * `create`), by its path relative to X/logs; on EMFILE or ENFILE idle descriptors are closed and the
 * open retried once. The descriptor, or -1 with errno set. */
static int fl_open_file(fl_log *log, int64_t base_offset, fl_file_kind kind, bool create) {
    fl_instance *instance = log->instance;
    if (kind == FL_FILE_DIRECTORY) {
        return fl_open_transient(instance, instance->logs_fd, log->name, O_RDONLY | O_DIRECTORY, 0);
    }
    char name[FL_FILE_NAME_BYTES];
    char path[FL_PATH_BYTES];
    fl_segment_name(name, base_offset, fl_kind_suffixes[kind]);
    fl_log_path(log, path, name);
    return fl_open_transient(instance, instance->logs_fd, path, O_RDWR | (create ? O_CREAT : 0), 0644);
}

/* Inserts a descriptor for the key, leased, unless another call put one there meanwhile (then that
 * one is leased and *discard set to `fd`, for the caller to close after unlocking). The open count
 * was already raised for `fd`. A `written` (created) file replaces whatever descriptor an old file
 * of that name had. Caller holds mutex. */
static kstore_status fl_insert_locked(fl_log *log, int64_t base_offset, fl_file_kind kind, int fd, bool written,
                                      fl_lease *lease, int *discard) {
    fl_cache *cache = &log->instance->cache;
    *discard = -1;
    for (;;) {
        fl_entry *existing = fl_find_settled(cache, log, base_offset, kind);
        if (existing == NULL) break;
        if (!written) {
            fl_take(cache, existing, lease);
            cache->open_count--;
            *discard = fd;
            return KSTORE_OK;
        }
        fl_forget_locked(cache, existing);
    }
    fl_entry *entry = calloc(1, sizeof(fl_entry));
    if (entry == NULL) {
        cache->open_count--;
        *discard = fd;
        kstore_kit_error_set(&log->instance->errors, "log '%s': out of memory for a descriptor", log->name);
        return KSTORE_ERR_NO_MEMORY;
    }
    entry->log = log;
    entry->base_offset = base_offset;
    entry->kind = kind;
    entry->fd = fd;
    atomic_init(&entry->written, written ? 1 : 0);
    atomic_init(&entry->synced, 0);
    fl_grow(cache);
    fl_entry **slot = fl_slot(cache, log, base_offset, kind);
    entry->hash_next = *slot;
    *slot = entry;
    entry->log_next = log->cache_entries;
    if (log->cache_entries != NULL) log->cache_entries->log_prev = entry;
    log->cache_entries = entry;
    fl_take(cache, entry, lease);
    return KSTORE_OK;
}

/* Counts one more open descriptor, closing idle ones first while the cache is full. Caller holds
 * mutex (released and taken again around closes). */
static void fl_reserve_locked(fl_cache *cache) {
    fl_trim_locked(cache, cache->limit - 1);
    cache->open_count++;
    if (cache->open_count > cache->peak_open_count) cache->peak_open_count = cache->open_count;
}

kstore_status fl_lease_file(fl_log *log, int64_t base_offset, fl_file_kind kind, bool create, fl_lease *lease) {
    fl_cache *cache = &log->instance->cache;
    *lease = (fl_lease){.entry = NULL, .fd = -1};
    pthread_mutex_lock(&cache->mutex);
    fl_entry *entry = fl_find_settled(cache, log, base_offset, kind);
    if (entry != NULL) {
        fl_take(cache, entry, lease);
        cache->hits++;
        pthread_mutex_unlock(&cache->mutex);
        return KSTORE_OK;
    }
    fl_reserve_locked(cache);
    cache->open_calls++;
    pthread_mutex_unlock(&cache->mutex);
    int fd = fl_open_file(log, base_offset, kind, create);
    int error = errno;
    pthread_mutex_lock(&cache->mutex);
    kstore_status status = KSTORE_OK;
    int discard = -1;
    if (fd < 0) {
        cache->open_count--;
    } else {
        status = fl_insert_locked(log, base_offset, kind, fd, false, lease, &discard);
    }
    pthread_mutex_unlock(&cache->mutex);
    kstore_kit_close_fd(discard);
    if (fd >= 0) return status;
    char name[FL_FILE_NAME_BYTES] = "";
    if (kind != FL_FILE_DIRECTORY) fl_segment_name(name, base_offset, fl_kind_suffixes[kind]);
    return fl_open_error(log->instance, error, "log '%s': opening %s%s%s failed", log->name, log->path,
                         kind == FL_FILE_DIRECTORY ? "" : "/", name);
}

bool fl_lease_if_open(fl_log *log, int64_t base_offset, fl_file_kind kind, fl_lease *lease) {
    fl_cache *cache = &log->instance->cache;
    *lease = (fl_lease){.entry = NULL, .fd = -1};
    pthread_mutex_lock(&cache->mutex);
    fl_entry *entry = fl_find_settled(cache, log, base_offset, kind);
    if (entry != NULL) {
        fl_take(cache, entry, lease);
        cache->hits++;
    }
    pthread_mutex_unlock(&cache->mutex);
    return entry != NULL;
}

kstore_status fl_lease_adopt(fl_log *log, int64_t base_offset, fl_file_kind kind, int fd, fl_lease *lease) {
    fl_cache *cache = &log->instance->cache;
    *lease = (fl_lease){.entry = NULL, .fd = -1};
    pthread_mutex_lock(&cache->mutex);
    fl_reserve_locked(cache);
    int discard = -1;
    kstore_status status = fl_insert_locked(log, base_offset, kind, fd, true, lease, &discard);
    pthread_mutex_unlock(&cache->mutex);
    kstore_kit_close_fd(discard);
    return status;
}

void fl_release(fl_log *log, fl_lease *lease) {
    fl_entry *entry = lease->entry;
    if (entry == NULL) return;
    fl_cache *cache = &log->instance->cache;
    *lease = (fl_lease){.entry = NULL, .fd = -1};
    pthread_mutex_lock(&cache->mutex);
    if (--entry->leases == 0) {
        if (entry->forgotten) {
            entry->closing = true;
            pthread_mutex_unlock(&cache->mutex);
            fl_finish_close(cache, entry, false);
            pthread_mutex_lock(&cache->mutex);
        } else {
            fl_idle_append(cache, entry);
        }
    }
    /* Descriptors opened above the limit while everything was leased are closed as calls end. */
    fl_trim_locked(cache, cache->limit);
    pthread_mutex_unlock(&cache->mutex);
}

/* MARK: - Writes and syncs */

void fl_lease_note_write(const fl_lease *lease) {
    if (lease->entry != NULL) atomic_fetch_add(&lease->entry->written, 1);
}

int fl_lease_fdatasync(fl_log *log, const fl_lease *lease) {
    fl_entry *entry = lease->entry;
    uint64_t written = atomic_load(&entry->written);
    if (written == atomic_load(&entry->synced)) return 0;
    fl_count(&log->instance->stats.syncs, 1);
    if (kstore_kit_fdatasync(&log->instance->io, lease->fd) != 0) return errno;
    uint64_t synced = atomic_load(&entry->synced);
    while (synced < written && !atomic_compare_exchange_weak(&entry->synced, &synced, written)) {
    }
    return 0;
}

/* MARK: - Forgetting */

void fl_cache_forget_segment(fl_log *log, int64_t base_offset) {
    fl_cache *cache = &log->instance->cache;
    pthread_mutex_lock(&cache->mutex);
    for (fl_file_kind kind = FL_FILE_LOG; kind <= FL_FILE_TIME; kind++) {
        fl_entry *entry = fl_find_settled(cache, log, base_offset, kind);
        if (entry != NULL) fl_forget_locked(cache, entry);
    }
    pthread_mutex_unlock(&cache->mutex);
}

void fl_cache_forget_log(fl_log *log) {
    fl_cache *cache = &log->instance->cache;
    pthread_mutex_lock(&cache->mutex);
    while (log->cache_entries != NULL) {
        fl_entry *entry = log->cache_entries;
        if (entry->closing) {
            /* An eviction is closing it (and may record a failure on this log): wait for it. */
            pthread_cond_wait(&cache->closed, &cache->mutex);
            continue;
        }
        fl_forget_locked(cache, entry);
    }
    pthread_mutex_unlock(&cache->mutex);
}

void fl_cache_info(fl_cache *cache, kstore_file_descriptor_info *info) {
    pthread_mutex_lock(&cache->mutex);
    info->limit = cache->limit;
    info->open_count = cache->open_count;
    info->peak_open_count = cache->peak_open_count;
    info->open_calls = cache->open_calls;
    info->hits = cache->hits;
    info->evictions = cache->evictions;
    info->eviction_syncs = cache->eviction_syncs;
    info->exhausted_retries = cache->exhausted_retries;
    pthread_mutex_unlock(&cache->mutex);
}

/* MARK: - The files of one segment during a call */

static void fl_files_mirror(fl_files *files) {
    files->fds.log_fd = files->leases[FL_FILE_LOG].fd;
    files->fds.index_fd = files->leases[FL_FILE_INDEX].fd;
    files->fds.time_fd = files->leases[FL_FILE_TIME].fd;
}

kstore_status fl_files_open(fl_log *log, const fl_segment *segment, fl_files *files) {
    *files = fl_files_none(segment->base_offset);
    kstore_status status = fl_lease_file(log, segment->base_offset, FL_FILE_LOG, false, &files->leases[FL_FILE_LOG]);
    fl_files_mirror(files);
    return status;
}

/* Leases one index file lazily; -1 when it cannot be opened. */
static int fl_files_lazy(fl_log *log, fl_files *files, fl_file_kind kind, bool *tried) {
    if (!*tried) {
        *tried = true;
        if (fl_lease_file(log, files->base_offset, kind, false, &files->leases[kind]) != KSTORE_OK) {
            files->leases[kind] = (fl_lease){.entry = NULL, .fd = -1};
        }
        fl_files_mirror(files);
    }
    return files->leases[kind].fd;
}

int fl_files_index(fl_log *log, fl_files *files) {
    return fl_files_lazy(log, files, FL_FILE_INDEX, &files->index_tried);
}

int fl_files_time(fl_log *log, fl_files *files) { return fl_files_lazy(log, files, FL_FILE_TIME, &files->time_tried); }

kstore_status fl_files_indexes(fl_log *log, fl_files *files, bool create) {
    kstore_status status = KSTORE_OK;
    for (fl_file_kind kind = FL_FILE_INDEX; status == KSTORE_OK && kind <= FL_FILE_TIME; kind++) {
        if (files->leases[kind].entry == NULL)
            status = fl_lease_file(log, files->base_offset, kind, create, &files->leases[kind]);
    }
    files->index_tried = files->time_tried = true;
    fl_files_mirror(files);
    return status;
}

kstore_status fl_files_all(fl_log *log, int64_t base_offset, bool create, fl_files *files) {
    *files = fl_files_none(base_offset);
    kstore_status status = fl_lease_file(log, base_offset, FL_FILE_LOG, false, &files->leases[FL_FILE_LOG]);
    fl_files_mirror(files);
    if (status == KSTORE_OK) status = fl_files_indexes(log, files, create);
    if (status != KSTORE_OK) fl_files_close(log, files);
    return status;
}

void fl_files_close(fl_log *log, fl_files *files) {
    for (int kind = 0; kind < 3; kind++) fl_release(log, &files->leases[kind]);
    files->index_tried = files->time_tried = false;
    fl_files_mirror(files);
}
