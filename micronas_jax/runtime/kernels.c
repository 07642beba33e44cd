/* int8 kernels of the NB201 network, and the whole network, for a Cortex-M7 (micronas-jax).

   Written for this package in the style of CMSIS-NN (no code copied): tensors are NHWC int8,
   convs accumulate in int32 with SMLAD on int16 pairs after an im2col of one output pixel, and
   every int8 output is requantized by a Q31 multiplier and a right shift:

     requantize(acc, m, s) = (acc * m + 2^(30 + s)) >> (31 + s)      (64-bit, arithmetic shift)

   BatchNorm is folded into each conv's bias and per-channel multiplier. Quantization is
   symmetric (zero points 0), so a ReLU on an int8 input is max(x, 0).
   The numpy reference in micronas_jax/runtime/reference.py states the same arithmetic. */
#include <stdint.h>
#include <arm_acle.h>

#include "kernels.h"

/* -ffreestanding still lets GCC emit calls to these for zeroing loops and struct copies. In the
   deployed library (MNJ_LIBRARY) they are weak, so that a firmware's C library wins. */
#ifdef MNJ_LIBRARY
#define MNJ_WEAK __attribute__((weak))
#else
#define MNJ_WEAK
#endif

MNJ_WEAK void *memset(void *dst, int value, unsigned int n) {
  uint8_t *d = dst;
  if ((((uintptr_t)d | n) & 3) == 0) { /* the node buffers: word stores */
    uint32_t word = (uint8_t)value * 0x01010101u;
    for (uint32_t *w = dst; n; n -= 4) *w++ = word;
    return dst;
  }
  while (n--) *d++ = (uint8_t)value;
  return dst;
}

MNJ_WEAK void *memcpy(void *dst, const void *src, unsigned int n) {
  uint8_t *d = dst;
  const uint8_t *s = src;
  while (n--) *d++ = *s++;
  return dst;
}

/* Rotate right: GCC folds it into SXTB16's ROR operand. */
static inline uint32_t ror(uint32_t v, uint32_t n) { return (v >> n) | (v << (32 - n)); }

static inline uint32_t load32(const void *p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4); /* one LDR: the M7 allows unaligned word loads */
  return v;
}

static inline void store32(void *p, uint32_t v) { __builtin_memcpy(p, &v, 4); }

static inline int32_t requantize(int32_t acc, int32_t mult, int32_t shift) {
  int32_t total = 31 + shift;
  int64_t product = (int64_t)acc * mult + ((int64_t)1 << (total - 1));
  return (int32_t)(product >> total);
}

/* Division rounding half away from zero (the pools' mean). */
static inline int32_t div_round(int32_t sum, int32_t count) {
  int32_t half = count >> 1;
  return (sum >= 0 ? sum + half : sum - half) / count;
}

/* ReLU of four packed int8: a negative byte has bit 7 set; x * 0xFF spreads it to a byte mask. */
static inline uint32_t relu4(uint32_t v) { return v & ~(((v >> 7) & 0x01010101u) * 0xFFu); }

/* The k*k*c_in inputs of output pixel (oy, ox) as int16, zero outside the image, ReLU'd if asked.
   Within each group of 4 the order is x0, x2, x1, x3: SXTB16 of a natural-order weight word then
   gives (w0, w2) and, rotated by 8, (w1, w3), lining up with the two halfword pairs for SMLAD.
   The tail of k*k*c_in mod 4 values stays in natural order. */
