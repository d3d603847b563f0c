// A stand-alone driver of the fused WaveNet kernel, for running it where Python cannot load it: the kernel
// cross-compiled for another architecture (aarch64: NEON) and run under qemu-user by tests/test_fast_arm.py.
//
//     driver IN OUT
//
// IN (written by the test, native byte order): 16 int64 header fields (dtype 0 float32 / 1 float64, format,
// layers, residual, gate, skip, out_channels, kernel, batch, threads, initial_code, levels, mixtures,
// cond_channels, steps, patience), the dilations (int64, layers of them), then the arrays of PwDesc in its order
// in the plan's dtype (emb, conv_w, res_w, res_b, skip_w, skip_b, h1_w, h1_b, h2_w, h2_b, init_states,
// static_bias, and with cond_channels > 0 cond_w, cond_b and the upsampled features up (B, C, steps)), then the
// uniforms u (B, steps). OUT: the codes (B, steps) int64, the logits (steps, B, C) in the dtype, and 4 int64 of
// statistics (threads, split steps, single steps, CPU ns).
#include "../src/pixelwave/fast/wavenet_kernel.cpp"

#include <cstdio>
#include <string>

namespace {

struct Reader {
    FILE* f;
    template <class T> std::vector<T> take(int64_t n) {
        std::vector<T> v(std::max<int64_t>(n, 1));
        if (n > 0 && std::fread(v.data(), sizeof(T), n, f) != (size_t)n) throw std::runtime_error("short input");
        return v;
    }
};

template <class T> int drive(Reader& in, const int64_t* h, const char* out_path) {
    const int64_t format = h[1], L = h[2], R = h[3], G = h[4], S = h[5], C = h[6], k = h[7], B = h[8];
    const int64_t threads = h[9], initial = h[10], levels = h[11], mixtures = h[12], Cm = h[13], steps = h[14];
    const int64_t patience = h[15];
    auto dil = in.take<int64_t>(L);
    auto emb = in.take<T>(levels * R), conv_w = in.take<T>(L * 2 * G * R * k);
    auto res_w = in.take<T>((L - 1) * R * G), res_b = in.take<T>((L - 1) * R);
    auto skip_w = in.take<T>(L * S * G), skip_b = in.take<T>(S);
    auto h1_w = in.take<T>(S * S), h1_b = in.take<T>(S), h2_w = in.take<T>(C * S), h2_b = in.take<T>(C);
    auto init = in.take<T>(B * L * R), sbias = in.take<T>(B * L * 2 * G);
    std::vector<T> cond_w, cond_b, up;
    if (Cm > 0) {
        cond_w = in.take<T>(L * 2 * G * Cm);
        cond_b = in.take<T>(L * 2 * G);
        up = in.take<T>(B * Cm * steps);
    }
    auto u = in.take<T>(B * steps);
    PwDesc d{};
    d.layers = L; d.residual = R; d.gate = G; d.skip = S; d.out_channels = C; d.kernel = k; d.batch = B;
    d.threads = threads; d.initial_code = initial; d.patience = patience; d.dilations = dil.data();
    d.emb = emb.data(); d.conv_w = conv_w.data(); d.res_w = res_w.data(); d.res_b = res_b.data();
    d.skip_w = skip_w.data(); d.skip_b = skip_b.data(); d.h1_w = h1_w.data(); d.h1_b = h1_b.data();
    d.h2_w = h2_w.data(); d.h2_b = h2_b.data(); d.init_states = init.data(); d.static_bias = sbias.data();
    d.cond_channels = Cm; d.cond_w = Cm ? cond_w.data() : nullptr; d.cond_b = Cm ? cond_b.data() : nullptr;
    d.format = format; d.mixtures = mixtures; d.levels = levels;
    void* plan = std::is_same_v<T, float> ? pw_wn_create_f32(&d) : pw_wn_create_f64(&d);
    if (!plan) throw std::runtime_error("plan not created");
    std::vector<int64_t> codes(B * steps);
    std::vector<T> logits(steps * B * C);
    RunArgs a{};
    a.t0 = 0; a.n = steps; a.up = Cm ? up.data() : nullptr; a.up_b = Cm * steps; a.up_c = steps;
    a.u = u.data(); a.ldu = steps; a.temperature = 1.0; a.codes = codes.data(); a.ldcodes = steps;
    a.logits_out = logits.data();
    const int rc = std::is_same_v<T, float> ? pw_wn_run_f32(plan, &a) : pw_wn_run_f64(plan, &a);
    int64_t stats[4];
    if (std::is_same_v<T, float>) pw_wn_stats_f32(plan, stats); else pw_wn_stats_f64(plan, stats);
    if (std::is_same_v<T, float>) pw_wn_free_f32(plan); else pw_wn_free_f64(plan);
    if (rc != 0) throw std::runtime_error("run failed");
    FILE* out = std::fopen(out_path, "wb");
    if (!out) throw std::runtime_error("cannot write the output");
    std::fwrite(codes.data(), sizeof(int64_t), codes.size(), out);
    std::fwrite(logits.data(), sizeof(T), logits.size(), out);
    std::fwrite(stats, sizeof(int64_t), 4, out);
    std::fclose(out);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s IN OUT\n", argv[0]);
        return 2;
    }
    try {
        FILE* f = std::fopen(argv[1], "rb");
        if (!f) throw std::runtime_error(std::string("cannot read ") + argv[1]);
        Reader in{f};
        auto h = in.take<int64_t>(16);
        const int rc = h[0] == 0 ? drive<float>(in, h.data(), argv[2]) : drive<double>(in, h.data(), argv[2]);
        std::fclose(f);
        std::printf("%s\n", pw_isa());
        return rc;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "driver: %s\n", e.what());
        return 1;
    }
}
