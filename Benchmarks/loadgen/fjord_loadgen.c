/*
 * fjord-loadgen: a Kafka load generator on librdkafka, for Fjord's benchmarks.
 *
 *   fjord-loadgen produce --bootstrap HOST:PORT --topic T --messages N --size BYTES
 *                 [--partitions P] [--acks -1|0|1] [--compression none|gzip|snappy|lz4|zstd]
 *                 [--linger-ms MS] [--duration-s S] [--rate MSGS_PER_S] [--idempotence 0|1] [--json]
 *                 [--max-in-flight N] [--stats-interval-ms MS] [--wait-start]
 *                 [--transactional-id ID [--commit-every-ms MS] [--commit-every-messages N]]
 *   fjord-loadgen consume --bootstrap HOST:PORT --topic T --messages N [--partitions P]
 *                 [--isolation read_committed|read_uncommitted] [--json]
 *   fjord-loadgen create  --bootstrap HOST:PORT --topic T --partitions P [--topic-config KEY=VALUE]...
 *
 * produce: N messages of SIZE bytes, round-robin over P partitions (the topic must exist or be
 * auto-created with P partitions); every message carries its send time, so the delivery report
 * gives the produce latency (send → acknowledged). With --duration-s it runs for that long instead
 * of N messages; with --rate it paces itself (for latency at a fixed load); --messages 0 sends
 * only the warm-up (a baseline run: everything but the measured messages). --max-in-flight sets
 * max.in.flight.requests.per.connection. --stats-interval-ms turns on librdkafka's statistics and
 * reports the Produce requests the measured messages took (the brokers' `req.Produce` counters,
 * read after the warm-up and after the last acknowledgement). --wait-start is a start barrier for
 * several producers: after the warm-up it prints {"event":"ready"} and waits for a line on stdin;
 * after the last acknowledgement it prints {"event":"done"} before the result; the result carries
 * start_ns and last_ack_ns (CLOCK_MONOTONIC), so a caller can time all producers from the first send
 * to the last acknowledgement. consume: reads N
 * messages from the beginning of partitions 0..P-1 (assign mode, check.crcs=true) and reports the
 * end-to-end latency from the send time stamped in each message when the producer's clock is the
 * same machine's (CLOCK_MONOTONIC is one clock for every process on a machine). create: creates the
 * topic with P partitions through the admin API (an existing topic is fine), so every broker under
 * test gets the same topic without relying on auto-creation; --topic-config (repeatable) sets a topic
 * config at creation (e.g. compression.type=lz4).
 *
 * --transactional-id makes the producer transactional (KIP-98): every message is sent inside a
 * transaction, committed after --commit-every-ms milliseconds and/or --commit-every-messages
 * messages (whichever comes first; the last one when the run ends), and the result counts the
 * commits. A message is acknowledged when its delivery report arrives (the commit flushes).
 * consume --isolation read_committed reads only committed transactions (librdkafka drops aborted
 * records; control records are never delivered).
 *
 * The result is one line of "key=value" pairs (or a JSON object with --json), including the
 * client's own CPU seconds (getrusage), so a reader can see whether the client was the bottleneck.
 * Progress goes to stderr once a second.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct options {
    const char *mode;
    const char *bootstrap;
    const char *topic;
    long long messages;
    int size;
    int partitions;
    int acks;
    const char *compression;
    int linger_ms;
    double duration_s;
    double rate;
    int json;
    int idempotence;       /* -1: on with acks=-1 (librdkafka's recommendation), else off */
    int max_in_flight;     /* 0: librdkafka's default */
    int stats_interval_ms; /* 0: no statistics */
    int wait_start;
    const char *topic_configs[16]; /* KEY=VALUE, for create */
    int topic_config_count;
    const char *transactional_id;    /* NULL: not transactional */
    int commit_every_ms;             /* 0: no time limit per transaction */
    long long commit_every_messages; /* 0: no size limit per transaction */
    const char *isolation;           /* consume: librdkafka's isolation.level */
} options;

static volatile sig_atomic_t stop_requested = 0;
static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
}

/* Latency samples in microseconds; percentiles by sorting at the end (bounded by --messages). */
typedef struct samples {
    uint32_t *values;
    size_t count, capacity;
} samples;

