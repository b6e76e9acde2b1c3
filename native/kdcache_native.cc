// Native kernels for kdcache's tfjs students: matrix products on the machine's BLAS (OpenBLAS,
// loaded with dlopen, so building needs only a C++ compiler and Node's headers) and
// NHWC convolutions as im2col/col2im + GEMM. Every function works in place on typed arrays
// that the caller owns (views of the tfjs wasm heap): nothing is copied or allocated on the JS
// side, and the calls are synchronous, as tfjs kernels must be.
//
// Build: node tools/build-native.mjs (run by `npm run build`); loaded by src/train/kernels/native.ts.

#include <node_api.h>
#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

// ---- BLAS, resolved at run time -------------------------------------------------------------

enum { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };
using SgemmFn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
using SetThreadsFn = void (*)(int);
using GetConfigFn = char* (*)();

SgemmFn g_sgemm = nullptr;
SetThreadsFn g_set_threads = nullptr;
std::string g_blas_name;
std::string g_blas_config;

// Only optimised BLAS builds are worth loading: the reference libblas is slower than wasm.
bool LoadBlas(const char* requested, std::string* error) {
  if (g_sgemm) return true;
  std::vector<std::string> candidates;
  if (requested && *requested) candidates.push_back(requested);
  else candidates = {"libopenblas.so.0", "libopenblas.so", "libopenblasp-r0.3.21.so", "libopenblas.so.3"};
  std::string tried;
  for (const auto& name : candidates) {
    void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      tried += (tried.empty() ? "" : "; ") + name + ": " + dlerror();
      continue;
    }
    auto sgemm = reinterpret_cast<SgemmFn>(dlsym(h, "cblas_sgemm"));
    auto config = reinterpret_cast<GetConfigFn>(dlsym(h, "openblas_get_config"));
    if (!sgemm || (!config && !(requested && *requested))) {
      tried += (tried.empty() ? "" : "; ") + name + ": no cblas_sgemm/openblas_get_config";
      dlclose(h);
      continue;
    }
    g_sgemm = sgemm;
    g_set_threads = reinterpret_cast<SetThreadsFn>(dlsym(h, "openblas_set_num_threads"));
    g_blas_name = name;
    g_blas_config = config ? config() : "";
    return true;
  }
  *error = tried;
  return false;
}

// ---- a small pool for the loops around the GEMMs (im2col, col2im, depthwise, epilogues) -----

class Pool {
 public:
  void Resize(int threads) {
    Stop();
    n_ = std::max(1, threads);
    active_ = n_;
    stop_ = false;
    for (int i = 1; i < n_; i++) workers_.emplace_back([this, i] { Loop(i); });
  }
  int size() const { return n_; }
  // Threads a Run may use, at most size(): fewer while another thread of the process needs a core.
  void SetActive(int threads) { active_ = std::max(1, std::min(threads, n_)); }
  // Runs fn(part, parts) for every part in [0, parts) on at most SetActive's count of threads; the
  // caller takes parts 0, threads, 2 * threads, ... Callers size `parts` from size(), never from the
  // active count: how the work is cut (and so every float sum) must not depend on how many threads
  // are free at that moment, or a seeded training run would change with the timing of shard loads.
  void Run(int parts, const std::function<void(int, int)>& fn) {
    const int threads = std::min(parts, active_);
    if (threads <= 1) {
      for (int p = 0; p < parts; p++) fn(p, parts);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &fn;
      parts_ = parts;
      threads_ = threads;
      pending_.store(threads - 1);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    for (int p = 0; p < parts; p += threads) fn(p, parts);
    // The other parts are short (milliseconds): spin, then yield.
    while (pending_.load(std::memory_order_acquire) > 0) std::this_thread::yield();
    std::lock_guard<std::mutex> lock(mu_);
    job_ = nullptr;
  }
  ~Pool() { Stop(); }

 private:
  void Loop(int id) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int, int)>* job;
      int parts, threads;
      // Spin a little before sleeping: the products of one training step follow each other within
      // microseconds, and a futex wake-up per product would cost more than the spin. Short enough
      // (~0.1 ms) that an idle pool does not hold a core another thread needs.
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(100);
      while (generation_.load(std::memory_order_acquire) == seen && std::chrono::steady_clock::now() < until) {
        for (int i = 0; i < 64; i++) __builtin_ia32_pause();
      }
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_relaxed) != seen; });
        if (stop_) return;
        seen = generation_.load(std::memory_order_relaxed);
        job = job_;
        parts = parts_;
        threads = threads_;
      }
      if (job && id < threads) {
        for (int p = id; p < parts; p += threads) (*job)(p, parts);
        pending_.fetch_sub(1, std::memory_order_release);
      }
    }
  }
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }
  int n_ = 1;
  int active_ = 1;
  bool stop_ = false;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  const std::function<void(int, int)>* job_ = nullptr;
  int parts_ = 0;
  int threads_ = 0;
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> generation_{0};
};

Pool g_pool;

// Calls from several JS threads (worker_threads each loading the addon) take turns: the pool and
// the BLAS thread setting are process-wide.
std::mutex g_calls;

// Split [0, n) into `parts` nearly equal ranges.
inline void Range(int64_t n, int part, int parts, int64_t* lo, int64_t* hi) {
  *lo = n * part / parts;
  *hi = n * (part + 1) / parts;
}

template <typename F>
void ParallelFor(int64_t n, int64_t min_per_part, F&& body) {
  int parts = static_cast<int>(std::min<int64_t>(g_pool.size(), std::max<int64_t>(1, n / std::max<int64_t>(1, min_per_part))));
  std::function<void(int, int)> fn = [&](int part, int count) {
    int64_t lo, hi;
    Range(n, part, count, &lo, &hi);
    if (lo < hi) body(lo, hi);
  };
  g_pool.Run(parts, fn);
}

// ---- vector loops -----------------------------------------------------------------------------
// Compiled for AVX-512, AVX2 and baseline x86-64, picked at load time (GCC function multiversioning),
// so one build runs anywhere and uses what the CPU has. No fused multiply-adds (-ffp-contract=off)
// and IEEE division and square root: results are the same on every path, and the same as tfjs's.

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KD_SIMD __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KD_SIMD
#endif

// Pixels to model inputs, y = (float)(x * mul + add) in double precision: the same value as the
// JavaScript expression, so caches do not depend on whether the addon is built.
KD_SIMD void PixelsRow(const uint8_t* __restrict__ x, float* __restrict__ y, int64_t n, double mul, double add) {
  for (int64_t j = 0; j < n; j++) y[j] = static_cast<float>(static_cast<double>(x[j]) * mul + add);
}

KD_SIMD void AddRows(const float* __restrict__ x, const float* __restrict__ b, float* __restrict__ y, int64_t n) {
  for (int64_t j = 0; j < n; j++) y[j] = x[j] + b[j];
}
KD_SIMD void MulRows(const float* __restrict__ x, const float* __restrict__ b, float* __restrict__ y, int64_t n) {
  for (int64_t j = 0; j < n; j++) y[j] = x[j] * b[j];
}
KD_SIMD void SubRows(const float* __restrict__ x, const float* __restrict__ b, float* __restrict__ y, int64_t n) {
  for (int64_t j = 0; j < n; j++) y[j] = x[j] - b[j];
}
KD_SIMD void ReluRows(const float* __restrict__ x, float* __restrict__ y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0.f ? 0.f : x[i];
}
KD_SIMD void StepRows(const float* __restrict__ x, float* __restrict__ y, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; i++) y[i] = x[i] != x[i] ? x[i] : x[i] > 0.f ? 1.f : alpha;
}
// dy * step(x): the mask is exactly what step(x) gives (NaN where x is NaN).
KD_SIMD void ReluGradRows(const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ y, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float mask = x[i] != x[i] ? x[i] : x[i] > 0.f ? 1.f : 0.f;
    y[i] = dy[i] * mask;
  }
}
KD_SIMD void Accumulate(float* __restrict__ d, const float* __restrict__ s, int64_t n) {
  for (int64_t i = 0; i < n; i++) d[i] += s[i];
}
KD_SIMD void AccumulateDouble(double* __restrict__ acc, const float* __restrict__ x, int64_t n) {
  for (int64_t j = 0; j < n; j++) acc[j] += x[j];
}
// out = max(out, p) with tfjs's rule: a value replaces the running maximum only when strictly greater.
KD_SIMD void MaxInto(float* __restrict__ out, const float* __restrict__ p, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = p[i] > out[i] ? p[i] : out[i];
}
// The running maximum and where it is, per channel (same rule: strictly greater replaces).
KD_SIMD void MaxArgInto(float* __restrict__ best, int32_t* __restrict__ at, const float* __restrict__ p, int32_t base, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const bool gt = p[i] > best[i];
    best[i] = gt ? p[i] : best[i];
    at[i] = gt ? base + static_cast<int32_t>(i) : at[i];
  }
}
// One Adam element in tfjs's float32 order (kernels/adam.ts); inlined into both loops below.
__attribute__((always_inline)) inline void AdamElement(float w, float m, float v, float g, float b1, float c1, float b2, float c2,
                                                       float d1, float d2, float eps, float lr, float* wo, float* mo, float* vo) {
  const float m1 = m * b1 + g * c1;
  const float v1 = v * b2 + (g * g) * c2;
  *wo = ((m1 / d1) / (std::sqrt(v1 / d2) + eps)) * lr + w;
  *mo = m1;
  *vo = v1;
}
KD_SIMD void AdamRows(const float* __restrict__ w, const float* __restrict__ m, const float* __restrict__ v, const float* __restrict__ g,
                      float* __restrict__ wo, float* __restrict__ mo, float* __restrict__ vo, int64_t n,
                      float b1, float c1, float b2, float c2, float d1, float d2, float eps, float lr) {
  for (int64_t i = 0; i < n; i++) AdamElement(w[i], m[i], v[i], g[i], b1, c1, b2, c2, d1, d2, eps, lr, wo + i, mo + i, vo + i);
}
KD_SIMD void AdamInPlace(float* w, float* m, float* v, const float* __restrict__ g, int64_t n,
                         float b1, float c1, float b2, float c2, float d1, float d2, float eps, float lr) {
  for (int64_t i = 0; i < n; i++) AdamElement(w[i], m[i], v[i], g[i], b1, c1, b2, c2, d1, d2, eps, lr, w + i, m + i, v + i);
}

void Sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int i = 0; i < m; i++) {
      float* row = c + static_cast<int64_t>(i) * ldc;
      for (int j = 0; j < n; j++) row[j] = beta == 0.f ? 0.f : row[j] * beta;
    }
    return;
  }
  g_sgemm(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// One product split across the pool, each part a single-threaded BLAS call on a block of rows or
// columns of C (the larger side). Every product goes through here rather than OpenBLAS's own
// threads: those spin for ~0.1 s after every product (with a shard decoder on one of two cores they
// stalled each step 2-5x, even when told to use one thread), and their results depend on their
// count. The pool's threads can be dropped at once (computeThreads) and do not spin for long.
void ParSgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  const int64_t work = static_cast<int64_t>(m) * n * k;
  const bool split_m = m >= n;
  const int side = split_m ? m : n;
  const int parts = work < (1 << 20) ? 1 : std::min(g_pool.size(), std::max(1, side / 32));
  if (parts <= 1) return Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  std::function<void(int, int)> fn = [&](int part, int count) {
    // block edges on multiples of 16 so the BLAS kernels' register blocks stay whole
    const int lo = static_cast<int>((static_cast<int64_t>(side) * part / count) & ~15);
    const int hi = part + 1 == count ? side : static_cast<int>((static_cast<int64_t>(side) * (part + 1) / count) & ~15);
    if (lo >= hi) return;
    if (split_m) {
      Sgemm(ta, tb, hi - lo, n, k, alpha, ta ? a + lo : a + static_cast<int64_t>(lo) * lda, lda, b, ldb, beta, c + static_cast<int64_t>(lo) * ldc, ldc);
    } else {
      Sgemm(ta, tb, m, hi - lo, k, alpha, a, lda, tb ? b + static_cast<int64_t>(lo) * ldb : b + lo, ldb, beta, c + lo, ldc);
    }
  };
  g_pool.Run(parts, fn);
}

// ---- convolutions, NHWC, filters HWIO ([KH, KW, Cin, Cout] = a [K, Cout] matrix) ------------

struct Conv {
  int64_t batch, in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left;
  // depthwise: out_c = in_c * multiplier
  int64_t rows() const { return batch * out_h * out_w; }
  int64_t patch() const { return k_h * k_w * in_c; }
};

// The kernel columns of one patch row that fall inside the input, for dilation 1: [lo, hi) of
// [0, k_w), whose input columns iw0 + lo ... iw0 + hi - 1 are contiguous in NHWC memory.
inline void InsideColumns(const Conv& c, int64_t iw0, int64_t* lo, int64_t* hi) {
  *lo = std::min<int64_t>(c.k_w, std::max<int64_t>(0, -iw0));
  *hi = std::max<int64_t>(*lo, std::min<int64_t>(c.k_w, c.in_w - iw0));
}

// Short runs (a few channels) are copied inline: a memcpy call per 1-4 floats costs more than it moves.
inline void CopyRun(float* dst, const float* src, int64_t n) {
  if (n >= 32) std::memcpy(dst, src, sizeof(float) * n);
  else for (int64_t i = 0; i < n; i++) dst[i] = src[i];
}

inline void ZeroRun(float* dst, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = 0.f;
}

// Walks rows r0 .. r1 - 1 of the patch matrix, r = (b, oh, ow), without a division per row.
template <typename F>
inline void ForRows(const Conv& c, int64_t r0, int64_t r1, F&& f) {
  int64_t ow = r0 % c.out_w;
  int64_t oh = (r0 / c.out_w) % c.out_h;
  int64_t b = r0 / (c.out_w * c.out_h);
  for (int64_t r = r0; r < r1; r++) {
    f(r, b, oh, ow);
    if (++ow == c.out_w) {
      ow = 0;
      if (++oh == c.out_h) {
        oh = 0;
        b++;
      }
    }
  }
}

// Rows [r0, r1) of the patch matrix into col (row r at col + (r - first) * k): row r = (b, oh, ow),
// columns (kh, kw, ci). Serial: callers split the rows.
void Im2colRows(const Conv& c, const float* x, float* col, int64_t r0, int64_t r1, int64_t first) {
  const int64_t k = c.patch();
  const int64_t run = c.k_w * c.in_c;
  ForRows(c, r0, r1, [&](int64_t r, int64_t b, int64_t oh, int64_t ow) {
    float* dst = col + (r - first) * k;
    const float* xb = x + b * c.in_h * c.in_w * c.in_c;
    const int64_t iw0 = ow * c.stride_w - c.pad_left;
    for (int64_t kh = 0; kh < c.k_h; kh++, dst += run) {
      const int64_t ih = oh * c.stride_h + kh * c.dil_h - c.pad_top;
      if (ih < 0 || ih >= c.in_h) {
        ZeroRun(dst, run);
        continue;
      }
      const float* xrow = xb + ih * c.in_w * c.in_c;
      if (c.dil_w == 1) {
        int64_t a, e;
        InsideColumns(c, iw0, &a, &e);
        ZeroRun(dst, a * c.in_c);
        CopyRun(dst + a * c.in_c, xrow + (iw0 + a) * c.in_c, (e - a) * c.in_c);
        ZeroRun(dst + e * c.in_c, (c.k_w - e) * c.in_c);
        continue;
      }
      for (int64_t kw = 0; kw < c.k_w; kw++) {
        const int64_t iw = iw0 + kw * c.dil_w;
        if (iw < 0 || iw >= c.in_w) ZeroRun(dst + kw * c.in_c, c.in_c);
        else CopyRun(dst + kw * c.in_c, xrow + iw * c.in_c, c.in_c);
      }
    }
  });
}

// dx += the patch-matrix gradient of rows [r0, r1) (row r at col + (r - first) * k). Serial.
void Col2imRows(const Conv& c, const float* col, float* dx, int64_t r0, int64_t r1, int64_t first) {
  const int64_t k = c.patch();
  const int64_t run = c.k_w * c.in_c;
  ForRows(c, r0, r1, [&](int64_t r, int64_t b, int64_t oh, int64_t ow) {
    float* xb = dx + b * c.in_h * c.in_w * c.in_c;
    const float* src = col + (r - first) * k;
    const int64_t iw0 = ow * c.stride_w - c.pad_left;
    for (int64_t kh = 0; kh < c.k_h; kh++, src += run) {
      const int64_t ih = oh * c.stride_h + kh * c.dil_h - c.pad_top;
      if (ih < 0 || ih >= c.in_h) continue;
      float* xrow = xb + ih * c.in_w * c.in_c;
      if (c.dil_w == 1) {
        int64_t a, e;
        InsideColumns(c, iw0, &a, &e);
        Accumulate(xrow + (iw0 + a) * c.in_c, src + a * c.in_c, (e - a) * c.in_c);
        continue;
      }
      for (int64_t kw = 0; kw < c.k_w; kw++) {
        const int64_t iw = iw0 + kw * c.dil_w;
        if (iw < 0 || iw >= c.in_w) continue;
        Accumulate(xrow + iw * c.in_c, src + kw * c.in_c, c.in_c);
      }
    }
  });
}

thread_local std::vector<float> t_scratch;

float* Scratch(int64_t n) {
  if (static_cast<int64_t>(t_scratch.size()) < n) t_scratch.resize(n);
  return t_scratch.data();
}

bool IsPointwise(const Conv& c) {
  return c.k_h == 1 && c.k_w == 1 && c.stride_h == 1 && c.stride_w == 1 && c.pad_top == 0 && c.pad_left == 0 &&
         c.out_h == c.in_h && c.out_w == c.in_w;
}

int g_threads = 1;
// The pool threads in use now: g_threads, or fewer while another thread of the process
// (train-student's shard decoder) is running (see JsComputeThreads).
int g_threads_now = 1;

// Convolutions run in blocks of whole images, each small enough that its patch matrix stays in
// the core's cache (~1 MB) between im2col and the product. Every pool thread takes blocks t,
// t + T, t + 2T, ... with its own scratch and a single-threaded product: no patch matrix ever goes
// out to memory and the threads never wait on each other. Blocks are whole images so that col2im
// of different threads never touches the same image; the filter gradient is summed per thread and
// the partial sums added in thread order, so results do not depend on timing.
struct Blocks {
  int64_t images_per_block, count, rows_per_image;
};

Blocks ImageBlocks(const Conv& c) {
  const int64_t rows_per_image = c.out_h * c.out_w;
  const int64_t per_image = std::max<int64_t>(1, rows_per_image * c.patch());
  const int64_t images = std::max<int64_t>(1, std::min<int64_t>(c.batch, (256 << 10) / per_image));
  return {images, (c.batch + images - 1) / images, rows_per_image};
}

template <typename F>
void ForBlocks(const Conv& c, F&& body) {
  const Blocks bl = ImageBlocks(c);
  const int parts = static_cast<int>(std::min<int64_t>(g_pool.size(), bl.count));
  std::function<void(int, int)> fn = [&](int part, int count) {
    for (int64_t i = part; i < bl.count; i += count) {
      const int64_t b0 = i * bl.images_per_block;
      const int64_t b1 = std::min(c.batch, b0 + bl.images_per_block);
      body(part, b0 * bl.rows_per_image, b1 * bl.rows_per_image);
    }
  };
  g_pool.Run(parts, fn);
}

void ConvForward(const Conv& c, const float* x, const float* w, float* y) {
  const int64_t k = c.patch();
  if (IsPointwise(c)) {
    ParSgemm(false, false, c.rows(), c.out_c, k, 1.f, x, k, w, c.out_c, 0.f, y, c.out_c);
    return;
  }
  ForBlocks(c, [&](int, int64_t r0, int64_t r1) {
    float* col = Scratch((r1 - r0) * k);
    Im2colRows(c, x, col, r0, r1, r0);
    Sgemm(false, false, r1 - r0, c.out_c, k, 1.f, col, k, w, c.out_c, 0.f, y + r0 * c.out_c, c.out_c);
  });
}

