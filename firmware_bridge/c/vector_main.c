/*
 * vector_main.c - prints what the C encoder makes of test-vector inputs.
 *
 * Reads whitespace-separated records from stdin and prints one line of lower
 * case hex per record (tests/test_c_encoder.py writes the records from
 * firmware_bridge/test_vectors.json and compares the lines):
 *
 *   crc HEX                    -> the CRC-32 of the bytes, 8 hex digits
 *   cobs HEX                   -> the COBS encoding (no delimiter)
 *   hello DEV BOOT SEQ TS PERIOD NEXT FW N  then N times:
 *         NAMEHEX UNITHEX PER_BLOCK FORMAT RAW_MIN RAW_MAX SCALE_BITS OFFSET_BITS
 *   samples DEV BOOT SEQ TS BLOCK N  then N times: PER_BLOCK FORMAT VALUES...
 *   status DEV BOOT SEQ TS MV PERCENT FLAGS LEAD_OFF SATURATED
 *   limit SIZE                 -> nothing; later frames get an output buffer of
 *                                 SIZE bytes (0: the full buffer)
 *
 * Frames print as wire bytes (COBS and the 0x00 delimiter), or "-" when the
 * encoder refuses (returns 0). HEX "-" is empty; SCALE_BITS/OFFSET_BITS are
 * the float32 bit patterns in hex. Exit status 1 on malformed input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "biomoe_frame.h"

#define TOKEN_SIZE 40000
#define MAX_BYTES (TOKEN_SIZE / 2)

static char token[TOKEN_SIZE];
static uint8_t bytes[MAX_BYTES];
static uint8_t wire[BIOMOE_WIRE_SIZE(BIOMOE_MAX_FRAME_SIZE)];
static biomoe_channel_t channels[BIOMOE_MAX_CHANNELS];
static int32_t values32[BIOMOE_MAX_CHANNELS][BIOMOE_MAX_FRAME_SIZE / 4];
static int16_t values16[BIOMOE_MAX_CHANNELS][BIOMOE_MAX_FRAME_SIZE / 2];
static size_t out_limit = sizeof wire;

static int read_token(void)
{
    return scanf("%39999s", token) == 1;
}

static long read_long(void)
{
    char *end;
    long value;
    if (!read_token()) {
        fprintf(stderr, "vector_main: unexpected end of input\n");
        exit(1);
    }
    value = strtol(token, &end, 0);
    if (*end != '\0') {
        fprintf(stderr, "vector_main: not a number: %s\n", token);
        exit(1);
    }
    return value;
}

static unsigned long read_ulong(void)
{
    char *end;
    unsigned long value;
    if (!read_token()) {
        fprintf(stderr, "vector_main: unexpected end of input\n");
        exit(1);
    }
    value = strtoul(token, &end, 0);
    if (*end != '\0') {
        fprintf(stderr, "vector_main: not a number: %s\n", token);
        exit(1);
    }
    return value;
}

/* Reads a hex token into bytes; returns the byte count. */
static size_t read_hex(void)
{
    size_t i, n;
    if (!read_token()) {
        fprintf(stderr, "vector_main: unexpected end of input\n");
        exit(1);
    }
    if (strcmp(token, "-") == 0) {
        return 0;
    }
    n = strlen(token) / 2;
    for (i = 0; i < n; ++i) {
        unsigned int byte;
        if (sscanf(token + 2 * i, "%2x", &byte) != 1) {
            fprintf(stderr, "vector_main: bad hex: %s\n", token);
            exit(1);
        }
        bytes[i] = (uint8_t)byte;
    }
    return n;
}

static void read_label(char label[BIOMOE_NAME_SIZE])
{
    size_t n = read_hex();
    if (n > BIOMOE_NAME_SIZE) {
        fprintf(stderr, "vector_main: label longer than %u bytes\n", BIOMOE_NAME_SIZE);
        exit(1);
    }
    memset(label, 0, BIOMOE_NAME_SIZE);
    memcpy(label, bytes, n);
}

static float read_float_bits(void)
{
    uint32_t bits = (uint32_t)read_ulong();
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static void print_hex(const uint8_t *data, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        printf("%02x", data[i]);
    }
    printf("\n");
}

static void read_header(biomoe_encoder_t *enc, uint32_t *timestamp_ms)
{
    uint16_t device_id = (uint16_t)read_ulong();
    uint16_t boot_id = (uint16_t)read_ulong();
    biomoe_encoder_init(enc, device_id, boot_id);
    enc->seq = (uint16_t)read_ulong();
    *timestamp_ms = (uint32_t)read_ulong();
}

