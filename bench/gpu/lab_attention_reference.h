// Float64 reference of masked attention for the GPU lab's check programs
// (check_attention_mma.cpp, check_decode_attention.cpp, check_training.cpp): one query
// row's visible keys, softmax probabilities, log-sum-exp and output, computed from the
// definition on the host float copies of q / k / v (the rounded inputs the kernels read).
// Each program keeps its own layouts, tolerances and what it derives from a row.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace lab {

// Rows of one host operand: head h of row r in batch b starts at
// data[b * batch_stride + r * row_stride + h * head_dim] (data already at head 0's column).
struct HostRows {
  const float* data;
  int64_t batch_stride, row_stride;
  const float* at(int64_t b, int64_t r, int64_t h, int64_t head_dim) const {
    return data + b * batch_stride + r * row_stride + h * head_dim;
  }
};

// The mask and scale of AttentionParams: query batch b reads kv batch b / kv_group, whose
// keys j < kv_lengths[b / kv_group] (all kv_len when null) are visible, and when causal
// only those with j <= i + causal_offset.
struct MaskedAttention {
  int64_t head_dim, kv_len, kv_group = 1;
  const int32_t* kv_lengths = nullptr;  // host, one per kv batch
  bool causal = false;
  int64_t causal_offset = 0;
  double scale;
  // T5's relative position bias (host floats, (span, heads)): score(i, j) +=
  // rel_bias[(rel_bias_origin + j - i) * heads + h]; null: none.
  const float* rel_bias = nullptr;
  int64_t rel_bias_origin = 0, heads = 0;
};

// Softmax of one query row over its visible keys.
struct AttentionRow {
  int64_t kv_batch;           // b / kv_group
  std::vector<int64_t> keys;  // visible key rows, ascending
  std::vector<double> prob;   // softmax probability of each visible key
  double lse = -INFINITY;     // log-sum-exp of the scaled scores; -inf without a visible key
};

inline AttentionRow attention_row(const MaskedAttention& a, const HostRows& q, const HostRows& k, int64_t b,
                                  int64_t h, int64_t i) {
  AttentionRow row;
  row.kv_batch = b / a.kv_group;
  const int64_t visible = a.kv_lengths ? std::min<int64_t>(a.kv_len, a.kv_lengths[row.kv_batch]) : a.kv_len;
  const float* qi = q.at(b, i, h, a.head_dim);
  std::vector<double>& s = row.prob;  // scores, then probabilities in place
  for (int64_t j = 0; j < visible; ++j) {
    if (a.causal && j > i + a.causal_offset) break;
    const float* kj = k.at(row.kv_batch, j, h, a.head_dim);
    double dot = 0;
    for (int64_t d = 0; d < a.head_dim; ++d) dot += double(qi[d]) * kj[d];
    const double bias = a.rel_bias ? double(a.rel_bias[(a.rel_bias_origin + j - i) * a.heads + h]) : 0.0;
    s.push_back(dot * a.scale + bias), row.keys.push_back(j);
  }
  if (s.empty()) return row;
  const double mx = *std::max_element(s.begin(), s.end());
  double total = 0;
  for (double& x : s) total += (x = std::exp(x - mx));
  for (double& x : s) x /= total;
  row.lse = mx + std::log(total);
  return row;
}

// The row's output: sum over visible keys of prob * v (zeros without a visible key).
inline std::vector<double> attention_output(const AttentionRow& row, const HostRows& v, int64_t h,
                                            int64_t head_dim) {
  std::vector<double> o(head_dim, 0.0);
  for (size_t n = 0; n < row.keys.size(); ++n) {
    const float* vj = v.at(row.kv_batch, row.keys[n], h, head_dim);
    for (int64_t d = 0; d < head_dim; ++d) o[d] += row.prob[n] * vj[d];
  }
  return o;
}

}  // namespace lab
