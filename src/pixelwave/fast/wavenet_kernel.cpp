// pixelwave: fused WaveNet generation step (Paine et al. 2016 queues), float32 and float64.
//
// Built at first use by pixelwave/fast/_build.py (c++ -O3 -march=native -shared) and called through ctypes;
// pixelwave/fast/wavenet_step.py prepares the inputs and is the only caller. No Python or torch headers.
//
// One generation step per sample, for every batch row:
//   x = emb[code]; for each layer i:  h = bias(t, i) + W_tap,i . [x_{t-(k-1)d}, ..., x_{t-d}, x]   (2G)
//                                    z_i = tanh(h[:G]) * sigmoid(h[G:])                           (G)
//                                    x  = x + W_res,i . z_i + b_res,i      (all layers but the last)
//   s = relu(skip_b + W_skip . [z_0 .. z_{L-1}]); hid = relu(b1 + W1 s); logits = b2 + W2 hid
//   code = inverse CDF of softmax(logits / temperature) at the uniform u[b, t] (temperature: one, or one per draw;
//          optionally every probability less a floor, renormalised)
// bias(t, i) = conv bias (+ the speaker's V h) (+ cond_b + W_cond,i . up[:, t], the mel projection); the
// mel projections are computed here, a block of steps at a time (a matrix product over the block's steps and
// rows: the projection weights are read once per block), so the step itself just adds a vector.
//
// Every matrix is stored once, packed "input-major" in tiles of `tile` SIMD vectors of outputs, and all the
// matrices one thread uses lie in one buffer in the order a step reads them, so a step streams its weights
// front to back (at batch 1 it is a chain of matrix-vector products: memory-bound, ~6.5 MB fp32 per sample
// for the standard model). The microkernel keeps a (rows x tile) block of outputs in registers.
//
// Threads: with batch > 1 the rows are split between threads, which then run independently. With batch 1
// and 2 threads ("split" mode), each thread owns half of every layer's gate units (its half of the conv,
// residual and skip weights, ~3.2 MB each) and half of each head layer's outputs; per sample the threads
// exchange their partial residuals (one per layer), partial skip sums and head halves through double-buffered
// slots with a sequence counter each: L + 2 exchanges per sample (~0.2-0.4 us each between two cores), and
// while one waits for the other's residual half it does the work that does not need it (its skip rows, the
// next layer's taps on queued inputs). Spin-waiting only pays while both threads hold a core: after
// kSlowWaits waits that outlast the spin budget within 128 steps (a busy machine), thread 0 goes on alone
// with the whole network (its own copy of it) for the rest of that call; the next call tries two again.
//
// Weight formats (float32 plans only, opt-in), smaller weights for a step bound by the bytes it streams; the
// inputs, products and sums stay float32, and so does everything else (gates, residual sums, draw, and the mel
// projection: a product over a block of steps, bound by its multiply-adds, which widening would only slow):
// - bf16: every matrix stored as bfloat16 pairs (two consecutive inputs of one output in 32 bits), widened to
//   float32 in registers by a mask and a shift (~3.3 MB per sample for the standard model).
// - fp16: every matrix stored as IEEE half floats (nearest even), widened to float32 in registers by the CPU's
//   own conversion (x86 F16C: VCVTPH2PS; ARM NEON: FCVTL); builds without one refuse fp16 (pw_f16() == 0).
//   The same bytes as bf16 with 3 more mantissa bits, and one conversion per vector instead of a mask or shift.
// - int8: every matrix but the output layer (h2) stored as int8 with a scale per output channel of the model's
//   matrix (weight-only quantisation), widened in registers (sign-extend + convert) and scaled once per output
//   (~1.9 MB per sample). The output layer stays float32: its errors move the output distribution directly
//   (int8 there alone cost pretrained:vocoder 0.18 bits per sample of KL from float32, the rest 2e-4).
//
// Vector width: the compile target's (kVecBytes, below); the tiles are sized to its register file.
//
// The "lpc_mixture" output (an LPCNet-style vocoder): each row keeps its decoded past s (the mu-law centres of
// its codes, 0 before t = 0) and the last excitation e_(t-1) = s_(t-1) - p_(t-1), in float64 as PyTorch keeps
// them (_LinearPrediction). Per step it predicts p_t = -sum_k a_k s_(t-k) with the coefficients of the step's
// mel frame, adds the embeddings of p_t's and e_(t-1)'s mu-law codes to the input, and draws the code from the
// mixture over the companded excitation around p_t (draw_predictive).
//
// Float32 uses a polynomial exp (Cephes, ~1 ulp) for tanh, sigmoid and the softmax; float64 uses libm, so
// float64 results equal PyTorch's to rounding (~1e-15) and the drawn codes are the same.

#include <time.h>
#if defined(__linux__)
#include <sched.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax() { _mm_pause(); }
#elif defined(__aarch64__)
#include <arm_neon.h>
static inline void cpu_relax() { asm volatile("yield" ::: "memory"); }
#else
static inline void cpu_relax() {}
#endif

#define PW_API extern "C" __attribute__((visibility("default")))

