/* kstore_kit_log.h — the argument checks and result copies of kstore.h's members that every
 * backend makes the same way, so they accept, refuse and fill alike.
 */
#ifndef KSTORE_KIT_LOG_H
#define KSTORE_KIT_LOG_H

#include "kstore.h"
#include "kstore_kit_error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Whether a field of a host-provided struct fits its struct_size (kstore.h: "a backend fills only
 * the fields that fit"). */
#define KSTORE_KIT_FITS(pointer, type, field)                                                                          \
    ((size_t)(pointer)->struct_size >= offsetof(type, field) + sizeof(((type *)0)->field))

/* Copies the fields of `values` that fit state->struct_size into *state (reserved is zeroed). */
void kstore_kit_put_state(kstore_log_state *state, const kstore_log_state *values);

/* Copies the fields of `values` that fit result->struct_size into *result. */
void kstore_kit_put_read_result(kstore_read_result *result, const kstore_read_result *values);

/* An append's arguments (kstore_log_methods.append), for the shared check: the fields are in the
 * order of append's parameters, so a backend may initialize it positionally. */
typedef struct kstore_kit_append {
    int64_t first_offset;
    int64_t last_offset;
    int64_t max_timestamp;
    const kstore_iovec *iov;
    uint32_t iov_count;
    kstore_completion completion;
} kstore_kit_append;

/* Checks what append requires of its arguments alone (kstore.h): a completion, at least one iovec,
 * no NULL base with a length, 1..entry_bytes_max bytes in all, 0 <= first_offset <= last_offset <
 * INT64_MAX, max_timestamp >= -1. Returns KSTORE_OK with the entry's size in *total_bytes, or
 * KSTORE_ERR_INVALID_ARGUMENT with a message "append to log '<name>': …" recorded in `errors`.
 * Whether first_offset continues the log is the backend's to check. */
kstore_status kstore_kit_check_append(const kstore_kit_append *append, uint64_t entry_bytes_max, const char *log_name,
                                      kstore_kit_error *errors, uint64_t *total_bytes);

/* read's pointer check: KSTORE_ERR_INVALID_ARGUMENT ("read from log '<name>': result is NULL") when
 * result is NULL or buf is NULL with a capacity. */
kstore_status kstore_kit_check_read(const void *buf, uint64_t capacity, const kstore_read_result *result,
                                    const char *log_name, kstore_kit_error *errors);

/* read's range check: KSTORE_ERR_OUT_OF_RANGE ("read from log '<name>': offset 7 outside [0, 5]")
 * unless start <= offset <= end. */
kstore_status kstore_kit_check_read_offset(int64_t offset, int64_t start_offset, int64_t end_offset,
                                           const char *log_name, kstore_kit_error *errors);

/* A member's required pointer argument: KSTORE_ERR_INVALID_ARGUMENT, with the message "<member> of
 * log '<name>': <argument> is NULL" recorded in `errors`, when `present` is false. */
kstore_status kstore_kit_require(bool present, const char *member, const char *argument, const char *log_name,
                                 kstore_kit_error *errors);

/* open_log against a backend's catalog (kstore.h open_log): whether a log named `name` exists
 * (`found`) and is open (`open`) decide, with `flags`, the answer — KSTORE_ERR_EXISTS "open_log
 * '<name>': the log exists (exclusive create)", KSTORE_ERR_BUSY "… the log is already open",
 * KSTORE_ERR_NOT_FOUND "… no such log" (recorded in `errors`), or KSTORE_OK: open it (creating it
 * when it was not found). */
kstore_status kstore_kit_open_log_admit(const char *name, uint32_t flags, bool found, bool open,
                                        kstore_kit_error *errors);

/* The names list_logs reports: collected first (copied), delivered after, so the callback runs
 * without any backend lock or directory stream held (kstore.h: it may be slow). */
typedef struct kstore_kit_names {
    char **names;
    size_t count;
    size_t capacity;
} kstore_kit_names;

/* Appends a copy of `name`; false when out of memory (the list is unchanged). */
bool kstore_kit_names_add(kstore_kit_names *names, const char *name);

/* Ends list_logs: when `complete`, calls callback once per name in the order they were added and
 * returns KSTORE_OK; otherwise (a name could not be collected) calls nothing and returns
 * KSTORE_ERR_NO_MEMORY with "list_logs: out of memory" recorded in `errors`. Frees the list. */
kstore_status kstore_kit_names_finish(kstore_kit_names *names, bool complete, kstore_list_callback callback,
                                      void *context, kstore_kit_error *errors);

#ifdef __cplusplus
}
#endif
#endif
