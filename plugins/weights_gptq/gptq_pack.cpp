// weights.gptq — checking the tensors of a quantized linear and building its packed form.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "gptq.hpp"

namespace kvrun::gptq {

namespace {

void expect(const HostTensor& t, DType dtype, const std::vector<int64_t>& shape, const std::string& why) {
  if (t.dtype != dtype)
    fail(ErrorKind::model, "tensor '" + t.name + "' in " + t.file + " has dtype " + std::string(dtype_name(t.dtype)) +
                               ", expected " + std::string(dtype_name(dtype)) + " (GPTQ, SPECS.md §2)");
  if (t.shape != shape)
    fail(ErrorKind::model, "tensor '" + t.name + "' in " + t.file + " has shape " + shape_string(t.shape) +
                               ", expected " + shape_string(shape) + " (" + why + "); check 'bits' and "
                               "'group_size' in the GPTQ settings, or re-export the checkpoint");
}

float float_at(const HostTensor& t, size_t i) {
  if (!dtype_is_float(t.dtype))
    fail(ErrorKind::model, "tensor '" + t.name + "' in " + t.file + " has dtype " + std::string(dtype_name(t.dtype)) +
                               ", expected a float type");
  return load_f32(t.data, t.dtype, i);
}

}  // namespace

std::optional<Packed> join_packed(const std::vector<Packed>& parts) {
  if (parts.empty()) return std::nullopt;
  const Packed& a = parts[0];
  int64_t N = 0;
  bool bias = false;
  for (const Packed& p : parts) {
    const Layout& l = p.lay;
    if (l.bits != a.lay.bits || l.K != a.lay.K || l.Kp != a.lay.Kp || l.groups != a.lay.groups ||
        l.permuted != a.lay.permuted || p.perm != a.perm || p.unit_group != a.unit_group)
      return std::nullopt;
    N += l.N;
    bias = bias || l.bias;
  }
  Packed j;
  j.lay = a.lay;
  j.lay.N = N;
  j.lay.bias = bias;
  j.perm = a.perm;
  j.unit_group = a.unit_group;
  const int64_t rows = a.lay.words_rows(), G = a.lay.groups;
  j.qweight.resize(size_t(rows * N));
  j.scales.resize(size_t(G * N));
  j.zeros.resize(size_t(G * N));
  if (bias) j.bias.assign(size_t(N), 0.f);
  int64_t n0 = 0;  // the part's first column in the joined form
  for (const Packed& p : parts) {
    const int64_t n = p.lay.N;
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(&j.qweight[size_t(r * N + n0)], &p.qweight[size_t(r * n)], size_t(n) * 4);
    for (int64_t g = 0; g < G; ++g) {
      std::memcpy(&j.scales[size_t(g * N + n0)], &p.scales[size_t(g * n)], size_t(n) * 2);
      std::memcpy(&j.zeros[size_t(g * N + n0)], &p.zeros[size_t(g * n)], size_t(n));
    }
    if (p.lay.bias) std::copy(p.bias.begin(), p.bias.end(), j.bias.begin() + std::ptrdiff_t(n0));
    j.lay.w_max = std::max(j.lay.w_max, p.lay.w_max);
    n0 += n;
  }
  return j;
}

Packed pack_linear(const RawTensors& t, const Settings& s, const LinearSpec& spec) {
  const int bits = s.bits;
  const uint32_t mask = (1u << bits) - 1u;
  const int64_t K = spec.in_features, N = spec.out_features, off = spec.out_offset;
  const int64_t Nt = spec.out_total ? spec.out_total : spec.out_features;
  if (K <= 0 || N <= 0 || off < 0 || off + N > Nt)
    fail(ErrorKind::internal, "weights.gptq: bad LinearSpec for '" + spec.prefix + "' (in " + std::to_string(K) +
                                  ", out " + std::to_string(N) + " at " + std::to_string(off) + " of " +
                                  std::to_string(Nt) + ")");
  const std::string dims = "in_features " + std::to_string(K) + ", out_features " + std::to_string(Nt) + ", " +
                           std::to_string(bits) + "-bit";
  if ((K * bits) % 32 != 0)
    fail(ErrorKind::model, "linear '" + spec.prefix + "': in_features " + std::to_string(K) + " cannot be packed at " +
                               std::to_string(bits) + " bits into int32 rows (K·bits must be a multiple of 32)");
  if ((Nt * bits) % 32 != 0)
    fail(ErrorKind::model, "linear '" + spec.prefix + "': out_features " + std::to_string(Nt) +
                               " cannot hold packed zero points at " + std::to_string(bits) +
                               " bits (N·bits must be a multiple of 32)");
  const int64_t G = s.group_size == -1 ? K : s.group_size;
  const int64_t groups = (K + G - 1) / G;
  const std::string gdesc = dims + ", group size " + std::to_string(s.group_size) + " → " + std::to_string(groups) +
                            " group" + (groups == 1 ? "" : "s");
  expect(t.qweight, DType::i32, {K * bits / 32, Nt}, dims + ": [in_features·bits/32, out_features]");
  expect(t.scales, DType::f16, {groups, Nt}, gdesc + ": [groups, out_features]");
  expect(t.qzeros, DType::i32, {groups, Nt * bits / 32}, gdesc + ": [groups, out_features·bits/32]");
  std::vector<int32_t> gidx(static_cast<size_t>(K));
  if (t.has_g_idx) {
    expect(t.g_idx, DType::i32, {K}, "one group index per input row, in_features " + std::to_string(K));
    std::memcpy(gidx.data(), t.g_idx.data, size_t(K) * 4);
    for (int64_t k = 0; k < K; ++k)
      if (gidx[k] < 0 || gidx[k] >= groups)
        fail(ErrorKind::model, "tensor '" + t.g_idx.name + "' in " + t.g_idx.file + ": g_idx[" + std::to_string(k) +
                                   "] = " + std::to_string(gidx[k]) + " is outside [0, " + std::to_string(groups) +
                                   ") (" + gdesc + ")");
  } else {
    if (s.desc_act)
      fail(ErrorKind::model, "linear '" + spec.prefix + "' has no g_idx tensor, but the GPTQ settings (" + s.sources +
                                 ") say desc_act = true: act-order needs '" + spec.prefix + ".g_idx'");
    for (int64_t k = 0; k < K; ++k) gidx[k] = int32_t(k / G);
  }
  if (t.has_bias) {
    if (t.bias.dtype != DType::f16 && t.bias.dtype != DType::bf16 && t.bias.dtype != DType::f32)
      fail(ErrorKind::model, "tensor '" + t.bias.name + "' in " + t.bias.file + " has dtype " +
                                 std::string(dtype_name(t.bias.dtype)) + ", expected f16 (or another float type)");
    if (t.bias.shape != std::vector<int64_t>{Nt})
      fail(ErrorKind::model, "tensor '" + t.bias.name + "' in " + t.bias.file + " has shape " +
                                 shape_string(t.bias.shape) + ", expected " + shape_string({Nt}) + " (out_features)");
  }

  Packed p;
  Layout& L = p.lay;
  L.bits = bits;
  L.K = K;
  L.N = N;
  L.groups = groups;
  L.bias = t.has_bias;
  const int R = unit_rows(bits), UW = unit_words(bits);
  const auto* qw = static_cast<const uint32_t*>(t.qweight.data);
  const auto* qz = static_cast<const uint32_t*>(t.qzeros.data);
  const auto* sc = static_cast<const uint16_t*>(t.scales.data);

  // zero points, scales and bias of the sliced columns
  const int64_t zstride = Nt * bits / 32;
  p.zeros.resize(size_t(groups * N));
  p.scales.resize(size_t(groups * N));
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t n = 0; n < N; ++n) {
      const uint32_t stored = code_at(qz + g * zstride, 1, bits, off + n);
      p.zeros[size_t(g * N + n)] = uint8_t(s.v2() ? stored : (stored + 1u) & mask);
    }
    std::memcpy(&p.scales[size_t(g * N)], sc + g * Nt + off, size_t(N) * 2);
    for (int64_t n = 0; n < N; ++n) {
      const double z = p.zeros[size_t(g * N + n)];
      L.w_max = std::max(L.w_max, std::fabs(double(f16_to_f32(p.scales[size_t(g * N + n)]))) * std::max(z, double(mask) - z));
    }
  }
  if (t.has_bias) {
    p.bias.resize(size_t(N));
    for (int64_t n = 0; n < N; ++n) p.bias[size_t(n)] = float_at(t.bias, size_t(off + n));
  }

  // Is every unit of R rows inside one group? Then the stored order is kept as it is.
  bool aligned = true;
  for (int64_t u = 0; u < K / R && aligned; ++u)
    for (int j = 1; j < R; ++j)
      if (gidx[size_t(u * R + j)] != gidx[size_t(u * R)]) {
        aligned = false;
        break;
      }
  if (aligned) {
    L.Kp = K;
    L.permuted = false;
    const int64_t wr = K * bits / 32;
    p.qweight.resize(size_t(wr * N));
    for (int64_t r = 0; r < wr; ++r) std::memcpy(&p.qweight[size_t(r * N)], qw + r * Nt + off, size_t(N) * 4);
    p.unit_group.resize(size_t(K / R));
    for (int64_t u = 0; u < K / R; ++u) p.unit_group[size_t(u)] = gidx[size_t(u * R)];
    return p;
  }

  // Sort rows by group (stable), each group padded to whole units.
  std::vector<int64_t> order(static_cast<size_t>(K));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return gidx[size_t(a)] < gidx[size_t(b)]; });
  for (size_t i = 0; i < order.size();) {
    const int32_t g = gidx[size_t(order[i])];
    size_t e = i;
    while (e < order.size() && gidx[size_t(order[e])] == g) p.perm.push_back(int32_t(order[e++]));
    while (p.perm.size() % size_t(R)) p.perm.push_back(-1);
    for (size_t u = p.unit_group.size(); u < p.perm.size() / size_t(R); ++u) p.unit_group.push_back(g);
    i = e;
  }
  L.Kp = int64_t(p.perm.size());
  L.permuted = true;
  p.qweight.assign(size_t(L.units() * UW * N), 0u);
  for (int64_t r = 0; r < L.Kp; ++r) {
    const int32_t k = p.perm[size_t(r)];
    if (k < 0) continue;  // padding rows hold code 0 and meet x = 0
    for (int64_t n = 0; n < N; ++n)
      put_code(p.qweight.data() + n, N, bits, r, code_at(qw + off + n, Nt, bits, k));
  }
  return p;
}

