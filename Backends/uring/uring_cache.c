/* The read cache (uring.read.cache.bytes): the most recently written WAL bytes, kept in memory so
 * that reads of the log's tail — what consumers read — copy from memory. With O_DIRECT writes the
 * page cache no longer holds freshly written data, and a read of it would go to the disk.
 *
 * It holds delivered chunks as they are (no copy; their memory goes back to staging when they are
 * evicted) and copies of mostly empty ones (a chunk's memory is its capacity, so keeping a chunk
 * that holds one small frame would spend a whole write's worth of the bound on it). Runs are kept
 * in WAL order, which is the order of (generation, position), so a lookup bisects. The cache is
 * only ever a shortcut: a frame not in it is read from the segment file, where it is too (a chunk
 * is added only after its write completed), and reads check every frame the same way.
 *
 * Threads: the I/O thread adds and evicts under the lock held exclusively, outside wal_lock; reads
 * hold it shared while they copy. Invariants and lock order: uring_internal.h. */
#include "uring_internal.h"

#include <stdlib.h>
#include <string.h>

void ur_cache_init(ur_read_cache *cache, uint64_t bytes_max) {
    memset(cache, 0, sizeof(*cache));
    pthread_rwlockattr_t attributes;
    pthread_rwlockattr_init(&attributes);
    /* The I/O thread must not wait behind a stream of readers. */
    pthread_rwlockattr_setkind_np(&attributes, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&cache->lock, &attributes);
    pthread_rwlockattr_destroy(&attributes);
    cache->bytes_max = bytes_max;
    atomic_init(&cache->hits, 0);
    atomic_init(&cache->misses, 0);
}

static ur_cached *ur_cache_at(const ur_read_cache *cache, size_t index) {
    return &cache->runs[(cache->head + index) % cache->capacity];
}

void ur_cache_destroy(ur_instance *instance) {
    ur_read_cache *cache = &instance->cache;
    for (size_t index = 0; index < cache->count; index++) {
        ur_cached *run = ur_cache_at(cache, index);
        if (run->chunk != NULL) {
            ur_chunk_free(instance, run->chunk);
        } else {
            free(run->bytes);
        }
    }
    free(cache->runs);
    pthread_rwlock_destroy(&cache->lock);
}

/* Makes room for one more run in the ring (unwrapping it into a larger array). */
static bool ur_cache_grow(ur_read_cache *cache) {
    if (cache->count < cache->capacity) return true;
    size_t capacity = cache->capacity == 0 ? 64 : cache->capacity * 2;
    ur_cached *runs = malloc(capacity * sizeof(ur_cached));
    if (runs == NULL) return false;
    for (size_t index = 0; index < cache->count; index++) runs[index] = *ur_cache_at(cache, index);
    free(cache->runs);
    cache->runs = runs;
    cache->capacity = capacity;
    cache->head = 0;
    return true;
}

/* The run a delivered chunk becomes: the chunk itself, or a copy of a mostly empty one (then the
 * chunk goes to *reclaim). Runs with no memory (out of memory) are not kept. */
static ur_cached ur_cache_run_of(ur_chunk *chunk, ur_chunk **reclaim) {
    ur_cached run = {.generation = chunk->generation, .position = chunk->position, .length = chunk->used};
    if (chunk->used * 2 < chunk->capacity) {
        run.bytes = malloc(chunk->used);
        if (run.bytes != NULL) memcpy(run.bytes, chunk->bytes, chunk->used);
        run.memory = run.bytes != NULL ? chunk->used : 0;
        chunk->next = *reclaim;
        *reclaim = chunk;
        return run;
    }
    run.bytes = chunk->bytes;
    run.chunk = chunk;
    run.memory = chunk->capacity;
    return run;
}

/* Drops a run: its chunk goes back to staging, a copy is freed. */
static void ur_cache_drop(ur_cached *run, ur_chunk **reclaim) {
    if (run->chunk != NULL) {
        run->chunk->next = *reclaim;
        *reclaim = run->chunk;
    } else {
        free(run->bytes);
    }
}

void ur_cache_add(ur_read_cache *cache, ur_chunk *delivered, ur_chunk **reclaim) {
    /* Copies are made before the lock is taken: readers never wait for them. */
    ur_cached staged[32];
    while (delivered != NULL) {
        size_t staged_count = 0;
        while (delivered != NULL && staged_count < sizeof(staged) / sizeof(staged[0])) {
            ur_chunk *chunk = delivered;
            delivered = chunk->next;
            chunk->next = NULL;
            if (cache->bytes_max == 0) {
                chunk->next = *reclaim;
                *reclaim = chunk;
                continue;
            }
            staged[staged_count++] = ur_cache_run_of(chunk, reclaim);
        }
        pthread_rwlock_wrlock(&cache->lock);
        for (size_t index = 0; index < staged_count; index++) {
            if (staged[index].memory == 0 || !ur_cache_grow(cache)) {
                ur_cache_drop(&staged[index], reclaim);
                continue;
            }
            *ur_cache_at(cache, cache->count++) = staged[index];
            cache->bytes += staged[index].memory;
        }
        while (cache->count > 0 && cache->bytes > cache->bytes_max) {
            ur_cached *oldest = ur_cache_at(cache, 0);
            cache->bytes -= oldest->memory;
            ur_cache_drop(oldest, reclaim);
            cache->head = (cache->head + 1) % cache->capacity;
            cache->count--;
        }
        pthread_rwlock_unlock(&cache->lock);
    }
}

/* Whether run holds [position, position + length) of segment generation. */
static bool ur_cache_covers(const ur_cached *run, uint64_t generation, uint64_t position, size_t length) {
    return run->generation == generation && run->position <= position &&
           position + length <= run->position + run->length;
}

const uint8_t *ur_cache_find(const ur_read_cache *cache, uint64_t generation, uint64_t position, size_t length,
                             size_t *hint) {
    if (cache->count == 0) return NULL;
    /* Entries of one read are adjacent: the run found last usually holds the next one too. */
    if (*hint < cache->count) {
        const ur_cached *run = ur_cache_at(cache, *hint);
        if (ur_cache_covers(run, generation, position, length)) return run->bytes + (position - run->position);
    }
    /* The last run starting at or before (generation, position). */
    size_t low = 0, high = cache->count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        const ur_cached *run = ur_cache_at(cache, middle);
        if (run->generation < generation || (run->generation == generation && run->position <= position)) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    if (low == 0) return NULL;
    const ur_cached *run = ur_cache_at(cache, low - 1);
    if (!ur_cache_covers(run, generation, position, length)) return NULL;
    *hint = low - 1;
    return run->bytes + (position - run->position);
}
