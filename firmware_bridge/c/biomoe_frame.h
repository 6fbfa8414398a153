/*
 * biomoe_frame.h - MCU-side encoder of the biomoe serial protocol, version 1.
 *
 * Builds hello, sample-block and status frames directly in COBS form, with
 * the CRC-32 and the 0x00 delimiter, into a buffer the caller owns. C99, no
 * dynamic memory, no library calls beyond memcpy, independent of the host's
 * byte order (the wire is little-endian). Floats must be IEEE 754 binary32.
 *
 * The byte layout is specified in firmware_bridge/PROTOCOL.md; the shared
 * test vectors firmware_bridge/test_vectors.json pin the exact bytes.
 *
 * Typical use on a sensor board:
 *
 *     static const biomoe_channel_t channels[2] = {
 *         {"EDA", "uS", 100, BIOMOE_INT16, -32768, 32767, 0.0005f, 16.384f},
 *         {"SpO2", "%", 1, BIOMOE_INT16, 0, 10000, 0.01f, 0.0f},
 *     };
 *     static const biomoe_config_t config = {1000000UL, 1, 2, channels};
 *     static uint8_t wire[BIOMOE_WIRE_SIZE(BIOMOE_MAX_FRAME_SIZE)];
 *     biomoe_encoder_t enc;
 *     biomoe_encoder_init(&enc, device_id, boot_counter);
 *     n = biomoe_encode_hello(&enc, now_ms, &config, next_block, wire, sizeof wire);
 *     uart_write(wire, n);                 (n == 0: buffer too small or bad input)
 *     const void *samples[2] = {eda_block, spo2_block};
 *     n = biomoe_encode_samples(&enc, block_start_ms, &config, block++, samples, wire, sizeof wire);
 */
#ifndef BIOMOE_FRAME_H
#define BIOMOE_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BIOMOE_PROTOCOL_VERSION 1u
#define BIOMOE_HEADER_SIZE 12u
#define BIOMOE_CRC_SIZE 4u
#define BIOMOE_MAX_FRAME_SIZE 8192u /* header + payload + CRC, before COBS */
#define BIOMOE_MAX_CHANNELS 16u
#define BIOMOE_NAME_SIZE 8u
#define BIOMOE_HELLO_SIZE(n_channels) (BIOMOE_HEADER_SIZE + 12u + 36u * (n_channels) + BIOMOE_CRC_SIZE)
#define BIOMOE_STATUS_SIZE (BIOMOE_HEADER_SIZE + 8u + BIOMOE_CRC_SIZE)
/* Bytes on the wire for a raw frame of raw_size bytes: COBS overhead and the delimiter. */
#define BIOMOE_WIRE_SIZE(raw_size) ((raw_size) + (raw_size) / 254u + 2u)

enum biomoe_frame_type {
    BIOMOE_FRAME_HELLO = 1,
    BIOMOE_FRAME_SAMPLES = 2,
    BIOMOE_FRAME_STATUS = 3
};

enum biomoe_sample_format {
    BIOMOE_INT16 = 1,
    BIOMOE_INT32 = 2
};

/* One channel of the device description. physical = raw * scale + offset. */
typedef struct {
    char name[BIOMOE_NAME_SIZE]; /* printable ASCII, NUL-padded; 8 characters need no NUL */
    char unit[BIOMOE_NAME_SIZE];
    uint16_t samples_per_block;  /* >= 1; rate = samples_per_block * 1e6 / block_period_us */
    uint8_t sample_format;       /* enum biomoe_sample_format */
    int32_t raw_min;             /* ADC range; a value at either end means saturation */
    int32_t raw_max;
    float scale;
    float offset;
} biomoe_channel_t;

typedef struct {
    uint32_t block_period_us;         /* duration of one sample block */
    uint16_t firmware_version;
    uint8_t n_channels;               /* 1 .. BIOMOE_MAX_CHANNELS */
    const biomoe_channel_t *channels; /* n_channels entries, in sample-block order */
} biomoe_config_t;

typedef struct {
    uint16_t battery_mv;      /* 0 = unknown */
    uint8_t battery_percent;  /* 0..100, 255 = unknown */
    uint8_t flags;            /* bit 0: charging; other bits 0 */
    uint16_t lead_off_mask;   /* bit i: channel i has a lead off */
    uint16_t saturated_mask;  /* bit i: channel i saturated in the last block */
} biomoe_status_t;

/* Per-device state: the header fields that do not change, and the sequence number. */
typedef struct {
    uint16_t device_id;
    uint16_t boot_id; /* must differ between consecutive boots (counter in flash, or random) */
    uint16_t seq;     /* of the next frame; incremented by every successful encode */
} biomoe_encoder_t;

void biomoe_encoder_init(biomoe_encoder_t *enc, uint16_t device_id, uint16_t boot_id);

/*
 * The encoders write one complete wire frame (COBS bytes and the 0x00
 * delimiter) to out and return its length, or return 0, leaving enc->seq
 * unchanged, when out_size is too small or the input is invalid (no
 * channels, more than 16, samples_per_block 0, unknown format, frame larger
 * than BIOMOE_MAX_FRAME_SIZE). BIOMOE_WIRE_SIZE(raw frame size) is always
 * enough.
 */
size_t biomoe_encode_hello(biomoe_encoder_t *enc, uint32_t timestamp_ms, const biomoe_config_t *config,
                           uint32_t next_block_index, uint8_t *out, size_t out_size);

/* samples[i] points to samples_per_block values of channel i: int16_t for
 * BIOMOE_INT16, int32_t for BIOMOE_INT32. timestamp_ms is the device time of
 * the first sample of the block. */
size_t biomoe_encode_samples(biomoe_encoder_t *enc, uint32_t timestamp_ms, const biomoe_config_t *config,
                             uint32_t block_index, const void *const samples[], uint8_t *out, size_t out_size);

size_t biomoe_encode_status(biomoe_encoder_t *enc, uint32_t timestamp_ms, const biomoe_status_t *status,
                            uint8_t *out, size_t out_size);

/* Raw frame size (before COBS) of a sample block of this configuration; 0 if invalid. */
size_t biomoe_samples_frame_size(const biomoe_config_t *config);

/* CRC-32/ISO-HDLC (zlib's crc32): start with crc = 0, feed data in pieces. */
uint32_t biomoe_crc32(uint32_t crc, const uint8_t *data, size_t len);

/* COBS-encode len bytes (no delimiter). Returns the encoded length, 0 if out_size is too small. */
size_t biomoe_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t out_size);

#ifdef __cplusplus
}
#endif

#endif /* BIOMOE_FRAME_H */
