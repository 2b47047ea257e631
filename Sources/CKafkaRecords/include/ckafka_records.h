#ifndef CKAFKA_RECORDS_H
#define CKAFKA_RECORDS_H
#include <stddef.h>
#include <stdint.h>
#endif
