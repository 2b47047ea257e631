/* kstore_kit.h — the C every backend shares (Backends/kit): the error slot, option parsing, the data
 * directory's lock and format marker, system-call wrappers with one optional fault hook, and the
 * checks and copies of kstore.h's members. Backends include the kit and never each other.
 *
 * Every exported symbol is kstore_kit_*; kstore.h's own helpers (kstore_status_name, …) are
 * implemented in kstore_abi.c, which the CKStore target compiles, so the host and any backend get
 * them with kstore.h alone.
 */
#ifndef KSTORE_KIT_H
#define KSTORE_KIT_H

#include "kstore_kit_data_directory.h"
#include "kstore_kit_error.h"
#include "kstore_kit_io.h"
#include "kstore_kit_log.h"
#include "kstore_kit_options.h"

#endif