namespace {

constexpr int64_t kAlign = 64;  // bytes: a cache line (and an AVX-512 vector)

// The SIMD vector and register file of the target this file is compiled for (the compiler's target macros:
// -march=native picks this machine's). A vector type wider than the target's registers compiles, but each
// value then takes several registers and the microkernel's accumulators spill: the 64-byte vectors that suit
// AVX-512 ran the standard model at batch 1 at 5.6k samples/s as an AVX2 build on a Zen 5 (22k as AVX-512).
#if defined(__AVX512F__)
constexpr int kVecBytes = 64, kVecRegs = 32;  // 16 floats in each of 32 zmm
#define PW_ISA "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kVecBytes = 32, kVecRegs = 16;  // 8 floats in each of 16 ymm
#define PW_ISA "avx2"
#elif defined(__AVX__)
constexpr int kVecBytes = 32, kVecRegs = 16;
#define PW_ISA "avx"
#elif defined(__aarch64__) && defined(__ARM_NEON)
constexpr int kVecBytes = 16, kVecRegs = 32;  // 4 floats in each of 32 v registers
#define PW_ISA "neon"
#elif defined(__SSE2__)
constexpr int kVecBytes = 16, kVecRegs = 16;  // 4 floats in each of 16 xmm (x86-64-v1, -v2)
#define PW_ISA "sse"
#else
constexpr int kVecBytes = 16, kVecRegs = 16;  // the compiler's generic vectors (lowered to what the target has)
#define PW_ISA "generic"
#endif

template <class T> struct VT;
template <> struct VT<float> {
    typedef float V __attribute__((vector_size(kVecBytes)));
    typedef int32_t I __attribute__((vector_size(kVecBytes)));
    static constexpr int N = kVecBytes / 4;
};
template <> struct VT<double> {
    typedef double V __attribute__((vector_size(kVecBytes)));
    typedef int64_t I __attribute__((vector_size(kVecBytes)));
    static constexpr int N = kVecBytes / 8;
};

template <class T> static inline typename VT<T>::V vload(const T* p) {
    typename VT<T>::V v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
template <class T> static inline void vstore(T* p, typename VT<T>::V v) { std::memcpy(p, &v, sizeof v); }
template <class T> static inline typename VT<T>::V vsplat(T x) {
    return x - typename VT<T>::V{};  // x - 0 is x in every lane (also -0): compilers emit one broadcast
}

static inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }
static inline int64_t pos_mod(int64_t a, int64_t m) { int64_t r = a % m; return r < 0 ? r + m : r; }

template <class T> struct Buf {  // a 64-byte aligned, zeroed array
    T* p = nullptr;
    int64_t n = 0;
    Buf() = default;
    explicit Buf(int64_t count) { resize(count); }
    Buf(const Buf&) = delete;
    Buf& operator=(const Buf&) = delete;
    Buf(Buf&& o) noexcept : p(o.p), n(o.n) { o.p = nullptr; o.n = 0; }
    Buf& operator=(Buf&& o) noexcept { std::swap(p, o.p); std::swap(n, o.n); return *this; }
    ~Buf() { std::free(p); }
    void resize(int64_t count) {
        std::free(p);
        n = count;
        size_t bytes = (size_t)round_up(std::max<int64_t>(count, 1) * (int64_t)sizeof(T), kAlign);
        p = static_cast<T*>(std::aligned_alloc(kAlign, bytes));
        if (!p) throw std::bad_alloc();
        std::memset(p, 0, bytes);
    }
    T& operator[](int64_t i) { return p[i]; }
};

// ------------------------------------------------------------------------------------------ microkernel
// Y[b, 0 : OB*N] = Y0[b, 0 : OB*N] + sum_k X[b, k] * W[k, 0 : OB*N] for b < BB; W is one packed tile, (K, OB*N)
// row-major. Y0 is Y (accumulate) or where the sums start (a bias: row stride ld0, 0 for one row for all), so
// that a bias is not first copied into Y. The accumulators stay in registers. FMA latency (4 cycles) needs >= 8
// independent chains to keep two FMA pipes busy, so small blocks (BB*OB < 8) keep U partial sums over k (k mod
// U) and add them at the end.
template <class T, int BB, int OB>
static void mk(int64_t K, const T* __restrict W, const T* __restrict X, int64_t ldx, T* Y, int64_t ldy, const T* Y0,
               int64_t ld0) {
    using V = typename VT<T>::V;
    constexpr int N = VT<T>::N;
    constexpr int U = BB * OB >= 8 ? 1 : 8 / (BB * OB);
    V acc[U][BB][OB];
#pragma GCC unroll 16
    for (int b = 0; b < BB; ++b)
#pragma GCC unroll 16
        for (int o = 0; o < OB; ++o) {
            acc[0][b][o] = vload<T>(Y0 + b * ld0 + o * N);
#pragma GCC unroll 8
            for (int j = 1; j < U; ++j) acc[j][b][o] = V{};
        }
    int64_t k = 0;
    for (; k + U <= K; k += U) {
#pragma GCC unroll 8
        for (int j = 0; j < U; ++j) {
            const T* w = W + (k + j) * (OB * N);
#pragma GCC unroll 16
            for (int b = 0; b < BB; ++b) {
                V xb = vsplat<T>(X[b * ldx + k + j]);
#pragma GCC unroll 16
                for (int o = 0; o < OB; ++o) acc[j][b][o] += xb * vload<T>(w + o * N);
            }
        }
    }
    for (; k < K; ++k) {
        const T* w = W + k * (OB * N);
#pragma GCC unroll 16
        for (int b = 0; b < BB; ++b) {
            V xb = vsplat<T>(X[b * ldx + k]);
#pragma GCC unroll 16
            for (int o = 0; o < OB; ++o) acc[0][b][o] += xb * vload<T>(w + o * N);
        }
    }
#pragma GCC unroll 16
    for (int b = 0; b < BB; ++b)
#pragma GCC unroll 16
        for (int o = 0; o < OB; ++o) {
#pragma GCC unroll 8
            for (int j = 1; j < U; ++j) acc[0][b][o] += acc[j][b][o];
            vstore<T>(Y + b * ldy + o * N, acc[0][b][o]);
        }
}

constexpr int kMaxRows = 8;   // rows per microkernel call
constexpr int kMaxTile = 16;  // SIMD vectors per tile at one row; kMaxTileRows with more rows
constexpr int kMaxTileRows = 8;
// Default shapes, in registers: one row: a tile of kTile1 vectors (AVX-512: 16 of 32 zmm, a layer's 256 conv
// outputs in one pass; 16-register ISAs: 8, leaving room for the broadcast input and the weight loads); many
// rows: kTileRows vectors by kRowBlock rows (16 accumulators with 32 registers, 12 with 16). Measured on Zen 5
// (AVX-512 and x86-64-v3 builds), Zen 3 (AVX2) and Zen 4 (AVX-512 and x86-64-v3 builds).
constexpr int kTile1 = kVecRegs >= 32 ? 16 : 8;
constexpr int kTile1Int8 = kVecRegs >= 32 ? 8 : 4;  // int8 also holds each widened weight vector in a register
// 16-register ISAs, float32 weights: 3 vectors by 4 rows (12 accumulators, 3 weight vectors and a broadcast: 16
// registers; 7 loads per 12 multiply-adds). Batches split into 8 rows per thread, which 6-row blocks (2
// vectors) ran as 6 + 2; 4-row blocks of 3 vectors made 1.07-1.08x at batch 8 and 16 (old and new source
// alternating, medians of 8 paired rounds) and the same at 32 on a Zen 4's x86-64-v3 build (2026-12-04; the
// mel projection's 64-step blocks use these tiles too: 1.02x). Before that 6 rows of 2 vectors had replaced 4
// of 2 (Zen 3, AVX2, batch 16: 1.32x, 10 pairs). bf16, int8 and fp16 keep 2 vectors by 4 rows (each widened
// weight vector holds a register too: bf16 with 6 rows, or with 3 vectors, was no faster).
constexpr int kTileRows = kVecRegs >= 32 ? 2 : 3;
constexpr int kRowBlock = kVecRegs >= 32 ? 8 : 4;
constexpr int kTileRowsNarrow = 2;
constexpr int kRowBlockNarrow = kVecRegs >= 32 ? 8 : 4;  // bf16, int8, fp16

template <class T> using MkFn = void (*)(int64_t, const T*, const T*, int64_t, T*, int64_t, const T*, int64_t);

template <class T, int BB> static MkFn<T> pick_tile(int ob) {
    switch (ob) {
        case 1: return mk<T, BB, 1>;
        case 2: return mk<T, BB, 2>;
        case 3: return mk<T, BB, 3>;
        case 4: return mk<T, BB, 4>;
        case 5: return mk<T, BB, 5>;
        case 6: return mk<T, BB, 6>;
        case 7: return mk<T, BB, 7>;
        default: return mk<T, BB, 8>;
    }
}
template <class T> static MkFn<T> pick_wide(int ob) {  // one row, up to 16 vectors
    switch (ob) {
        case 9: return mk<T, 1, 9>;
        case 10: return mk<T, 1, 10>;
        case 11: return mk<T, 1, 11>;
        case 12: return mk<T, 1, 12>;
        case 13: return mk<T, 1, 13>;
        case 14: return mk<T, 1, 14>;
        case 15: return mk<T, 1, 15>;
        case 16: return mk<T, 1, 16>;
        default: return pick_tile<T, 1>(ob);
    }
}
template <class T> static MkFn<T> pick(int bb, int ob) {
    switch (bb) {
        case 1: return pick_wide<T>(ob);
        case 2: return pick_tile<T, 2>(ob);
        case 3: return pick_tile<T, 3>(ob);
        case 4: return pick_tile<T, 4>(ob);
        case 5: return pick_tile<T, 5>(ob);
        case 6: return pick_tile<T, 6>(ob);
        case 7: return pick_tile<T, 7>(ob);
        default: return pick_tile<T, 8>(ob);
    }
}

// A packed matrix: K inputs, M outputs (padded to a multiple of N), in tiles of `tile` vectors of outputs;
// tile j holds outputs [j*tile*N, ...) as a (K, width_j) row-major block, the blocks one after another.
template <class T> struct PMat {
    const T* data = nullptr;
    int64_t K = 0, M = 0, tile = 1;
    const uint32_t* pairs = nullptr;  // bf16: the same tiles as (K/2, width) bfloat16 pairs; data is then unused
    const uint16_t* half = nullptr;   // fp16: the same tiles as (K, width) half floats; data is then unused
    const int8_t* q = nullptr;        // int8: the same tiles as int8 weights (data is then unused), and
    const float* scale = nullptr;     // every output's scale (M): weight = q * scale
};

// ------------------------------------------------------------------------------------------ bf16 products
// Weight-only: a pair packs bfloat16(w_a) in its low 16 bits and bfloat16(w_b) in its high 16 bits (w_a: the
// weight of the even input), widened to float32 in registers (a mask and a shift); the inputs stay float32, so
// each product is exact in float32 and only the weights are rounded. (VDPBF16PS would also round the inputs to
// bfloat16: measured on pretrained:vocoder, that took the KL from float32 from 6e-5 to 1.2e-3 bits per sample,
// while widening cost ~6% at batch 1 on a Zen 5, where the step is bound by the weights' bytes.)
static inline uint32_t bf16_bits(float x) {  // round to nearest even (no NaNs reach here)
    uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

// As mk, on pairs: Y[b, 0 : OB*N] += sum_p X[b, 2p] W_lo[p, :] + X[b, 2p + 1] W_hi[p, :], P pairs.
template <int BB, int OB>
static void mkb(int64_t P, const uint32_t* __restrict W, const float* __restrict X, int64_t ldx,
                float* __restrict Y, int64_t ldy) {
    constexpr int N = VT<float>::N;
    constexpr int U = BB * OB >= 8 ? 1 : 8 / (BB * OB);
    using V = VT<float>::V;
    using I = VT<float>::I;
    const I hi_mask = I{} + (int32_t)0xffff0000u;
    auto widen = [](I bits) { V v; std::memcpy(&v, &bits, sizeof v); return v; };
    V acc[U][BB][OB];
#pragma GCC unroll 16
    for (int b = 0; b < BB; ++b)
#pragma GCC unroll 16
        for (int o = 0; o < OB; ++o) {
            acc[0][b][o] = vload<float>(Y + b * ldy + o * N);
#pragma GCC unroll 8
            for (int j = 1; j < U; ++j) acc[j][b][o] = V{};
        }
    auto step = [&](int j, int64_t q) __attribute__((always_inline)) {
        const uint32_t* w = W + q * (OB * N);
        V lo[OB], hi[OB];
#pragma GCC unroll 16
        for (int o = 0; o < OB; ++o) {
            I wb;
            std::memcpy(&wb, w + o * N, sizeof wb);
            hi[o] = widen(wb & hi_mask);
            lo[o] = widen(wb << 16);
        }
#pragma GCC unroll 16
        for (int b = 0; b < BB; ++b) {
            const V xlo = vsplat<float>(X[b * ldx + 2 * q]), xhi = vsplat<float>(X[b * ldx + 2 * q + 1]);
#pragma GCC unroll 16
            for (int o = 0; o < OB; ++o) {
                acc[j][b][o] += xlo * lo[o];
                acc[j][b][o] += xhi * hi[o];
            }
        }
    };
    int64_t p = 0;
    for (; p + U <= P; p += U) {
#pragma GCC unroll 8
        for (int j = 0; j < U; ++j) step(j, p + j);
    }
    for (; p < P; ++p) step(0, p);
#pragma GCC unroll 16
    for (int b = 0; b < BB; ++b)
#pragma GCC unroll 16
        for (int o = 0; o < OB; ++o) {
#pragma GCC unroll 8
            for (int j = 1; j < U; ++j) acc[0][b][o] += acc[j][b][o];
            vstore<float>(Y + b * ldy + o * N, acc[0][b][o]);
        }
}

// The microkernel of a family (Fam::fn<BB, OB>) for bb rows and ob vectors, the shapes pick() has: one row up
// to kMaxTile vectors, more rows up to kMaxTileRows.
template <class Fam, int BB, int... O> static typename Fam::Fn pick_row(int ob, std::integer_sequence<int, O...>) {
    static constexpr typename Fam::Fn table[] = {Fam::template fn<BB, O + 1>...};
    return table[std::min<int>(ob, (int)sizeof...(O)) - 1];
}
template <class Fam> static typename Fam::Fn pick_shape(int bb, int ob) {
    using Wide = std::make_integer_sequence<int, kMaxTile>;
    using Tile = std::make_integer_sequence<int, kMaxTileRows>;
    switch (bb) {
        case 1: return pick_row<Fam, 1>(ob, Wide{});
        case 2: return pick_row<Fam, 2>(ob, Tile{});
        case 3: return pick_row<Fam, 3>(ob, Tile{});
        case 4: return pick_row<Fam, 4>(ob, Tile{});
        case 5: return pick_row<Fam, 5>(ob, Tile{});
        case 6: return pick_row<Fam, 6>(ob, Tile{});
        case 7: return pick_row<Fam, 7>(ob, Tile{});
        default: return pick_row<Fam, 8>(ob, Tile{});
    }
}

struct PairKernels {  // mkb
    using Fn = void (*)(int64_t, const uint32_t*, const float*, int64_t, float*, int64_t);
    template <int BB, int OB> static constexpr Fn fn = mkb<BB, OB>;
};
static PairKernels::Fn pickb(int bb, int ob) { return pick_shape<PairKernels>(bb, ob); }

// ------------------------------------------------------------------------------------------ fp16 products
// IEEE half float of x, nearest even (as torch's float -> float16): overflow to infinity, subnormals kept.
// (F. Giesen's float_to_half_fast3_rtne; no NaNs reach here.)
static inline uint16_t fp16_bits(float x) {
    uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    const uint32_t sign = (u >> 16) & 0x8000u;
    u &= 0x7fffffffu;
    if (u >= 0x47800000u) return (uint16_t)(sign | 0x7c00u);  // >= 65536: infinity
    if (u < 0x38800000u) {  // below half's smallest normal (2^-14): a subnormal, rounded by a float addition
        float f;
        std::memcpy(&f, &u, sizeof f);
        f += 0.5f;  // 0.5's unit in the last place is half's subnormal step, 2^-24
        uint32_t r;
        std::memcpy(&r, &f, sizeof r);
        return (uint16_t)(sign | (r - 0x3f000000u));
    }
    const uint32_t odd = (u >> 13) & 1u;
    u += 0xc8000fffu + odd;  // rebias the exponent (15 - 127), round the 13 dropped bits to nearest even
    return (uint16_t)(sign | (u >> 13));
}

#if defined(__AVX512F__) || (defined(__AVX__) && defined(__F16C__)) || (defined(__aarch64__) && defined(__ARM_NEON))
#define PW_F16 1
// N half floats at p as float32 lanes, converted by the CPU.
static inline VT<float>::V widen_fp16(const uint16_t* p) {
    VT<float>::V out;
#if defined(__AVX512F__)
    const __m512 v = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
#elif defined(__AVX__)
    const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#else
    const float32x4_t v = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
#endif
    std::memcpy(&out, &v, sizeof out);
    return out;
}

#else
#define PW_F16 0
#endif

// ------------------------------------------------------------------------------------------ int8 products
// Weight-only quantisation: Y[b, 0 : OB*N] += scale[0 : OB*N] * sum_k X[b, k] * Q[k, 0 : OB*N], Q int8 (one
// tile, (K, OB*N) row-major, as mk's W). Each weight is widened to float32 in registers (sign-extend, convert:
// VPMOVSXBD + VCVTDQ2PS on x86); the products and sums are float32, and the scale is applied once at the end.
// N int8 at p as float32 lanes. GCC 12 lowers __builtin_convertvector from a vector of 8 int8 lane by lane
// (scalar sign extensions: 7x slower), hence the intrinsics where the target has them.
static inline VT<float>::V widen_int8(const int8_t* p) {
    using V = VT<float>::V;
    V out;
#if defined(__AVX512F__)
    const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
    std::memcpy(&out, &v, sizeof out);
#elif defined(__AVX2__)
    const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
    std::memcpy(&out, &v, sizeof out);
#elif defined(__SSE4_1__) && !defined(__AVX__)
    int32_t bits;
    std::memcpy(&bits, p, sizeof bits);
    const __m128 v = _mm_cvtepi32_ps(_mm_cvtepi8_epi32(_mm_cvtsi32_si128(bits)));
    std::memcpy(&out, &v, sizeof out);
#elif defined(__aarch64__) && defined(__ARM_NEON)
    int32_t bits;
    std::memcpy(&bits, p, sizeof bits);
    const int8x8_t b = vreinterpret_s8_s32(vset_lane_s32(bits, vdup_n_s32(0), 0));
    const float32x4_t v = vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(b))));
    std::memcpy(&out, &v, sizeof out);
#else
    for (int j = 0; j < VT<float>::N; ++j) out[j] = (float)p[j];
#endif
    return out;
}

// ------------------------------------------------------------------------------------------ widened weights
// The microkernel of the formats that widen one stored weight to one float32 lane (fp16, int8), as mk:
// Y[b, 0 : OB*N] += sum_k X[b, k] * widen(Q[k, 0 : OB*N]), Q one tile ((K, OB*N) row-major); with Wd::scaled
// (int8), the sums start at zero and Y += scale[0 : OB*N] * sum, the scale applied once at the end. The
// products and sums are float32.
struct Int8Weights {
    using E = int8_t;
    static constexpr bool scaled = true;
    static VT<float>::V widen(const E* p) { return widen_int8(p); }
};
#if PW_F16
struct HalfWeights {
    using E = uint16_t;
    static constexpr bool scaled = false;
    static VT<float>::V widen(const E* p) { return widen_fp16(p); }
};
#endif

template <class Wd, int BB, int OB>
static void mkw(int64_t K, const typename Wd::E* __restrict W, const float* __restrict scale,
                const float* __restrict X, int64_t ldx, float* __restrict Y, int64_t ldy) {
    using V = VT<float>::V;
    constexpr int N = VT<float>::N;
    constexpr int U = BB * OB >= 8 ? 1 : 8 / (BB * OB);
    V acc[U][BB][OB];
#pragma GCC unroll 16
    for (int b = 0; b < BB; ++b)
#pragma GCC unroll 16
        for (int o = 0; o < OB; ++o) {
            acc[0][b][o] = Wd::scaled ? V{} : vload<float>(Y + b * ldy + o * N);
#pragma GCC unroll 8
            for (int j = 1; j < U; ++j) acc[j][b][o] = V{};
        }
    auto step = [&](int j, int64_t k) __attribute__((always_inline)) {
        const typename Wd::E* w = W + k * (OB * N);
        if constexpr (BB == 1) {  // each widened vector used once: widen it where it is used (one register)
            const V xb = vsplat<float>(X[k]);
#pragma GCC unroll 16
            for (int o = 0; o < OB; ++o) acc[j][0][o] += xb * Wd::widen(w + o * N);
        } else {
            V wf[OB];
#pragma GCC unroll 16
            for (int o = 0; o < OB; ++o) wf[o] = Wd::widen(w + o * N);
#pragma GCC unroll 16
            for (int b = 0; b < BB; ++b) {
                const V xb = vsplat<float>(X[b * ldx + k]);
#pragma GCC unroll 16
                for (int o = 0; o < OB; ++o) acc[j][b][o] += xb * wf[o];
            }
        }
    };
    int64_t k = 0;
    for (; k + U <= K; k += U) {
#pragma GCC unroll 8
        for (int j = 0; j < U; ++j) step(j, k + j);
    }
    for (; k < K; ++k) step(0, k);
#pragma GCC unroll 16
    for (int b = 0; b < BB; ++b)
#pragma GCC unroll 16
        for (int o = 0; o < OB; ++o) {
#pragma GCC unroll 8
            for (int j = 1; j < U; ++j) acc[0][b][o] += acc[j][b][o];
            if constexpr (Wd::scaled)
                vstore<float>(Y + b * ldy + o * N, vload<float>(Y + b * ldy + o * N) +
                                                       acc[0][b][o] * vload<float>(scale + o * N));
            else
                vstore<float>(Y + b * ldy + o * N, acc[0][b][o]);
        }
}

