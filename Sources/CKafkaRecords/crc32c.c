/* placeholder */
#include "ckafka_records.h"