void ConvBackpropInput(const Conv& c, const float* dy, const float* w, float* dx) {
  const int64_t k = c.patch();
  if (IsPointwise(c)) {
    ParSgemm(false, true, c.rows(), k, c.out_c, 1.f, dy, c.out_c, w, c.out_c, 0.f, dx, k);
    return;
  }
  const int64_t image = c.in_h * c.in_w * c.in_c;
  ForBlocks(c, [&](int, int64_t r0, int64_t r1) {
    const int64_t b0 = r0 / (c.out_h * c.out_w), b1 = r1 / (c.out_h * c.out_w);
    std::memset(dx + b0 * image, 0, sizeof(float) * (b1 - b0) * image);
    float* col = Scratch((r1 - r0) * k);
    Sgemm(false, true, r1 - r0, k, c.out_c, 1.f, dy + r0 * c.out_c, c.out_c, w, c.out_c, 0.f, col, k);
    Col2imRows(c, col, dx, r0, r1, r0);
  });
}

void ConvBackpropFilter(const Conv& c, const float* x, const float* dy, float* dw) {
  const int64_t k = c.patch();
  if (IsPointwise(c)) {
    ParSgemm(true, false, k, c.out_c, c.rows(), 1.f, x, k, dy, c.out_c, 0.f, dw, c.out_c);
    return;
  }
  const int64_t n = k * c.out_c;
  // Part 0 sums into dw itself, the others into a buffer kept between calls: a fresh one (150 KB for
  // a 3x3x32x64 filter) came from mmap and was page-faulted in on every step.
  static std::vector<float> others;
  if (static_cast<int64_t>(others.size()) < (g_pool.size() - 1) * n) others.resize((g_pool.size() - 1) * n);
  auto partial = [&](int part) { return part == 0 ? dw : others.data() + (part - 1) * n; };
  std::vector<char> used(g_pool.size(), 0);
  ForBlocks(c, [&](int part, int64_t r0, int64_t r1) {
    float* col = Scratch((r1 - r0) * k);
    Im2colRows(c, x, col, r0, r1, r0);
    Sgemm(true, false, k, c.out_c, r1 - r0, 1.f, col, k, dy + r0 * c.out_c, c.out_c, used[part] ? 1.f : 0.f, partial(part), c.out_c);
    used[part] = 1;
  });
  for (int p = 1; p < g_pool.size(); p++) {
    if (!used[p]) continue;
    const float* q = partial(p);
    for (int64_t i = 0; i < n; i++) dw[i] += q[i];
  }
}

// Depthwise: y[b, oh, ow, ci * m + q] = sum_{kh, kw} x[b, ih, iw, ci] * w[kh, kw, ci, q].
void DepthwiseForward(const Conv& c, const float* x, const float* w, float* y) {
  const int64_t m = c.out_c / c.in_c;
  ParallelFor(c.rows(), 64, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
      const int64_t ow = r % c.out_w;
      const int64_t oh = (r / c.out_w) % c.out_h;
      const int64_t b = r / (c.out_w * c.out_h);
      float* out = y + r * c.out_c;
      std::memset(out, 0, sizeof(float) * c.out_c);
      for (int64_t kh = 0; kh < c.k_h; kh++) {
        const int64_t ih = oh * c.stride_h + kh * c.dil_h - c.pad_top;
        if (ih < 0 || ih >= c.in_h) continue;
        for (int64_t kw = 0; kw < c.k_w; kw++) {
          const int64_t iw = ow * c.stride_w + kw * c.dil_w - c.pad_left;
          if (iw < 0 || iw >= c.in_w) continue;
          const float* xi = x + ((b * c.in_h + ih) * c.in_w + iw) * c.in_c;
          const float* wk = w + (kh * c.k_w + kw) * c.out_c;
          if (m == 1) {
            for (int64_t ci = 0; ci < c.in_c; ci++) out[ci] += xi[ci] * wk[ci];
          } else {
            for (int64_t ci = 0; ci < c.in_c; ci++)
              for (int64_t q = 0; q < m; q++) out[ci * m + q] += xi[ci] * wk[ci * m + q];
          }
        }
      }
    }
  });
}

void DepthwiseBackpropInput(const Conv& c, const float* dy, const float* w, float* dx) {
  const int64_t m = c.out_c / c.in_c;
  std::memset(dx, 0, sizeof(float) * c.batch * c.in_h * c.in_w * c.in_c);
  // Parallel over images: an image's output rows only touch that image's input.
  ParallelFor(c.batch, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t r = b0 * c.out_h * c.out_w; r < b1 * c.out_h * c.out_w; r++) {
      const int64_t ow = r % c.out_w;
      const int64_t oh = (r / c.out_w) % c.out_h;
      const int64_t b = r / (c.out_w * c.out_h);
      const float* g = dy + r * c.out_c;
      for (int64_t kh = 0; kh < c.k_h; kh++) {
        const int64_t ih = oh * c.stride_h + kh * c.dil_h - c.pad_top;
        if (ih < 0 || ih >= c.in_h) continue;
        for (int64_t kw = 0; kw < c.k_w; kw++) {
          const int64_t iw = ow * c.stride_w + kw * c.dil_w - c.pad_left;
          if (iw < 0 || iw >= c.in_w) continue;
          float* d = dx + ((b * c.in_h + ih) * c.in_w + iw) * c.in_c;
          const float* wk = w + (kh * c.k_w + kw) * c.out_c;
          if (m == 1) {
            for (int64_t ci = 0; ci < c.in_c; ci++) d[ci] += g[ci] * wk[ci];
          } else {
            for (int64_t ci = 0; ci < c.in_c; ci++) {
              float s = 0.f;
              for (int64_t q = 0; q < m; q++) s += g[ci * m + q] * wk[ci * m + q];
              d[ci] += s;
            }
          }
        }
      }
    }
  });
}

void DepthwiseBackpropFilter(const Conv& c, const float* x, const float* dy, float* dw) {
  const int64_t m = c.out_c / c.in_c;
  const int64_t taps = c.k_h * c.k_w;
  // Each part accumulates its own copy of dW (small: taps * out_c); summed at the end.
  const int parts = static_cast<int>(std::min<int64_t>(g_pool.size(), std::max<int64_t>(1, c.rows() / 64)));
  std::vector<float> partial(static_cast<size_t>(parts) * taps * c.out_c, 0.f);
  std::function<void(int, int)> fn = [&](int part, int count) {
    int64_t lo, hi;
    Range(c.rows(), part, count, &lo, &hi);
    float* acc = partial.data() + static_cast<int64_t>(part) * taps * c.out_c;
    for (int64_t r = lo; r < hi; r++) {
      const int64_t ow = r % c.out_w;
      const int64_t oh = (r / c.out_w) % c.out_h;
      const int64_t b = r / (c.out_w * c.out_h);
      const float* g = dy + r * c.out_c;
      for (int64_t kh = 0; kh < c.k_h; kh++) {
        const int64_t ih = oh * c.stride_h + kh * c.dil_h - c.pad_top;
        if (ih < 0 || ih >= c.in_h) continue;
        for (int64_t kw = 0; kw < c.k_w; kw++) {
          const int64_t iw = ow * c.stride_w + kw * c.dil_w - c.pad_left;
          if (iw < 0 || iw >= c.in_w) continue;
          const float* xi = x + ((b * c.in_h + ih) * c.in_w + iw) * c.in_c;
          float* a = acc + (kh * c.k_w + kw) * c.out_c;
          if (m == 1) {
            for (int64_t ci = 0; ci < c.in_c; ci++) a[ci] += xi[ci] * g[ci];
          } else {
            for (int64_t ci = 0; ci < c.in_c; ci++)
              for (int64_t q = 0; q < m; q++) a[ci * m + q] += xi[ci] * g[ci * m + q];
          }
        }
      }
    }
  };
  g_pool.Run(parts, fn);
  const int64_t n = taps * c.out_c;
  for (int64_t i = 0; i < n; i++) {
    float s = 0.f;
    for (int p = 0; p < parts; p++) s += partial[static_cast<int64_t>(p) * n + i];
    dw[i] = s;
  }
}

// ---- pooling ----------------------------------------------------------------------------------

// Max pooling, NHWC, same dims as MaxPoolBackprop, as tfjs's cpu backend: strict > from -inf (NaN
// never wins).
void MaxPoolForward(const int32_t* d, const float* x, float* y) {
  const int64_t nb = d[0], ih = d[1], iw = d[2], c = d[3], oh = d[4], ow = d[5], fh = d[6], fw = d[7], sh = d[8], sw = d[9], dh = d[10], dw = d[11], pt = d[12], pl = d[13];
  ParallelFor(nb * oh, 4, [&](int64_t lo, int64_t hi) {
    for (int64_t row = lo; row < hi; row++) {
      const int64_t b = row / oh, yo = row % oh;
      const float* xb = x + b * ih * iw * c;
      for (int64_t xo = 0; xo < ow; xo++) {
        float* out = y + ((b * oh + yo) * ow + xo) * c;
        for (int64_t ch = 0; ch < c; ch++) out[ch] = -INFINITY;
        for (int64_t fy = 0; fy < fh; fy += dh) {
          const int64_t iy = yo * sh - pt + fy;
          if (iy < 0 || iy >= ih) continue;
          for (int64_t fx = 0; fx < fw; fx += dw) {
            const int64_t ix = xo * sw - pl + fx;
            if (ix < 0 || ix >= iw) continue;
            MaxInto(out, xb + (iy * iw + ix) * c, c);
          }
        }
      }
    }
  });
}

// dx of max pooling, NHWC; d = [batch, inH, inW, C, outH, outW, fH, fW, sH, sW, dilH, dilW, padTop,
// padLeft]. The first maximum of a window (row-major, strict >, from -inf) takes the gradient, as in
// tfjs; overlapping windows add up. Parallel over images.
void MaxPoolBackprop(const int32_t* d, const float* x, const float* dy, float* dx) {
  const int64_t nb = d[0], ih = d[1], iw = d[2], c = d[3], oh = d[4], ow = d[5], fh = d[6], fw = d[7], sh = d[8], sw = d[9], dh = d[10], dw = d[11], pt = d[12], pl = d[13];
  std::memset(dx, 0, sizeof(float) * nb * ih * iw * c);
  ParallelFor(nb, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> best(c);
    std::vector<int32_t> at(c);
    for (int64_t b = b0; b < b1; b++) {
      const float* xb = x + b * ih * iw * c;
      float* dxb = dx + b * ih * iw * c;
      for (int64_t y = 0; y < oh; y++) {
        for (int64_t xo = 0; xo < ow; xo++) {
          std::fill(best.begin(), best.end(), -INFINITY);
          std::fill(at.begin(), at.end(), -1);
          for (int64_t fy = 0; fy < fh; fy += dh) {
            const int64_t iy = y * sh - pt + fy;
            if (iy < 0 || iy >= ih) continue;
            for (int64_t fx = 0; fx < fw; fx += dw) {
              const int64_t ix = xo * sw - pl + fx;
              if (ix < 0 || ix >= iw) continue;
              const int64_t p = (iy * iw + ix) * c;
              MaxArgInto(best.data(), at.data(), xb + p, static_cast<int32_t>(p), c);
            }
          }
          const float* g = dy + ((b * oh + y) * ow + xo) * c;
          for (int64_t ch = 0; ch < c; ch++)
            if (at[ch] >= 0) dxb[at[ch]] += g[ch];
        }
      }
    }
  });
}

