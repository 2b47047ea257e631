/* The table-driven option parser (kstore_kit_options.h). */
#include "kstore_kit_options.h"

#include "kstore_kit_error.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* "'a' or 'b'", "'a', 'b' or 'c'" into buf. */
static void kit_describe_choices(const char *const *choices, char *buf, size_t capacity) {
    size_t count = 0;
    while (choices[count] != NULL) count++;
    size_t used = 0;
    buf[0] = '\0';
    for (size_t index = 0; index < count && used < capacity; index++) {
        const char *separator = index == 0 ? "" : index + 1 == count ? " or " : ", ";
        int wrote = snprintf(buf + used, capacity - used, "%s'%s'", separator, choices[index]);
        if (wrote < 0) break;
        used += (size_t)wrote;
    }
}

/* Parses one value into its spec's target. */
static kstore_status kit_parse_value(const char *owner, const kstore_kit_option_spec *spec, const char *value,
                                     char *message, size_t capacity) {
    switch (spec->kind) {
    case KSTORE_KIT_OPTION_TEXT: *(const char **)spec->target = value; return KSTORE_OK;
    case KSTORE_KIT_OPTION_POSITIVE:
        if (!kstore_parse_positive_decimal(value, (int64_t *)spec->target)) {
            kstore_kit_message(message, capacity, "%s: option %s has bad value '%s' (a positive decimal)", owner,
                               spec->key, value);
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        return KSTORE_OK;
    case KSTORE_KIT_OPTION_SIZE: {
        int64_t parsed = 0;
        if (!kstore_parse_positive_decimal(value, &parsed) || (uint64_t)parsed < spec->minimum ||
            (uint64_t)parsed > spec->maximum) {
            kstore_kit_message(message, capacity,
                               "%s: option %s has bad value '%s' (a decimal in [%" PRIu64 ", %" PRIu64 "])", owner,
                               spec->key, value, spec->minimum, spec->maximum);
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        if (spec->multiple != 0 && (uint64_t)parsed % spec->multiple != 0) {
            kstore_kit_message(message, capacity, "%s: option %s must be a multiple of %" PRIu64, owner, spec->key,
                               spec->multiple);
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        *(uint64_t *)spec->target = (uint64_t)parsed;
        return KSTORE_OK;
    }
    case KSTORE_KIT_OPTION_CHOICE:
        for (int index = 0; spec->choices[index] != NULL; index++) {
            if (strcmp(spec->choices[index], value) == 0) {
                *(int *)spec->target = index;
                return KSTORE_OK;
            }
        }
        char choices[256];
        kit_describe_choices(spec->choices, choices, sizeof(choices));
        kstore_kit_message(message, capacity, "%s: option %s is %s", owner, spec->key, choices);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    kstore_kit_message(message, capacity, "%s: option %s has an unknown kind", owner, spec->key);
    return KSTORE_ERR_INVALID_ARGUMENT;
}

kstore_status kstore_kit_parse_options(const char *owner, const kstore_option *options, uint32_t option_count,
                                       const kstore_kit_option_spec *specs, size_t spec_count, char *message,
                                       size_t capacity) {
    if (options == NULL && option_count > 0) {
        kstore_kit_message(message, capacity, "%s: options is NULL", owner);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    /* Which required specs were seen with a usable value (a spec table is small). */
    uint64_t seen = 0;
    for (uint32_t index = 0; index < option_count; index++) {
        const kstore_option *option = &options[index];
        if (option->key == NULL || option->value == NULL) {
            kstore_kit_message(message, capacity, "%s: an option key or value is NULL", owner);
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
        for (size_t spec = 0; spec < spec_count; spec++) {
            if (strcmp(specs[spec].key, option->key) != 0) continue;
            kstore_status status = kit_parse_value(owner, &specs[spec], option->value, message, capacity);
            if (status != KSTORE_OK) return status;
            bool usable = specs[spec].kind != KSTORE_KIT_OPTION_TEXT || option->value[0] != '\0';
            if (spec < 64) seen = usable ? seen | ((uint64_t)1 << spec) : seen & ~((uint64_t)1 << spec);
            break;
        }
    }
    for (size_t spec = 0; spec < spec_count && spec < 64; spec++) {
        if (specs[spec].required && (seen & ((uint64_t)1 << spec)) == 0) {
            kstore_kit_message(message, capacity, "%s: the option '%s' (%s) is required", owner, specs[spec].key,
                               specs[spec].meaning != NULL ? specs[spec].meaning : "no default");
            return KSTORE_ERR_INVALID_ARGUMENT;
        }
    }
    return KSTORE_OK;
}