static void samples_add(samples *s, int64_t ns) {
    if (s->count == s->capacity) {
        size_t capacity = s->capacity ? s->capacity * 2 : 1 << 16;
        uint32_t *grown = realloc(s->values, capacity * sizeof *grown);
        if (!grown) return; /* drop the sample rather than the run */
        s->values = grown;
        s->capacity = capacity;
    }
    int64_t us = ns / 1000;
    s->values[s->count++] = us < 0 ? 0 : (us > UINT32_MAX ? UINT32_MAX : (uint32_t)us);
}

static int compare_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile_ms(samples *s, double p) {
    if (s->count == 0) return -1;
    size_t index = (size_t)(p / 100.0 * (double)(s->count - 1) + 0.5);
    return s->values[index] / 1000.0;
}

static void die(const char *message, const char *detail) {
    fprintf(stderr, "fjord-loadgen: %s%s%s\n", message, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static rd_kafka_conf_t *base_conf(const options *o) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", o->bootstrap, err, sizeof err) != RD_KAFKA_CONF_OK)
        die("bad bootstrap", err);
    return conf;
}

static void set(rd_kafka_conf_t *conf, const char *key, const char *value) {
    char err[512];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof err) != RD_KAFKA_CONF_OK) die(key, err);
}

/* ------------------------------------------------------------------------------------------- */

typedef struct produce_state {
    samples latency;
    long long delivered, failed;
    long long bytes;
    int64_t last_ack_ns;
    char first_error[256];
    /* From the newest statistics: librdkafka's clock (CLOCK_MONOTONIC, µs) and Produce requests sent. */
    int64_t stats_ts_us;
    long long stats_produce_requests;
} produce_state;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    produce_state *state = opaque;
    if (m->err) {
        if (state->failed++ == 0)
            snprintf(state->first_error, sizeof state->first_error, "%s", rd_kafka_err2str(m->err));
        return;
    }
    int64_t sent;
    memcpy(&sent, m->payload, sizeof sent);
    state->last_ack_ns = now_ns();
    samples_add(&state->latency, state->last_ack_ns - sent);
    state->delivered++;
    state->bytes += (long long)m->len;
}

/* The number after `"key":` at or after `from`, or -1. */
static long long json_number_after(const char *from, const char *key, const char **next) {
    const char *at = strstr(from, key);
    if (!at) return -1;
    at += strlen(key);
    while (*at == ' ' || *at == ':') at++;
    char *end = NULL;
    long long value = strtoll(at, &end, 10);
    if (next) *next = end;
    return end == at ? -1 : value;
}

/* librdkafka's statistics: keep the time stamp and the Produce requests summed over brokers. */
static int on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque) {
    (void)rk;
    (void)json_len;
    produce_state *state = opaque;
    long long ts = json_number_after(json, "\"ts\"", NULL);
    long long requests = 0;
    const char *cursor = json;
    for (;;) {
        long long count = json_number_after(cursor, "\"Produce\"", &cursor);
        if (count < 0) break;
        requests += count;
    }
    state->stats_produce_requests = requests;
    state->stats_ts_us = ts;
    return 0; /* librdkafka frees json */
}

/* Produce requests sent so far, from statistics generated after now; -1 without statistics or
 * when none arrives within ten intervals. */
static long long produce_requests_now(rd_kafka_t *rk, const options *o, produce_state *state) {
    if (o->stats_interval_ms <= 0) return -1;
    int64_t marker_us = now_ns() / 1000;
    int64_t give_up = now_ns() + (int64_t)o->stats_interval_ms * 10 * 1000000LL + 2000000000LL;
    while (state->stats_ts_us < marker_us) {
        if (now_ns() > give_up) return -1;
        rd_kafka_poll(rk, 10);
    }
    return state->stats_produce_requests;
}

