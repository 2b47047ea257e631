/* I/O-level faults (kstore_faulty.h): the shim installs the kit's fault hook (kstore_kit_io.h) into
 * the inner instance the first time a fault is armed or scheduled, and decides there, per system
 * call of the inner backend, whether it fails — armed faults first (FAIL_IO: skip K, fail N), then
 * the seeded schedule, deterministic per (seed, operation, n).
 *
 * The hook stays installed until the inner instance is closed (the shim closes the inner instance
 * before it frees itself, so the hook's context outlives every call); with nothing armed it answers
 * after one atomic load.
 */
#include "faulty_internal.h"

#include <errno.h>
#include <string.h>

_Static_assert(KSTORE_FAULTY_IO_WRITE == KSTORE_KIT_IO_WRITE && KSTORE_FAULTY_IO_SYNC == KSTORE_KIT_IO_SYNC &&
                   KSTORE_FAULTY_IO_READ == KSTORE_KIT_IO_READ && KSTORE_FAULTY_IO_TRUNCATE == KSTORE_KIT_IO_TRUNCATE &&
                   KSTORE_FAULTY_IO_OPEN == KSTORE_KIT_IO_OPEN && KSTORE_FAULTY_IO_ALLOCATE == KSTORE_KIT_IO_ALLOCATE,
               "the shim's I/O operations are the kit's");
_Static_assert(KSTORE_FAULTY_IO_SLOTS >= KSTORE_KIT_IO_OPERATION_LIMIT, "a slot per I/O operation");

/* Whether anything is armed or scheduled. Caller holds io->mutex. */
static bool fy_io_any(const fy_io *io) {
    for (int operation = 1; operation < KSTORE_KIT_IO_OPERATION_LIMIT; operation++) {
        if (io->slots[operation].fail_count > 0 || io->schedule.fail_ppm[operation] > 0) return true;
    }
    return false;
}

/* The schedule's answer for the n-th call of `operation`: 0 or an errno; *torn for a torn write. */
static int fy_io_scheduled(const kstore_faulty_io_schedule *schedule, int operation, uint64_t call, bool *torn) {
    uint32_t chance = schedule->fail_ppm[operation];
    if (chance == 0) return 0;
    uint64_t draw = fy_mix(schedule->seed ^ fy_mix(((uint64_t)operation << 56) ^ call));
    if ((uint32_t)(draw % 1000000u) >= chance) return 0;
    *torn = operation == KSTORE_KIT_IO_WRITE && (uint32_t)(fy_mix(draw) % 1000000u) < schedule->torn_write_ppm;
    return schedule->error[operation] > 0 ? schedule->error[operation] : EIO;
}

/* The kit fault hook (kstore_kit_fault_hook.decide). */
static int fy_io_decide(void *context, const kstore_kit_io_call *call, uint64_t *landed_bytes) {
    fy_io *io = context;
    if (__atomic_load_n(&io->armed, __ATOMIC_ACQUIRE) == 0) return 0;
    int operation = call->operation;
    if (operation < 1 || operation >= KSTORE_KIT_IO_OPERATION_LIMIT) return 0;
    int error = 0;
    bool torn = false;
    pthread_mutex_lock(&io->mutex);
    uint64_t n = io->calls[operation]++;
    fy_io_slot *slot = &io->slots[operation];
    if (slot->fail_count > 0) {
        if (slot->skip_count > 0) {
            slot->skip_count--;
        } else {
            slot->fail_count--;
            error = slot->error;
            torn = slot->torn && operation == KSTORE_KIT_IO_WRITE;
        }
    } else {
        error = fy_io_scheduled(&io->schedule, operation, n, &torn);
    }
    if (error != 0) io->failures++;
    __atomic_store_n(&io->armed, fy_io_any(io) ? 1 : 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&io->mutex);
    /* A device filling up in the middle of a write: the first half lands, then the write fails. */
    if (torn) *landed_bytes = call->length / 2;
    return error;
}

void fy_io_init(fy_io *io) {
    memset(io, 0, sizeof(*io));
    io->hook =
        (kstore_kit_fault_hook){.struct_size = sizeof(kstore_kit_fault_hook), .decide = fy_io_decide, .context = io};
    pthread_mutex_init(&io->mutex, NULL);
}

void fy_io_destroy(fy_io *io) { pthread_mutex_destroy(&io->mutex); }