// ---- N-API glue ------------------------------------------------------------------------------

struct Args {
  napi_env env;
  napi_value argv[20];
  size_t argc = 20;
  bool ok = true;
};

bool Fail(napi_env env, const std::string& message) {
  napi_throw_error(env, nullptr, message.c_str());
  return false;
}

bool GetArgs(napi_env env, napi_callback_info info, Args* a, size_t want) {
  a->env = env;
  if (napi_get_cb_info(env, info, &a->argc, a->argv, nullptr, nullptr) != napi_ok) return Fail(env, "bad call");
  if (a->argc < want) return Fail(env, "kdcache native: too few arguments");
  return true;
}

bool Int(Args& a, size_t i, int64_t* out) {
  double v;
  if (napi_get_value_double(a.env, a.argv[i], &v) != napi_ok) return Fail(a.env, "kdcache native: expected a number at argument " + std::to_string(i));
  *out = static_cast<int64_t>(v);
  return true;
}

bool Num(Args& a, size_t i, double* out) {
  if (napi_get_value_double(a.env, a.argv[i], out) != napi_ok) return Fail(a.env, "kdcache native: expected a number at argument " + std::to_string(i));
  return true;
}

bool Bool(Args& a, size_t i, bool* out) {
  if (napi_get_value_bool(a.env, a.argv[i], out) != napi_ok) return Fail(a.env, "kdcache native: expected a boolean at argument " + std::to_string(i));
  return true;
}

// argv[i] as a typed array of type `want` with at least `need` elements: its data (and length);
// throws `message` otherwise. With `nullable`, null or undefined give data = nullptr.
bool Typed(Args& a, size_t i, napi_typedarray_type want, int64_t need, const std::string& message, void** data,
           size_t* length = nullptr, bool nullable = false) {
  if (nullable) {
    napi_valuetype vt;
    napi_typeof(a.env, a.argv[i], &vt);
    if (vt == napi_null || vt == napi_undefined) {
      *data = nullptr;
      return true;
    }
  }
  napi_typedarray_type type;
  size_t len;
  napi_value buffer;
  size_t byte_offset;
  if (napi_get_typedarray_info(a.env, a.argv[i], &type, &len, data, &buffer, &byte_offset) != napi_ok || type != want || static_cast<int64_t>(len) < need) {
    return Fail(a.env, message);
  }
  if (length) *length = len;
  return true;
}

// A Float32Array and an element offset into it, with `need` elements in range.
bool Floats(Args& a, size_t i, size_t off_index, int64_t need, float** out) {
  void* data;
  size_t length;
  if (!Typed(a, i, napi_float32_array, 0, "kdcache native: expected a Float32Array at argument " + std::to_string(i), &data, &length)) return false;
  int64_t off;
  if (!Int(a, off_index, &off)) return false;
  if (off < 0 || need < 0 || off + need > static_cast<int64_t>(length)) {
    return Fail(a.env, "kdcache native: argument " + std::to_string(i) + " is out of range (offset " + std::to_string(off) + ", " + std::to_string(need) + " elements, length " + std::to_string(length) + ")");
  }
  *out = static_cast<float*>(data) + off;
  return true;
}

napi_value Undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

// load(libraryOrEmpty, threads) -> { blas, config, threads }
napi_value JsLoad(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> serial(g_calls);
  Args a;
  if (!GetArgs(env, info, &a, 2)) return nullptr;
  size_t len = 0;
  char name[1024] = {0};
  napi_get_value_string_utf8(env, a.argv[0], name, sizeof(name), &len);
  int64_t threads;
  if (!Int(a, 1, &threads)) return nullptr;
  std::string error;
  if (!LoadBlas(name, &error)) {
    Fail(env, "no optimised BLAS found (" + error + ")");
    return nullptr;
  }
  // The BLAS always runs on the calling thread; every product is cut across the pool (ParSgemm).
  // OpenBLAS's own threading gives results that depend on its thread count (measured on AVX-512:
  // thousands of elements of a 256x256 product differ between 1 and 2 threads), so a run whose
  // count changes while shards load would not repeat itself.
  if (g_set_threads) g_set_threads(1);
  if (threads > 0) {
    g_threads = g_threads_now = static_cast<int>(threads);
    if (g_pool.size() != threads) g_pool.Resize(static_cast<int>(threads));
  }
  napi_value result, v;
  napi_create_object(env, &result);
  napi_create_string_utf8(env, g_blas_name.c_str(), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, result, "blas", v);
  napi_create_string_utf8(env, g_blas_config.c_str(), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, result, "config", v);
  napi_create_int32(env, g_threads, &v);
  napi_set_named_property(env, result, "threads", v);
  napi_create_int32(env, g_pool.size(), &v);
  napi_set_named_property(env, result, "loopThreads", v);
  return result;
}

// sgemm(ta, tb, m, n, k, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc): row-major
// C = alpha * op(A) * op(B) + beta * C.
napi_value JsSgemm(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> serial(g_calls);
  Args a;
  if (!GetArgs(env, info, &a, 16)) return nullptr;
  if (!g_sgemm) return Fail(env, "kdcache native: BLAS not loaded"), nullptr;
  bool ta, tb;
  int64_t m, n, k, lda, ldb, ldc;
  double alpha, beta;
  if (!Bool(a, 0, &ta) || !Bool(a, 1, &tb) || !Int(a, 2, &m) || !Int(a, 3, &n) || !Int(a, 4, &k) || !Num(a, 5, &alpha) ||
      !Int(a, 8, &lda) || !Int(a, 11, &ldb) || !Num(a, 12, &beta) || !Int(a, 15, &ldc)) return nullptr;
  if (m < 0 || n < 0 || k < 0 || m > INT32_MAX || n > INT32_MAX || k > INT32_MAX) return Fail(env, "kdcache native: bad matrix sizes"), nullptr;
  // op(A) is m x k: stored (ta ? k x m : m x k) with leading dimension lda.
  const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
  const int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
  if (lda < std::max<int64_t>(1, a_cols) || ldb < std::max<int64_t>(1, b_cols) || ldc < std::max<int64_t>(1, n)) return Fail(env, "kdcache native: bad leading dimension"), nullptr;
  float *A, *B, *C;
  if (!Floats(a, 6, 7, a_rows == 0 ? 0 : (a_rows - 1) * lda + a_cols, &A) ||
      !Floats(a, 9, 10, b_rows == 0 ? 0 : (b_rows - 1) * ldb + b_cols, &B) ||
      !Floats(a, 13, 14, m == 0 ? 0 : (m - 1) * ldc + n, &C)) return nullptr;
  ParSgemm(ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), static_cast<float>(alpha), A, static_cast<int>(lda), B,
           static_cast<int>(ldb), static_cast<float>(beta), C, static_cast<int>(ldc));
  return Undefined(env);
}

// conv(kind, X, xOff, W, wOff, Y, yOff, dims): dims = Int32Array [batch, inH, inW, inC, outH, outW,
// outC, kH, kW, strideH, strideW, dilH, dilW, padTop, padLeft].
// kind 0: Y = conv(X, W)          1: X = dconv/dX (Y holds dY)    2: W = dconv/dW (Y holds dY)
// kind 3, 4, 5: the same for a depthwise convolution (outC = inC * multiplier).
napi_value JsConv(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> serial(g_calls);
  Args a;
  if (!GetArgs(env, info, &a, 8)) return nullptr;
  int64_t kind;
  if (!Int(a, 0, &kind)) return nullptr;
  if (kind < 0 || kind > 5) return Fail(env, "kdcache native: bad conv kind"), nullptr;
  if (kind <= 2 && !g_sgemm) return Fail(env, "kdcache native: BLAS not loaded"), nullptr;
  void* data;
  if (!Typed(a, 7, napi_int32_array, 15, "kdcache native: conv dims must be an Int32Array of 15", &data)) return nullptr;
  const int32_t* d = static_cast<const int32_t*>(data);
  for (int i = 0; i < 15; i++) {
    if (d[i] < (i >= 13 ? -(1 << 20) : 1)) return Fail(env, "kdcache native: bad conv dims"), nullptr;
  }
  Conv c{d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14]};
  const bool depthwise = kind >= 3;
  if (depthwise && c.out_c % c.in_c != 0) return Fail(env, "kdcache native: depthwise output channels must be a multiple of the input's"), nullptr;
  const int64_t nx = c.batch * c.in_h * c.in_w * c.in_c;
  const int64_t nw = depthwise ? c.k_h * c.k_w * c.out_c : c.patch() * c.out_c;
  const int64_t ny = c.rows() * c.out_c;
  float *X, *W, *Y;
  if (!Floats(a, 1, 2, nx, &X) || !Floats(a, 3, 4, nw, &W) || !Floats(a, 5, 6, ny, &Y)) return nullptr;
  switch (kind) {
    case 0: ConvForward(c, X, W, Y); break;
    case 1: ConvBackpropInput(c, Y, W, X); break;
    case 2: ConvBackpropFilter(c, X, Y, W); break;
    case 3: DepthwiseForward(c, X, W, Y); break;
    case 4: DepthwiseBackpropInput(c, Y, W, X); break;
    case 5: DepthwiseBackpropFilter(c, X, Y, W); break;
  }
  return Undefined(env);
}