static rd_kafka_t *new_producer(const options *o, produce_state *state) {
    rd_kafka_conf_t *conf = base_conf(o);
    char value[32];
    snprintf(value, sizeof value, "%d", o->acks);
    set(conf, "acks", value);
    set(conf, "compression.codec", o->compression);
    snprintf(value, sizeof value, "%d", o->linger_ms);
    set(conf, "linger.ms", value);
    set(conf, "queue.buffering.max.messages", "1000000");
    set(conf, "queue.buffering.max.kbytes", "1048576");
    set(conf, "batch.num.messages", "100000");
    set(conf, "enable.idempotence", (o->idempotence < 0 ? o->acks == -1 : o->idempotence) ? "true" : "false");
    if (o->max_in_flight > 0) {
        snprintf(value, sizeof value, "%d", o->max_in_flight);
        set(conf, "max.in.flight.requests.per.connection", value);
    }
    if (o->stats_interval_ms > 0) {
        snprintf(value, sizeof value, "%d", o->stats_interval_ms);
        set(conf, "statistics.interval.ms", value);
        rd_kafka_conf_set_stats_cb(conf, on_stats);
    }
    if (o->transactional_id) set(conf, "transactional.id", o->transactional_id);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, state);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) die("cannot create producer", err);
    return rk;
}

/* A transactional call that must succeed: the benchmark stops on any error. */
static void transaction_call(const char *what, rd_kafka_error_t *error) {
    if (!error) return;
    fprintf(stderr, "fjord-loadgen: %s failed: %s\n", what, rd_kafka_error_string(error));
    rd_kafka_error_destroy(error);
    exit(1);
}

static void begin_transaction(rd_kafka_t *rk, const options *o) {
    if (o->transactional_id) transaction_call("begin_transaction", rd_kafka_begin_transaction(rk));
}

/* Commits the running transaction (flushing it) and begins the next; counts commits. */
static long long commits_done = 0;
static void commit_transaction(rd_kafka_t *rk, const options *o, int begin_next) {
    if (!o->transactional_id) return;
    transaction_call("commit_transaction", rd_kafka_commit_transaction(rk, 60000));
    commits_done++;
    if (begin_next) begin_transaction(rk, o);
}

/* Not measured: one message per partition, so metadata, connections and (with idempotence) the
 * producer id are in place before the clock starts. */
static void warm_up(rd_kafka_t *rk, const options *o, produce_state *state, char *payload) {
    if (o->transactional_id) {
        transaction_call("init_transactions", rd_kafka_init_transactions(rk, 60000));
        begin_transaction(rk, o);
    }
    for (int p = 0; p < o->partitions; p++) {
        int64_t t = now_ns();
        memcpy(payload, &t, sizeof t);
        rd_kafka_resp_err_t e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_PARTITION(p),
                                                  RD_KAFKA_V_VALUE(payload, (size_t)o->size),
                                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (e) die("warm-up produce failed", rd_kafka_err2str(e));
    }
    rd_kafka_flush(rk, 60000);
    commit_transaction(rk, o, 0);
    commits_done = 0;
    if (state->failed) die("warm-up produce failed", state->first_error);
    free(state->latency.values);
    state->latency = (samples){0};
    state->delivered = state->failed = state->bytes = 0;
    state->last_ack_ns = 0;
}

/* The start barrier: "ready" on stdout, then wait for a line on stdin (or its end). */
static void wait_for_start(void) {
    printf("{\"event\":\"ready\"}\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin) && ferror(stdin)) die("reading the start line", strerror(errno));
}

/* Sends the measured messages (or for the duration), at the rate if one is set. */
static void produce_messages(rd_kafka_t *rk, const options *o, produce_state *state, char *payload, int64_t start) {
    int64_t last_progress = start;
    int64_t deadline = o->duration_s > 0 ? start + (int64_t)(o->duration_s * 1e9) : INT64_MAX;
    long long sent = 0;
    long long limit = o->duration_s > 0 ? LLONG_MAX : o->messages;
    long long in_transaction = 0;
    int64_t transaction_start = start;
    begin_transaction(rk, o);
    while (sent < limit && !stop_requested) {
        int64_t t = now_ns();
        if (t >= deadline) break;
        if (o->transactional_id && in_transaction > 0 &&
            ((o->commit_every_messages > 0 && in_transaction >= o->commit_every_messages) ||
             (o->commit_every_ms > 0 && t - transaction_start >= (int64_t)o->commit_every_ms * 1000000LL))) {
            commit_transaction(rk, o, 1);
            in_transaction = 0;
            transaction_start = now_ns();
            continue;
        }
        if (o->rate > 0) {
            int64_t due = start + (int64_t)((double)sent / o->rate * 1e9);
            if (t < due) {
                rd_kafka_poll(rk, 0);
                /* Sleep rather than spin (the client must not take the broker's CPU): at least
                 * 200 us, so a high rate sends small bursts; at most 1 ms at once. */
                int64_t wait = due - t < 200000 ? 200000 : (due - t > 1000000 ? 1000000 : due - t);
                struct timespec pause = {0, (long)wait};
                nanosleep(&pause, NULL);
                continue;
            }
        }
        memcpy(payload, &t, sizeof t);
        int partition = (int)(sent % o->partitions);
        rd_kafka_resp_err_t e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_PARTITION(partition),
                                                  RD_KAFKA_V_VALUE(payload, (size_t)o->size),
                                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(rk, 1);
            continue;
        }
        if (e) die("produce failed", rd_kafka_err2str(e));
        sent++;
        in_transaction++;
        if ((sent & 1023) == 0) {
            rd_kafka_poll(rk, 0);
            if (t - last_progress > 1000000000LL) {
                last_progress = t;
                fprintf(stderr, "  produce: %lld sent, %lld acked, %.0f msg/s\n", sent, state->delivered,
                        state->delivered / ((t - start) / 1e9));
            }
        }
    }
    if (o->transactional_id) {
        commit_transaction(rk, o, 0);
    } else {
        rd_kafka_flush(rk, 300000);
    }
}