/* Installs the hook into the inner instance once. */
static kstore_status fy_io_install(fy_instance *instance) {
    fy_io *io = &instance->io;
    pthread_mutex_lock(&io->mutex);
    bool installed = io->installed;
    pthread_mutex_unlock(&io->mutex);
    if (installed) return KSTORE_OK;
    const kstore_backend *inner = instance->inner;
    kstore_status status = KSTORE_ERR_UNSUPPORTED;
    if (FY_HAS(inner, kstore_backend, control)) {
        status = inner->control(instance->inner_instance, KSTORE_KIT_CONTROL_SET_FAULT_HOOK, &io->hook);
    }
    if (status != KSTORE_OK) {
        fy_set_error(instance,
                     "faulty: backend '%s' takes no I/O fault hook (KSTORE_KIT_CONTROL_SET_FAULT_HOOK answered %s): "
                     "I/O faults need a durable backend built on the kit",
                     inner->name, kstore_status_name(status));
        return status == KSTORE_ERR_INVALID_ARGUMENT ? status : KSTORE_ERR_UNSUPPORTED;
    }
    pthread_mutex_lock(&io->mutex);
    io->installed = true;
    pthread_mutex_unlock(&io->mutex);
    return KSTORE_OK;
}

static kstore_status fy_io_fail(fy_instance *instance, const kstore_faulty_io_fault *fault) {
    if (fault == NULL || fault->struct_size < sizeof(kstore_faulty_io_fault) || fault->operation < 1 ||
        fault->operation >= KSTORE_KIT_IO_OPERATION_LIMIT || fault->error <= 0) {
        fy_set_error(instance, "faulty: FAIL_IO needs a kstore_faulty_io_fault with an operation 1...%d and an errno",
                     KSTORE_KIT_IO_OPERATION_LIMIT - 1);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    kstore_status status = fy_io_install(instance);
    if (status != KSTORE_OK) return status;
    fy_io *io = &instance->io;
    pthread_mutex_lock(&io->mutex);
    io->slots[fault->operation] = (fy_io_slot){
        .error = fault->error,
        .skip_count = fault->skip_count,
        .fail_count = fault->fail_count,
        .torn = fault->torn != 0,
    };
    __atomic_store_n(&io->armed, fy_io_any(io) ? 1 : 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&io->mutex);
    return KSTORE_OK;
}

static kstore_status fy_io_set_schedule(fy_instance *instance, const kstore_faulty_io_schedule *schedule) {
    if (schedule == NULL || schedule->struct_size < sizeof(kstore_faulty_io_schedule)) {
        fy_set_error(instance, "faulty: SET_IO_SCHEDULE needs a kstore_faulty_io_schedule");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    kstore_status status = fy_io_install(instance);
    if (status != KSTORE_OK) return status;
    fy_io *io = &instance->io;
    pthread_mutex_lock(&io->mutex);
    io->schedule = *schedule;
    /* Index 0 and the slots past the last operation mean nothing: keep them out of fy_io_any. */
    io->schedule.fail_ppm[0] = 0;
    for (int index = KSTORE_KIT_IO_OPERATION_LIMIT; index < KSTORE_FAULTY_IO_SLOTS; index++) {
        io->schedule.fail_ppm[index] = 0;
    }
    memset(io->calls, 0, sizeof(io->calls));
    __atomic_store_n(&io->armed, fy_io_any(io) ? 1 : 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&io->mutex);
    return KSTORE_OK;
}

static void fy_io_clear(fy_io *io) {
    pthread_mutex_lock(&io->mutex);
    memset(io->slots, 0, sizeof(io->slots));
    memset(&io->schedule, 0, sizeof(io->schedule));
    __atomic_store_n(&io->armed, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&io->mutex);
}

kstore_status fy_io_control(fy_instance *instance, int32_t op, void *argument) {
    switch (op) {
    case KSTORE_FAULTY_CONTROL_FAIL_IO: return fy_io_fail(instance, argument);
    case KSTORE_FAULTY_CONTROL_SET_IO_SCHEDULE: return fy_io_set_schedule(instance, argument);
    case KSTORE_FAULTY_CONTROL_CLEAR_IO: fy_io_clear(&instance->io); return KSTORE_OK;
    default: return KSTORE_ERR_UNSUPPORTED;
    }
}
