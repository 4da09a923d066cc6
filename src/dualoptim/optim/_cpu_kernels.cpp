// Fused CPU kernels of the optimizers' update rules (docs/design.md §2.3, §2.4).
//
// Built on first use by dualoptim/optim/_cpu.py with the system C++ compiler and called through
// ctypes on raw pointers: no torch headers, so a build takes seconds, not the minute a torch
// extension takes, and the library does not depend on torch's C++ ABI. Every function reads and
// writes each element once: the moments, the parameter and (for 8-bit moments) the block's codes
// and absmax make one trip through the cache per step.
//
// One update covers both optimizers: DualOptim+ (eqs. 4-6) with a base pair (b1, b2) and a delta
// pair (d1, d2), where an absent moment (beta == 1) has weight 0, correction 0 and a null pointer.
// AdamW is the base-absent case: (d1, d2) are its moments, c_d1, c_d2 its bias corrections.
//
//   b1 <- b1 + w_b1 (g - b1)                    b2 <- b2 + w_b2 (g^2 - b2)
//   d1 <- d1 + w_d1 (g - c_b1 b1 - d1)          d2 <- d2 + w_d2 (g^2 - c_b2 b2 - d2)
//   m = c_b1 b1 + c_d1 d1,  v = c_b2 b2 + c_d2 d2,  v = max(v, m^2) if guard
//   p <- p (1 - lr wd) - lr m / (sqrt(v) + eps)
//
// 8-bit moments follow dualoptim/optim/quant.py exactly: blocks of 256 values, a float32 absmax
// per block, one byte per value indexing a sorted 256-entry code; a value is encoded as the
// nearest entry of x / absmax (ties down), found in two steps: the top 17 bits of the float pick
// a precomputed first guess, one comparison with that entry's upper midpoint finishes.

#include <cmath>
#include <cstdint>
#include <cstring>

namespace {

constexpr int64_t kBlock = 256;

struct Scalars {
  double lr, weight_decay, w_b1, w_b2, w_d1, w_d2, c_b1, c_b2, c_d1, c_d2, eps;
  int64_t guard;
};

// One moment of an 8-bit update: float values (values != nullptr), or codes + absmax, or absent.
struct Moment {
  float* values;
  uint8_t* codes;
  float* absmax;
  const float* code;         // 256 entries
  const float* upper;        // 256 upper midpoints (the last is +inf)
  const int32_t* first_guess;  // 2^17 entries, indexed by the float's top 17 bits
};

inline uint32_t bits_of(float x) { return __builtin_bit_cast(uint32_t, x); }

inline float float_of(uint32_t bits) { return __builtin_bit_cast(float, bits); }

// The elementwise update of n values (absent moments: zero-weighted zeros), float or double.
template <typename T>
inline void update_range(int64_t n, T* __restrict p, const T* __restrict g, T* __restrict b1, T* __restrict b2,
                         T* __restrict d1, T* __restrict d2, const Scalars& s) {
  const T decay = static_cast<T>(1.0 - s.lr * s.weight_decay);
  const T lr = static_cast<T>(s.lr), eps = static_cast<T>(s.eps);
  const T w_b1 = static_cast<T>(s.w_b1), w_b2 = static_cast<T>(s.w_b2);
  const T w_d1 = static_cast<T>(s.w_d1), w_d2 = static_cast<T>(s.w_d2);
  const T c_b1 = static_cast<T>(s.c_b1), c_b2 = static_cast<T>(s.c_b2);
  const T c_d1 = static_cast<T>(s.c_d1), c_d2 = static_cast<T>(s.c_d2);
  // The guard as a multiplier (0 or 1) keeps the loop branch-free, so that it vectorises.
  const T guard = s.guard != 0 ? T(1) : T(0);
  for (int64_t i = 0; i < n; ++i) {
    const T grad = g[i], grad2 = grad * grad;
    const T base1 = b1[i] + w_b1 * (grad - b1[i]);
    const T base2 = b2[i] + w_b2 * (grad2 - b2[i]);
    const T delta1 = d1[i] + w_d1 * (grad - c_b1 * base1 - d1[i]);
    const T delta2 = d2[i] + w_d2 * (grad2 - c_b2 * base2 - d2[i]);
    b1[i] = base1;
    b2[i] = base2;
    d1[i] = delta1;
    d2[i] = delta2;
    const T m = c_b1 * base1 + c_d1 * delta1;
    const T v = c_b2 * base2 + c_d2 * delta2;
    const T floor = guard * m * m;
    p[i] = p[i] * decay - lr * m / (std::sqrt(v > floor ? v : floor) + eps);
  }
}

// The float update of whole tensors, cut into cache-sized ranges shared among the threads.
template <typename T>
void float_update(int64_t numel, T* p, const T* g, T* b1, T* b2, T* d1, T* d2, const Scalars& s, int threads) {
  constexpr int64_t kRange = 1 << 14;
  const int64_t ranges = (numel + kRange - 1) / kRange;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && ranges > 1)
  for (int64_t r = 0; r < ranges; ++r) {
    const int64_t start = r * kRange, n = numel - start < kRange ? numel - start : kRange;
    update_range<T>(n, p + start, g + start, b1 + start, b2 + start, d1 + start, d2 + start, s);
  }
}