static void print_frame(size_t n)
{
    if (n == 0) {
        printf("-\n");
    } else {
        print_hex(wire, n);
    }
}

static unsigned read_channel_count(void)
{
    unsigned long n = read_ulong();
    if (n == 0 || n > BIOMOE_MAX_CHANNELS) {
        fprintf(stderr, "vector_main: bad channel count %lu\n", n);
        exit(1);
    }
    return (unsigned)n;
}

static void do_hello(void)
{
    biomoe_encoder_t enc;
    biomoe_config_t config;
    uint32_t timestamp_ms, next_block;
    unsigned i;
    read_header(&enc, &timestamp_ms);
    config.block_period_us = (uint32_t)read_ulong();
    next_block = (uint32_t)read_ulong();
    config.firmware_version = (uint16_t)read_ulong();
    config.n_channels = (uint8_t)read_channel_count();
    config.channels = channels;
    for (i = 0; i < config.n_channels; ++i) {
        read_label(channels[i].name);
        read_label(channels[i].unit);
        channels[i].samples_per_block = (uint16_t)read_ulong();
        channels[i].sample_format = (uint8_t)read_ulong();
        channels[i].raw_min = (int32_t)read_long();
        channels[i].raw_max = (int32_t)read_long();
        channels[i].scale = read_float_bits();
        channels[i].offset = read_float_bits();
    }
    print_frame(biomoe_encode_hello(&enc, timestamp_ms, &config, next_block, wire, out_limit));
}

static void do_samples(void)
{
    biomoe_encoder_t enc;
    biomoe_config_t config;
    const void *samples[BIOMOE_MAX_CHANNELS];
    uint32_t timestamp_ms, block_index;
    unsigned i, k;
    read_header(&enc, &timestamp_ms);
    block_index = (uint32_t)read_ulong();
    config.block_period_us = 1000u; /* not part of a sample block */
    config.firmware_version = 0u;
    config.n_channels = (uint8_t)read_channel_count();
    config.channels = channels;
    for (i = 0; i < config.n_channels; ++i) {
        unsigned long per_block = read_ulong();
        memset(&channels[i], 0, sizeof channels[i]);
        channels[i].sample_format = (uint8_t)read_ulong();
        channels[i].raw_min = INT32_MIN;
        channels[i].raw_max = INT32_MAX;
        if (per_block == 0 || per_block > BIOMOE_MAX_FRAME_SIZE / 4) {
            fprintf(stderr, "vector_main: bad samples per block %lu\n", per_block);
            exit(1);
        }
        channels[i].samples_per_block = (uint16_t)per_block;
        for (k = 0; k < per_block; ++k) {
            long value = read_long();
            values16[i][k] = (int16_t)value;
            values32[i][k] = (int32_t)value;
        }
        samples[i] = channels[i].sample_format == BIOMOE_INT16 ? (const void *)values16[i] : (const void *)values32[i];
    }
    print_frame(biomoe_encode_samples(&enc, timestamp_ms, &config, block_index, samples, wire, out_limit));
}

static void do_status(void)
{
    biomoe_encoder_t enc;
    biomoe_status_t status;
    uint32_t timestamp_ms;
    read_header(&enc, &timestamp_ms);
    status.battery_mv = (uint16_t)read_ulong();
    status.battery_percent = (uint8_t)read_ulong();
    status.flags = (uint8_t)read_ulong();
    status.lead_off_mask = (uint16_t)read_ulong();
    status.saturated_mask = (uint16_t)read_ulong();
    print_frame(biomoe_encode_status(&enc, timestamp_ms, &status, wire, out_limit));
}

int main(void)
{
    while (read_token()) {
        if (strcmp(token, "crc") == 0) {
            size_t n = read_hex();
            printf("%08lx\n", (unsigned long)biomoe_crc32(0u, bytes, n));
        } else if (strcmp(token, "cobs") == 0) {
            size_t n = read_hex();
            size_t m = biomoe_cobs_encode(bytes, n, wire, sizeof wire);
            if (m == 0) {
                fprintf(stderr, "vector_main: COBS output too large\n");
                return 1;
            }
            print_hex(wire, m);
        } else if (strcmp(token, "hello") == 0) {
            do_hello();
        } else if (strcmp(token, "samples") == 0) {
            do_samples();
        } else if (strcmp(token, "status") == 0) {
            do_status();
        } else if (strcmp(token, "limit") == 0) {
            unsigned long limit = read_ulong();
            out_limit = (limit == 0 || limit > sizeof wire) ? sizeof wire : (size_t)limit;
        } else {
            fprintf(stderr, "vector_main: unknown record %s\n", token);
            return 1;
        }
    }
    return 0;
}
