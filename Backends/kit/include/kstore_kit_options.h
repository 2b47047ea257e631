/* kstore_kit_options.h — a small table-driven parser for kstore_option arrays (instance options at
 * open, log options at open_log), so every backend accepts and refuses alike, with messages that
 * name the backend (or log) and the key.
 *
 * Rules (kstore.h "kstore_option"): unknown keys are ignored; a known key with a bad value is
 * KSTORE_ERR_INVALID_ARGUMENT; when a key appears more than once the last value counts (each value
 * is still checked); a NULL options array with option_count > 0, or a NULL key or value, is
 * KSTORE_ERR_INVALID_ARGUMENT.
 */
#ifndef KSTORE_KIT_OPTIONS_H
#define KSTORE_KIT_OPTIONS_H

#include "kstore.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kstore_kit_option_kind {
    /* Any text. target: const char ** (borrowed from the options array). */
    KSTORE_KIT_OPTION_TEXT = 1,
    /* A positive decimal (kstore_parse_positive_decimal). target: int64_t *. */
    KSTORE_KIT_OPTION_POSITIVE = 2,
    /* A positive decimal in [minimum, maximum] and, when multiple is not 0, a multiple of it.
     * target: uint64_t *. */
    KSTORE_KIT_OPTION_SIZE = 3,
    /* One of `choices` (a NULL-terminated list). target: int * receives the index of the choice. */
    KSTORE_KIT_OPTION_CHOICE = 4,
} kstore_kit_option_kind;

/* One known option. A target keeps its value (the caller's default) when the option is absent. */
typedef struct kstore_kit_option_spec {
    const char *key;
    kstore_kit_option_kind kind;
    /* Absent (or, for TEXT, empty) is KSTORE_ERR_INVALID_ARGUMENT:
     * "<owner>: the option '<key>' (<meaning>) is required". */
    bool required;
    /* What the option is, for the "required" message ("the data directory"). */
    const char *meaning;
    /* KSTORE_KIT_OPTION_SIZE only. */
    uint64_t minimum;
    uint64_t maximum;
    uint64_t multiple;
    /* KSTORE_KIT_OPTION_CHOICE only. */
    const char *const *choices;
    void *target;
} kstore_kit_option_spec;

/* Parses options against specs[0..spec_count). `owner` starts every message ("file backend",
 * "open_log 'x'"). Returns KSTORE_OK, or KSTORE_ERR_INVALID_ARGUMENT with the reason in
 * message[capacity]; targets may then hold values parsed before the bad one. The messages:
 *   "<owner>: options is NULL", "<owner>: an option key or value is NULL",
 *   "<owner>: option <key> has bad value '<value>' (a positive decimal)",
 *   "<owner>: option <key> has bad value '<value>' (a decimal in [<minimum>, <maximum>])",
 *   "<owner>: option <key> must be a multiple of <multiple>",
 *   "<owner>: option <key> is 'a' or 'b'", and the "required" one above. */
kstore_status kstore_kit_parse_options(const char *owner, const kstore_option *options, uint32_t option_count,
                                       const kstore_kit_option_spec *specs, size_t spec_count, char *message,
                                       size_t capacity);

#ifdef __cplusplus
}
#endif
#endif
