/* Times every entry of `micronas-jax lut worksheet` on the board with the DWT cycle counter and prints
   the worksheet's CSV, latency in cycles (micronas-jax). Build: make MCPU=cortex-m7 (see README.md).

   Each entry is timed WARMUP times unmeasured, then REPEATS times; the median, less the cost of
   reading the counter twice, is printed. The entries and their kernels are those of the
   emulated LUT (micronas_jax/hardware/emu/lut.py): a cell op is the op plus one add into its
   node; 'none' runs no kernel (0); the overhead is the whole network with every edge 'none'
   less its stem, reductions and head. Weights are const (flash), tensors in RAM. */
#include <stdint.h>

#include "kernels.h"
#include "network.h"

#ifndef MNJ_WARMUP
#define MNJ_WARMUP 1
#endif
#ifndef MNJ_REPEATS
#define MNJ_REPEATS 5
#endif

/* DWT (ARMv7-M and ARMv8-M debug): trace enable in DEMCR, then the cycle counter. */
#define DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define DWT_LAR (*(volatile uint32_t *)0xE0001FB0u)

/* Where the CSV goes: semihosting SYS_WRITE0 unless board.c defines its own (a UART). */
__attribute__((weak, noinline)) void mnj_emit(const char *text) {
  register uint32_t op __asm__("r0") = 0x04; /* SYS_WRITE0 */
  register const char *arg __asm__("r1") = text;
  __asm__ volatile("bkpt 0xAB" : "+r"(op) : "r"(arg) : "memory");
}

/* Clocks, flash wait states and caches: define it in board.c (runs before the timing). */
__attribute__((weak)) void mnj_board_init(void) {}

static void counter_start(void) {
  DEMCR |= 1u << 24; /* TRCENA */
  DWT_LAR = 0xC5ACCE55u; /* unlock where the core has a lock (Cortex-M7) */
  DWT_CYCCNT = 0;
  DWT_CTRL |= 1u;
}

static inline uint32_t now(void) { return DWT_CYCCNT; }

static int8_t arena[6 * MNJ_TENSOR] __attribute__((aligned(8)));
static int16_t col[MNJ_COL] __attribute__((aligned(8)));
static int8_t image[MNJ_RESOLUTION * MNJ_RESOLUTION * MNJ_IN_CHANNELS];
static int32_t logits[MNJ_CLASSES];
static uint32_t seed = 12345u;

static void fill(int8_t *x, int32_t n) { /* any int8 data: counts depend on shapes */
  for (int32_t i = 0; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    x[i] = (int8_t)(seed >> 24);
  }
}

typedef struct { int32_t op, stage, c, r; } entry;
enum { STEM = 16, REDUCTION, HEAD, OVERHEAD }; /* 0..4: the cell ops in space.OPS order */
static const entry *current;

/* Each kernel call is timed on its own, so an entry's cycles are its kernels' alone (not the
   dispatch around them): `idle` is the cost of two back-to-back counter reads. */
static uint32_t idle, spent;
#define TIMED(call)                  \
  do {                               \
    uint32_t start_ = now();         \
    call;                            \
    spent += now() - start_ - idle;  \
  } while (0)

static void run(void) {
  const entry *e = current;
  int8_t *x = arena, *out = arena + MNJ_TENSOR, *node = arena + 2 * MNJ_TENSOR;
  int32_t c = e->c, r = e->r, n = c * r * r, one = 1 << MNJ_NODE_SHIFT;
  switch (e->op) {
    case STEM:
      TIMED(conv_s8(image, r, r, MNJ_IN_CHANNELS, out, c, 3, 1, 0, &mnj_stem, col));
      break;
    case 1: /* skip_connect: the add into the node */
      TIMED(add_s8(node, x, node, n, one, one, MNJ_NODE_SHIFT));
      break;
    case 2:
    case 3:
      TIMED(conv_s8(x, r, r, c, out, c, e->op == 2 ? 1 : 3, 1, 1,
                    &mnj_cell_convs[e->stage][e->op - 2], col));
      TIMED(add_s8(node, out, node, n, one, one, MNJ_NODE_SHIFT));
      break;
    case 4:
      TIMED(avgpool3x3_s8(x, r, r, c, out, (int32_t *)col));
      TIMED(add_s8(node, out, node, n, one, one, MNJ_NODE_SHIFT));
      break;
    case REDUCTION: {
      const conv_params *p = mnj_reductions + 3 * (e->stage - 1);
      int8_t *y = arena + 3 * MNJ_TENSOR, *pooled = arena + 4 * MNJ_TENSOR;
      TIMED(conv_s8(x, 2 * r, 2 * r, c / 2, y, c, 3, 2, 1, &p[0], col));
      TIMED(conv_s8(y, r, r, c, out, c, 3, 1, 1, &p[1], col));
      TIMED(avgpool2x2_s8(x, 2 * r, 2 * r, c / 2, pooled));
      TIMED(conv_s8(pooled, r, r, c / 2, node, c, 1, 1, 0, &p[2], col));
      TIMED(add_s8(y, y, out, n, MNJ_RESIDUAL_A, MNJ_RESIDUAL_B, MNJ_RESIDUAL_SHIFT));
      break;
    }
    case HEAD:
      TIMED(head_s8(x, r * r, c, &mnj_head, MNJ_CLASSES, logits, (int32_t *)col));
      break;
    case OVERHEAD:
      TIMED(nb201_forward(MNJ_NETWORK, image, arena, col, logits));
      break;
  }
}