// epilogue(Y, yOff, rows, cols, bias | null, biasOff, act, alpha): Y[r, :] += bias, then the
// activation in place. act: 0 linear, 1 relu, 2 relu6, 3 leakyrelu(alpha), 4 sigmoid, 5 elu.
napi_value JsEpilogue(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> serial(g_calls);
  Args a;
  if (!GetArgs(env, info, &a, 8)) return nullptr;
  int64_t rows, cols, act;
  double alpha;
  if (!Int(a, 2, &rows) || !Int(a, 3, &cols) || !Int(a, 6, &act) || !Num(a, 7, &alpha)) return nullptr;
  if (rows < 0 || cols < 0 || act < 0 || act > 5) return Fail(env, "kdcache native: bad epilogue arguments"), nullptr;
  float *Y, *bias = nullptr;
  if (!Floats(a, 0, 1, rows * cols, &Y)) return nullptr;
  napi_valuetype t;
  napi_typeof(env, a.argv[4], &t);
  if (t != napi_null && t != napi_undefined && !Floats(a, 4, 5, cols, &bias)) return nullptr;
  const float al = static_cast<float>(alpha);
  ParallelFor(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, cols)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
      float* y = Y + r * cols;
      if (bias) for (int64_t j = 0; j < cols; j++) y[j] += bias[j];
      switch (act) {
        case 1: for (int64_t j = 0; j < cols; j++) y[j] = y[j] > 0.f ? y[j] : 0.f; break;
        case 2: for (int64_t j = 0; j < cols; j++) y[j] = std::min(6.f, std::max(0.f, y[j])); break;
        case 3: for (int64_t j = 0; j < cols; j++) y[j] = y[j] > 0.f ? y[j] : al * y[j]; break;
        case 4: for (int64_t j = 0; j < cols; j++) y[j] = 1.f / (1.f + std::exp(-y[j])); break;
        case 5: for (int64_t j = 0; j < cols; j++) y[j] = y[j] > 0.f ? y[j] : std::expm1(y[j]); break;
        default: break;
      }
    }
  });
  return Undefined(env);
}

// columnSums(X, xOff, rows, cols, Y, yOff): Y[j] = sum_i X[i, j], accumulated in double. Rows are
// split across threads into fixed ranges and the partial sums added in order: deterministic.
napi_value JsColumnSums(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> serial(g_calls);
  Args a;
  if (!GetArgs(env, info, &a, 6)) return nullptr;
  int64_t rows, cols;
  if (!Int(a, 2, &rows) || !Int(a, 3, &cols)) return nullptr;
  if (rows < 0 || cols < 0) return Fail(env, "kdcache native: bad sizes"), nullptr;
  float *X, *Y;
  if (!Floats(a, 0, 1, rows * cols, &X) || !Floats(a, 4, 5, cols, &Y)) return nullptr;
  const int parts = static_cast<int>(std::min<int64_t>(g_pool.size(), std::max<int64_t>(1, rows * cols / 65536)));
  std::vector<double> partial(static_cast<size_t>(parts) * cols, 0.0);
  std::function<void(int, int)> fn = [&](int part, int count) {
    int64_t lo, hi;
    Range(rows, part, count, &lo, &hi);
    double* acc = partial.data() + static_cast<int64_t>(part) * cols;
    for (int64_t i = lo; i < hi; i++) AccumulateDouble(acc, X + i * cols, cols);
  };
  g_pool.Run(parts, fn);
  for (int64_t j = 0; j < cols; j++) {
    double s = 0;
    for (int p = 0; p < parts; p++) s += partial[static_cast<int64_t>(p) * cols + j];
    Y[j] = static_cast<float>(s);
  }
  return Undefined(env);
}

// adam(heap, offsets Int32Array[7] = w, m, v, g, wOut, mOut, vOut, n, b1, c1, b2, c2, d1, d2, eps, negLr):
// one Adam step, every operation rounded to float32 in tfjs's order (built with -ffp-contract=off,
// so no fused multiply-adds): bit-identical to tfjs's Adam and to src/train/kernels/adam.ts.
napi_value JsAdam(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> serial(g_calls);
  Args a;
  if (!GetArgs(env, info, &a, 11)) return nullptr;
  void* data;
  size_t length;
  if (!Typed(a, 1, napi_int32_array, 7, "kdcache native: adam offsets must be an Int32Array of 7", &data)) return nullptr;
  const int32_t* off = static_cast<const int32_t*>(data);
  int64_t n;
  double p[8];
  if (!Int(a, 2, &n)) return nullptr;
  for (int i = 0; i < 8; i++) if (!Num(a, 3 + i, &p[i])) return nullptr;
  if (!Typed(a, 0, napi_float32_array, 0, "kdcache native: expected a Float32Array at argument 0", &data, &length)) return nullptr;
  float* heap = static_cast<float*>(data);
  for (int i = 0; i < 7; i++) {
    if (off[i] < 0 || n < 0 || static_cast<int64_t>(off[i]) + n > static_cast<int64_t>(length)) return Fail(env, "kdcache native: adam offsets out of range"), nullptr;
  }
  const float b1 = static_cast<float>(p[0]), c1 = static_cast<float>(p[1]), b2 = static_cast<float>(p[2]), c2 = static_cast<float>(p[3]);
  const float d1 = static_cast<float>(p[4]), d2 = static_cast<float>(p[5]), eps = static_cast<float>(p[6]), lr = static_cast<float>(p[7]);
  const float *w = heap + off[0], *m = heap + off[1], *v = heap + off[2], *g = heap + off[3];
  float *wo = heap + off[4], *mo = heap + off[5], *vo = heap + off[6];
  ParallelFor(n, 32768, [&](int64_t lo, int64_t hi) {
    AdamRows(w + lo, m + lo, v + lo, g + lo, wo + lo, mo + lo, vo + lo, hi - lo, b1, c1, b2, c2, d1, d2, eps, lr);
  });
  return Undefined(env);
}

// elementwise(op, X, xOff, n, B, bOff, bn, Y, yOff, alpha): Y = op(X[, B]) over n elements, all cores.
// op 0 add, 1 multiply, 2 subtract: B has bn elements, bn == n or n a multiple of bn (B repeats over
// the leading axes: a bias). op 3 relu, 4 step(alpha), with tfjs's NaN rules (NaN stays NaN).
// op 5: relu's gradient, B * step(X) in one pass (B is dy, same size as X).
napi_value JsElementwise(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> serial(g_calls);
  Args a;
  if (!GetArgs(env, info, &a, 9)) return nullptr;
  int64_t op, n, bn = 0;
  double alpha;
  if (!Int(a, 0, &op) || !Int(a, 3, &n) || !Num(a, 9, &alpha)) return nullptr;
  if (op < 0 || op > 5 || n < 0) return Fail(env, "kdcache native: bad elementwise arguments"), nullptr;
  float *X, *B = nullptr, *Y;
  if (!Floats(a, 1, 2, n, &X) || !Floats(a, 7, 8, n, &Y)) return nullptr;
  if (op <= 2 || op == 5) {
    if (!Int(a, 6, &bn)) return nullptr;
    if (op == 5 && bn != n) return Fail(env, "kdcache native: relu gradient operands differ in size"), nullptr;
    if (bn < 1 || n % bn != 0) return Fail(env, "kdcache native: elementwise operand sizes do not broadcast"), nullptr;
    if (!Floats(a, 4, 5, bn, &B)) return nullptr;
  }
  const float al = static_cast<float>(alpha);
  ParallelFor(n, 65536, [&](int64_t lo, int64_t hi) {
    switch (op) {
      case 0: case 1: case 2: {
        for (int64_t i = lo; i < hi;) {
          const int64_t j0 = i % bn;
          const int64_t len = std::min(hi - i, bn - j0);
          if (op == 0) AddRows(X + i, B + j0, Y + i, len);
          else if (op == 1) MulRows(X + i, B + j0, Y + i, len);
          else SubRows(X + i, B + j0, Y + i, len);
          i += len;
        }
        break;
      }
      case 3: ReluRows(X + lo, Y + lo, hi - lo); break;
      case 4: StepRows(X + lo, Y + lo, hi - lo, al); break;
      case 5: ReluGradRows(X + lo, B + lo, Y + lo, hi - lo); break;
    }
  });
  return Undefined(env);
}

// maxPool(X, xOff, Y, yOff, dims Int32Array[14])
napi_value JsMaxPool(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> serial(g_calls);
  Args a;
  if (!GetArgs(env, info, &a, 5)) return nullptr;
  void* data;
  if (!Typed(a, 4, napi_int32_array, 14, "kdcache native: pool dims must be an Int32Array of 14", &data)) return nullptr;
  const int32_t* d = static_cast<const int32_t*>(data);
  for (int i = 0; i < 12; i++) if (d[i] < 1) return Fail(env, "kdcache native: bad pool dims"), nullptr;
  float *X, *Y;
  if (!Floats(a, 0, 1, static_cast<int64_t>(d[0]) * d[1] * d[2] * d[3], &X) || !Floats(a, 2, 3, static_cast<int64_t>(d[0]) * d[4] * d[5] * d[3], &Y)) return nullptr;
  MaxPoolForward(d, X, Y);
  return Undefined(env);
}

// maxPoolBackprop(X, xOff, DY, dyOff, DX, dxOff, dims Int32Array[14])
napi_value JsMaxPoolBackprop(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> serial(g_calls);
  Args a;
  if (!GetArgs(env, info, &a, 7)) return nullptr;
  void* data;
  if (!Typed(a, 6, napi_int32_array, 14, "kdcache native: pool dims must be an Int32Array of 14", &data)) return nullptr;
  const int32_t* d = static_cast<const int32_t*>(data);
  for (int i = 0; i < 12; i++) {
    if (d[i] < 1) return Fail(env, "kdcache native: bad pool dims"), nullptr;
  }
  const int64_t nx = static_cast<int64_t>(d[0]) * d[1] * d[2] * d[3];
  const int64_t ny = static_cast<int64_t>(d[0]) * d[4] * d[5] * d[3];
  float *X, *DY, *DX;
  if (!Floats(a, 0, 1, nx, &X) || !Floats(a, 2, 3, ny, &DY) || !Floats(a, 4, 5, nx, &DX)) return nullptr;
  MaxPoolBackprop(d, X, DY, DX);
  return Undefined(env);
}

