/* biomoe_frame.c - see biomoe_frame.h and firmware_bridge/PROTOCOL.md. */
#include "biomoe_frame.h"

#include <string.h>

/* CRC-32 (reflected polynomial 0xEDB88320), one nibble at a time: a 64-byte table. */
static const uint32_t crc_nibble_table[16] = {
    0x00000000UL, 0x1DB71064UL, 0x3B6E20C8UL, 0x26D930ACUL, 0x76DC4190UL, 0x6B6B51F4UL,
    0x4DB26158UL, 0x5005713CUL, 0xEDB88320UL, 0xF00F9344UL, 0xD6D6A3E8UL, 0xCB61B38CUL,
    0x9B64C2B0UL, 0x86D3D2D4UL, 0xA00AE278UL, 0xBDBDF21CUL};

static uint32_t crc32_byte(uint32_t state, uint8_t byte)
{
    state = crc_nibble_table[(state ^ byte) & 0x0Fu] ^ (state >> 4);
    state = crc_nibble_table[(state ^ (uint32_t)(byte >> 4)) & 0x0Fu] ^ (state >> 4);
    return state;
}

uint32_t biomoe_crc32(uint32_t crc, const uint8_t *data, size_t len)
{
    uint32_t state = ~crc;
    size_t i;
    for (i = 0; i < len; ++i) {
        state = crc32_byte(state, data[i]);
    }
    return ~state;
}

/*
 * A frame writer that COBS-encodes as it goes, so no second buffer is needed.
 * After a full 254-byte run the next block is opened only when another byte
 * comes: a full run that ends the data gets no empty block after it, exactly
 * like the Python cobs_encode.
 */
typedef struct {
    uint8_t *out;
    size_t size;
    size_t pos;       /* next free byte of out */
    size_t code_pos;  /* where the code byte of the open block goes */
    uint8_t code;     /* 1 + data bytes in the open block */
    int block_open;
    int ok;           /* 0 once out overflowed */
    uint32_t crc;     /* running CRC state (inverted) */
} writer_t;

static void writer_reserve(writer_t *w, size_t *slot)
{
    if (w->pos >= w->size) {
        w->ok = 0;
        return;
    }
    *slot = w->pos++;
}

static void writer_stuff(writer_t *w, uint8_t byte)
{
    if (!w->ok) {
        return;
    }
    if (!w->block_open) {
        writer_reserve(w, &w->code_pos);
        w->code = 1u;
        w->block_open = 1;
    }
    if (byte == 0u) {
        w->out[w->code_pos] = w->code;
        writer_reserve(w, &w->code_pos);
        w->code = 1u;
        return;
    }
    if (w->pos >= w->size) {
        w->ok = 0;
        return;
    }
    w->out[w->pos++] = byte;
    if (++w->code == 0xFFu) {
        w->out[w->code_pos] = 0xFFu;
        w->block_open = 0;
    }
}

static void writer_init(writer_t *w, uint8_t *out, size_t size)
{
    w->out = out;
    w->size = size;
    w->pos = 0;
    w->code_pos = 0;
    w->code = 1u;
    w->block_open = 1;
    w->ok = (out != NULL);
    w->crc = 0xFFFFFFFFUL;
    writer_reserve(w, &w->code_pos); /* the first block's code byte */
}

static void put_u8(writer_t *w, uint8_t value)
{
    w->crc = crc32_byte(w->crc, value);
    writer_stuff(w, value);
}

static void put_u16(writer_t *w, uint16_t value)
{
    put_u8(w, (uint8_t)(value & 0xFFu));
    put_u8(w, (uint8_t)(value >> 8));
}

static void put_u32(writer_t *w, uint32_t value)
{
    put_u16(w, (uint16_t)(value & 0xFFFFu));
    put_u16(w, (uint16_t)(value >> 16));
}

static void put_f32(writer_t *w, float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    put_u32(w, bits);
}

static void put_label(writer_t *w, const char label[BIOMOE_NAME_SIZE])
{
    unsigned i;
    int ended = 0;
    for (i = 0; i < BIOMOE_NAME_SIZE; ++i) {
        if (label[i] == '\0') {
            ended = 1;
        }
        put_u8(w, ended ? 0u : (uint8_t)label[i]);
    }
}

static void put_header(writer_t *w, const biomoe_encoder_t *enc, uint8_t type, uint32_t timestamp_ms)
{
    put_u8(w, (uint8_t)BIOMOE_PROTOCOL_VERSION);
    put_u8(w, type);
    put_u16(w, enc->device_id);
    put_u16(w, enc->boot_id);
    put_u16(w, enc->seq);
    put_u32(w, timestamp_ms);
}

/* Append the CRC (not itself part of the CRC), close the last block and add the delimiter. */
static size_t writer_finish(writer_t *w, biomoe_encoder_t *enc)
{
    uint32_t crc = ~w->crc;
    unsigned i;
    for (i = 0; i < 4u; ++i) {
        writer_stuff(w, (uint8_t)(crc >> (8u * i)));
    }
    if (w->ok && w->block_open) {
        w->out[w->code_pos] = w->code;
    }
    if (w->ok && w->pos < w->size) {
        w->out[w->pos++] = 0u;
    } else {
        return 0;
    }
    enc->seq = (uint16_t)(enc->seq + 1u);
    return w->pos;
}