std::vector<double> packed_dequant(const Packed& p) {
  const Layout& L = p.lay;
  const int R = unit_rows(L.bits);
  std::vector<double> W(size_t(L.K * L.N), 0.0);
  for (int64_t r = 0; r < L.Kp; ++r) {
    const int64_t k = L.permuted ? p.perm[size_t(r)] : r;
    if (k < 0) continue;
    const int64_t g = p.unit_group[size_t(r / R)];
    for (int64_t n = 0; n < L.N; ++n) {
      const double q = code_at(p.qweight.data() + n, L.N, L.bits, r);
      const double z = p.zeros[size_t(g * L.N + n)];
      W[size_t(k * L.N + n)] = double(f16_to_f32(p.scales[size_t(g * L.N + n)])) * (q - z);
    }
  }
  return W;
}

// ---- the device arrays ------------------------------------------------------------------------

GptqLinearBase::GptqLinearBase(Device& dev, const Layout& lay) : dev_(dev), lay_(lay) {
  qweight = Buffer<uint32_t>(dev, size_t(lay.words_rows() * lay.N), MemCategory::weights);
  scales = Buffer<uint16_t>(dev, size_t(lay.groups * lay.N), MemCategory::weights);
  zeros = Buffer<uint8_t>(dev, size_t(lay.groups * lay.N), MemCategory::weights);
  unit_group = Buffer<int32_t>(dev, size_t(lay.units()), MemCategory::weights);
  if (lay.permuted) perm = Buffer<int32_t>(dev, size_t(lay.Kp), MemCategory::weights);
  if (lay.bias) bias = Buffer<float>(dev, size_t(lay.N), MemCategory::weights);
}

void GptqLinearBase::upload(const Packed& p) {
  auto same = [](size_t a, size_t b, const char* what) {
    if (a != b) fail(ErrorKind::internal, std::string("weights.gptq: packed ") + what + " does not match its layout");
  };
  same(p.qweight.size(), qweight.size(), "qweight");
  same(p.scales.size(), scales.size(), "scales");
  same(p.zeros.size(), zeros.size(), "zeros");
  same(p.unit_group.size(), unit_group.size(), "unit_group");
  same(p.perm.size(), perm.size(), "perm");
  same(p.bias.size(), bias.size(), "bias");
  qweight.upload(p.qweight.data(), p.qweight.size());
  scales.upload(p.scales.data(), p.scales.size());
  zeros.upload(p.zeros.data(), p.zeros.size());
  unit_group.upload(p.unit_group.data(), p.unit_group.size());
  perm.upload(p.perm.data(), p.perm.size());
  bias.upload(p.bias.data(), p.bias.size());
  check(dev_.queue().wait());
}

size_t GptqLinearBase::device_bytes() const noexcept {
  return qweight.bytes() + scales.bytes() + zeros.bytes() + unit_group.bytes() + perm.bytes() + bias.bytes();
}

}  // namespace kvrun::gptq