// pixels(X Uint8Array, Y Float32Array, rows, channels, plane, mul Float64Array, add Float64Array):
// Y[r, c, j] = X[r, c, j] * mul[c] + add[c]. Touches no global state, so it is safe on any thread
// (precompute's main thread and train-student's decoding worker) without the BLAS being loaded.
napi_value JsPixels(napi_env env, napi_callback_info info) {
  Args a;
  if (!GetArgs(env, info, &a, 7)) return nullptr;
  int64_t rows, channels, plane;
  if (!Int(a, 2, &rows) || !Int(a, 3, &channels) || !Int(a, 4, &plane)) return nullptr;
  if (rows < 0 || channels < 1 || plane < 0) return Fail(env, "kdcache native: bad pixels arguments"), nullptr;
  const int64_t n = rows * channels * plane;
  void *vx, *vy, *vc[2];
  if (!Typed(a, 0, napi_uint8_array, n, "kdcache native: pixels expects a Uint8Array of rows * channels * plane", &vx) ||
      !Typed(a, 1, napi_float32_array, n, "kdcache native: pixels expects a Float32Array output of rows * channels * plane", &vy)) {
    return nullptr;
  }
  for (int k = 0; k < 2; k++) {
    if (!Typed(a, 5 + k, napi_float64_array, channels, "kdcache native: pixels mul/add must be Float64Arrays of one value per channel", &vc[k])) return nullptr;
  }
  const uint8_t* X = static_cast<const uint8_t*>(vx);
  float* Y = static_cast<float*>(vy);
  const double* coef[2] = {static_cast<const double*>(vc[0]), static_cast<const double*>(vc[1])};
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t c = 0; c < channels; c++) {
      const int64_t base = (r * channels + c) * plane;
      PixelsRow(X + base, Y + base, plane, coef[0][c], coef[1][c]);
    }
  }
  return Undefined(env);
}

// ---- one training step of an MLP student (Dense+ReLU layers, linear logits), KD + CE, Adam ----
// The whole step in one call: tfjs's per-op bookkeeping costs about as much as the arithmetic for a
// small student. Same maths as tf-losses.ts + tfjs's Dense gradients + kernels/adam.ts (float32 Adam
// in tfjs's order); only summation orders differ.
struct MlpScratch {
  std::vector<float> act, grad, dw;
};
MlpScratch g_mlp;

// mlpStep(heap, dims Int32Array [L, d0..dL], offsets Int32Array [6 per layer: W, b, mW, vW, mb, vb],
//         x Float32Array [n*d0], t Float32Array|null [n*dL], y Int32Array|null [n], n,
//         params Float64Array [alpha, T, b1, c1, b2, c2, d1, d2, eps, negLr], stats Float64Array [5])
// -> the batch loss. Weights and moments are updated in place in the heap; stats receives the
// batch's training metrics: [labeled rows, correct, rows with a finite teacher, agreeing, KL sum].
// t (teacher logits) is used by the loss when alpha > 0 and by the metrics whenever given; y
// likewise when alpha < 1 (then every label must be a class) and for accuracy (rows with y >= 0).
napi_value JsMlpStep(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> serial(g_calls);
  Args a;
  if (!GetArgs(env, info, &a, 9)) return nullptr;
  // Null is accepted only for t and y; a null elsewhere fails as the wrong type.
  auto typed = [&](size_t i, napi_typedarray_type want, int64_t need, void** out, size_t* length = nullptr) {
    return Typed(a, i, want, need, "kdcache native: mlpStep argument " + std::to_string(i) + " has the wrong type or size", out, length, i == 4 || i == 5);
  };
  void *vheap, *vdims, *voff, *vx, *vt, *vy, *vp, *vstats;
  if (!typed(1, napi_int32_array, 2, &vdims)) return nullptr;
  const int32_t* dims = static_cast<const int32_t*>(vdims);
  const int L = dims[0];
  if (L < 1 || L > 64) return Fail(env, "kdcache native: mlpStep layer count"), nullptr;
  for (int l = 0; l <= L; l++) if (dims[1 + l] < 1) return Fail(env, "kdcache native: mlpStep layer sizes"), nullptr;
  const int64_t C = dims[1 + L];
  int64_t n;
  if (!Int(a, 6, &n)) return nullptr;
  if (n < 1) return Fail(env, "kdcache native: mlpStep batch size"), nullptr;
  size_t heap_len;
  if (!typed(0, napi_float32_array, 0, &vheap, &heap_len)) return nullptr;
  float* heap = static_cast<float*>(vheap);
  if (!typed(2, napi_int32_array, 6 * L, &voff)) return nullptr;
  const int32_t* off = static_cast<const int32_t*>(voff);
  for (int l = 0; l < L; l++) {
    const int64_t wn = static_cast<int64_t>(dims[1 + l]) * dims[2 + l], bn = dims[2 + l];
    const int64_t sizes[6] = {wn, bn, wn, wn, bn, bn};
    for (int k = 0; k < 6; k++) {
      const int64_t o = off[6 * l + k];
      if (o < 0 || o + sizes[k] > static_cast<int64_t>(heap_len)) return Fail(env, "kdcache native: mlpStep offsets out of range"), nullptr;
    }
  }
  if (!typed(3, napi_float32_array, n * dims[1], &vx) || !typed(4, napi_float32_array, n * C, &vt) || !typed(5, napi_int32_array, n, &vy) ||
      !typed(7, napi_float64_array, 10, &vp) || !typed(8, napi_float64_array, 5, &vstats)) {
    return nullptr;
  }
  const float* x = static_cast<const float*>(vx);
  const float* t = static_cast<const float*>(vt);
  const int32_t* y = static_cast<const int32_t*>(vy);
  const double* p = static_cast<const double*>(vp);
  const double alpha = p[0], T = p[1];
  if ((alpha > 0 && !t) || (alpha < 1 && !y)) return Fail(env, "kdcache native: mlpStep needs teacher logits (alpha > 0) and labels (alpha < 1)"), nullptr;
  for (int64_t i = 0; alpha < 1 && i < n; i++) if (y[i] < 0 || y[i] >= C) return Fail(env, "kdcache native: mlpStep label out of range"), nullptr;

  // Data-parallel: the batch is cut into row blocks, one per part, and each part runs the forward
  // pass, the loss and the backward pass of its rows alone (every step but the weight gradients is
  // row by row). Its weight gradients are partial sums over its rows; they are added in part order
  // just before Adam. Two joins per step instead of one per product (measured: cutting each product
  // in two ran the MLP at 1.62x one thread; joins, duplicated packing and waits cost the rest). Parts
  // come from the pool's size, never its free threads, so results do not depend on when shards load.
  const int parts = std::max(1, std::min<int>(g_pool.size(), static_cast<int>(n / 32)));
  // Activations: layer l's output at act + aoff[l], n x d(l+1) (pre-ReLU values are not kept: a
  // ReLU output is > 0 exactly where its input is).
  std::vector<int64_t> aoff(L + 1, 0);
  for (int l = 0; l < L; l++) aoff[l + 1] = aoff[l] + n * dims[2 + l];
  // dmax: the widest layer; wtotal: every weight and bias, the size of the gradients. Gradients of
  // layer l: weights at gw[l], biases at gb[l], layers in order.
  int64_t dmax = C, wtotal = 0;
  std::vector<int64_t> gw(L), gb(L);
  for (int l = 0; l < L; l++) {
    dmax = std::max<int64_t>(dmax, dims[1 + l]);
    gw[l] = wtotal;
    gb[l] = wtotal + static_cast<int64_t>(dims[1 + l]) * dims[2 + l];
    wtotal = gb[l] + dims[2 + l];
  }
  const int64_t rows_max = (n + parts - 1) / parts;
  MlpScratch& sc = g_mlp;
  sc.act.resize(aoff[L]);
  sc.grad.resize(static_cast<size_t>(parts) * 2 * rows_max * dmax);
  sc.dw.resize(static_cast<size_t>(parts) * wtotal);
  std::vector<double> soft_part(parts, 0.0), hard_part(parts, 0.0);
  std::vector<std::array<double, 5>> stats_part(parts, std::array<double, 5>{});

  std::function<void(int, int)> part_fn = [&](int part, int count) {
    int64_t lo, hi;
    Range(n, part, count, &lo, &hi);
    const int m = static_cast<int>(hi - lo);
    if (m <= 0) return;
    // forward
    const float* in = x + lo * dims[1];
    for (int l = 0; l < L; l++) {
      const int din = dims[1 + l], dout = dims[2 + l];
      float* out = sc.act.data() + aoff[l] + lo * dout;
      const float* b = heap + off[6 * l + 1];
      Sgemm(false, false, m, dout, din, 1.f, in, din, heap + off[6 * l], dout, 0.f, out, dout);
      const bool relu = l + 1 < L;
      for (int64_t r = 0; r < m; r++) {
        float* row = out + r * dout;
        for (int j = 0; j < dout; j++) {
          const float v = row[j] + b[j];
          row[j] = relu && v < 0.f ? 0.f : v;
        }
      }
      in = out;
    }
    const float* z = sc.act.data() + aoff[L - 1];

    // loss and d(loss)/d(logits), in double per row
    float* g = sc.grad.data() + static_cast<size_t>(part) * 2 * rows_max * dmax;
    float* gnext = g + rows_max * dmax;
    // exp(z/T - max) of the student and teacher rows, kept: each probability is then one division
    // (an exp per class and row is most of the loss's and the metrics' time)
    std::vector<double> es(C), et(C);
    {
      double soft_sum = 0, hard_sum = 0;
      for (int64_t r = lo; r < hi; r++) {
        const float* zr = z + r * C;
        float* gr = g + (r - lo) * C;
        for (int64_t j = 0; j < C; j++) gr[j] = 0.f;
        if (alpha > 0) {
          const float* tr = t + r * C;
          double ms = -INFINITY, mt = -INFINITY;
          for (int64_t j = 0; j < C; j++) { ms = std::max(ms, zr[j] / T); mt = std::max(mt, tr[j] / T); }
          double ss = 0, st = 0;
          for (int64_t j = 0; j < C; j++) {
            es[j] = std::exp(zr[j] / T - ms);
            et[j] = std::exp(tr[j] / T - mt);
            ss += es[j];
            st += et[j];
          }
          const double ls = ms + std::log(ss), lt = mt + std::log(st);
          double kl = 0;
          for (int64_t j = 0; j < C; j++) {
            const double pj = et[j] / st;
            if (pj > 0) kl += pj * ((tr[j] / T - lt) - (zr[j] / T - ls));
            gr[j] += static_cast<float>(alpha * T * (es[j] / ss - pj) / n);
          }
          soft_sum += kl;
        }
        if (alpha < 1) {
          double mx = -INFINITY;
          for (int64_t j = 0; j < C; j++) mx = std::max(mx, static_cast<double>(zr[j]));
          double se = 0;
          for (int64_t j = 0; j < C; j++) se += std::exp(zr[j] - mx);
          const double lse = mx + std::log(se);
          hard_sum += lse - zr[y[r]];
          for (int64_t j = 0; j < C; j++) {
            const double sj = std::exp(zr[j] - lse) - (j == y[r] ? 1.0 : 0.0);
            gr[j] += static_cast<float>((1 - alpha) * sj / n);
          }
        }
      }
      soft_part[part] = soft_sum;
      hard_part[part] = hard_sum;
    }
    // The training metrics at T = 1, as metrics.ts computes them (same rules and values up to the
    // last bits of the KL): in JavaScript they took ~4% of a step on one thread.
    {
      std::array<double, 5>& st = stats_part[part];  // labeled, correct, teacher rows, agreeing, KL sum
      for (int64_t r = lo; r < hi; r++) {
        const float* zr = z + r * C;
        const float* tr = t ? t + r * C : nullptr;
        int64_t predicted = 0, top = 0;
        double s_max = -INFINITY, t_max = -INFINITY;
        for (int64_t j = 0; j < C; j++) {
          if (zr[j] > s_max) { s_max = zr[j]; predicted = j; }
          if (tr && tr[j] > t_max) { t_max = tr[j]; top = j; }
        }
        if (y && y[r] >= 0) {
          st[0] += 1;
          if (predicted == y[r]) st[1] += 1;
        }
        if (!tr) continue;
        double sum_t = 0, sum_s = 0;
        for (int64_t j = 0; j < C; j++) {
          et[j] = std::exp(tr[j] - t_max);
          sum_t += et[j];
          sum_s += std::exp(zr[j] - s_max);
        }
        const double lse_t = t_max + std::log(sum_t), lse_s = s_max + std::log(sum_s);
        if (!std::isfinite(lse_t)) continue;
        double kl = 0;
        for (int64_t j = 0; j < C; j++) {
          const double pj = et[j] / sum_t;
          if (pj > 0) kl += pj * ((tr[j] - lse_t) - (zr[j] - lse_s));
        }
        if (!std::isfinite(kl)) continue;
        st[2] += 1;
        st[4] += kl;
        if (predicted == top) st[3] += 1;
      }
    }

    // backward over this part's rows: its share of every gradient, with the old weights
    float* dw = sc.dw.data() + static_cast<size_t>(part) * wtotal;
    for (int l = L - 1; l >= 0; l--) {
      const int din = dims[1 + l], dout = dims[2 + l];
      const float* lin = l == 0 ? x + lo * din : sc.act.data() + aoff[l - 1] + lo * din;
      Sgemm(true, false, din, dout, m, 1.f, lin, din, g, dout, 0.f, dw + gw[l], dout);
      float* db = dw + gb[l];
      for (int j = 0; j < dout; j++) db[j] = 0.f;
      for (int64_t r = 0; r < m; r++) Accumulate(db, g + r * dout, dout);
      if (l > 0) {
        Sgemm(false, true, m, din, dout, 1.f, g, dout, heap + off[6 * l], dout, 0.f, gnext, din);
        const float* h = sc.act.data() + aoff[l - 1] + lo * din;
        for (int64_t i = 0; i < static_cast<int64_t>(m) * din; i++) gnext[i] = h[i] > 0.f ? gnext[i] : 0.f;
        std::swap(g, gnext);
      }
    }
  };
  g_pool.Run(parts, part_fn);
  double soft_sum = 0, hard_sum = 0;
  double* stats = static_cast<double*>(vstats);
  for (int i = 0; i < 5; i++) stats[i] = 0;
  for (int k = 0; k < parts; k++) {
    soft_sum += soft_part[k];
    hard_sum += hard_part[k];
    for (int i = 0; i < 5; i++) stats[i] += stats_part[k][i];
  }
  const double loss = (alpha > 0 ? alpha * T * T * soft_sum / n : 0) + (alpha < 1 ? (1 - alpha) * hard_sum / n : 0);

  // The parts' gradients added in part order (into part 0's), then Adam, in one pass over each range.
  const float b1 = static_cast<float>(p[2]), c1 = static_cast<float>(p[3]), b2 = static_cast<float>(p[4]), c2 = static_cast<float>(p[5]);
  const float d1 = static_cast<float>(p[6]), d2 = static_cast<float>(p[7]), eps = static_cast<float>(p[8]), lr = static_cast<float>(p[9]);
  float* dw = sc.dw.data();
  ParallelFor(wtotal, 1 << 15, [&](int64_t lo, int64_t hi) {
    for (int k = 1; k < parts; k++) Accumulate(dw + lo, dw + static_cast<size_t>(k) * wtotal + lo, hi - lo);
    for (int l = 0; l < L; l++) {
      // this range's share of layer l's weights [gw, gb) and biases [gb, gb + dout): the same heap
      // offsets as the gradient offsets, shifted per array
      const int64_t dout = dims[2 + l];
      const int64_t spans[2][2] = {{gw[l], gb[l]}, {gb[l], gb[l] + dout}};
      for (int k = 0; k < 2; k++) {
        const int64_t a = std::max(lo, spans[k][0]), e = std::min(hi, spans[k][1]);
        if (a >= e) continue;
        const int64_t i = a - spans[k][0];
        const int32_t* o = off + 6 * l;
        float* W = heap + o[k] + i;
        float* mm = heap + o[2 + 2 * k] + i;
        float* vv = heap + o[3 + 2 * k] + i;
        AdamInPlace(W, mm, vv, dw + a, e - a, b1, c1, b2, c2, d1, d2, eps, lr);
      }
    }
  });
  napi_value result;
  napi_create_double(env, loss, &result);
  return result;
}