inline void decode(const Moment& q, int64_t block, int64_t start, int64_t n, float* __restrict out) {
  if (q.values) {
    std::memcpy(out, q.values + start, n * sizeof(float));
  } else if (q.codes) {
    const float scale = q.absmax[block];
    const uint8_t* __restrict codes = q.codes + start;
    const float* __restrict code = q.code;
    for (int64_t i = 0; i < n; ++i) out[i] = code[codes[i]] * scale;
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = 0.0f;
  }
}

// For an 8-bit moment: its new absmax, and whether the block's values are all finite (a non-finite
// absmax would turn the whole block into NaN). Float moments store what they get, as in torch.
inline bool block_absmax(const Moment& q, int64_t n, const float* __restrict x, float* absmax) {
  if (!q.codes) return true;
  uint32_t largest = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t magnitude = bits_of(x[i]) & 0x7fffffffu;
    largest = magnitude > largest ? magnitude : largest;
  }
  *absmax = float_of(largest);
  return largest < 0x7f800000u;  // inf and NaN have an all-ones exponent
}

// The nearest code entry of each x / divisor. Its own (not inlined) function: inlined into the
// block loop, GCC 12 no longer vectorises it.
__attribute__((noinline)) void nearest_entries(int64_t n, const float* __restrict x, float divisor,
                                               uint8_t* __restrict codes, const int32_t* __restrict first_guess,
                                               const float* __restrict upper) {
  for (int64_t i = 0; i < n; ++i) {
    const float y = x[i] / divisor;
    const int32_t guess = first_guess[bits_of(y) >> 15];
    codes[i] = static_cast<uint8_t>(guess + (y > upper[guess] ? 1 : 0));
  }
}

inline void encode(const Moment& q, int64_t block, int64_t start, int64_t n, const float* __restrict x,
                   float absmax) {
  if (q.values) {
    std::memcpy(q.values + start, x, n * sizeof(float));
    return;
  }
  if (!q.codes) return;
  q.absmax[block] = absmax;
  const float divisor = absmax > 0.0f ? absmax : 1.0f;  // an all-zero block maps to the code's 0
  nearest_entries(n, x, divisor, q.codes + start, q.first_guess, q.upper);
}

}  // namespace

extern "C" {

// 1 if all numel values are finite, else 0.
int dualoptim_all_finite_f32(const float* x, int64_t numel) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < numel; ++i) bad |= ((bits_of(x[i]) & 0x7f800000u) == 0x7f800000u);
  return bad ? 0 : 1;
}

int dualoptim_all_finite_f64(const double* x, int64_t numel) {
  uint64_t bad = 0;
  for (int64_t i = 0; i < numel; ++i) {
    uint64_t bits;
    std::memcpy(&bits, &x[i], sizeof bits);
    bad |= ((bits & 0x7ff0000000000000ull) == 0x7ff0000000000000ull);
  }
  return bad ? 0 : 1;
}

void dualoptim_float_update_f32(int64_t numel, float* p, const float* g, float* b1, float* b2, float* d1,
                                float* d2, const Scalars* s, int threads) {
  float_update<float>(numel, p, g, b1, b2, d1, d2, *s, threads);
}

void dualoptim_float_update_f64(int64_t numel, double* p, const double* g, double* b1, double* b2, double* d1,
                                double* d2, const Scalars* s, int threads) {
  float_update<double>(numel, p, g, b1, b2, d1, d2, *s, threads);
}

// The update of one float32 tensor whose moments are 8-bit, float32 or absent (moments[0..3]:
// b1, b2, d1, d2). Block by block: de-quantise, update, check, re-quantise, store. Returns -1, or
// the index of a block where a new 8-bit moment is non-finite (possible with finite gradients only when
// g^2 overflows): such a block is left unchanged, as quant.quantize refuses it; with one thread
// every later block is too, with several the other threads' blocks are already stored.
int64_t dualoptim_quantized_update(int64_t numel, float* p, const float* g, const Moment* moments,
                                   const Scalars* s, int threads) {
  const int64_t blocks = (numel + kBlock - 1) / kBlock;
  int64_t failed = blocks;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(min : failed) if (threads > 1 && numel >= (1 << 16))
  for (int64_t block = 0; block < blocks; ++block) {
    if (block > failed) continue;  // this thread refused an earlier block: stop storing
    const int64_t start = block * kBlock;
    const int64_t n = numel - start < kBlock ? numel - start : kBlock;
    alignas(64) float values[4][kBlock];
    alignas(64) float param[kBlock];
    for (int j = 0; j < 4; ++j) decode(moments[j], block, start, n, values[j]);
    std::memcpy(param, p + start, n * sizeof(float));
    update_range<float>(n, param, g + start, values[0], values[1], values[2], values[3], *s);
    float absmax[4];
    bool finite = true;
    for (int j = 0; j < 4; ++j) finite &= block_absmax(moments[j], n, values[j], &absmax[j]);
    if (!finite) {
      failed = block < failed ? block : failed;
      continue;
    }
    for (int j = 0; j < 4; ++j) encode(moments[j], block, start, n, values[j], absmax[j]);
    std::memcpy(p + start, param, n * sizeof(float));
  }
  return failed == blocks ? -1 : failed;
}

}  // extern "C"