static int run_produce(const options *o) {
    produce_state state = {0};
    rd_kafka_t *rk = new_producer(o, &state);
    char *payload = malloc((size_t)o->size < 8 ? 8 : (size_t)o->size);
    if (!payload) die("out of memory", NULL);
    for (int i = 0; i < o->size; i++) payload[i] = (char)('a' + i % 26);
    warm_up(rk, o, &state, payload);
    long long requests_before = produce_requests_now(rk, o, &state);
    if (o->wait_start) wait_for_start();
    double cpu_start = cpu_seconds();
    int64_t start = now_ns();
    produce_messages(rk, o, &state, payload, start);
    int64_t end = now_ns();
    double cpu = cpu_seconds() - cpu_start;
    if (o->wait_start) {
        printf("{\"event\":\"done\"}\n");
        fflush(stdout);
    }
    long long requests_after = produce_requests_now(rk, o, &state);
    long long requests = requests_before >= 0 && requests_after >= 0 ? requests_after - requests_before : -1;
    double seconds = (end - start) / 1e9;
    qsort(state.latency.values, state.latency.count, sizeof(uint32_t), compare_u32);
    double mb = state.bytes / 1e6;
    double rate = seconds > 0 ? state.delivered / seconds : 0;
    double mb_rate = seconds > 0 ? mb / seconds : 0;
    if (o->json) {
        printf("{\"mode\":\"produce\",\"messages\":%lld,\"failed\":%lld,\"size\":%d,\"partitions\":%d,\"acks\":%d,"
               "\"compression\":\"%s\",\"seconds\":%.3f,\"msgs_per_s\":%.0f,\"mb_per_s\":%.2f,"
               "\"latency_p50_ms\":%.3f,\"latency_p99_ms\":%.3f,\"latency_p999_ms\":%.3f,\"client_cpu_s\":%.3f,"
               "\"produce_requests\":%lld,\"start_ns\":%" PRId64 ",\"last_ack_ns\":%" PRId64 ","
               "\"commits\":%lld,\"librdkafka\":\"%s\",\"first_error\":\"%s\"}\n",
               state.delivered, state.failed, o->size, o->partitions, o->acks, o->compression, seconds, rate, mb_rate,
               percentile_ms(&state.latency, 50), percentile_ms(&state.latency, 99),
               percentile_ms(&state.latency, 99.9), cpu, requests, start, state.last_ack_ns ? state.last_ack_ns : end,
               commits_done, rd_kafka_version_str(), state.first_error);
    } else {
        printf("mode=produce messages=%lld failed=%lld size=%d partitions=%d acks=%d compression=%s seconds=%.3f "
               "msgs_per_s=%.0f mb_per_s=%.2f latency_p50_ms=%.3f latency_p99_ms=%.3f latency_p999_ms=%.3f "
               "client_cpu_s=%.3f produce_requests=%lld%s%s\n",
               state.delivered, state.failed, o->size, o->partitions, o->acks, o->compression, seconds, rate, mb_rate,
               percentile_ms(&state.latency, 50), percentile_ms(&state.latency, 99),
               percentile_ms(&state.latency, 99.9), cpu, requests, state.failed ? " first_error=" : "",
               state.first_error);
    }
    free(payload);
    free(state.latency.values);
    rd_kafka_destroy(rk);
    return state.failed ? 2 : 0;
}

