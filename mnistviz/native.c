/* Fused CPU kernels for the trainer's hand-run backward pass (mnistviz/native.py compiles this file, fastgrad.py
   uses it). Each replaces a run of torch ops that read and write the same maps several times:

   - conv1_tanh_pool_fwd/_grads: a first convolution over a one-channel image (1 -> c channels, k x k, stride 1,
     zero padding), tanh and a 2x2 average pool, as LeNet-5 begins, in one pass per sample row; and the gradients
     of that convolution's weight and bias from the pooled map's gradient.
   - tanh_pool_fwd/_bwd: tanh then a 2x2 average pool of a channels-last map (LeNet-5's second block), and its input
     gradient.

   Layouts: images (n, h, w); weights (c, k, k); pooled and channels-last maps (n, h, w, c); the first block's tanh
   output, kept for the backward pass, planar (n, c, oh, ow). Samples are split between up to MAX_THREADS threads;
   weight gradients are summed per thread, then in thread order, so a result depends only on the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64)));
#define W 32           /* the width an output row is computed at: ow <= W */
#define XW (W + 16)    /* a zero-padded input row: room for the k - 1 <= 15 columns right of a row */
#define MAXH 64        /* padded input height */
#define CB 8           /* output channels computed together (their accumulators stay in registers) */
#define MAXC 64
#define MAXK 16
#define MAX_THREADS 8
#define MAXROW 8192   /* w * c of a map the tanh / pool kernels take */

static inline v16 ld(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }
static inline void st(float *p, v16 v) { memcpy(p, &v, sizeof v); }
static inline v16 splat(float f) { return (v16){f, f, f, f, f, f, f, f, f, f, f, f, f, f, f, f}; }
static inline float hsum(v16 v) { float s = 0; for (int i = 0; i < 16; i++) s += v[i]; return s; }
/* within 1e-6 of tanhf; +-1 for large |v| (exp overflows to inf or underflows to 0) */
static inline float tanh_f(float v) { return 1.0f - 2.0f / (expf(2.0f * v) + 1.0f); }

typedef struct {
    const float *x, *wt, *b, *y, *gp;
    float *yo, *p, *gw, *gb;
    long s0, s1, h, w, c, k, pad;
} job_t;

/* splits samples [0, n) into chunks, one per thread, in jobs[] (copies of *base); returns the thread count */
static long split(const job_t *base, job_t *jobs, long n, long nt) {
    if (nt > MAX_THREADS) nt = MAX_THREADS;
    if (nt > n) nt = n;
    if (nt < 1) nt = 1;
    for (long t = 0; t < nt; t++) {
        jobs[t] = *base;
        jobs[t].s0 = n * t / nt;
        jobs[t].s1 = n * (t + 1) / nt;
    }
    return nt;
}

/* runs fn on each job, one OpenMP thread each: the library links the libgomp torch has loaded already (same
   soname), so these are torch's own worker threads, not a second set competing with them for the cores */
static void run(void *(*fn)(void *), job_t *jobs, long nt) {
#pragma omp parallel for num_threads(nt) schedule(static, 1)
    for (long t = 0; t < nt; t++) fn(&jobs[t]);
}

static void pad_sample(float *xp, const float *x, long h, long w, long pad) {
    memset(xp, 0, (h + 2 * pad) * XW * sizeof(float));
    for (long r = 0; r < h; r++) memcpy(xp + (r + pad) * XW + pad, x + r * w, w * sizeof(float));
}

static int block_ok(long h, long w, long c, long k, long pad) {
    long ph = h + 2 * pad, pw = w + 2 * pad;
    return h > 0 && w > 0 && c > 0 && c <= MAXC && k > 0 && k <= MAXK && pad >= 0 && ph <= MAXH && pw <= XW
           && ph >= k && pw >= k && pw - k + 1 <= W;
}

