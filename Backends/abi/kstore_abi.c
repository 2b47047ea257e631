/* Shared helpers of the storage ABI (see kstore.h): status names and retryability. Compiling this
 * file also evaluates the header's layout _Static_asserts once for the host. */
#include "kstore.h"

const char *kstore_status_name(kstore_status status) {
    switch (status) {
    case KSTORE_OK: return "KSTORE_OK";
    case KSTORE_ERR_NOT_FOUND: return "KSTORE_ERR_NOT_FOUND";
    case KSTORE_ERR_OUT_OF_RANGE: return "KSTORE_ERR_OUT_OF_RANGE";
    case KSTORE_ERR_CORRUPT: return "KSTORE_ERR_CORRUPT";
    case KSTORE_ERR_NO_SPACE: return "KSTORE_ERR_NO_SPACE";
    case KSTORE_ERR_IO: return "KSTORE_ERR_IO";
    case KSTORE_ERR_UNSUPPORTED: return "KSTORE_ERR_UNSUPPORTED";
    case KSTORE_ERR_BUSY: return "KSTORE_ERR_BUSY";
    case KSTORE_ERR_INVALID_ARGUMENT: return "KSTORE_ERR_INVALID_ARGUMENT";
    case KSTORE_ERR_EXISTS: return "KSTORE_ERR_EXISTS";
    case KSTORE_ERR_NO_MEMORY: return "KSTORE_ERR_NO_MEMORY";
    default: return "KSTORE_UNKNOWN";
    }
}

int kstore_status_is_retryable(kstore_status status) {
    switch (status) {
    case KSTORE_ERR_NO_SPACE:
    case KSTORE_ERR_BUSY:
    case KSTORE_ERR_NO_MEMORY:
        return 1;
    default:
        return 0;
    }
}
