/* The in-memory storage backend: not durable, non-blocking, the fast test backend and the
 * protocol-overhead baseline. Implements kstore.h. */
#ifndef KSTORE_MEMORY_H
#define KSTORE_MEMORY_H
#include "kstore.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Returns the memory backend's static table (name "memory"). */
const kstore_backend *kstore_memory_backend(void);

#ifdef __cplusplus
}
#endif
#endif
