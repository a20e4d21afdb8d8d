// retake::replay::Reservoir: a bounded, uniform sample of a stream of values (Vitter's
// algorithm R), for percentiles of runs too long to keep every value.
//
// Keeps every value until `capacity` are held; after that the n-th value replaces a random
// held one with probability capacity/n, so the held values stay a uniform sample of all seen.
// Deterministic for a given seed. Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace retake::replay {

class Reservoir {
 public:
  explicit Reservoir(size_t capacity, uint32_t seed = 0x5eed) : capacity_(capacity), rng_(seed) {}

  void add(int64_t value) {
    ++seen_;
    if (values_.size() < capacity_) {
      values_.push_back(value);
      return;
    }
    if (capacity_ == 0) return;
    uint64_t j = std::uniform_int_distribution<uint64_t>(0, seen_ - 1)(rng_);
    if (j < capacity_) values_[j] = value;
  }

  // The held sample (every value while fewer than `capacity` were seen), in no useful order.
  const std::vector<int64_t>& values() const { return values_; }
  // How many values add() was given.
  uint64_t seen() const { return seen_; }

 private:
  size_t capacity_;
  std::minstd_rand rng_;
  std::vector<int64_t> values_;
  uint64_t seen_ = 0;
};

}  // namespace retake::replay
