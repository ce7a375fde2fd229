// Row movement on the host: strided copies and the in-place beam reordering of the
// KV cache (gather_rows), with no temporary buffer beyond one row, and the scatter of decode
// rows' new K/V into their slots of the paged pool (scatter_rows).
#include <cstring>
#include <vector>

#include "cpu_kernels.h"
#include "tformer/errors.h"
#include "tformer/ops/rows.h"

namespace tformer::cpu {

void copy_2d(const Copy2dParams& p) {
  char* dst = static_cast<char*>(p.dst);
  const char* src = static_cast<const char*>(p.src);
#pragma omp parallel for schedule(static) if (p.rows * p.bytes_per_row > (1 << 20))
  for (int64_t r = 0; r < p.rows; ++r)
    std::memcpy(dst + r * p.dst_stride_bytes, src + r * p.src_stride_bytes, static_cast<size_t>(p.bytes_per_row));
}

// Row r <- old row src[r] is a "parallel move": each destination has one source, a source
// may feed several destinations. Rows that no pending move still reads are written first
// (their old content is no longer needed); what remains are cycles, each broken with one
// saved row. Every row is copied at most once, plus one copy per cycle.
void gather_rows(const GatherRowsParams& p) {
  const int64_t n = p.num_rows;
  char* data = static_cast<char*>(p.data);
  auto row = [&](int64_t r) { return data + r * p.row_stride_bytes; };
  const size_t bytes = static_cast<size_t>(p.bytes_per_row);

  static thread_local std::vector<int32_t> readers;  // pending moves that read each row
  static thread_local std::vector<char> done;
  static thread_local std::vector<int64_t> ready;
  static thread_local std::vector<char> saved;
  readers.assign(static_cast<size_t>(n), 0);
  done.assign(static_cast<size_t>(n), 0);
  ready.clear();
  for (int64_t r = 0; r < n; ++r) {
    if (p.src_rows[r] == r) done[r] = 1;
    else ++readers[p.src_rows[r]];
  }
  for (int64_t r = 0; r < n; ++r)
    if (!done[r] && readers[r] == 0) ready.push_back(r);

  int64_t remaining = 0;
  for (int64_t r = 0; r < n; ++r) remaining += !done[r];
  while (remaining > 0) {
    while (!ready.empty()) {
      const int64_t r = ready.back();
      ready.pop_back();
      const int64_t s = p.src_rows[r];
      std::memcpy(row(r), row(s), bytes);
      done[r] = 1;
      --remaining;
      if (--readers[s] == 0 && !done[s]) ready.push_back(s);
    }
    if (remaining == 0) break;
    // Only cycles are left: save one row of a cycle, then unwind it.
    int64_t start = 0;
    while (done[start]) ++start;
    saved.resize(bytes);
    std::memcpy(saved.data(), row(start), bytes);
    int64_t r = start;
    while (p.src_rows[r] != start) {
      const int64_t s = p.src_rows[r];
      std::memcpy(row(r), row(s), bytes);
      done[r] = 1;
      --remaining;
      r = s;
    }
    std::memcpy(row(r), saved.data(), bytes);
    done[r] = 1;
    --remaining;
  }
}

// Checks every destination before the first write: a bad index leaves dst untouched.
void scatter_rows(const ScatterRowsParams& p) {
  for (int64_t r = 0; r < p.rows; ++r)
    if (p.dst_rows[r] < 0 || p.dst_rows[r] >= p.dst_num_rows)
      throw_value_error("scatter_rows: dst_rows[", r, "] = ", p.dst_rows[r], " out of range [0, ", p.dst_num_rows, ")");
  char* dst = static_cast<char*>(p.dst);
  const char* src = static_cast<const char*>(p.src);
  for (int64_t r = 0; r < p.rows; ++r)
    std::memcpy(dst + p.dst_rows[r] * p.dst_stride_bytes, src + r * p.src_stride_bytes,
                static_cast<size_t>(p.bytes_per_row));
}

TFORMER_CPU_OP(copy_2d);
TFORMER_CPU_OP(scatter_rows);
TFORMER_CPU_OP(gather_rows);

}  // namespace tformer::cpu