static void *conv1_fwd_job(void *arg) {
    job_t *j = arg;
    long h = j->h, w = j->w, c = j->c, k = j->k, pad = j->pad;
    long oh = h + 2 * pad - k + 1, ow = w + 2 * pad - k + 1, qh = oh / 2, qw = ow / 2;
    float xp[MAXH * XW], yr[CB][W], prev[CB][W];
    for (long s = j->s0; s < j->s1; s++) {
        pad_sample(xp, j->x + s * h * w, h, w, pad);
        for (long o0 = 0; o0 < c; o0 += CB) {
            long cb = c - o0 < CB ? c - o0 : CB;
            for (long r = 0; r < oh; r++) {
                v16 a0[CB], a1[CB];
                for (long o = 0; o < CB; o++) a0[o] = a1[o] = splat(o < cb ? j->b[o0 + o] : 0.0f);
                for (long a = 0; a < k; a++) {
                    const float *xr = xp + (r + a) * XW;
                    for (long e = 0; e < k; e++) {
                        v16 x0 = ld(xr + e), x1 = ld(xr + e + 16);
                        const float *wp = j->wt + (o0 * k + a) * k + e;
                        for (long o = 0; o < CB; o++)
                            if (o < cb) {
                                v16 wv = splat(wp[o * k * k]);
                                a0[o] += wv * x0;
                                a1[o] += wv * x1;
                            }
                    }
                }
                for (long o = 0; o < cb; o++) {
                    st(yr[o], a0[o]);
                    st(yr[o] + 16, a1[o]);
                    for (long i = 0; i < W; i++) yr[o][i] = tanh_f(yr[o][i]);
                    memcpy(j->yo + ((s * c + o0 + o) * oh + r) * ow, yr[o], ow * sizeof(float));
                }
                if (r & 1) {
                    if (r / 2 < qh) {
                        float *pr = j->p + ((s * qh + r / 2) * qw) * c + o0;
                        for (long q = 0; q < qw; q++)
                            for (long o = 0; o < cb; o++)
                                pr[q * c + o] = 0.25f * (prev[o][2 * q] + prev[o][2 * q + 1]
                                                         + yr[o][2 * q] + yr[o][2 * q + 1]);
                    }
                } else {
                    memcpy(prev, yr, sizeof prev);
                }
            }
        }
    }
    return NULL;
}

/* x (n, h, w), wt (c, k, k), b (c) -> y = tanh(conv) (n, c, oh, ow), p = avgpool2(y) (n, oh/2, ow/2, c).
   Returns -1, having written nothing, for sizes it does not handle. */
int conv1_tanh_pool_fwd(const float *x, const float *wt, const float *b, float *y, float *p,
                        long n, long h, long w, long c, long k, long pad, long threads) {
    if (!block_ok(h, w, c, k, pad)) return -1;
    job_t jobs[MAX_THREADS], j = {.x = x, .wt = wt, .b = b, .yo = y, .p = p, .h = h, .w = w, .c = c, .k = k,
                                  .pad = pad};
    run(conv1_fwd_job, jobs, split(&j, jobs, n, threads));
    return 0;
}

static void *conv1_grads_job(void *arg) {
    job_t *j = arg;
    long h = j->h, w = j->w, c = j->c, k = j->k, pad = j->pad;
    long oh = h + 2 * pad - k + 1, ow = w + 2 * pad - k + 1, qh = oh / 2, qw = ow / 2;
    float xp[MAXH * XW], gz[MAXH * W];
    memset(j->gw, 0, c * k * k * sizeof(float));
    memset(j->gb, 0, c * sizeof(float));
    for (long s = j->s0; s < j->s1; s++) {
        pad_sample(xp, j->x + s * h * w, h, w, pad);
        for (long o = 0; o < c; o++) {
            /* gz: the gradient at the convolution's output, zero beyond ow and below the pooled rows */
            const float *yo = j->y + (s * c + o) * oh * ow;
            memset(gz, 0, oh * W * sizeof(float));
            for (long r = 0; r < 2 * qh; r++) {
                const float *gr = j->gp + ((s * qh + r / 2) * qw) * c + o;
                const float *yr = yo + r * ow;
                float *zr = gz + r * W;
                for (long q = 0; q < qw; q++) zr[2 * q] = zr[2 * q + 1] = 0.25f * gr[q * c];
                for (long i = 0; i < 2 * qw; i++) zr[i] *= 1.0f - yr[i] * yr[i];
            }
            v16 sb = splat(0.0f);
            for (long r = 0; r < oh; r++) sb += ld(gz + r * W) + ld(gz + r * W + 16);
            j->gb[o] += hsum(sb);
            for (long a = 0; a < k; a++) {
                v16 acc[MAXK];
                for (long e = 0; e < k; e++) acc[e] = splat(0.0f);
                for (long r = 0; r < oh; r++) {
                    v16 g0 = ld(gz + r * W), g1 = ld(gz + r * W + 16);
                    const float *xr = xp + (r + a) * XW;
                    for (long e = 0; e < k; e++) acc[e] += g0 * ld(xr + e) + g1 * ld(xr + e + 16);
                }
                for (long e = 0; e < k; e++) j->gw[(o * k + a) * k + e] += hsum(acc[e]);
            }
        }
    }
    return NULL;
}