static void im2col(const int8_t *in, int32_t h, int32_t w, int32_t c_in, int32_t k,
                   int32_t stride, int32_t oy, int32_t ox, int32_t relu, int16_t *col) {
  int32_t pad = k / 2;
  if ((c_in & 3) == 0) {
    for (int32_t ky = 0; ky < k; ++ky) {
      int32_t y = oy * stride - pad + ky;
      for (int32_t kx = 0; kx < k; ++kx) {
        int32_t x = ox * stride - pad + kx;
        if (y < 0 || y >= h || x < 0 || x >= w) {
          for (int32_t c = 0; c < c_in; c += 2) store32(col + c, 0);
        } else {
          const int8_t *px = in + (y * w + x) * c_in;
          for (int32_t c = 0; c < c_in; c += 4) {
            uint32_t v = load32(px + c);
            if (relu) v = relu4(v);
            store32(col + c, __sxtb16(v));
            store32(col + c + 2, __sxtb16(ror(v, 8)));
          }
        }
        col += c_in;
      }
    }
    return;
  }
  /* Any channel count (the stem's 3): one value at a time, at its permuted place. */
  int32_t size = k * k * c_in, size4 = size & ~3, j = 0;
  static const int8_t perm[4] = {0, 2, 1, 3};
  for (int32_t ky = 0; ky < k; ++ky) {
    int32_t y = oy * stride - pad + ky;
    for (int32_t kx = 0; kx < k; ++kx) {
      int32_t x = ox * stride - pad + kx;
      int32_t inside = y >= 0 && y < h && x >= 0 && x < w;
      const int8_t *px = in + (y * w + x) * c_in;
      for (int32_t c = 0; c < c_in; ++c, ++j) {
        int32_t v = inside ? px[c] : 0;
        if (relu && v < 0) v = 0;
        col[j < size4 ? (j & ~3) + perm[j & 3] : j] = (int16_t)v;
      }
    }
  }
}

/* Conv k x k (k = 1 or 3, padding k/2), stride 1 or 2, optional ReLU on the input, BN folded:
   in [h, w, c_in] -> out [oh, ow, c_out], oh = (h + 2*(k/2) - k)/stride + 1. c_out even.
   col: scratch of k*k*c_in int16. */
void conv_s8(const int8_t *in, int32_t h, int32_t w, int32_t c_in, int8_t *out, int32_t c_out,
             int32_t k, int32_t stride, int32_t relu_in, const conv_params *p, int16_t *col) {
  int32_t pad = k / 2;
  int32_t oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
  int32_t size = k * k * c_in, size4 = size & ~3;
  for (int32_t oy = 0; oy < oh; ++oy) {
    for (int32_t ox = 0; ox < ow; ++ox) {
      im2col(in, h, w, c_in, k, stride, oy, ox, relu_in, col);
      /* Two output channels per pass: each col word is loaded once for both. */
      for (int32_t co = 0; co < c_out; co += 2) {
        const int8_t *w0 = p->weights + co * size, *w1 = w0 + size;
        int32_t acc0 = p->bias[co], acc1 = p->bias[co + 1];
        for (int32_t j = 0; j < size4; j += 4) {
          uint32_t x02 = load32(col + j), x13 = load32(col + j + 2);
          uint32_t a = load32(w0 + j), b = load32(w1 + j);
          acc0 = __smlad(__sxtb16(a), x02, acc0);
          acc0 = __smlad(__sxtb16(ror(a, 8)), x13, acc0);
          acc1 = __smlad(__sxtb16(b), x02, acc1);
          acc1 = __smlad(__sxtb16(ror(b, 8)), x13, acc1);
        }
        for (int32_t j = size4; j < size; ++j) {
          acc0 += col[j] * w0[j];
          acc1 += col[j] * w1[j];
        }
        out[co] = (int8_t)__ssat(requantize(acc0, p->mult[co], p->shift[co]), 8);
        out[co + 1] = (int8_t)__ssat(requantize(acc1, p->mult[co + 1], p->shift[co + 1]), 8);
      }
      out += c_out;
    }
  }
}

/* 3x3 average pool, stride 1, padding 1 not counted: in [h, w, c] -> out [h, w, c].
   sum: scratch of c int32. */