static uint32_t median(void) {
  uint32_t t[MNJ_REPEATS];
  for (int32_t i = 0; i < MNJ_WARMUP; ++i) run();
  for (int32_t i = 0; i < MNJ_REPEATS; ++i) {
    spent = 0;
    run();
    uint32_t v = spent;
    int32_t j = i;
    for (; j > 0 && t[j - 1] > v; --j) t[j] = t[j - 1]; /* insertion sort */
    t[j] = v;
  }
  return t[MNJ_REPEATS / 2];
}

static void calibrate(void) {
  uint32_t least = 0xFFFFFFFFu;
  for (int32_t i = 0; i < 8; ++i) {
    uint32_t start = now();
    uint32_t d = now() - start;
    if (d < least) least = d;
  }
  idle = least;
}

static char *put_uint(char *s, uint32_t v) {
  char digits[10];
  int32_t n = 0;
  do digits[n++] = (char)('0' + v % 10); while (v /= 10);
  while (n) *s++ = digits[--n];
  return s;
}

static void emit_row(const char *op, const entry *e, uint32_t cycles) {
  char line[96], *s = line;
  while (*op) *s++ = *op++;
  *s++ = ',';
  if (e) {
    s = put_uint(s, (uint32_t)e->stage + 1);
    *s++ = ',';
    s = put_uint(s, (uint32_t)e->c);
    *s++ = ',';
    s = put_uint(s, (uint32_t)e->r);
    *s++ = ',';
    s = put_uint(s, (uint32_t)e->r);
  } else { /* no stage or shape */
    *s++ = ',';
    *s++ = ',';
    *s++ = ',';
  }
  *s++ = ',';
  s = put_uint(s, cycles);
  *s++ = '\n';
  *s = 0;
  mnj_emit(line);
}

static uint32_t measure(const entry *e) {
  current = e;
  fill(arena, 3 * MNJ_TENSOR);
  return median();
}

static const char *const OPS[5] = {"none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                                   "avg_pool_3x3"};

/* Times the worksheet's entries in its order and prints its CSV; returns 0. */
int mnj_profile(void) {
  static const int32_t channels[MNJ_STAGES] = MNJ_STAGE_CHANNELS;
  static const int32_t sizes[MNJ_STAGES] = MNJ_STAGE_RESOLUTIONS;
  uint32_t fixed = 0, t;
  counter_start();
  calibrate();
  fill(image, (int32_t)sizeof image);
  mnj_emit("op,stage,channels,height,width,latency\n");
  entry e = {STEM, 0, channels[0], sizes[0]};
  fixed += t = measure(&e);
  emit_row("stem", &e, t);
  for (int32_t s = 0; s < MNJ_STAGES; ++s) {
    if (s > 0) {
      entry red = {REDUCTION, s, channels[s], sizes[s]};
      fixed += t = measure(&red);
      emit_row("reduction", &red, t);
    }
    for (int32_t op = 0; op < 5; ++op) {
      entry cell = {op, s, channels[s], sizes[s]};
      emit_row(OPS[op], &cell, op == 0 ? 0 : measure(&cell));
    }
  }
  entry head = {HEAD, MNJ_STAGES - 1, channels[MNJ_STAGES - 1], sizes[MNJ_STAGES - 1]};
  fixed += t = measure(&head);
  emit_row("head", &head, t);
  entry all = {OVERHEAD, 0, 0, 0};
  t = measure(&all);
  emit_row("overhead", 0, t > fixed ? t - fixed : 0);
  return 0;
}

int main(void) {
  mnj_board_init();
  mnj_profile();
  for (;;) {
  }
}
