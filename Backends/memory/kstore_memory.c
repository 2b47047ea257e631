#include "kstore_memory.h"
