/* int8 kernels of the NB201 network (micronas-jax): parameter structs and entry points.
   Arithmetic and layouts are documented in kernels.c. */
#ifndef MNJ_KERNELS_H
#define MNJ_KERNELS_H

#include <stdint.h>

typedef struct {
  const int8_t *weights; /* [c_out][k][k][c_in] */
  const int32_t *bias;   /* [c_out], accumulator units (BN folded in) */
  const int32_t *mult;   /* [c_out], Q31 in [2^30, 2^31) */
  const int32_t *shift;  /* [c_out], right shift after the Q31 multiply, -7..31 */
} conv_params;

typedef struct {
  const int32_t *bn_scale; /* [c]: BN as an integer affine before requantization */
  const int32_t *bn_bias;  /* [c] */
  int32_t mult, shift;     /* one requantization for the BN output */
  const int8_t *fc_weights; /* [classes][c] */
  const int32_t *fc_bias;   /* [classes] */
} head_params;

void conv_s8(const int8_t *in, int32_t h, int32_t w, int32_t c_in, int8_t *out, int32_t c_out,
             int32_t k, int32_t stride, int32_t relu_in, const conv_params *p, int16_t *col);
void avgpool3x3_s8(const int8_t *in, int32_t h, int32_t w, int32_t c, int8_t *out,
                   int32_t *sum);
void avgpool2x2_s8(const int8_t *in, int32_t h, int32_t w, int32_t c, int8_t *out);
void add_s8(const int8_t *a, const int8_t *b, int8_t *out, int32_t n, int32_t mult_a,
            int32_t mult_b, int32_t shift);
void head_s8(const int8_t *in, int32_t hw, int32_t c, const head_params *p, int32_t classes,
             int32_t *logits, int32_t *sum);

#endif /* MNJ_KERNELS_H */