/* ------------------------------------------------------------------------------------------- */

static int run_consume(const options *o) {
    rd_kafka_conf_t *conf = base_conf(o);
    set(conf, "group.id", "fjord-loadgen");
    set(conf, "enable.auto.commit", "false");
    set(conf, "check.crcs", "true");
    set(conf, "fetch.max.bytes", "52428800");
    set(conf, "max.partition.fetch.bytes", "10485760");
    set(conf, "queued.max.messages.kbytes", "1048576");
    if (o->isolation) set(conf, "isolation.level", o->isolation);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) die("cannot create consumer", err);
    rd_kafka_topic_partition_list_t *assignment = rd_kafka_topic_partition_list_new(o->partitions);
    for (int p = 0; p < o->partitions; p++)
        rd_kafka_topic_partition_list_add(assignment, o->topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, assignment);
    rd_kafka_topic_partition_list_destroy(assignment);
    if (e) die("assign failed", rd_kafka_err2str(e));

    samples latency = {0};
    long long received = 0, bytes = 0;
    double cpu_start = cpu_seconds();
    int64_t start = now_ns(), last_progress = start, first = 0;
    while (received < o->messages && !stop_requested) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
        int64_t t = now_ns();
        if (m) {
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) die("consume failed", rd_kafka_message_errstr(m));
            } else {
                if (first == 0) first = t;
                if (m->len >= 8) {
                    int64_t sent;
                    memcpy(&sent, m->payload, sizeof sent);
                    samples_add(&latency, t - sent);
                }
                received++;
                bytes += (long long)m->len;
            }
            rd_kafka_message_destroy(m);
        }
        if (t - last_progress > 1000000000LL) {
            last_progress = t;
            fprintf(stderr, "  consume: %lld received, %.0f msg/s\n", received, received / ((t - start) / 1e9));
        }
        if (t - start > 600000000000LL) break; /* 10 minutes: something is wrong */
    }
    int64_t end = now_ns();
    double cpu = cpu_seconds() - cpu_start;
    double seconds = (end - start) / 1e9;
    qsort(latency.values, latency.count, sizeof(uint32_t), compare_u32);
    if (o->json) {
        printf("{\"mode\":\"consume\",\"messages\":%lld,\"seconds\":%.3f,\"msgs_per_s\":%.0f,\"mb_per_s\":%.2f,"
               "\"e2e_p50_ms\":%.3f,\"e2e_p99_ms\":%.3f,\"client_cpu_s\":%.3f}\n",
               received, seconds, received / seconds, bytes / 1e6 / seconds, percentile_ms(&latency, 50),
               percentile_ms(&latency, 99), cpu);
    } else {
        printf("mode=consume messages=%lld seconds=%.3f msgs_per_s=%.0f mb_per_s=%.2f e2e_p50_ms=%.3f e2e_p99_ms=%.3f "
               "client_cpu_s=%.3f\n",
               received, seconds, received / seconds, bytes / 1e6 / seconds, percentile_ms(&latency, 50),
               percentile_ms(&latency, 99), cpu);
    }
    free(latency.values);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return received < o->messages ? 2 : 0;
}

/* ------------------------------------------------------------------------------------------- */