template <class Wd> struct WidenedKernels {  // mkw
    using Fn = void (*)(int64_t, const typename Wd::E*, const float*, const float*, int64_t, float*, int64_t);
    template <int BB, int OB> static constexpr Fn fn = mkw<Wd, BB, OB>;
};

// gemm_part on widened weights Q (W.half or W.q, in W's tiles): inputs [k0, k0 + kn).
template <class Wd>
static void gemm_widened(const PMat<float>& W, const typename Wd::E* Q, int64_t k0, int64_t kn, int64_t rows,
                         int row_block, const float* X, int64_t ldx, float* Y, int64_t ldy) {
    constexpr int N = VT<float>::N;
    const int64_t mv = W.M / N;
    for (int64_t v0 = 0; v0 < mv; v0 += W.tile) {
        const int ob = (int)std::min<int64_t>(W.tile, mv - v0);
        for (int64_t r = 0; r < rows; r += row_block) {
            const int bb = (int)std::min<int64_t>(row_block, rows - r);
            pick_shape<WidenedKernels<Wd>>(bb, ob)(kn, Q + k0 * ob * N, Wd::scaled ? W.scale + v0 * N : nullptr,
                                                   X + r * ldx, ldx, Y + r * ldy + v0 * N, ldy);
        }
        Q += W.K * ob * N;
    }
}

// gemm_part on bf16 pairs: inputs [k0, k0 + kn), both even.
static void gemm_pairs(const PMat<float>& W, int64_t k0, int64_t kn, int64_t rows, int row_block, const float* X,
                       int64_t ldx, float* Y, int64_t ldy) {
    constexpr int N = VT<float>::N;
    const int64_t np = kn / 2, mv = W.M / N;
    const uint32_t* wp = W.pairs;
    for (int64_t v0 = 0; v0 < mv; v0 += W.tile) {
        const int ob = (int)std::min<int64_t>(W.tile, mv - v0);
        for (int64_t r = 0; r < rows; r += row_block) {
            const int bb = (int)std::min<int64_t>(row_block, rows - r);
            pickb(bb, ob)(np, wp + k0 / 2 * ob * N, X + r * ldx, ldx, Y + r * ldy + v0 * N, ldy);
        }
        wp += W.K / 2 * ob * N;
    }
}
// Y (rows, M) += X (rows, kn) . W[k0 : k0 + kn, :]: a range of the packed matrix's inputs (X holds just those).
// With Y0: Y = Y0 + X . W[...] instead (Y0's rows ld0 apart; 0: one row, e.g. a bias, for every row).
template <class T>
static void gemm_part(const PMat<T>& W, int64_t k0, int64_t kn, int64_t rows, int row_block, const T* X,
                      int64_t ldx, T* Y, int64_t ldy, const T* Y0 = nullptr, int64_t ld0 = 0) {
    constexpr int N = VT<T>::N;
    if constexpr (std::is_same_v<T, float>) {
        if ((W.pairs || W.half || W.q) && Y0) {  // the widening kernels accumulate into Y: start it at Y0
            for (int64_t r = 0; r < rows; ++r) std::memcpy(Y + r * ldy, Y0 + r * ld0, W.M * sizeof(T));
            Y0 = nullptr;
        }
        if (W.pairs) return gemm_pairs(W, k0, kn, rows, row_block, X, ldx, Y, ldy);
        if (W.half) {
#if PW_F16
            return gemm_widened<HalfWeights>(W, W.half, k0, kn, rows, row_block, X, ldx, Y, ldy);
#else
            throw std::logic_error("fp16 weights need hardware conversion");  // create() refuses them first
#endif
        }
        if (W.q) return gemm_widened<Int8Weights>(W, W.q, k0, kn, rows, row_block, X, ldx, Y, ldy);
    }
    if (!Y0) {
        Y0 = Y;
        ld0 = ldy;
    }
    const int64_t mv = W.M / N;
    const T* wp = W.data;
    for (int64_t v0 = 0; v0 < mv; v0 += W.tile) {
        const int ob = (int)std::min<int64_t>(W.tile, mv - v0);
        for (int64_t r = 0; r < rows; r += row_block) {
            const int bb = (int)std::min<int64_t>(row_block, rows - r);
            pick<T>(bb, ob)(kn, wp + k0 * ob * N, X + r * ldx, ldx, Y + r * ldy + v0 * N, ldy, Y0 + r * ld0 + v0 * N,
                            ld0);
        }
        wp += W.K * ob * N;
    }
}

// Y (rows, M) += X (rows, K) . W, X and Y with row strides ldx, ldy (with Y0: Y = Y0 + X . W, as gemm_part).
template <class T>
static void gemm(const PMat<T>& W, int64_t rows, int row_block, const T* X, int64_t ldx, T* Y, int64_t ldy,
                 const T* Y0 = nullptr, int64_t ld0 = 0) {
    gemm_part<T>(W, 0, W.K, rows, row_block, X, ldx, Y, ldy, Y0, ld0);
}

// ------------------------------------------------------------------------------------------ nonlinearities
// x clamped to [lo, hi] lane by lane: x > hi ? hi : x, then x < lo ? lo : x, as x86's MINPS / MAXPS compute them
// (one instruction each; GCC lowers the ternaries on vectors to a compare and a blend, a longer chain), with the
// same results. NEON's FMIN / FMAX differ only for NaNs and signed zeros, which these clamps never see.
static inline VT<float>::V vclamp(VT<float>::V x, VT<float>::V lo, VT<float>::V hi) {
    using V = VT<float>::V;
#if defined(__AVX512F__)
    return (V)_mm512_max_ps((__m512)lo, _mm512_min_ps((__m512)hi, (__m512)x));
#elif defined(__AVX__)
    return (V)_mm256_max_ps((__m256)lo, _mm256_min_ps((__m256)hi, (__m256)x));
#elif defined(__SSE2__)
    return (V)_mm_max_ps((__m128)lo, _mm_min_ps((__m128)hi, (__m128)x));
#elif defined(__aarch64__) && defined(__ARM_NEON)
    return (V)vmaxq_f32((float32x4_t)lo, vminq_f32((float32x4_t)hi, (float32x4_t)x));
#else
    x = x > hi ? hi : x;
    return x < lo ? lo : x;
#endif
}

static inline VT<float>::V exp_ps(VT<float>::V x) {  // Cephes expf: ~1 ulp on [-88.4, 88.4]
    using V = VT<float>::V;
    using I = VT<float>::I;
    const V hi = vsplat<float>(88.3762626647949f), lo = vsplat<float>(-88.3762626647949f);
    x = vclamp(x, lo, hi);
    V fx = x * 1.44269504088896341f;
    const V magic = vsplat<float>(12582912.0f);  // 1.5 * 2^23: adding and subtracting rounds to nearest
    fx = (fx + magic) - magic;
    V r = x - fx * 0.693359375f;
    r = r - fx * -2.12194440e-4f;
    V y = vsplat<float>(1.9875691500E-4f);
    y = y * r + 1.3981999507E-3f;
    y = y * r + 8.3334519073E-3f;
    y = y * r + 4.1665795894E-2f;
    y = y * r + 1.6666665459E-1f;
    y = y * r + 5.0000001201E-1f;
    y = y * (r * r) + r + 1.0f;
    I n = __builtin_convertvector(fx, I);
    I bits = (n + 127) << 23;
    V p2;
    std::memcpy(&p2, &bits, sizeof p2);
    return y * p2;
}

// z[0:G] = tanh(h[0:G]) * sigmoid(h[PG:PG+G]); h holds the filter half at 0 and the gate half at PG. Four
// vectors at a time: each one's exps and divisions are a long chain, and the out-of-order window holds more of
// them side by side when they sit side by side in the code (with vclamp: 31 -> 22 cycles a vector on a
// Zen 4's x86-64-v3 build, the same bits). When G fills whole vectors z takes them directly, else via tmp.
static void gate(const float* h, int64_t PG, int64_t G, float* z, float* tmp) {
    using V = VT<float>::V;
    constexpr int N = VT<float>::N, U = 4;
    const V one = vsplat<float>(1.0f), two = vsplat<float>(2.0f);
    float* out = G == PG ? z : tmp;
    auto mix = [&](V e, V f) { return (one - two / (e + one)) * (one / (one + f)); };  // e = exp(2a), f = exp(-b)
    int64_t v = 0;
    for (; v + U * N <= PG; v += U * N) {
        V a[U], b[U], e[U], f[U];
#pragma GCC unroll 4
        for (int j = 0; j < U; ++j) {
            a[j] = vload<float>(h + v + j * N);
            b[j] = vload<float>(h + PG + v + j * N);
        }
#pragma GCC unroll 4
        for (int j = 0; j < U; ++j) {
            e[j] = exp_ps(a[j] + a[j]);
            f[j] = exp_ps(-b[j]);
        }
#pragma GCC unroll 4
        for (int j = 0; j < U; ++j) vstore<float>(out + v + j * N, mix(e[j], f[j]));
    }
    for (; v < PG; v += N) {
        const V a = vload<float>(h + v), b = vload<float>(h + PG + v);
        vstore<float>(out + v, mix(exp_ps(a + a), exp_ps(-b)));
    }
    if (out == tmp) std::memcpy(z, tmp, G * sizeof(float));
}
static void gate(const double* h, int64_t PG, int64_t G, double* z, double*) {
    for (int64_t j = 0; j < G; ++j) z[j] = std::tanh(h[j]) * (1.0 / (1.0 + std::exp(-h[PG + j])));
}

// The probability floor (LPCNet): every probability tmp[j] / s less `floor`, negatives to zero; tmp then holds
// them and the new total is returned (the caller divides by it). floor = 0 leaves tmp and s alone.
template <class T> static T apply_floor(T* tmp, int64_t C, T s, T floor) {
    if (!(floor > T(0))) return s;
    T total = T(0);
    for (int64_t j = 0; j < C; ++j) { tmp[j] = std::max(tmp[j] / s - floor, T(0)); total += tmp[j]; }
    return total;
}

// Inverse-CDF draw from softmax(logits[0:C] / temperature) at u, as distributions.categorical_sample:
// the first index whose CDF reaches u, clamped to C - 1; with a probability floor, from the floored and
// renormalised probabilities. `tmp` holds >= round_up(C, N) values.
static int64_t draw(const float* logits, int64_t C, float temperature, float u, float* tmp, float floor = 0.0f) {
    constexpr int N = VT<float>::N;
    float m = -INFINITY;
    for (int64_t j = 0; j < C; ++j) { tmp[j] = logits[j] / temperature; m = std::max(m, tmp[j]); }
    const int64_t PC = round_up(C, N);
    for (int64_t j = C; j < PC; ++j) tmp[j] = m;
    for (int64_t v = 0; v < PC; v += N) vstore<float>(tmp + v, exp_ps(vload<float>(tmp + v) - m));
    float s = 0.0f;
    for (int64_t j = 0; j < C; ++j) s += tmp[j];
    s = apply_floor(tmp, C, s, floor);
    float cdf = 0.0f;
    for (int64_t j = 0; j < C; ++j) {
        cdf += tmp[j] / s;
        if (!(cdf < u)) return j;
    }
    return C - 1;
}
static int64_t draw(const double* logits, int64_t C, double temperature, double u, double* tmp,
                    double floor = 0.0) {
    double m = -INFINITY;
    for (int64_t j = 0; j < C; ++j) { tmp[j] = logits[j] / temperature; m = std::max(m, tmp[j]); }
    double s = 0.0;
    for (int64_t j = 0; j < C; ++j) { tmp[j] = std::exp(tmp[j] - m); s += tmp[j]; }
    s = apply_floor(tmp, C, s, floor);
    double cdf = 0.0;
    for (int64_t j = 0; j < C; ++j) {
        cdf += tmp[j] / s;
        if (!(cdf < u)) return j;
    }
    return C - 1;
}

// The logistic-mixture output (LogisticMixtureOutput, one channel): params = [weights K | means K | log-scales
// K]; code v is the bin centred on 2v/(L-1) - 1, the first and last bins reaching to -inf and +inf. The draw is
// the inverse CDF at u of the exact bin probabilities, as pixelwave.distributions draws it (there: log-space bin
// masses, softmax, cumsum). Here the mixture's CDF at the L - 1 inner bin edges is summed directly,
// F(v) = sum_k pi_k sigmoid((edge_v - mean_k) / scale_k), the same numbers up to rounding; at temperature T != 1
// the bin masses F(v) - F(v-1) go through log and the softmax(. / T) of `draw`. cdf, tmp: >= round_up(L, N) + N.
static inline void sigmoid_edges(float* cdf, int64_t n, float c0, float step, float w) {
    using V = VT<float>::V;
    constexpr int N = VT<float>::N;
    V ramp;
    for (int j = 0; j < N; ++j) ramp[j] = (float)j;
    const V one = vsplat<float>(1.0f);
    for (int64_t v = 0; v < n; v += N) {  // cdf is padded to a multiple of N; the tail lanes are not read
        const V e = vsplat<float>(c0) + (vsplat<float>((float)v) + ramp) * step;
        vstore<float>(cdf + v, vload<float>(cdf + v) + w / (one + exp_ps(-e)));
    }
}
static inline void sigmoid_edges(double* cdf, int64_t n, double c0, double step, double w) {
    for (int64_t v = 0; v < n; ++v) cdf[v] += w / (1.0 + std::exp(-(c0 + (double)v * step)));
}