/* the gradients of conv1_tanh_pool_fwd's weight and bias, given its input x, its y and gp, the gradient of its p */
int conv1_tanh_pool_grads(const float *x, const float *y, const float *gp, float *gw, float *gb,
                          long n, long h, long w, long c, long k, long pad, long threads) {
    if (!block_ok(h, w, c, k, pad)) return -1;
    job_t j = {.x = x, .y = y, .gp = gp, .h = h, .w = w, .c = c, .k = k, .pad = pad}, jobs[MAX_THREADS];
    long nt = split(&j, jobs, n, threads), nw = c * k * k;
    float *part = malloc(nt * (nw + c) * sizeof(float));  /* each thread sums into its own part */
    if (!part) return -2;
    for (long t = 0; t < nt; t++) {
        jobs[t].gw = part + t * (nw + c);
        jobs[t].gb = jobs[t].gw + nw;
    }
    run(conv1_grads_job, jobs, nt);
    for (long i = 0; i < nw + c; i++) {  /* the parts summed in thread order: the same result for the same count */
        float s = 0.0f;
        for (long t = 0; t < nt; t++) s += part[t * (nw + c) + i];
        if (i < nw) gw[i] = s;
        else gb[i - nw] = s;
    }
    free(part);
    return 0;
}

/* channels-last z (n, h, w, c) -> y = tanh(z) (same layout), p = avgpool2(y) (n, h/2, w/2, c) */
int tanh_pool_fwd(const float *restrict z, float *restrict y, float *restrict p, long n, long h, long w, long c) {
    long oh = h / 2, ow = w / 2, row = w * c;
    if (row > MAXROW || n < 0) return -1;
    float s[MAXROW];
    for (long b = 0; b < n; b++) {
        const float *zb = z + b * h * row;
        float *yb = y + b * h * row;
        for (long i = 0; i < h * row; i++) yb[i] = tanh_f(zb[i]);
        for (long r = 0; r < oh; r++) {
            const float *y0 = yb + 2 * r * row;
            for (long i = 0; i < row; i++) s[i] = y0[i] + y0[i + row];
            float *o = p + ((b * oh + r) * ow) * c;
            for (long q = 0; q < ow; q++)
                for (long k = 0; k < c; k++) o[q * c + k] = 0.25f * (s[2 * q * c + k] + s[(2 * q + 1) * c + k]);
        }
    }
    return 0;
}

/* the gradient of tanh_pool_fwd's z, given its y and gp, the gradient of its p */
int tanh_pool_bwd(const float *restrict gp, const float *restrict y, float *restrict gz, long n, long h, long w,
                  long c) {
    long oh = h / 2, ow = w / 2, row = w * c;
    if (row > MAXROW || n < 0) return -1;
    float u[MAXROW];
    for (long b = 0; b < n; b++) {
        const float *yb = y + b * h * row;
        float *ob = gz + b * h * row;
        memset(ob, 0, h * row * sizeof(float));  /* rows and columns the pool drops (odd sizes) get no gradient */
        for (long r = 0; r < oh; r++) {
            const float *g = gp + ((b * oh + r) * ow) * c;
            memset(u, 0, row * sizeof(float));
            for (long q = 0; q < ow; q++)
                for (long k = 0; k < c; k++) u[2 * q * c + k] = u[(2 * q + 1) * c + k] = 0.25f * g[q * c + k];
            for (long d = 0; d < 2; d++) {
                const float *yr = yb + (2 * r + d) * row;
                float *o = ob + (2 * r + d) * row;
                for (long i = 0; i < row; i++) o[i] = u[i] * (1.0f - yr[i] * yr[i]);
            }
        }
    }
    return 0;
}
