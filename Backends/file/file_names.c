/* The busy log names of an instance: a log name is open, being opened or being deleted in at most
 * one call at a time (kstore.h: a log is open at most once; delete_log of an open log is BUSY).
 */
#include "file_internal.h"

#include <stdlib.h>
#include <string.h>

/* Marks `name` busy (open, being opened or deleted): KSTORE_ERR_BUSY if it already is. */
kstore_status fl_claim_name(fl_instance *instance, const char *name) {
    pthread_mutex_lock(&instance->mutex);
    for (size_t index = 0; index < instance->busy_count; index++) {
        if (strcmp(instance->busy_names[index], name) == 0) {
            pthread_mutex_unlock(&instance->mutex);
            return KSTORE_ERR_BUSY;
        }
    }
    if (instance->busy_count == instance->busy_capacity) {
        size_t capacity = instance->busy_capacity == 0 ? 16 : instance->busy_capacity * 2;
        char **names = realloc(instance->busy_names, capacity * sizeof(char *));
        if (names == NULL) {
            pthread_mutex_unlock(&instance->mutex);
            return KSTORE_ERR_NO_MEMORY;
        }
        instance->busy_names = names;
        instance->busy_capacity = capacity;
    }
    char *copy = strdup(name);
    if (copy == NULL) {
        pthread_mutex_unlock(&instance->mutex);
        return KSTORE_ERR_NO_MEMORY;
    }
    instance->busy_names[instance->busy_count++] = copy;
    pthread_mutex_unlock(&instance->mutex);
    return KSTORE_OK;
}

void fl_release_name(fl_instance *instance, const char *name) {
    pthread_mutex_lock(&instance->mutex);
    for (size_t index = 0; index < instance->busy_count; index++) {
        if (strcmp(instance->busy_names[index], name) == 0) {
            free(instance->busy_names[index]);
            instance->busy_names[index] = instance->busy_names[--instance->busy_count];
            break;
        }
    }
    pthread_mutex_unlock(&instance->mutex);
}