static int run_create(const options *o) {
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, base_conf(o), err, sizeof err);
    if (!rk) die("cannot create admin client", err);
    rd_kafka_NewTopic_t *topic = rd_kafka_NewTopic_new(o->topic, o->partitions, 1, err, sizeof err);
    if (!topic) die("bad topic", err);
    for (int i = 0; i < o->topic_config_count; i++) {
        char name[256];
        const char *equals = strchr(o->topic_configs[i], '=');
        size_t length = equals ? (size_t)(equals - o->topic_configs[i]) : 0;
        if (!equals || length == 0 || length >= sizeof name)
            die("--topic-config must be KEY=VALUE", o->topic_configs[i]);
        memcpy(name, o->topic_configs[i], length);
        name[length] = 0;
        if (rd_kafka_NewTopic_set_config(topic, name, equals + 1)) die("bad topic config", o->topic_configs[i]);
    }
    rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &topic, 1, NULL, queue);
    rd_kafka_event_t *event = rd_kafka_queue_poll(queue, 60000);
    if (!event) die("CreateTopics timed out", NULL);
    if (rd_kafka_event_error(event)) die("CreateTopics failed", rd_kafka_event_error_string(event));
    size_t count = 0;
    const rd_kafka_topic_result_t **results =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &count);
    for (size_t i = 0; i < count; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(results[i]);
        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) die("CreateTopics failed", rd_kafka_err2str(e));
    }
    rd_kafka_event_destroy(event);
    rd_kafka_NewTopic_destroy(topic);
    rd_kafka_queue_destroy(queue);
    rd_kafka_destroy(rk);
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: fjord-loadgen produce|consume|create --bootstrap HOST:PORT --topic T --messages N "
                    "[--size B] [--partitions P] [--acks -1|0|1] [--compression C] [--linger-ms MS] "
                    "[--duration-s S] [--rate R] [--idempotence 0|1] [--max-in-flight N] [--stats-interval-ms MS] "
                    "[--wait-start] [--topic-config KEY=VALUE]... [--transactional-id ID] [--commit-every-ms MS] "
                    "[--commit-every-messages N] [--isolation read_committed|read_uncommitted] [--json]\n");
    exit(2);
}

int main(int argc, char **argv) {
    options o = {.bootstrap = "127.0.0.1:9092",
                 .topic = "bench",
                 .messages = 100000,
                 .size = 100,
                 .partitions = 1,
                 .acks = 1,
                 .compression = "none",
                 .linger_ms = 5,
                 .idempotence = -1};
    if (argc < 2) usage();
    o.mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            o.json = 1;
            continue;
        }
        if (!strcmp(a, "--wait-start")) {
            o.wait_start = 1;
            continue;
        }
        if (!v) usage();
        if (!strcmp(a, "--bootstrap"))
            o.bootstrap = v;
        else if (!strcmp(a, "--topic"))
            o.topic = v;
        else if (!strcmp(a, "--messages"))
            o.messages = atoll(v);
        else if (!strcmp(a, "--size"))
            o.size = atoi(v);
        else if (!strcmp(a, "--partitions"))
            o.partitions = atoi(v);
        else if (!strcmp(a, "--acks"))
            o.acks = atoi(v);
        else if (!strcmp(a, "--compression"))
            o.compression = v;
        else if (!strcmp(a, "--linger-ms"))
            o.linger_ms = atoi(v);
        else if (!strcmp(a, "--duration-s"))
            o.duration_s = atof(v);
        else if (!strcmp(a, "--rate"))
            o.rate = atof(v);
        else if (!strcmp(a, "--idempotence"))
            o.idempotence = atoi(v);
        else if (!strcmp(a, "--max-in-flight"))
            o.max_in_flight = atoi(v);
        else if (!strcmp(a, "--stats-interval-ms"))
            o.stats_interval_ms = atoi(v);
        else if (!strcmp(a, "--topic-config")) {
            if (o.topic_config_count == (int)(sizeof o.topic_configs / sizeof o.topic_configs[0])) usage();
            o.topic_configs[o.topic_config_count++] = v;
        } else if (!strcmp(a, "--transactional-id"))
            o.transactional_id = v;
        else if (!strcmp(a, "--commit-every-ms"))
            o.commit_every_ms = atoi(v);
        else if (!strcmp(a, "--commit-every-messages"))
            o.commit_every_messages = atoll(v);
        else if (!strcmp(a, "--isolation"))
            o.isolation = v;
        else
            usage();
        i++;
    }
    /* --messages 0 is a produce run of the warm-up only; a consumer needs at least one message. */
    if (o.size < 8 || o.partitions < 1 || o.messages < 0 || (o.messages < 1 && strcmp(o.mode, "produce")) ||
        o.max_in_flight < 0 || o.stats_interval_ms < 0 || o.commit_every_ms < 0 || o.commit_every_messages < 0)
        usage();
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (!strcmp(o.mode, "produce")) return run_produce(&o);
    if (!strcmp(o.mode, "consume")) return run_consume(&o);
    if (!strcmp(o.mode, "create")) return run_create(&o);
    usage();
    return 2;
}