// The draw at temperature T != 1 from the mixture's CDF at the L - 1 inner edges cdf[0 .. L-2]: the code
// masses F(v) - F(v-1) through log and the softmax(. / T) of `draw`. tmp: >= round_up(L, N) values.
template <class T> static int64_t draw_tempered(T* cdf, int64_t L, T temperature, T u, T* tmp) {
    T below = 0;
    for (int64_t v = 0; v < L; ++v) {
        const T upto = v + 1 < L ? cdf[v] : T(1);
        tmp[v] = std::log(std::max(upto - below, T(1e-30)));
        below = upto;
    }
    return draw(tmp, L, temperature, u, cdf);
}

template <class T>
static int64_t draw_mixture(const T* prm, int64_t K, int64_t L, T temperature, T u, T* cdf, T* tmp) {
    constexpr int N = VT<T>::N;
    T m = -INFINITY;
    for (int64_t k = 0; k < K; ++k) m = std::max(m, prm[k]);
    T total = 0;
    for (int64_t k = 0; k < K; ++k) total += std::exp(prm[k] - m);
    const T half = T(1) / T(L - 1);
    std::memset(cdf, 0, round_up(L, N) * sizeof(T));
    for (int64_t k = 0; k < K; ++k) {
        const T inv = std::exp(-std::max(prm[2 * K + k], T(-7)));  // LOG_SCALE_MIN
        sigmoid_edges(cdf, L - 1, (half - T(1) - prm[K + k]) * inv, T(2) * half * inv,
                      std::exp(prm[k] - m) / total);
    }
    if (temperature == T(1)) {
        for (int64_t v = 0; v + 1 < L; ++v)
            if (!(cdf[v] < u)) return v;
        return L - 1;
    }
    return draw_tempered(cdf, L, temperature, u, tmp);
}

// ------------------------------------------------------------------------------------------ lpc_mixture
// mu-law companding on [-1, 1] as PredictiveMixtureOutput._compand and audio.mu_law_encode compute it (float64,
// the same operations in the same order); log1p_mu = log1p(mu).
static inline double compand(double v, double mu, double log1p_mu) {
    const double sign = v > 0 ? 1.0 : v < 0 ? -1.0 : 0.0;
    return sign * std::log1p(mu * std::fabs(v)) / log1p_mu;
}
static inline int64_t mu_law_code(double x, double mu, double log1p_mu) {
    const double y = compand(std::min(1.0, std::max(-1.0, x)), mu, log1p_mu);
    return (int64_t)std::floor((y + 1.0) / 2.0 * mu + 0.5);
}

// The mixture's components from params [weights K | means K | log-scales K] into comp = [pi | mean | 1/scale],
// each PK = round_up(K, N) long; the padding has pi = 0, so it adds nothing to a CDF.
template <class T> static void mixture_components(const T* prm, int64_t K, int64_t PK, T* comp) {
    T m = -INFINITY;
    for (int64_t k = 0; k < K; ++k) m = std::max(m, prm[k]);
    T total = 0;
    for (int64_t k = 0; k < K; ++k) total += std::exp(prm[k] - m);
    std::memset(comp, 0, 3 * PK * sizeof(T));
    for (int64_t k = 0; k < K; ++k) {
        comp[k] = std::exp(prm[k] - m) / total;
        comp[PK + k] = prm[K + k];
        comp[2 * PK + k] = std::exp(-std::max(prm[2 * K + k], T(-7)));  // LOG_SCALE_MIN
    }
}

// The mixture's CDF at z: sum_k pi_k sigmoid((z - mean_k) / scale_k); float32 with the components in lanes.
static inline float mixture_cdf(const float* comp, int64_t, int64_t PK, float z) {
    using V = VT<float>::V;
    constexpr int N = VT<float>::N;
    const V one = vsplat<float>(1.0f);
    V acc = V{};
    for (int64_t k = 0; k < PK; k += N) {
        const V e = (vsplat<float>(z) - vload<float>(comp + PK + k)) * vload<float>(comp + 2 * PK + k);
        acc += vload<float>(comp + k) / (one + exp_ps(-e));
    }
    float s = 0.0f;
    for (int j = 0; j < N; ++j) s += acc[j];
    return s;
}
static inline double mixture_cdf(const double* comp, int64_t K, int64_t PK, double z) {
    double s = 0.0;
    for (int64_t k = 0; k < K; ++k) s += comp[k] / (1.0 + std::exp(-((z - comp[PK + k]) * comp[2 * PK + k])));
    return s;
}

// cdf[v] += w sigmoid((z[v] - mean) * inv) for v < n; z and cdf padded to a multiple of N.
static inline void sigmoid_at(float* cdf, const float* z, int64_t n, float mean, float inv, float w) {
    using V = VT<float>::V;
    constexpr int N = VT<float>::N;
    const V one = vsplat<float>(1.0f);
    for (int64_t v = 0; v < n; v += N) {
        const V e = (vload<float>(z + v) - mean) * inv;
        vstore<float>(cdf + v, vload<float>(cdf + v) + w / (one + exp_ps(-e)));
    }
}
static inline void sigmoid_at(double* cdf, const double* z, int64_t n, double mean, double inv, double w) {
    for (int64_t v = 0; v < n; ++v) cdf[v] += w / (1.0 + std::exp(-((z[v] - mean) * inv)));
}

// The "lpc_mixture" draw (PredictiveMixtureOutput.sample): the mixture describes the companded excitation, so
// code c covers [compand(edges[c] - shift), compand(edges[c+1] - shift)], the first and last codes reaching to
// -inf and +inf, and the CDF at code c's top edge, F(c) = cdf(compand(edges[c+1] - shift)), is non-decreasing
// in c. The edges are companded in float64 and then rounded to T, as PyTorch rounds them to the params' dtype.
// At temperature 1 the code is the first c with F(c) >= u (categorical_sample's rule on the exact masses), found
// by bisection over c: ~log2(L) values of F of K sigmoids each, where a scan evaluates all L - 1 (K (L - 1)
// sigmoids: 2,550 per sample for 256 codes and 10 logistics, more than a small network costs). Wherever the
// computed F is non-decreasing (libm's exp and log1p in float64), bisection and scan find the same c. At other
// temperatures every code's mass is needed: all L - 1 edges, then draw_tempered.
// comp: >= 3 round_up(K, N); cdf, tmp: >= round_up(L, N) + N.
template <class T>
static int64_t draw_predictive(const T* prm, int64_t K, int64_t L, const double* edges, double shift, double mu,
                               double log1p_mu, T temperature, T u, T* comp, T* cdf, T* tmp) {
    constexpr int N = VT<T>::N;
    const int64_t PK = round_up(K, N);
    mixture_components(prm, K, PK, comp);
    auto top = [&](int64_t c) { return (T)compand(edges[c + 1] - shift, mu, log1p_mu); };
    if (temperature == T(1)) {
        int64_t lo = 0, hi = L - 1;  // the code is in [lo, hi]: F(lo - 1) < u, and F(hi) >= u or hi = L - 1
        while (lo < hi) {
            const int64_t mid = lo + (hi - lo) / 2;
            if (!(mixture_cdf(comp, K, PK, top(mid)) < u)) hi = mid;
            else lo = mid + 1;
        }
        return lo;
    }
    const int64_t n = L - 1, PN = round_up(n, N);
    for (int64_t c = 0; c < PN; ++c) tmp[c] = c < n ? top(c) : T(0);
    std::memset(cdf, 0, PN * sizeof(T));
    for (int64_t k = 0; k < K; ++k) sigmoid_at(cdf, tmp, n, comp[PK + k], comp[2 * PK + k], comp[k]);
    return draw_tempered(cdf, L, temperature, u, tmp);
}

}  // namespace

// ------------------------------------------------------------------------------------------ the plan
// Everything the caller passes, in the model's own (torch) layouts, contiguous, all of dtype T.
struct PwDesc {
    int64_t layers, residual, gate, skip, out_channels, kernel, batch, threads;
    int64_t tile, row_block;  // SIMD vectors per weight tile, rows per microkernel call (0: defaults)
    int64_t initial_code;      // the code before t = 0 (silence)
    int64_t patience;          // split mode: slow waits in a window of kSlowWindow steps before one thread goes
                               // on alone for the rest of the run call (0: default,
                               // < 0: never; for tests)
    int64_t split_limit;       // split mode: steps per run before one thread goes on alone (0: no limit; tests)
    const int64_t* dilations;  // (L,)
    const void* emb;           // (levels, R)
    const void* conv_w;        // (L, 2G, R, k)
    const void* res_w;         // (L-1, R, G)
    const void* res_b;         // (L-1, R)
    const void* skip_w;        // (L, S, G)
    const void* skip_b;        // (S,): the layers' skip biases, summed
    const void* h1_w;          // (S, S)
    const void* h1_b;          // (S,)
    const void* h2_w;          // (C, S)
    const void* h2_b;          // (C,)
    const void* init_states;   // (B, L, R): each layer's input after endless silence, the queues' fill
    const void* static_bias;   // (B, L, 2G): conv bias (+ the speaker's V h), the same at every step
    int64_t cond_channels;     // mel conditioning: channels of the upsampled features (0: none)
    const void* cond_w;        // (L*2G, cond_channels): every layer's 1x1 projection, stacked
    const void* cond_b;        // (L*2G,)
    int64_t format;            // float32 plans' weights: 0 float32; 1 bfloat16 (needs R, S and each part's gate
                               // units even); 2 int8 with a scale per output channel; 3 IEEE half floats
                               // (builds with hardware conversion only: pw_f16())
    int64_t mixtures;          // 0: categorical output (C = levels logits); K: logistic mixture (C = 3K params)
    int64_t levels;            // the codes' range (the mixture's bins)
    int64_t lpc_order;         // "lpc_mixture" (with mixtures = K): p taps of linear prediction; 0: another output
    int64_t lpc_frames;        // F: frames of coefficients; sample t uses frame min(F - 1, (t + hop/2) / hop)
    int64_t lpc_hop;           // samples per frame
    const double* lpc;         // (B, F, p): every frame's a_1 .. a_p
    const void* prediction_emb;  // (levels, R): the embedding of the prediction p_t's mu-law code
    const void* excitation_emb;  // (levels, R): the embedding of the last excitation e_(t-1)'s mu-law code
    const double* edges;       // (levels + 1,): the codes' bins in the signal (linear)
    const double* centres;     // (levels,): every code's decoded value
    // The pitch lag (WaveNet pitch_lag; 0 lag_steps: none): step t of row b adds lag_voicing[b, t] times the
    // embedding of the mu-law code of (1 - f) s_(t-n) + f s_(t-n-1), n = lag_n[b, t], f = lag_frac[b, t], s the
    // decoded codes (lag_values), lag_silence before t = 0.
    int64_t lag_steps;         // the steps the arrays cover (B, lag_steps)
    const int64_t* lag_n;      // (B, lag_steps) >= 1
    const double* lag_frac;    // (B, lag_steps) in [0, 1)
    const double* lag_voicing;  // (B, lag_steps)
    const void* lag_emb;       // (levels, R)
    const double* lag_values;  // (levels,): every code's decoded value
    double lag_silence;        // the decoded value before t = 0
};