static size_t sample_width(uint8_t format)
{
    return format == BIOMOE_INT16 ? 2u : (format == BIOMOE_INT32 ? 4u : 0u);
}

static int config_valid(const biomoe_config_t *config)
{
    unsigned i;
    if (config == NULL || config->channels == NULL || config->n_channels == 0u ||
        config->n_channels > BIOMOE_MAX_CHANNELS || config->block_period_us == 0u) {
        return 0;
    }
    for (i = 0; i < config->n_channels; ++i) {
        if (config->channels[i].samples_per_block == 0u || sample_width(config->channels[i].sample_format) == 0u ||
            config->channels[i].raw_min > config->channels[i].raw_max) {
            return 0;
        }
    }
    return 1;
}

size_t biomoe_samples_frame_size(const biomoe_config_t *config)
{
    size_t size = BIOMOE_HEADER_SIZE + 4u + BIOMOE_CRC_SIZE;
    unsigned i;
    if (!config_valid(config)) {
        return 0;
    }
    for (i = 0; i < config->n_channels; ++i) {
        size += (size_t)config->channels[i].samples_per_block * sample_width(config->channels[i].sample_format);
    }
    return size <= BIOMOE_MAX_FRAME_SIZE ? size : 0u;
}

void biomoe_encoder_init(biomoe_encoder_t *enc, uint16_t device_id, uint16_t boot_id)
{
    enc->device_id = device_id;
    enc->boot_id = boot_id;
    enc->seq = 0u;
}

size_t biomoe_encode_hello(biomoe_encoder_t *enc, uint32_t timestamp_ms, const biomoe_config_t *config,
                           uint32_t next_block_index, uint8_t *out, size_t out_size)
{
    writer_t w;
    unsigned i;
    if (enc == NULL || biomoe_samples_frame_size(config) == 0u) {
        return 0;
    }
    writer_init(&w, out, out_size);
    put_header(&w, enc, BIOMOE_FRAME_HELLO, timestamp_ms);
    put_u32(&w, config->block_period_us);
    put_u32(&w, next_block_index);
    put_u16(&w, config->firmware_version);
    put_u8(&w, config->n_channels);
    put_u8(&w, 0u);
    for (i = 0; i < config->n_channels; ++i) {
        const biomoe_channel_t *c = &config->channels[i];
        put_label(&w, c->name);
        put_label(&w, c->unit);
        put_u16(&w, c->samples_per_block);
        put_u8(&w, c->sample_format);
        put_u8(&w, 0u);
        put_u32(&w, (uint32_t)c->raw_min);
        put_u32(&w, (uint32_t)c->raw_max);
        put_f32(&w, c->scale);
        put_f32(&w, c->offset);
    }
    return writer_finish(&w, enc);
}

size_t biomoe_encode_samples(biomoe_encoder_t *enc, uint32_t timestamp_ms, const biomoe_config_t *config,
                             uint32_t block_index, const void *const samples[], uint8_t *out, size_t out_size)
{
    writer_t w;
    unsigned i;
    uint16_t k;
    if (enc == NULL || samples == NULL || biomoe_samples_frame_size(config) == 0u) {
        return 0;
    }
    for (i = 0; i < config->n_channels; ++i) {
        if (samples[i] == NULL) {
            return 0;
        }
    }
    writer_init(&w, out, out_size);
    put_header(&w, enc, BIOMOE_FRAME_SAMPLES, timestamp_ms);
    put_u32(&w, block_index);
    for (i = 0; i < config->n_channels && w.ok; ++i) {
        const biomoe_channel_t *c = &config->channels[i];
        if (c->sample_format == BIOMOE_INT16) {
            const int16_t *values = (const int16_t *)samples[i];
            for (k = 0; k < c->samples_per_block; ++k) {
                put_u16(&w, (uint16_t)values[k]);
            }
        } else {
            const int32_t *values = (const int32_t *)samples[i];
            for (k = 0; k < c->samples_per_block; ++k) {
                put_u32(&w, (uint32_t)values[k]);
            }
        }
    }
    return writer_finish(&w, enc);
}

size_t biomoe_encode_status(biomoe_encoder_t *enc, uint32_t timestamp_ms, const biomoe_status_t *status,
                            uint8_t *out, size_t out_size)
{
    writer_t w;
    if (enc == NULL || status == NULL || (status->battery_percent > 100u && status->battery_percent != 255u)) {
        return 0;
    }
    writer_init(&w, out, out_size);
    put_header(&w, enc, BIOMOE_FRAME_STATUS, timestamp_ms);
    put_u16(&w, status->battery_mv);
    put_u8(&w, status->battery_percent);
    put_u8(&w, status->flags);
    put_u16(&w, status->lead_off_mask);
    put_u16(&w, status->saturated_mask);
    return writer_finish(&w, enc);
}

size_t biomoe_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t out_size)
{
    writer_t w;
    size_t i;
    if (in == NULL && len > 0u) {
        return 0;
    }
    writer_init(&w, out, out_size);
    for (i = 0; i < len; ++i) {
        writer_stuff(&w, in[i]);
    }
    if (!w.ok) {
        return 0;
    }
    if (w.block_open) {
        out[w.code_pos] = w.code;
    }
    return w.pos;
}