void avgpool3x3_s8(const int8_t *in, int32_t h, int32_t w, int32_t c, int8_t *out,
                   int32_t *sum) {
  for (int32_t oy = 0; oy < h; ++oy) {
    int32_t y0 = oy > 0 ? oy - 1 : 0, y1 = oy < h - 1 ? oy + 1 : h - 1;
    for (int32_t ox = 0; ox < w; ++ox) {
      int32_t x0 = ox > 0 ? ox - 1 : 0, x1 = ox < w - 1 ? ox + 1 : w - 1;
      for (int32_t ch = 0; ch < c; ++ch) sum[ch] = 0;
      for (int32_t y = y0; y <= y1; ++y) {
        for (int32_t x = x0; x <= x1; ++x) {
          const int8_t *px = in + (y * w + x) * c;
          for (int32_t ch = 0; ch < c; ++ch) sum[ch] += px[ch];
        }
      }
      int32_t count = (y1 - y0 + 1) * (x1 - x0 + 1);
      for (int32_t ch = 0; ch < c; ++ch) out[ch] = (int8_t)div_round(sum[ch], count);
      out += c;
    }
  }
}

/* 2x2 average pool, stride 2 (the reduction block's shortcut): in [h, w, c] -> [h/2, w/2, c]. */
void avgpool2x2_s8(const int8_t *in, int32_t h, int32_t w, int32_t c, int8_t *out) {
  for (int32_t oy = 0; oy < h / 2; ++oy) {
    for (int32_t ox = 0; ox < w / 2; ++ox) {
      const int8_t *a = in + (2 * oy * w + 2 * ox) * c, *b = a + w * c;
      for (int32_t ch = 0; ch < c; ++ch) {
        *out++ = (int8_t)div_round(a[ch] + a[ch + c] + b[ch] + b[ch + c], 4);
      }
    }
  }
}

/* Elementwise out = sat8((a * mult_a + b * mult_b + 2^(shift-1)) >> shift) over n values, in
   int32 (|mult| < 2^23, 1 <= shift <= 23); out may alias a or b. The node sums use
   mult_a = mult_b = 2^shift: a saturating add. */
void add_s8(const int8_t *a, const int8_t *b, int8_t *out, int32_t n, int32_t mult_a,
            int32_t mult_b, int32_t shift) {
  int32_t round = 1 << (shift - 1);
  for (int32_t i = 0; i < n; ++i) {
    out[i] = (int8_t)__ssat((a[i] * mult_a + b[i] * mult_b + round) >> shift, 8);
  }
}

/* Head: BN (integer affine + requantization) + ReLU, global average pool, linear:
   in [hw, c] -> logits [classes] int32. sum: scratch of c int32. */
void head_s8(const int8_t *in, int32_t hw, int32_t c, const head_params *p, int32_t classes,
             int32_t *logits, int32_t *sum) {
  for (int32_t ch = 0; ch < c; ++ch) sum[ch] = 0;
  for (int32_t i = 0; i < hw; ++i, in += c) {
    for (int32_t ch = 0; ch < c; ++ch) {
      int32_t y = __ssat(requantize(in[ch] * p->bn_scale[ch] + p->bn_bias[ch], p->mult,
                                    p->shift), 8);
      sum[ch] += y > 0 ? y : 0;
    }
  }
  /* The sums feed the linear layer as they are: 1/hw is part of the logits' scale, so the
     pooled mean is never rounded to int8 steps (and no division runs). */
  for (int32_t k = 0; k < classes; ++k) {
    const int8_t *row = p->fc_weights + k * c;
    int32_t acc = p->fc_bias[k];
    for (int32_t ch = 0; ch < c; ++ch) acc += sum[ch] * row[ch];
    logits[k] = acc;
  }
}

/* ------------------------------------------------------------------------------------------ */
/* The whole network, as a runtime that runs every op would: one cell arch shared by all cells.
   Not part of the deployed library, which calls the kernels above in the cell's own order. */
#ifndef MNJ_LIBRARY

enum { NONE, SKIP, CONV1X1, CONV3X3, POOL };

