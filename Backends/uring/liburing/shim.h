/* liburing, found with pkg-config (Debian: liburing-dev). Only the uring backend uses it. */
#include <liburing.h>