// computeThreads(n) -> the pool threads now used by the products and loops: n clamped to [1, the
// count given to load]; 0 restores that count. Work is cut into the same parts whatever the count
// (Pool::Run), so results do not change. Parts are split statically and joined, so when a third
// thread takes one of two cores a step can take 4-8x longer (measured with OpenBLAS's threads:
// 1.9 ms steps became 8-17 ms while a shard was decoded). One thread fewer costs far less.
napi_value JsComputeThreads(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> serial(g_calls);
  Args a;
  if (!GetArgs(env, info, &a, 1)) return nullptr;
  int64_t n;
  if (!Int(a, 0, &n)) return nullptr;
  const int want = n <= 0 ? g_threads : static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n, g_threads)));
  if (want != g_threads_now) {
    g_pool.SetActive(want);
    g_threads_now = want;
  }
  napi_value v;
  napi_create_int32(env, g_threads_now, &v);
  return v;
}

// Row indices of a move: every source row below src_rows (>= 0 unless there is a reservoir, where
// -1 means none), and with a reservoir (res_rows >= 0) every slot inside it.
bool RowsInRange(const int32_t* rows, const int32_t* slots, int64_t count, int64_t src_rows, int64_t res_rows) {
  for (int64_t k = 0; k < count; k++) {
    if (rows[k] >= src_rows || (res_rows < 0 && rows[k] < 0) || (res_rows >= 0 && (slots[k] < 0 || slots[k] >= res_rows))) return false;
  }
  return true;
}

// moveRows(dst, dstStart, src, srcRows Int32Array, count, width, res|null, slots Int32Array|null):
// for k in order, when `res` is given: dst row dstStart+k <- res row slots[k], then res row
// slots[k] <- src row srcRows[k] (skipped when srcRows[k] < 0); without `res`:
// dst row dstStart+k <- src row srcRows[k]. Rows are `width` float32s. The shuffle buffer's
// evict-and-insert (res = the buffer) and batch gathers: in JavaScript each row copy costs a
// subarray view, and a random buffer slot is a cache and TLB miss that a prefetch hides here.
napi_value JsMoveRows(napi_env env, napi_callback_info info) {
  Args a;
  if (!GetArgs(env, info, &a, 8)) return nullptr;
  int64_t dst_start, count, width;
  if (!Int(a, 1, &dst_start) || !Int(a, 4, &count) || !Int(a, 5, &width)) return nullptr;
  if (dst_start < 0 || count < 0 || width < 0) return Fail(env, "kdcache native: bad moveRows arguments"), nullptr;
  void *vd, *vs, *vi, *vr, *vslots;
  size_t ns, nr = 0;
  if (!Typed(a, 0, napi_float32_array, (dst_start + count) * width, "kdcache native: moveRows dst is too short", &vd) ||
      !Typed(a, 2, napi_float32_array, 0, "kdcache native: moveRows src must be a Float32Array", &vs, &ns) ||
      !Typed(a, 3, napi_int32_array, count, "kdcache native: moveRows srcRows must be an Int32Array of count", &vi) ||
      !Typed(a, 6, napi_float32_array, 0, "kdcache native: moveRows res must be a Float32Array or null", &vr, &nr, true) ||
      !Typed(a, 7, napi_int32_array, vr ? count : 0, "kdcache native: moveRows slots must be an Int32Array of count", &vslots, nullptr, true)) {
    return nullptr;
  }
  if (width == 0) return Undefined(env);  // tables without teacher logits
  float* dst = static_cast<float*>(vd);
  const float* src = static_cast<const float*>(vs);
  float* res = static_cast<float*>(vr);
  const int32_t* rows = static_cast<const int32_t*>(vi);
  const int32_t* slots = static_cast<const int32_t*>(vslots);
  const int64_t src_rows = static_cast<int64_t>(ns) / width;
  const int64_t res_rows = static_cast<int64_t>(nr) / width;
  if (!RowsInRange(rows, slots, count, src_rows, res ? res_rows : -1)) return Fail(env, "kdcache native: moveRows row index out of range"), nullptr;
  const size_t bytes = sizeof(float) * static_cast<size_t>(width);
  const int64_t ahead = 2;
  for (int64_t k = 0; k < count; k++) {
    if (k + ahead < count) {
      const float* next = res ? res + slots[k + ahead] * width : src + rows[k + ahead] * width;
      for (int64_t j = 0; j < width; j += 16) __builtin_prefetch(next + j);
    }
    float* out = dst + (dst_start + k) * width;
    if (res) {
      float* slot = res + static_cast<int64_t>(slots[k]) * width;
      std::memcpy(out, slot, bytes);
      if (rows[k] >= 0 && src + rows[k] * width != slot) std::memmove(slot, src + static_cast<int64_t>(rows[k]) * width, bytes);
    } else {
      std::memcpy(out, src + static_cast<int64_t>(rows[k]) * width, bytes);
    }
  }
  return Undefined(env);
}