typedef struct {
  int32_t arch[6]; /* op per edge, edges in space.EDGES order */
  int32_t channels, cells, stages, resolution, in_channels, classes;
  const conv_params *stem;
  const conv_params *cell_convs; /* [stages][cells][6][2]: the 1x1 then the 3x3 of each edge */
  const conv_params *reductions; /* [stages - 1][3]: conv_a, conv_b, shortcut */
  const head_params *head;
  int32_t residual_mult_a, residual_mult_b, residual_shift; /* the reduction block's add */
  int32_t node_shift; /* node sums: add_s8 with both multipliers 2^node_shift */
} network;

static const int8_t EDGE_TARGET[6] = {1, 2, 2, 3, 3, 3};
static const int8_t EDGE_SOURCE[6] = {0, 0, 1, 0, 1, 2};

/* One cell at c channels and r x r: node[0] is the input; node[3] becomes the output. Each
   non-'none' edge runs its op into tmp and adds tmp into its target node. */
static void cell(const network *net, const conv_params *convs, int8_t **node, int8_t *tmp,
                 int32_t c, int32_t r, int16_t *col) {
  int32_t n = c * r * r, one = 1 << net->node_shift;
  for (int32_t j = 1; j < 4; ++j) memset(node[j], 0, n);
  for (int32_t e = 0; e < 6; ++e) {
    int8_t *source = node[EDGE_SOURCE[e]], *target = node[EDGE_TARGET[e]];
    switch (net->arch[e]) {
      case SKIP:
        add_s8(target, source, target, n, one, one, net->node_shift);
        continue;
      case CONV1X1:
        conv_s8(source, r, r, c, tmp, c, 1, 1, 1, &convs[2 * e], col);
        break;
      case CONV3X3:
        conv_s8(source, r, r, c, tmp, c, 3, 1, 1, &convs[2 * e + 1], col);
        break;
      case POOL:
        avgpool3x3_s8(source, r, r, c, tmp, (int32_t *)col);
        break;
      default:
        continue;
    }
    add_s8(target, tmp, target, n, one, one, net->node_shift);
  }
}

/* NB201 forward of one image [resolution, resolution, in_channels] -> logits [classes].
   arena: 6 int8 tensors of channels * resolution^2; col: int16 scratch of 9 * widest channels
   (also holds the pools' int32 sums). Returns the arena slot of the last feature map. */
int32_t nb201_forward(const network *net, const int8_t *image, int8_t *arena, int16_t *col,
                      int32_t *logits) {
  int32_t c = net->channels, r = net->resolution, size = c * r * r;
  int8_t *node[4], *tmp = arena + 4 * size, *spare = arena + 5 * size;
  for (int32_t j = 0; j < 4; ++j) node[j] = arena + j * size;
  conv_s8(image, r, r, net->in_channels, node[0], c, 3, 1, 0, net->stem, col);
  for (int32_t s = 0; s < net->stages; ++s) {
    if (s > 0) {
      /* ResNet block: ReLU-conv_a(stride 2)-BN, ReLU-conv_b-BN, plus avgpool2x2-conv1x1. */
      const conv_params *red = net->reductions + 3 * (s - 1);
      int32_t c_in = c;
      c *= 2;
      r /= 2;
      conv_s8(node[0], 2 * r, 2 * r, c_in, tmp, c, 3, 2, 1, &red[0], col);
      conv_s8(tmp, r, r, c, node[1], c, 3, 1, 1, &red[1], col);
      avgpool2x2_s8(node[0], 2 * r, 2 * r, c_in, spare);
      conv_s8(spare, r, r, c_in, node[2], c, 1, 1, 0, &red[2], col);
      add_s8(node[1], node[2], node[0], c * r * r, net->residual_mult_a, net->residual_mult_b,
             net->residual_shift);
    }
    const conv_params *convs = net->cell_convs + s * net->cells * 12;
    for (int32_t i = 0; i < net->cells; ++i, convs += 12) {
      cell(net, convs, node, tmp, c, r, col);
      int8_t *out = node[3];
      node[3] = node[0];
      node[0] = out;
    }
  }
  head_s8(node[0], r * r, c, net->head, net->classes, logits, (int32_t *)col);
  return (int32_t)(node[0] - arena) / size;
}
#endif /* MNJ_LIBRARY */
