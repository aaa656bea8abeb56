// Exact fp16 / bf16 conversions (the int8 KV scale depends on fp16 round-to-nearest-even).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <immintrin.h>
#include <random>

#include "kvrun/device.hpp"
#include "kvrun/dtype.hpp"

using namespace kvrun;

TEST_CASE("f16 round trip of every half value") {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) {
      CHECK(std::isnan(f16_to_f32(f32_to_f16(f))));
      continue;
    }
    CHECK(f32_to_f16(f) == uint16_t(h));
  }
}

TEST_CASE("f32 -> f16 matches the F16C instruction (round to nearest even) on random floats") {
  std::mt19937 rng(1);
  for (int i = 0; i < 2000000; ++i) {
    uint32_t bits = rng();
    float f;
    std::memcpy(&f, &bits, 4);
    if (std::isnan(f)) continue;
    uint16_t hw = uint16_t(_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0));
    REQUIRE(f32_to_f16(f) == hw);
  }
}

TEST_CASE("bf16 rounding to nearest even") {
  CHECK(f32_to_bf16(1.0f) == 0x3f80);
  CHECK(bf16_to_f32(0x3f80) == 1.0f);
  // 1 + 2^-8 is exactly halfway between two bf16 values: rounds to even (1.0)
  CHECK(f32_to_bf16(1.0f + std::ldexp(1.f, -8)) == 0x3f80);
  CHECK(f32_to_bf16(1.0f + 3 * std::ldexp(1.f, -8)) == 0x3f82);
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST_CASE("byte sizes") {
  CHECK(parse_byte_size("80GB", "t") == 80000000000ull);
  CHECK(parse_byte_size("512MiB", "t") == 512ull * 1024 * 1024);
  CHECK(parse_byte_size("1.5 GiB", "t") == size_t(1.5 * 1024 * 1024 * 1024));
  CHECK(parse_byte_size("0", "t") == 0);
  CHECK_THROWS_AS(parse_byte_size("GB", "t"), Error);
}