// ---- zstd, for Parquet shard pages (src/shards/parquet-pages.ts) --------------------------------
// libzstd is opened at run time like the BLAS: on Debian it is always installed (apt needs it), and
// the build then needs no zstd headers. Without it the pages are left to parquet-wasm.
using ZstdDecompressFn = size_t (*)(void*, size_t, const void*, size_t);
using ZstdIsErrorFn = unsigned (*)(size_t);
using ZstdErrorNameFn = const char* (*)(size_t);
using ZstdCompressFn = size_t (*)(void*, size_t, const void*, size_t, int);
ZstdDecompressFn g_zstd_decompress = nullptr;
ZstdCompressFn g_zstd_compress = nullptr;
ZstdIsErrorFn g_zstd_is_error = nullptr;
ZstdErrorNameFn g_zstd_error_name = nullptr;

bool OpenZstd(const char* name) {
  void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (!h) return false;
  auto d = reinterpret_cast<ZstdDecompressFn>(dlsym(h, "ZSTD_decompress"));
  auto e = reinterpret_cast<ZstdIsErrorFn>(dlsym(h, "ZSTD_isError"));
  auto n = reinterpret_cast<ZstdErrorNameFn>(dlsym(h, "ZSTD_getErrorName"));
  auto c = reinterpret_cast<ZstdCompressFn>(dlsym(h, "ZSTD_compress"));
  if (!d || !e || !n || !c) {
    dlclose(h);
    return false;
  }
  g_zstd_decompress = d;
  g_zstd_compress = c;
  g_zstd_is_error = e;
  g_zstd_error_name = n;
  return true;
}

// Opened once per process; a function-local static, because the shard loader thread and the main
// thread may both be first.
bool LoadZstd() {
  static const bool loaded = OpenZstd("libzstd.so.1") || OpenZstd("libzstd.so");
  return loaded;
}

// zstdDecompress(src Uint8Array, dst Uint8Array) -> bytes written into dst, or -1 when libzstd
// cannot be loaded. A damaged frame, or one larger than dst, throws.
napi_value JsZstdDecompress(napi_env env, napi_callback_info info) {
  Args a;
  if (!GetArgs(env, info, &a, 2)) return nullptr;
  void *src, *dst;
  size_t src_len, dst_len;
  if (!Typed(a, 0, napi_uint8_array, 0, "kdcache native: zstdDecompress expects a Uint8Array source", &src, &src_len) ||
      !Typed(a, 1, napi_uint8_array, 0, "kdcache native: zstdDecompress expects a Uint8Array destination", &dst, &dst_len)) {
    return nullptr;
  }
  napi_value out;
  if (!LoadZstd()) {
    napi_create_double(env, -1, &out);
    return out;
  }
  const size_t n = g_zstd_decompress(dst, dst_len, src, src_len);
  if (g_zstd_is_error(n)) return Fail(env, std::string("zstd: ") + g_zstd_error_name(n)), nullptr;
  napi_create_double(env, static_cast<double>(n), &out);
  return out;
}

// zstdCompress(src Uint8Array, dst Uint8Array, level) -> bytes written into dst (one frame), or -1
// when libzstd cannot be loaded. dst must hold ZSTD_compressBound(src.length) bytes (the caller
// computes it, src/shards/parquet-write.ts); a smaller one throws.
napi_value JsZstdCompress(napi_env env, napi_callback_info info) {
  Args a;
  if (!GetArgs(env, info, &a, 3)) return nullptr;
  void *src, *dst;
  size_t src_len, dst_len;
  int64_t level;
  if (!Typed(a, 0, napi_uint8_array, 0, "kdcache native: zstdCompress expects a Uint8Array source", &src, &src_len) ||
      !Typed(a, 1, napi_uint8_array, 0, "kdcache native: zstdCompress expects a Uint8Array destination", &dst, &dst_len) ||
      !Int(a, 2, &level)) {
    return nullptr;
  }
  napi_value out;
  if (!LoadZstd()) {
    napi_create_double(env, -1, &out);
    return out;
  }
  const size_t n = g_zstd_compress(dst, dst_len, src, src_len, static_cast<int>(level));
  if (g_zstd_is_error(n)) return Fail(env, std::string("zstd: ") + g_zstd_error_name(n)), nullptr;
  napi_create_double(env, static_cast<double>(n), &out);
  return out;
}

// movePixelRows(dst Float32Array, dstStart, src Uint8Array, srcRows Int32Array, count, width,
//               res Uint8Array|null, slots Int32Array|null, mul Float64Array, add Float64Array)
// moveRows for raw uint8 rows (a decoded shard's pixels, and the shuffle buffer holding them): rows
// become model inputs only as they land in `dst`, y = (float)(x * mul[c] + add[c]) with c the row's
// channel (width / mul.length values each), the same values as pixels(). With res, for k in order:
// dst row dstStart+k <- converted res row slots[k], then res row slots[k] <- src row srcRows[k]
// (bytes; skipped when srcRows[k] < 0; src may be res). Without res: dst row <- converted src row.
napi_value JsMovePixelRows(napi_env env, napi_callback_info info) {
  Args a;
  if (!GetArgs(env, info, &a, 10)) return nullptr;
  int64_t dst_start, count, width;
  if (!Int(a, 1, &dst_start) || !Int(a, 4, &count) || !Int(a, 5, &width)) return nullptr;
  if (dst_start < 0 || count < 0 || width < 1) return Fail(env, "kdcache native: bad movePixelRows arguments"), nullptr;
  void *vd, *vs, *vi, *vr, *vslots, *vmul, *vadd;
  size_t ns, nr = 0, channels = 0;
  if (!Typed(a, 0, napi_float32_array, (dst_start + count) * width, "kdcache native: movePixelRows dst is too short", &vd) ||
      !Typed(a, 2, napi_uint8_array, 0, "kdcache native: movePixelRows src must be a Uint8Array", &vs, &ns) ||
      !Typed(a, 3, napi_int32_array, count, "kdcache native: movePixelRows srcRows must be an Int32Array of count", &vi) ||
      !Typed(a, 6, napi_uint8_array, 0, "kdcache native: movePixelRows res must be a Uint8Array or null", &vr, &nr, true) ||
      !Typed(a, 7, napi_int32_array, vr ? count : 0, "kdcache native: movePixelRows slots must be an Int32Array of count", &vslots, nullptr, true) ||
      !Typed(a, 8, napi_float64_array, 1, "kdcache native: movePixelRows mul must be a Float64Array", &vmul, &channels) ||
      !Typed(a, 9, napi_float64_array, static_cast<int64_t>(channels), "kdcache native: movePixelRows add must be as long as mul", &vadd)) {
    return nullptr;
  }
  if (width % static_cast<int64_t>(channels) != 0) return Fail(env, "kdcache native: movePixelRows width is not a multiple of the channels"), nullptr;
  float* dst = static_cast<float*>(vd);
  const uint8_t* src = static_cast<const uint8_t*>(vs);
  uint8_t* res = static_cast<uint8_t*>(vr);
  const int32_t* rows = static_cast<const int32_t*>(vi);
  const int32_t* slots = static_cast<const int32_t*>(vslots);
  const double* mul = static_cast<const double*>(vmul);
  const double* add = static_cast<const double*>(vadd);
  const int64_t src_rows = static_cast<int64_t>(ns) / width;
  const int64_t res_rows = static_cast<int64_t>(nr) / width;
  if (!RowsInRange(rows, slots, count, src_rows, res ? res_rows : -1)) return Fail(env, "kdcache native: movePixelRows row index out of range"), nullptr;
  const int64_t plane = width / static_cast<int64_t>(channels);
  auto convert = [&](float* out, const uint8_t* x) {
    for (size_t c = 0; c < channels; c++) PixelsRow(x + c * plane, out + c * plane, plane, mul[c], add[c]);
  };
  for (int64_t k = 0; k < count; k++) {
    if (k + 2 < count) {
      // two moves ahead: a random row of a buffer far larger than the caches
      const uint8_t* next = res ? res + static_cast<int64_t>(slots[k + 2]) * width : src + static_cast<int64_t>(rows[k + 2]) * width;
      for (int64_t j = 0; j < width; j += 64) __builtin_prefetch(next + j);
    }
    float* out = dst + (dst_start + k) * width;
    if (res) {
      uint8_t* slot = res + static_cast<int64_t>(slots[k]) * width;
      convert(out, slot);
      if (rows[k] >= 0 && src + static_cast<int64_t>(rows[k]) * width != slot) std::memmove(slot, src + static_cast<int64_t>(rows[k]) * width, width);
    } else {
      convert(out, src + static_cast<int64_t>(rows[k]) * width);
    }
  }
  return Undefined(env);
}

napi_value Init(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"load", nullptr, JsLoad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"sgemm", nullptr, JsSgemm, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv", nullptr, JsConv, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"epilogue", nullptr, JsEpilogue, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"maxPoolBackprop", nullptr, JsMaxPoolBackprop, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"columnSums", nullptr, JsColumnSums, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"adam", nullptr, JsAdam, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"elementwise", nullptr, JsElementwise, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"maxPool", nullptr, JsMaxPool, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"pixels", nullptr, JsPixels, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"mlpStep", nullptr, JsMlpStep, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"computeThreads", nullptr, JsComputeThreads, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"moveRows", nullptr, JsMoveRows, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"zstdDecompress", nullptr, JsZstdDecompress, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"zstdCompress", nullptr, JsZstdCompress, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"movePixelRows", nullptr, JsMovePixelRows, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  // Bumped whenever the functions above change: src/util/addon.ts (ADDON_API_VERSION) refuses another version.
  napi_value version;
  napi_create_int32(env, 11, &version);
  napi_set_named_property(env, exports, "apiVersion", version);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