namespace {

template <class T> struct Part {  // the weights one thread multiplies by
    int64_t g0 = 0, gp = 0, PG = 0;  // gate units [g0, g0 + gp); h row = [filter PG | gate PG]
    int64_t s0 = 0, sp = 0;          // head-1 outputs [s0, s0 + sp)
    int64_t c0 = 0, cp = 0;          // logits [c0, c0 + cp)
    Buf<T> arena, cond_arena;
    Buf<uint32_t> pairs;              // bf16: the arena's matrices as pairs, same order (the arena freed)
    Buf<uint16_t> halves;             // fp16: the arena's matrices as half floats, same order (the arena freed)
    Buf<int8_t> qarena;               // int8: the arena's matrices as int8, same order (the arena freed),
    Buf<float> scales;                // and every packed output's scale, matrix after matrix;
    Buf<float> h2_keep;               // the output layer, which stays float32
    std::vector<PMat<T>> tap, res;
    PMat<T> skip, h1, h2;
    PMat<T> cond;  // (cond_channels, L * 2PG): the mel projections of this part's units, in h's layout
};

template <class T> struct Ctx {  // one thread's rows, workspace and generation state
    const Part<T>* part = nullptr;
    int64_t row0 = 0, nb = 0;
    Buf<T> own_queues, xin, h, z, sk, hid, logits, tmp, mix;  // mix: the mixture draw's CDF, bins, components
    Buf<T> sbias;    // (nb, L * 2PG): the static bias (+ cond_b) of this part's units, in h's layout
    Buf<T> cbias;    // (blk, nb, L * 2PG): sbias + the mel projections of a block of steps
    Buf<T> xcond;    // (blk * nb, cond_channels): the block's upsampled features, gathered
    int64_t blk = 0, blk_start = -1, blk_len = 0;  // the steps [blk_start, + blk_len) in cbias
    std::vector<int64_t> own_code;
    T* queues = nullptr;     // (per layer i, at qoff[i]: (nb, span_i, R)); own_queues or another context's
    int64_t* code = nullptr;  // (nb,) the previous codes; own_code or another context's
    // "lpc_mixture": per row [e_(t-1), s_(t-1), .., s_(t-p)]; own_lpc or another context's; shift: p_t per row
    Buf<double> own_lpc, shift;
    double* lpc_state = nullptr;
    // pitch lag: per row the last lag_span decoded samples, s_t at t % lag_span; own_lag or another context's
    Buf<double> own_lag;
    double* lag_state = nullptr;
    std::vector<int64_t> qoff;
    int64_t ldx = 0, ldh = 0, ldz = 0, lds = 0, ldc = 0;
};

struct alignas(64) Seq {
    std::atomic<int64_t> v{0};
    char pad[64 - sizeof(std::atomic<int64_t>)];
};

// Split mode stops (for the rest of a run call) after this many waits that outlasted the spin budget (~40 us)
// within one window of kSlowWindow steps: the two threads are not running at the same time (a busy machine),
// and one thread alone is then faster. A preemption now and then (a few ms) costs one such wait; sustained
// contention costs one per exchange (L + 2 per step). Counted per window, not per run call: on a quiet 2-vCPU
// VM (AMD EPYC Zen 3) the host preempts a vCPU every ~16 ms or so, which ended split mode ~1,700 steps into the
// average 4,096-step call (split share 42% for float32), while those waits cost ~0.3% of the time. Paired A/B
// there, standard model, batch 1, default settings: float32 1.23x, bf16 1.11x (medians of 6 pairs).
constexpr int kSlowWaits = 8;
constexpr int kSlowWindow = 128;
constexpr int kWarmSteps = 16;  // not counted: the second thread starting, its weights coming into its caches
constexpr int kSpins = 2000;

template <class T> struct Plan {
    int64_t L, R, G, S, C, k, B, threads, row_block, Cm;
    int64_t K = 0, levels = 0;  // logistic-mixture output: K components over `levels` bins (K = 0: categorical)
    int64_t lpc_p = 0, lpc_F = 0, lpc_hop = 1;  // "lpc_mixture": prediction taps (0: another output), frames, hop
    double mu = 0, log1p_mu = 0;                // its mu-law: levels - 1 and log1p of it
    Buf<double> lpc, edges, centres;            // (B, F, p), (levels + 1,), (levels,)
    Buf<T> pemb, eemb;                          // (levels, R) each: the prediction's, the excitation's embeddings
    int64_t lag_T = 0, lag_span = 0;            // pitch lag: steps of its arrays (0: none), history per row
    Buf<int64_t> lag_n;                         // (B, lag_T)
    Buf<double> lag_frac, lag_voicing, lag_values;  // (B, lag_T), (B, lag_T), (levels,)
    Buf<T> lag_emb;                             // (levels, R)
    bool bf16 = false, int8 = false, fp16 = false;  // the weights' format (float32 plans): bfloat16 pairs, int8
                                                   // + scales, half floats
    Buf<float> conv_scale, res_scale, skip_scale, h1_scale;  // int8: per output channel
    bool split;  // batch 1 on two threads: contexts 0 and 1 split the units; context 2 runs alone
    bool peer_stale = false;  // context 1's copy of the state is behind context 0's (after a solo stretch)
    std::vector<int64_t> dil, span;  // span: (k-1)*d, a layer's queue length
    Buf<T> emb, res_b, skip_b, h1_b, h2_b;
    std::vector<Part<T>> parts;
    std::vector<Ctx<T>> ctx;
    // split mode: exchange slots [parity][part] and one sequence counter per thread
    Buf<T> ex_r, ex_sk, ex_hid, ex_log;
    int64_t PR = 0, PS = 0, PC = 0;
    Seq seq[2];
    int64_t nex[2] = {0, 0};
    int64_t patience = kSlowWaits, split_limit = 0;
    std::atomic<int64_t> slow{0}, stop_at{-1};
    int64_t split_steps = 0, solo_steps = 0;  // statistics, per plan
    std::atomic<int64_t> cpu_ns{0};           // CPU time of the generating threads (spinning included)
};

// Pack a (K, M) matrix given by get(k, m) with padded column count Mp (columns m >= M are zero) into dst.
template <class T, class F>
static T* pack(T* dst, PMat<T>& out, int64_t K, int64_t Mp, int64_t tile, F get) {
    constexpr int N = VT<T>::N;
    out.data = dst;
    out.K = K;
    out.M = Mp;
    out.tile = tile;
    const int64_t mv = Mp / N;
    for (int64_t v0 = 0; v0 < mv; v0 += tile) {
        const int64_t w = std::min<int64_t>(tile, mv - v0) * N;
        for (int64_t kk = 0; kk < K; ++kk)
            for (int64_t j = 0; j < w; ++j) dst[kk * w + j] = get(kk, v0 * N + j);
        dst += K * w;
    }
    return dst;
}

// Point m at an int8 copy of its tiles, written at q, with output m's scale scale_of(m) (0: padding) written
// at sc; q and sc advance past them. Each weight becomes nearbyint(w / scale), in [-127, 127].
template <class F> static void quantize_up(int8_t*& q, float*& sc, PMat<float>& m, F scale_of) {
    constexpr int N = VT<float>::N;
    for (int64_t j = 0; j < m.M; ++j) sc[j] = scale_of(j);
    const float* src = m.data;
    const int64_t mv = m.M / N;
    m.q = q;
    m.scale = sc;
    for (int64_t v0 = 0; v0 < mv; v0 += m.tile) {
        const int64_t w = std::min<int64_t>(m.tile, mv - v0) * N;
        for (int64_t kk = 0; kk < m.K; ++kk)
            for (int64_t j = 0; j < w; ++j) {
                const float s = sc[v0 * N + j];
                const float v = s > 0.0f ? std::nearbyint(src[kk * w + j] / s) : 0.0f;
                q[kk * w + j] = (int8_t)std::min(127.0f, std::max(-127.0f, v));
            }
        q += m.K * w;
        src += m.K * w;
    }
    sc += m.M;
    m.data = nullptr;
}

// The int8 scale of each of `outputs` channels: the largest |weight| of its n_in inputs, get(o, i), / 127.
template <class F> static Buf<float> channel_scales(int64_t outputs, int64_t n_in, F get) {
    Buf<float> dst(outputs);
    for (int64_t o = 0; o < outputs; ++o) {
        float m = 0.0f;
        for (int64_t i = 0; i < n_in; ++i) m = std::max(m, std::fabs(get(o, i)));
        dst[o] = m / 127.0f;
    }
    return dst;
}

// Point m at a bf16-pair copy of its tiles, written at dst; returns the end. m.K is even.
static uint32_t* pair_up(uint32_t* dst, PMat<float>& m) {
    constexpr int N = VT<float>::N;
    const float* src = m.data;
    const int64_t mv = m.M / N, np = m.K / 2;
    m.pairs = dst;
    for (int64_t v0 = 0; v0 < mv; v0 += m.tile) {
        const int64_t w = std::min<int64_t>(m.tile, mv - v0) * N;
        for (int64_t p = 0; p < np; ++p)
            for (int64_t j = 0; j < w; ++j)
                dst[p * w + j] = bf16_bits(src[2 * p * w + j]) | (bf16_bits(src[(2 * p + 1) * w + j]) << 16);
        dst += np * w;
        src += m.K * w;
    }
    m.data = nullptr;
    return dst;
}

// Point m at a half-float copy of its tiles (the same layout), written at dst; returns the end.
static uint16_t* half_up(uint16_t* dst, PMat<float>& m) {
    const int64_t n = m.K * m.M;  // every tile's (K, width) block, one after another
    for (int64_t j = 0; j < n; ++j) dst[j] = fp16_bits(m.data[j]);
    m.half = dst;
    m.data = nullptr;
    return dst + n;
}

// Column m of a part's h row ([filter PG | gate PG]) is conv output unit_output(m) of 2G, or -1 (padding).
template <class T> static inline int64_t unit_output(const Part<T>& W, int64_t G, int64_t m) {
    const bool gate_half = m >= W.PG;
    const int64_t u = gate_half ? m - W.PG : m;
    return u >= W.gp ? -1 : (gate_half ? G : 0) + W.g0 + u;
}

// Pack part p of `nparts` (gate units, head-1 outputs and logits split evenly) into W.
template <class T> static void pack_part(Plan<T>* P, const PwDesc* d, Part<T>& W, int64_t p, int64_t nparts,
                                         int64_t tile) {
    constexpr int N = VT<T>::N;
    const int64_t L = P->L, R = P->R, G = P->G, S = P->S, C = P->C, k = P->k;
    const T* conv_w = static_cast<const T*>(d->conv_w);
    const T* res_w = static_cast<const T*>(d->res_w);
    const T* skip_w = static_cast<const T*>(d->skip_w);
    const T* h1_w = static_cast<const T*>(d->h1_w);
    const T* h2_w = static_cast<const T*>(d->h2_w);
    auto lo = [&](int64_t n) { return n * p / nparts; };
    auto len = [&](int64_t n) { return n * (p + 1) / nparts - n * p / nparts; };
    W.g0 = lo(G); W.gp = len(G); W.PG = round_up(W.gp, N);
    W.s0 = lo(S); W.sp = len(S);
    W.c0 = lo(C); W.cp = len(C);
    const int64_t PSp = round_up(W.sp, N), PCp = round_up(W.cp, N);
    W.arena = Buf<T>(L * (k * R) * 2 * W.PG + (L - 1) * W.gp * P->PR + L * W.gp * P->PS + S * PSp + S * PCp);
    T* dst = W.arena.p;  // in the order a step reads them
    W.tap.resize(L);
    W.res.resize(L > 1 ? L - 1 : 0);
    for (int64_t i = 0; i < L; ++i) {
        // tap inputs: kk = j*R + c is tap j (the input (k-1-j)*d steps back), channel c
        const T* cw = conv_w + i * (2 * G) * R * k;
        dst = pack<T>(dst, W.tap[i], k * R, 2 * W.PG, tile, [&](int64_t kk, int64_t m) -> T {
            const int64_t j = kk / R, c = kk % R, o = unit_output(W, G, m);
            return o < 0 ? T(0) : cw[(o * R + c) * k + j];
        });
        if (i + 1 < L) {
            const T* rw = res_w + i * R * G;  // (R, G)
            dst = pack<T>(dst, W.res[i], W.gp, P->PR, tile, [&](int64_t kk, int64_t m) -> T {
                return m < R ? rw[m * G + W.g0 + kk] : T(0);
            });
        }
    }
    // skip inputs: kk = i*gp + u is layer i's gate unit g0 + u
    dst = pack<T>(dst, W.skip, L * W.gp, P->PS, tile, [&](int64_t kk, int64_t m) -> T {
        const int64_t i = kk / W.gp, u = kk % W.gp;
        return m < S ? skip_w[(i * S + m) * G + W.g0 + u] : T(0);
    });
    dst = pack<T>(dst, W.h1, S, PSp, tile, [&](int64_t kk, int64_t m) -> T {
        return m < W.sp ? h1_w[(W.s0 + m) * S + kk] : T(0);
    });
    pack<T>(dst, W.h2, S, PCp, tile, [&](int64_t kk, int64_t m) -> T {
        return m < W.cp ? h2_w[(W.c0 + m) * S + kk] : T(0);
    });
    if (P->Cm) {  // many rows (a block of steps): narrow tiles, as for batches
        const T* cw = static_cast<const T*>(d->cond_w);
        W.cond_arena = Buf<T>(P->Cm * L * 2 * W.PG);
        pack<T>(W.cond_arena.p, W.cond, P->Cm, L * 2 * W.PG, kTileRows, [&](int64_t kk, int64_t m) -> T {
            const int64_t o = unit_output(W, G, m % (2 * W.PG));
            return o < 0 ? T(0) : cw[((m / (2 * W.PG)) * 2 * G + o) * P->Cm + kk];
        });
    }
    if constexpr (std::is_same_v<T, float>) {
        if (P->int8) {  // the same matrices as int8, in the same order, with their outputs' scales
            W.qarena = Buf<int8_t>(W.arena.n);
            W.scales = Buf<float>(L * 2 * W.PG + (L - 1) * P->PR + P->PS + round_up(W.sp, N));
            int8_t* q = W.qarena.p;
            float* sc = W.scales.p;
            for (int64_t i = 0; i < L; ++i) {
                quantize_up(q, sc, W.tap[i], [&](int64_t m) {
                    const int64_t o = unit_output(W, G, m);
                    return o < 0 ? 0.0f : P->conv_scale[i * 2 * G + o];
                });
                if (i + 1 < L)
                    quantize_up(q, sc, W.res[i], [&](int64_t m) { return m < R ? P->res_scale[i * R + m] : 0.0f; });
            }
            quantize_up(q, sc, W.skip, [&](int64_t m) { return m < S ? P->skip_scale[m] : 0.0f; });
            quantize_up(q, sc, W.h1, [&](int64_t m) { return m < W.sp ? P->h1_scale[W.s0 + m] : 0.0f; });
            W.h2_keep = Buf<float>(W.h2.K * W.h2.M);  // the output layer stays float32
            std::memcpy(W.h2_keep.p, W.h2.data, W.h2.K * W.h2.M * sizeof(float));
            W.h2.data = W.h2_keep.p;
            W.arena = Buf<T>();
        }
        if (P->fp16) {  // the same matrices as half floats, in the same order
            W.halves = Buf<uint16_t>(W.arena.n);
            uint16_t* q = W.halves.p;
            for (int64_t i = 0; i < L; ++i) {
                q = half_up(q, W.tap[i]);
                if (i + 1 < L) q = half_up(q, W.res[i]);
            }
            for (PMat<T>* m : {&W.skip, &W.h1, &W.h2}) q = half_up(q, *m);
            W.arena = Buf<T>();
        }
        if (P->bf16) {  // the same matrices as pairs, in the same order
            W.pairs = Buf<uint32_t>((W.arena.n + 1) / 2);
            uint32_t* q = W.pairs.p;
            for (int64_t i = 0; i < L; ++i) {
                q = pair_up(q, W.tap[i]);
                if (i + 1 < L) q = pair_up(q, W.res[i]);
            }
            for (PMat<T>* m : {&W.skip, &W.h1, &W.h2}) q = pair_up(q, *m);
            W.arena = Buf<T>();
        }
    }
}

// Context for rows [row0, row0 + nb) multiplying by W; with `shared`, its queues and codes are shared's.
template <class T> static void make_ctx(Plan<T>* P, const PwDesc* d, Ctx<T>& X, const Part<T>& W, int64_t row0,
                                        int64_t nb, Ctx<T>* shared) {
    constexpr int N = VT<T>::N;
    const int64_t L = P->L, R = P->R, k = P->k;
    X.part = &W;
    X.row0 = row0;
    X.nb = nb;
    int64_t q = 0;
    X.qoff.resize(L);
    for (int64_t i = 0; i < L; ++i) {
        X.qoff[i] = q;
        q += nb * P->span[i] * R;
    }
    X.shift = Buf<double>(nb);
    if (shared) {
        X.queues = shared->queues;
        X.code = shared->code;
        X.lpc_state = shared->lpc_state;
        X.lag_state = shared->lag_state;
    } else {
        X.own_queues = Buf<T>(q);
        const T* init = static_cast<const T*>(d->init_states);  // (B, L, R)
        for (int64_t i = 0; i < L; ++i)
            for (int64_t b = 0; b < nb; ++b)
                for (int64_t s = 0; s < P->span[i]; ++s)
                    std::memcpy(X.own_queues.p + X.qoff[i] + (b * P->span[i] + s) * R,
                                init + ((row0 + b) * L + i) * R, R * sizeof(T));
        X.own_code.assign(nb, d->initial_code);
        X.queues = X.own_queues.p;
        X.code = X.own_code.data();
        X.own_lpc = Buf<double>(nb * (P->lpc_p + 1));  // zeros: no signal and no excitation before t = 0
        X.lpc_state = X.own_lpc.p;
        X.own_lag = Buf<double>(nb * P->lag_span);
        for (int64_t j = 0; j < nb * P->lag_span; ++j) X.own_lag[j] = d->lag_silence;  // silence before t = 0
        X.lag_state = X.own_lag.p;
    }
    X.ldx = round_up((k - 1) * R + P->PR, N);  // the residual products write PR values at the current input
    X.ldh = 2 * W.PG;
    X.ldz = L * W.gp;
    X.lds = P->PS;
    X.ldc = P->PC;
    X.xin = Buf<T>(nb * X.ldx);
    X.h = Buf<T>(nb * X.ldh);
    X.z = Buf<T>(nb * X.ldz + N);
    X.sk = Buf<T>(nb * X.lds);
    X.hid = Buf<T>(nb * X.lds);
    X.logits = Buf<T>(nb * X.ldc);
    X.tmp = Buf<T>(std::max(P->PC, 2 * W.PG) + N);
    if (P->K) X.mix = Buf<T>(2 * (round_up(P->levels, N) + N) + 3 * round_up(P->K, N));
    const int64_t H = L * 2 * W.PG;
    X.sbias = Buf<T>(nb * H);
    const T* sb = static_cast<const T*>(d->static_bias);  // (B, L, 2G)
    const T* cb = static_cast<const T*>(d->cond_b);       // (L*2G,)
    for (int64_t b = 0; b < nb; ++b)
        for (int64_t i = 0; i < L; ++i)
            for (int64_t m = 0; m < 2 * W.PG; ++m) {
                const int64_t o = unit_output(W, P->G, m);
                if (o >= 0)
                    X.sbias[b * H + i * 2 * W.PG + m] =
                        sb[((row0 + b) * L + i) * 2 * P->G + o] + (P->Cm ? cb[i * 2 * P->G + o] : T(0));
            }
    if (P->Cm) {
        X.blk = std::max<int64_t>(1, 64 / nb);  // ~64 rows per block product
        X.cbias = Buf<T>(X.blk * nb * H);
        X.xcond = Buf<T>(X.blk * nb * P->Cm);
    }
}

template <class T> static Plan<T>* create(const PwDesc* d) {
    constexpr int N = VT<T>::N;
    auto owner = std::make_unique<Plan<T>>();  // freed if a check or an allocation below throws
    Plan<T>* P = owner.get();
    const int64_t L = P->L = d->layers, R = P->R = d->residual, G = P->G = d->gate, S = P->S = d->skip;
    const int64_t C = P->C = d->out_channels, k = P->k = d->kernel, B = P->B = d->batch;
    P->Cm = std::max<int64_t>(0, d->cond_channels);
    P->bf16 = std::is_same_v<T, float> && d->format == 1;
    P->int8 = std::is_same_v<T, float> && d->format == 2;
    P->fp16 = std::is_same_v<T, float> && d->format == 3;
    if (P->fp16 && !PW_F16) throw std::invalid_argument("fp16 weights need hardware conversion (F16C, NEON)");
    if (d->format < 0 || d->format > 3 || (d->format && !std::is_same_v<T, float>))
        throw std::invalid_argument("weight format: 0 float32, 1 bf16, 2 int8, 3 fp16 (float32 plans)");
    P->K = std::max<int64_t>(0, d->mixtures);
    P->levels = P->K ? d->levels : C;
    if (P->K && (C != 3 * P->K || P->levels < 2)) throw std::invalid_argument("mixture output: C = 3K, levels >= 2");
    P->lpc_p = std::max<int64_t>(0, d->lpc_order);
    if (P->lpc_p) {  // "lpc_mixture": copies, so the plan owns all it reads while it runs
        if (!P->K || d->lpc_frames < 1 || d->lpc_hop < 1 || !d->lpc || !d->prediction_emb || !d->excitation_emb ||
            !d->edges || !d->centres)
            throw std::invalid_argument("lpc_mixture: K logistics, frames, hop and every table");
        P->lpc_F = d->lpc_frames;
        P->lpc_hop = d->lpc_hop;
        P->lpc = Buf<double>(B * P->lpc_F * P->lpc_p);
        std::memcpy(P->lpc.p, d->lpc, B * P->lpc_F * P->lpc_p * sizeof(double));
        P->edges = Buf<double>(P->levels + 1);
        std::memcpy(P->edges.p, d->edges, (P->levels + 1) * sizeof(double));
        P->centres = Buf<double>(P->levels);
        std::memcpy(P->centres.p, d->centres, P->levels * sizeof(double));
        P->pemb = Buf<T>(P->levels * R);
        std::memcpy(P->pemb.p, d->prediction_emb, P->levels * R * sizeof(T));
        P->eemb = Buf<T>(P->levels * R);
        std::memcpy(P->eemb.p, d->excitation_emb, P->levels * R * sizeof(T));
        P->mu = (double)(P->levels - 1);
        P->log1p_mu = std::log1p(P->mu);
    }
    if (d->lag_steps > 0) {  // pitch lag: copies, as above
        const int64_t n = B * d->lag_steps;
        if (P->lpc_p || !d->lag_n || !d->lag_frac || !d->lag_voicing || !d->lag_emb || !d->lag_values)
            throw std::invalid_argument("pitch lag: every array, and no lpc_mixture");
        P->lag_T = d->lag_steps;
        P->lag_n = Buf<int64_t>(n);
        std::memcpy(P->lag_n.p, d->lag_n, n * sizeof(int64_t));
        int64_t most = 0;
        for (int64_t j = 0; j < n; ++j) {
            if (P->lag_n[j] < 1) throw std::invalid_argument("pitch lag: n >= 1");
            most = std::max(most, P->lag_n[j]);
        }
        P->lag_span = most + 2;
        P->lag_frac = Buf<double>(n);
        std::memcpy(P->lag_frac.p, d->lag_frac, n * sizeof(double));
        P->lag_voicing = Buf<double>(n);
        std::memcpy(P->lag_voicing.p, d->lag_voicing, n * sizeof(double));
        P->lag_values = Buf<double>(P->levels);
        std::memcpy(P->lag_values.p, d->lag_values, P->levels * sizeof(double));
        P->lag_emb = Buf<T>(P->levels * R);
        std::memcpy(P->lag_emb.p, d->lag_emb, P->levels * R * sizeof(T));
        P->mu = (double)(P->levels - 1);
        P->log1p_mu = std::log1p(P->mu);
    }
    P->threads = std::max<int64_t>(1, std::min<int64_t>(d->threads, B == 1 ? 2 : B));
    if (P->bf16 && (R % 2 || S % 2 || G % 2)) throw std::invalid_argument("bf16 needs even R, S and G");
    if constexpr (std::is_same_v<T, float>) {
        if (P->int8) {  // per output channel of each of the model's matrices (the same in every thread layout)
            const float* cw = static_cast<const float*>(d->conv_w);  // (L, 2G, R, k): channel (i, o)
            P->conv_scale = channel_scales(L * 2 * G, R * k, [&](int64_t o, int64_t j) { return cw[o * R * k + j]; });
            const float* rw = static_cast<const float*>(d->res_w);  // (L-1, R, G): channel (i, r)
            if (L > 1) P->res_scale = channel_scales((L - 1) * R, G, [&](int64_t o, int64_t j) { return rw[o * G + j]; });
            const float* sw = static_cast<const float*>(d->skip_w);  // (L, S, G): channel s over every layer's G
            P->skip_scale = channel_scales(S, L * G, [&](int64_t o, int64_t j) {
                return sw[((j / G) * S + o) * G + j % G];
            });
            const float* w1 = static_cast<const float*>(d->h1_w);  // (S, S)
            P->h1_scale = channel_scales(S, S, [&](int64_t o, int64_t j) { return w1[o * S + j]; });
        }
    }
    P->split = B == 1 && P->threads == 2 && G >= 2 && (!P->bf16 || G % 4 == 0);  // bf16: even halves
    P->patience = d->patience == 0 ? kSlowWaits : d->patience < 0 ? INT64_MAX : d->patience;
    P->split_limit = std::max<int64_t>(0, d->split_limit);
    if (B == 1 && !P->split) P->threads = 1;
    const int64_t rows = P->split ? 1 : (B + P->threads - 1) / P->threads;  // most rows one thread runs
    // One row per thread: the widest tiles that stay in registers (kTile1); more rows: kTileRows vectors by
    // kRowBlock rows (each weight load serves them all).
    const bool narrow = P->bf16 || P->int8 || P->fp16;
    const int64_t many = narrow ? kTileRowsNarrow : kTileRows;
    const int64_t tile = std::max<int64_t>(1, std::min<int64_t>(d->tile ? d->tile : (rows == 1 ? (P->int8 ? kTile1Int8 : kTile1) : many),
                                                                rows == 1 ? kMaxTile : kMaxTileRows));
    P->row_block = std::max<int64_t>(
        1, std::min<int64_t>(d->row_block ? d->row_block : (narrow ? kRowBlockNarrow : kRowBlock), kMaxRows));
    P->dil.assign(d->dilations, d->dilations + L);
    P->span.resize(L);
    for (int64_t i = 0; i < L; ++i) P->span[i] = (k - 1) * P->dil[i];
    P->PR = round_up(R, N);
    P->PS = round_up(S, N);
    P->PC = round_up(C, N);
    P->emb = Buf<T>(P->levels * R);  // the embedding rows that a draw can select (codes < levels)
    std::memcpy(P->emb.p, d->emb, P->levels * R * sizeof(T));
    P->res_b = Buf<T>(std::max<int64_t>(L - 1, 1) * P->PR);
    for (int64_t i = 0; i + 1 < L; ++i)
        for (int64_t j = 0; j < R; ++j) P->res_b[i * P->PR + j] = static_cast<const T*>(d->res_b)[i * R + j];
    P->skip_b = Buf<T>(P->PS);
    std::memcpy(P->skip_b.p, d->skip_b, S * sizeof(T));
    P->h1_b = Buf<T>(P->PS);
    std::memcpy(P->h1_b.p, d->h1_b, S * sizeof(T));
    P->h2_b = Buf<T>(P->PC);
    std::memcpy(P->h2_b.p, d->h2_b, C * sizeof(T));

    if (P->split) {  // parts 0, 1: the halves; part 2: everything, for running alone
        P->parts.resize(3);
        pack_part<T>(P, d, P->parts[0], 0, 2, tile);
        pack_part<T>(P, d, P->parts[1], 1, 2, tile);
        pack_part<T>(P, d, P->parts[2], 0, 1, tile);
        P->ctx.resize(3);
        make_ctx<T>(P, d, P->ctx[0], P->parts[0], 0, 1, nullptr);
        make_ctx<T>(P, d, P->ctx[1], P->parts[1], 0, 1, nullptr);
        make_ctx<T>(P, d, P->ctx[2], P->parts[2], 0, 1, &P->ctx[0]);
        P->ex_r = Buf<T>(2 * 2 * P->PR);
        P->ex_sk = Buf<T>(2 * 2 * P->PS);
        P->ex_hid = Buf<T>(2 * P->PS);
        P->ex_log = Buf<T>(2 * P->PC);
    } else {
        P->parts.resize(1);
        pack_part<T>(P, d, P->parts[0], 0, 1, tile);
        P->ctx.resize(P->threads);
        for (int64_t c = 0; c < P->threads; ++c) {
            const int64_t r0 = B * c / P->threads, r1 = B * (c + 1) / P->threads;
            make_ctx<T>(P, d, P->ctx[c], P->parts[0], r0, r1 - r0, nullptr);
        }
    }
    return owner.release();
}

// Spin until the other thread's counter `a` reaches n; past the spin budget the other thread is not running:
// slow() is called (once per wait) and the core is given away.
template <class F> static inline void spin_for(const std::atomic<int64_t>& a, int64_t n, F slow) {
    int spins = 0;
    bool noted = false;
    while (a.load(std::memory_order_acquire) < n) {
        cpu_relax();
        if (++spins >= kSpins) {
            if (!noted) slow();
            noted = true;
            std::this_thread::yield();
            spins = 0;
        }
    }
}
template <class T> static inline void wait_for(Plan<T>* P, int other, int64_t n) {
    spin_for(P->seq[other].v, n, [P]() { P->slow.fetch_add(1, std::memory_order_relaxed); });
}

struct RunArgs {
    int64_t t0, n;
    const void* up;        // mel conditioning: element (b, c, s) at b*up_b + c*up_c + s (s from t0), or null
    int64_t up_b, up_c;
    const void* u;         // element (b, s) at b*ldu + s
    int64_t ldu;
    double temperature;
    int64_t* codes;        // element (b, s) at b*ldcodes + s
    int64_t ldcodes;
    void* logits_out;      // optional: (n, B, C)
    const void* temps;     // optional: a temperature per draw, element (b, s) at b*ldu + s (null: temperature)
    double floor;          // the categorical draw's probability floor (0: none)
};

#if defined(__linux__)
static int current_cpu() { return sched_getcpu(); }
// A new thread starts on its parent's CPU, and the scheduler may take milliseconds to move it; two threads
// that spin on each other cannot wait that long. So the peer moves itself off the CPU it would share (a
// brief affinity mask without it), then restores its mask: no pinning, the scheduler stays free.
static void move_off(int cpu) {
    cpu_set_t mask, other;
    if (cpu < 0 || cpu >= CPU_SETSIZE || sched_getaffinity(0, sizeof mask, &mask) != 0) return;
    other = mask;
    CPU_CLR(cpu, &other);
    if (CPU_COUNT(&other) == 0 || sched_setaffinity(0, sizeof other, &other) != 0) return;
    sched_setaffinity(0, sizeof mask, &mask);
}
#else
static int current_cpu() { return -1; }
static void move_off(int) {}
#endif

static int64_t thread_cpu_ns() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// Run steps [s_begin, a.n) of context c; SPLIT: as one of the two halves. Returns the step it stopped before
// (a.n, or earlier where split mode gave up: then both halves stop after the same step).
template <class T, bool SPLIT> static int64_t run_steps(Plan<T>* P, int64_t c, const RunArgs& a,
                                                        int64_t s_begin);

template <class T, bool SPLIT> static int64_t run_ctx(Plan<T>* P, int64_t c, const RunArgs& a, int64_t s_begin) {
    const int64_t t0 = thread_cpu_ns();
    P->ctx[c].blk_start = -1;  // step numbers restart with every run call
    P->ctx[c].blk_len = 0;
    const int64_t done = run_steps<T, SPLIT>(P, c, a, s_begin);
    P->cpu_ns.fetch_add(thread_cpu_ns() - t0, std::memory_order_relaxed);
    return done;
}

template <class T, bool SPLIT> static int64_t run_steps(Plan<T>* P, int64_t c, const RunArgs& a, int64_t s_begin) {
    constexpr int N = VT<T>::N;
    Ctx<T>& X = P->ctx[c];
    const Part<T>& W = *X.part;
    const int64_t L = P->L, R = P->R, S = P->S, C = P->C, k = P->k, B = P->B;
    const int64_t nb = X.nb, PR = P->PR, PS = P->PS, PC = P->PC, gp = W.gp, PG = W.PG;
    const int rb = (int)P->row_block;
    const T* up = static_cast<const T*>(a.up);
    const int64_t H = L * 2 * PG;  // a row's biases, every layer
    const T* u = static_cast<const T*>(a.u);
    T* logits_out = static_cast<T*>(a.logits_out);
    const T* temps = static_cast<const T*>(a.temps);
    const T temperature0 = (T)a.temperature;
    const int other = 1 - (int)c;
    int64_t& nex = P->nex[SPLIT ? c : 0];
    auto post = [&]() { P->seq[c].v.store(++nex, std::memory_order_release); };
    auto wait = [&]() { wait_for<T>(P, other, nex); };
    T* xcur = X.xin.p + (k - 1) * R;  // row b's current input x at xcur + b*ldx

    for (int64_t s = s_begin; s < a.n; ++s) {
        const int64_t t = a.t0 + s;
        for (int64_t b = 0; b < nb; ++b) {
            T* xb = xcur + b * X.ldx;
            const T* emb = P->emb.p + X.code[b] * R;
            if (P->lag_T) {  // the pitch lag: the decoded past one period back, as the PyTorch loops add it
                const int64_t at = (X.row0 + b) * P->lag_T + t, n = P->lag_n[at], span = P->lag_span;
                const double* hist = X.lag_state + b * span;  // s_i at i % span; silence where i < 0
                const double f = P->lag_frac[at];
                const double value = (1 - f) * hist[(t - n + span) % span] + f * hist[(t - n - 1 + 2 * span) % span];
                const T* le = P->lag_emb.p + mu_law_code(value, P->mu, P->log1p_mu) * R;
                const T v = (T)P->lag_voicing[at];
                for (int64_t j = 0; j < R; ++j) xb[j] = emb[j] + le[j] * v;
                continue;
            }
            if (!P->lpc_p) {
                std::memcpy(xb, emb, R * sizeof(T));
                continue;
            }
            // "lpc_mixture": p_t from this row's decoded past, then its two input embeddings
            const int64_t p = P->lpc_p, frame = std::min((t + P->lpc_hop / 2) / P->lpc_hop, P->lpc_F - 1);
            const double* coef = P->lpc.p + ((X.row0 + b) * P->lpc_F + frame) * p;
            const double* st = X.lpc_state + b * (p + 1);
            double acc = 0.0;
            for (int64_t j = 0; j < p; ++j) acc += coef[j] * st[1 + j];
            X.shift[b] = -acc;
            const T* pe = P->pemb.p + mu_law_code(X.shift[b], P->mu, P->log1p_mu) * R;
            const T* ee = P->eemb.p + mu_law_code(st[0], P->mu, P->log1p_mu) * R;
            for (int64_t j = 0; j < R; ++j) xb[j] = emb[j] + (pe[j] + ee[j]);  // PyTorch's order of the sums
        }
        const T* bias_s = X.sbias.p;  // (nb, H)
        if (up) {
            if (s < X.blk_start || s >= X.blk_start + X.blk_len) {  // the next block's mel projections
                X.blk_start = s;
                X.blk_len = std::min(X.blk, a.n - s);
                const int64_t rows = X.blk_len * nb, Cm = P->Cm;
                for (int64_t j = 0; j < X.blk_len; ++j)
                    for (int64_t b = 0; b < nb; ++b) {
                        T* xr = X.xcond.p + (j * nb + b) * Cm;
                        const T* ur = up + (X.row0 + b) * a.up_b + s + j;
                        for (int64_t c2 = 0; c2 < Cm; ++c2) xr[c2] = ur[c2 * a.up_c];
                        std::memcpy(X.cbias.p + (j * nb + b) * H, X.sbias.p + b * H, H * sizeof(T));
                    }
                gemm<T>(W.cond, rows, kRowBlock, X.xcond.p, Cm, X.cbias.p, H);
            }
            bias_s = X.cbias.p + (s - X.blk_start) * nb * H;
        }
        // h = bias + W_tap,i . [x_{t-(k-1)d}, .., x_t]: the inputs of earlier steps from layer i's queue into xin,
        // beside this step's input; kn = (k - 1) R (split mode) leaves this step's input's tap for later
        auto taps = [&](int64_t i, int64_t kn) {
            const int64_t span = P->span[i], d = P->dil[i];
            const T* q = X.queues + X.qoff[i];
            for (int64_t b = 0; b < nb; ++b)
                for (int64_t j = 0; j + 1 < k; ++j) {
                    const int64_t slot = pos_mod(t - (k - 1 - j) * d, span);
                    std::memcpy(X.xin.p + b * X.ldx + j * R, q + (b * span + slot) * R, R * sizeof(T));
                }
            gemm_part<T>(W.tap[i], 0, kn, nb, rb, X.xin.p, X.ldx, X.h.p, X.ldh, bias_s + i * 2 * PG, H);
        };
        if (SPLIT) taps(0, (k - 1) * R);  // done early, while the other thread catches up
        for (int64_t i = 0; i < L; ++i) {
            const int64_t span = P->span[i];
            T* q = X.queues + X.qoff[i];
            if (!SPLIT) {
                taps(i, k * R);
            } else {  // + the tap on this step's input
                gemm_part<T>(W.tap[i], (k - 1) * R, R, nb, rb, xcur, X.ldx, X.h.p, X.ldh);
            }
            const int64_t slot = pos_mod(t, span);
            for (int64_t b = 0; b < nb; ++b) {
                std::memcpy(q + (b * span + slot) * R, xcur + b * X.ldx, R * sizeof(T));
                gate(X.h.p + b * X.ldh, PG, gp, X.z.p + b * X.ldz + i * gp, X.tmp.p);
            }
            if (i + 1 == L) break;
            const T* rbias = P->res_b.p + i * PR;
            if (!SPLIT) {  // x + W_res z in place (the products add to x as they would to a copy), then + b_res
                gemm<T>(W.res[i], nb, rb, X.z.p + i * gp, X.ldz, xcur, X.ldx);
                for (int64_t b = 0; b < nb; ++b) {
                    T* xb = xcur + b * X.ldx;
                    for (int64_t j = 0; j < R; ++j) xb[j] += rbias[j];
                }
            } else {
                T* mine = P->ex_r.p + ((nex + 1) % 2 * 2 + c) * PR;
                std::memset(mine, 0, PR * sizeof(T));
                gemm<T>(W.res[i], 1, 1, X.z.p + i * gp, 0, mine, 0);
                post();
                // while the other half arrives: this layer's skip contribution, the next layer's queued taps
                if (i == 0) std::memset(X.sk.p, 0, PS * sizeof(T));
                gemm_part<T>(W.skip, i * gp, gp, 1, 1, X.z.p + i * gp, 0, X.sk.p, 0);
                taps(i + 1, (k - 1) * R);
                wait();
                const T* r0 = P->ex_r.p + (nex % 2 * 2 + 0) * PR;
                const T* r1 = P->ex_r.p + (nex % 2 * 2 + 1) * PR;
                for (int64_t j = 0; j < R; ++j) xcur[j] = ((xcur[j] + r0[j]) + r1[j]) + rbias[j];
            }
        }
        bool stop = false;
        if (!SPLIT) {
            gemm<T>(W.skip, nb, rb, X.z.p, X.ldz, X.sk.p, X.lds, P->skip_b.p, 0);  // the biases: one row for all
            for (int64_t b = 0; b < nb; ++b) {
                T* sb = X.sk.p + b * X.lds;
                for (int64_t j = 0; j < S; ++j) sb[j] = sb[j] > T(0) ? sb[j] : T(0);
            }
            gemm<T>(W.h1, nb, rb, X.sk.p, X.lds, X.hid.p, X.lds, P->h1_b.p, 0);
            for (int64_t b = 0; b < nb; ++b) {
                T* hb = X.hid.p + b * X.lds;
                for (int64_t j = 0; j < S; ++j) hb[j] = hb[j] > T(0) ? hb[j] : T(0);
            }
            gemm<T>(W.h2, nb, rb, X.hid.p, X.lds, X.logits.p, X.ldc, P->h2_b.p, 0);
        } else {
            if (L == 1) std::memset(X.sk.p, 0, PS * sizeof(T));
            gemm_part<T>(W.skip, (L - 1) * gp, gp, 1, 1, X.z.p + (L - 1) * gp, 0, X.sk.p, 0);  // the last layer's
            T* mine = P->ex_sk.p + ((nex + 1) % 2 * 2 + c) * PS;
            std::memcpy(mine, X.sk.p, PS * sizeof(T));
            post();
            wait();
            {
                const T* s0 = P->ex_sk.p + (nex % 2 * 2 + 0) * PS;
                const T* s1 = P->ex_sk.p + (nex % 2 * 2 + 1) * PS;
                for (int64_t j = 0; j < S; ++j) {
                    T v = (P->skip_b[j] + s0[j]) + s1[j];
                    X.sk[j] = v > T(0) ? v : T(0);
                }
            }
            // head 1: my outputs [s0, s0 + sp)
            std::memcpy(X.tmp.p, P->h1_b.p + W.s0, W.sp * sizeof(T));
            std::memset(X.tmp.p + W.sp, 0, (round_up(W.sp, N) - W.sp) * sizeof(T));
            gemm<T>(W.h1, 1, 1, X.sk.p, 0, X.tmp.p, 0);
            {
                T* slot = P->ex_hid.p + (nex + 1) % 2 * PS;
                for (int64_t j = 0; j < W.sp; ++j) slot[W.s0 + j] = X.tmp[j] > T(0) ? X.tmp[j] : T(0);
            }
            post();
            wait();
            const T* hid = P->ex_hid.p + nex % 2 * PS;
            std::memcpy(X.tmp.p, P->h2_b.p + W.c0, W.cp * sizeof(T));
            std::memset(X.tmp.p + W.cp, 0, (round_up(W.cp, N) - W.cp) * sizeof(T));
            gemm<T>(W.h2, 1, 1, hid, 0, X.tmp.p, 0);
            std::memcpy(P->ex_log.p + (nex + 1) % 2 * PC + W.c0, X.tmp.p, W.cp * sizeof(T));
            if (c == 0 && (s < s_begin + kWarmSteps || (s - s_begin) % kSlowWindow == 0))  // start-up; a new window
                P->slow.store(0, std::memory_order_relaxed);
            if (c == 0 && (P->slow.load(std::memory_order_relaxed) >= P->patience ||
                           (P->split_limit && s + 1 - s_begin >= P->split_limit))) {
                P->stop_at.store(t, std::memory_order_relaxed);  // published by the post below
                stop = true;
            }
            post();
            wait();
            if (c == 1 && P->stop_at.load(std::memory_order_relaxed) == t) stop = true;
            std::memcpy(X.logits.p, P->ex_log.p + nex % 2 * PC, C * sizeof(T));
        }
        for (int64_t b = 0; b < nb; ++b) {
            const int64_t row = X.row0 + b;
            const T* lg = X.logits.p + b * X.ldc;
            T* cdf = X.mix.p;
            T* bins = cdf + round_up(P->levels, N) + N;
            const T temperature = temps ? temps[row * a.ldu + s] : temperature0;
            if (P->lpc_p) {
                const int64_t p = P->lpc_p;
                double* st = X.lpc_state + b * (p + 1);
                X.code[b] = draw_predictive(lg, P->K, P->levels, P->edges.p, X.shift[b], P->mu, P->log1p_mu,
                                            temperature, u[row * a.ldu + s], bins + round_up(P->levels, N) + N,
                                            cdf, bins);
                const double sig = P->centres[X.code[b]];  // the decoded sample: into the past, s_(t-1) first
                std::memmove(st + 2, st + 1, (p - 1) * sizeof(double));
                st[1] = sig;
                st[0] = sig - X.shift[b];
            } else {
                X.code[b] = P->K ? draw_mixture(lg, P->K, P->levels, temperature, u[row * a.ldu + s], cdf, bins)
                                 : draw(lg, C, temperature, u[row * a.ldu + s], X.tmp.p, (T)a.floor);
            }
            if (P->lag_T) X.lag_state[b * P->lag_span + t % P->lag_span] = P->lag_values[X.code[b]];
            if (!SPLIT || c == 0) {
                a.codes[row * a.ldcodes + s] = X.code[b];
                if (logits_out) std::memcpy(logits_out + (s * B + row) * C, lg, C * sizeof(T));
            }
        }
        if (stop) return s + 1;
    }
    return a.n;
}

template <class T> static int run(Plan<T>* P, const RunArgs& a) {
    if (P->lag_T && a.t0 + a.n > P->lag_T) return 3;  // the pitch lag's arrays end before these steps
    if (P->split) {
        int64_t done = 0;
        if (P->peer_stale) {  // bring context 1's copy of the state up to date with context 0's
            int64_t q = 0;
            for (int64_t i = 0; i < P->L; ++i) q += P->span[i] * P->R;
            std::memcpy(P->ctx[1].queues, P->ctx[0].queues, q * sizeof(T));
            P->ctx[1].code[0] = P->ctx[0].code[0];
            std::memcpy(P->ctx[1].lpc_state, P->ctx[0].lpc_state, (P->lpc_p + 1) * sizeof(double));
            std::memcpy(P->ctx[1].lag_state, P->ctx[0].lag_state, P->lag_span * sizeof(double));
            P->peer_stale = false;
        }
        P->slow.store(0);
        P->stop_at.store(-1);
        std::thread peer;
        bool started = true;
        const int cpu0 = current_cpu();
        try {
            peer = std::thread([P, &a, cpu0]() {
                move_off(cpu0);
                run_ctx<T, true>(P, 1, a, 0);
            });
        } catch (...) {
            started = false;
        }
        if (started) {
            done = run_ctx<T, true>(P, 0, a, 0);
            peer.join();
            P->split_steps += done;
        }
        if (done < a.n) {  // alone, on context 0's state
            run_ctx<T, false>(P, 2, a, done);
            P->solo_steps += a.n - done;
            P->peer_stale = true;
        }
        return 0;
    }
    const int64_t nctx = (int64_t)P->ctx.size();
    std::vector<std::thread> pool;
    int64_t c = 1;
    try {
        for (; c < nctx; ++c) pool.emplace_back([P, &a, c]() { run_ctx<T, false>(P, c, a, 0); });
    } catch (...) {
    }
    for (int64_t rest = c; rest < nctx; ++rest) run_ctx<T, false>(P, rest, a, 0);  // threads that did not start
    run_ctx<T, false>(P, 0, a, 0);
    for (auto& th : pool) th.join();
    P->solo_steps += a.n;
    return 0;
}

// The ceiling of a many-row step: `steps` steps of context c's matrix products alone (the taps, residuals,
// skips and head, from their biases, as run_steps calls them; none of the gates, copies, queue traffic or
// draws). The inputs are the context's zeros, so no value is subnormal and the products take their usual time.
template <class T> static void products_ctx(Plan<T>* P, int64_t c, int64_t steps) {
    Ctx<T>& X = P->ctx[c];
    const Part<T>& W = *X.part;
    const int64_t L = P->L, R = P->R, k = P->k, nb = X.nb, PG = W.PG, H = L * 2 * PG;
    const int rb = (int)P->row_block;
    T* xcur = X.xin.p + (k - 1) * R;
    for (int64_t s = 0; s < steps; ++s) {
        for (int64_t i = 0; i < L; ++i) {
            gemm_part<T>(W.tap[i], 0, k * R, nb, rb, X.xin.p, X.ldx, X.h.p, X.ldh, X.sbias.p + i * 2 * PG, H);
            if (i + 1 < L) gemm<T>(W.res[i], nb, rb, X.z.p + i * W.gp, X.ldz, xcur, X.ldx);
        }
        gemm<T>(W.skip, nb, rb, X.z.p, X.ldz, X.sk.p, X.lds, P->skip_b.p, 0);
        gemm<T>(W.h1, nb, rb, X.sk.p, X.lds, X.hid.p, X.lds, P->h1_b.p, 0);
        gemm<T>(W.h2, nb, rb, X.hid.p, X.lds, X.logits.p, X.ldc, P->h2_b.p, 0);
    }
}

// Nanoseconds for `steps` such steps of every context at once, each on its own thread as run() places them; -1
// for a split plan (batch 1 on two threads: its bound is the weights' bytes, pw_stream_rate's figure) or when
// no thread starts.
template <class T> static int64_t products(Plan<T>* P, int64_t steps) {
    if (P->split) return -1;
    const int64_t nctx = (int64_t)P->ctx.size();
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    try {
        for (int64_t c = 1; c < nctx; ++c) pool.emplace_back([P, c, steps]() { products_ctx<T>(P, c, steps); });
    } catch (...) {
        for (auto& th : pool) th.join();
        return -1;
    }
    products_ctx<T>(P, 0, steps);
    for (auto& th : pool) th.join();
    return (int64_t)std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

// ------------------------------------------------------------------------------------------ C interface
PW_API int pw_abi_version() { return 13; }
PW_API int pw_f16() { return PW_F16; }  // whether this build converts half floats in hardware (fp16 weights)
PW_API const char* pw_isa() { return PW_ISA; }  // the vector code this build runs: avx512, avx2, avx, neon, sse, ..
PW_API int pw_vector_bytes() { return kVecBytes; }

// The roofline's denominator: how many times per second `threads` threads together read a buffer of `bytes`
// bytes, each its own 1/threads of it, as split mode reads the weights (a sum of every float, vectorised,
// so nothing but the reads limits it), for about `seconds`. Returns passes per second, or -1.
PW_API double pw_stream_rate(int64_t bytes, int64_t threads, double seconds) {
    using V = VT<float>::V;
    constexpr int N = VT<float>::N;
    try {
        threads = std::max<int64_t>(1, threads);
        const int64_t per = round_up(std::max<int64_t>(bytes / 4 / threads, 8 * N), 8 * N);  // floats per thread
        std::vector<Buf<float>> bufs;  // one per thread, allocated (and first touched) here
        for (int64_t t = 0; t < threads; ++t) {
            bufs.emplace_back(per);
            for (int64_t j = 0; j < per; ++j) bufs[t][j] = (float)(j % 7);
        }
        std::atomic<int64_t> ready{0};
        std::atomic<bool> stop{false};
        std::vector<int64_t> passes(threads, 0);
        std::vector<float> sink(threads, 0.0f);
        auto body = [&](int64_t t) {
            ready.fetch_add(1);
            while (ready.load() < threads) cpu_relax();
            const float* p = bufs[t].p;
            V acc[8] = {};
            int64_t n = 0;
            while (!stop.load(std::memory_order_relaxed)) {
                for (int64_t j = 0; j < per; j += 8 * N)
#pragma GCC unroll 8
                    for (int u = 0; u < 8; ++u) acc[u] += vload<float>(p + j + u * N);
                ++n;
            }
            for (int u = 1; u < 8; ++u) acc[0] += acc[u];
            float s = 0.0f;
            for (int j = 0; j < N; ++j) s += acc[0][j];
            sink[t] = s;
            passes[t] = n;
        };
        std::vector<std::thread> pool;
        for (int64_t t = 1; t < threads; ++t) pool.emplace_back(body, t);
        std::thread timer([&]() {
            while (ready.load() < threads) cpu_relax();
            std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
            stop.store(true);
        });
        const auto t0 = std::chrono::steady_clock::now();
        body(0);
        const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        timer.join();
        for (auto& th : pool) th.join();
        int64_t least = passes[0];
        for (int64_t t = 1; t < threads; ++t) least = std::min(least, passes[t]);
        volatile float keep = sink[0];  // the sums are used: the reads cannot be optimised away
        (void)keep;
        return (double)least / took;
    } catch (...) {
        return -1.0;
    }
}
// The split step's other yardstick: the time a cache line takes from one core to the other and back, between
// two threads placed as split mode places its two (the second moves off the first's CPU), each spinning on the
// other's counter as split mode's exchanges do, for about `seconds`. Returns nanoseconds per round trip, or -1.
// Split mode makes L + 2 exchanges a step, so where the two vCPUs of a VM sit far apart this costs it time: on
// an AMD Zen 4 host the round trip was ~95 ns or ~440 ns for tens of seconds at a time, and the standard
// model's batch 1 ~20.8k or ~17.5k samples/s with it (x86-64-v3 build), one thread alone unchanged.
PW_API double pw_round_trip(double seconds) {
    try {
        Seq seq[2];
        std::atomic<bool> stop{false};
        const int cpu0 = current_cpu();
        auto spin = [](const std::atomic<int64_t>& a, int64_t n) { spin_for(a, n, []() {}); };
        std::thread peer([&]() {
            move_off(cpu0);
            for (int64_t n = 1;; ++n) {  // answer every ping, until one comes with `stop` set
                spin(seq[0].v, n);
                if (stop.load(std::memory_order_relaxed)) return;
                seq[1].v.store(n, std::memory_order_release);
            }
        });
        int64_t n = 1;  // the first round trip, untimed: the peer has started and moved
        seq[0].v.store(n, std::memory_order_release);
        spin(seq[1].v, n);
        const auto t0 = std::chrono::steady_clock::now();
        double took = 0.0;
        do {  // round trips in batches of 256, until `seconds` have passed
            for (int j = 0; j < 256; ++j) {
                seq[0].v.store(++n, std::memory_order_release);
                spin(seq[1].v, n);
            }
            took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        } while (took < seconds);
        stop.store(true, std::memory_order_relaxed);
        seq[0].v.store(n + 1, std::memory_order_release);
        peer.join();
        return took * 1e9 / (double)(n - 1);
    } catch (...) {
        return -1.0;
    }
}
PW_API int64_t pw_desc_size() { return (int64_t)sizeof(PwDesc); }
PW_API int64_t pw_runargs_size() { return (int64_t)sizeof(RunArgs); }

PW_API void* pw_wn_create_f32(const PwDesc* d) {
    try { return create<float>(d); } catch (...) { return nullptr; }
}
PW_API void* pw_wn_create_f64(const PwDesc* d) {
    try { return create<double>(d); } catch (...) { return nullptr; }
}
PW_API int pw_wn_run_f32(void* p, const RunArgs* a) {
    try { return run<float>(static_cast<Plan<float>*>(p), *a); } catch (...) { return -1; }
}
PW_API int pw_wn_run_f64(void* p, const RunArgs* a) {
    try { return run<double>(static_cast<Plan<double>*>(p), *a); } catch (...) { return -1; }
}
// stats: threads the plan runs (2 in split mode), steps run split, steps run otherwise, CPU ns of the threads
template <class T> static void stats(void* p, int64_t* out) {
    auto* P = static_cast<Plan<T>*>(p);
    out[0] = P->split ? 2 : (int64_t)P->ctx.size();
    out[1] = P->split_steps;
    out[2] = P->solo_steps;
    out[3] = P->cpu_ns.load();
}
PW_API void pw_wn_stats_f32(void* p, int64_t* out) { stats<float>(p, out); }
PW_API void pw_wn_stats_f64(void* p, int64_t* out) { stats<double>(p, out); }
PW_API int64_t pw_wn_products_f32(void* p, int64_t steps) {
    return products<float>(static_cast<Plan<float>*>(p), steps);
}
PW_API int64_t pw_wn_products_f64(void* p, int64_t steps) {
    return products<double>(static_cast<Plan<double>*>(p), steps);
}
PW_API void pw_wn_free_f32(void* p) { delete static_cast<Plan<float>*>(p); }
PW_API void pw_wn_free_f64(void* p) { delete static_cast<Plan<double>*>(p); }
