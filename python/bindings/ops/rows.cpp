// Python bindings of the rows op family (tformer/ops/rows.h), in tformer._core.ops:
// numpy arrays in, the op on the device, new numpy arrays out (ops_bindings.cpp).
#include "../device_args.h"
#include "op_bindings.h"
#include "tformer/ops/rows.h"
#include "tformer/tensor.h"

namespace tformer::bindings {

TFORMER_OP_BINDINGS(rows) {
  o.def("scatter_rows", [](const py::array& dst, int64_t dst_col, const py::array& dst_rows, const py::array& src,
                           int64_t src_col, int64_t cols, const std::string& device, const std::string& dtype) {
    DeviceArgs d = args(device, dtype);
    Tensor tdst = d.copy(dst, "dst");
    Tensor trows = d.put_ids(dst_rows, "dst_rows");
    Tensor tsrc = d.put(src, "src");
    {
      py::gil_scoped_release release;
      ops::scatter_rows(tdst, dst_col, trows, tsrc, src_col, cols);
    }
    return d.get(tdst);
  }, py::arg("dst"), py::arg("dst_col"), py::arg("dst_rows"), py::arg("src"), py::arg("src_col"), py::arg("cols"),
     py::arg("device") = "cpu", py::arg("dtype") = "float32",
     "A copy of dst with dst[dst_rows[r], dst_col:dst_col+cols] = src[r, src_col:src_col+cols] (rows of\n"
     "dst: its first axis; src (rows, width) or (rows, 1, width)): the paged K/V pool's write.");
}

}  // namespace tformer::bindings
