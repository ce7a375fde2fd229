// Python bindings of the embedding op family (tformer/ops/embedding.h), in tformer._core.ops:
// numpy arrays in, the op on the device, new numpy arrays out (ops_bindings.cpp).
#include <pybind11/stl.h>

#include <optional>

#include "../device_args.h"
#include "op_bindings.h"
#include "tformer/ops/embedding.h"
#include "tformer/tensor.h"

namespace tformer::bindings {

TFORMER_OP_BINDINGS(embedding) {
  o.def("embedding", [](const py::array& ids, const py::array& table, float scale, const OptArray& positions,
                        const OptArray& position_ids, const std::string& device, const std::string& dtype) {
    DeviceArgs d = args(device, dtype);
    Tensor tt = d.put(table, "table");
    Tensor tid = tensor_from_numpy(ids, DType::i32, "ids");
    if (tt.ndim() != 2) throw_value_error("embedding: table must be 2-D, got ", shape_str(tt.shape()));
    const int32_t* idp = tid.data<int32_t>();
    for (int64_t i = 0; i < tid.numel(); ++i)
      if (idp[i] < 0 || idp[i] >= tt.dim(0))
        throw_value_error("embedding: id ", idp[i], " outside the table [0, ", tt.dim(0), ")");
    std::optional<Tensor> tp, tpid;
    if (positions || position_ids) {
      if (!positions || !position_ids) throw_value_error("embedding: positions and position_ids go together");
      tp = d.put(*positions, "positions");
      Tensor hp = tensor_from_numpy(*position_ids, DType::i32, "position_ids");
      const int32_t* pp = hp.data<int32_t>();
      for (int64_t i = 0; i < hp.numel(); ++i)
        if (pp[i] < 0 || pp[i] >= tp->dim(0))
          throw_value_error("embedding: position id ", pp[i], " outside the table [0, ", tp->dim(0), ")");
      tpid = hp.to(d.device);
    }
    Shape shape = tid.shape();
    shape.push_back(tt.dim(1));
    Tensor out = Tensor::empty(shape, d.dtype, d.device);
    ops::embedding(out, tid.to(d.device), tt, scale, ptr(tpid), ptr(tp));
    return d.get(out);
  }, py::arg("ids"), py::arg("table"), py::arg("scale") = 1.0f, py::arg("positions") = py::none(),
     py::arg("position_ids") = py::none(), py::arg("device") = "cpu", py::arg("dtype") = "float32",
     "embedding(ids, table, scale=1.0, positions=None, position_ids=None)");

  o.def("embedding_backward", [](const py::array& dout, const py::array& ids, int64_t vocab_size, float scale,
                                 const OptArray& position_ids, int64_t num_positions, int32_t skip_id,
                                 const OptArray& dtable, const OptArray& dpositions, const std::string& device,
                                 const std::string& dtype) -> py::object {
    DeviceArgs d = args(device, dtype);
    Tensor tdo = d.put(dout, "dout"), tid = d.put_ids(ids, "ids");
    const int64_t dim = tdo.ndim() ? tdo.dim(-1) : 0;
    Tensor tdt = d.init_or_zeros(dtable, {vocab_size, dim}, "dtable");
    std::optional<Tensor> tpid, tdp;
    if (position_ids) {
      tpid = d.put_ids(*position_ids, "position_ids");
      tdp = d.init_or_zeros(dpositions, {num_positions, dim}, "dpositions");
    }
    {
      py::gil_scoped_release release;
      ops::embedding_backward(&tdt, tdp ? &*tdp : nullptr, tdo, tid, ptr(tpid), scale, skip_id);
    }
    if (!tdp) return d.get(tdt);
    return py::make_tuple(d.get(tdt), d.get(*tdp));
  }, py::arg("dout"), py::arg("ids"), py::arg("vocab_size"), py::arg("scale") = 1.0f,
     py::arg("position_ids") = py::none(), py::arg("num_positions") = 0, py::arg("skip_id") = -1,
     py::arg("dtable") = py::none(), py::arg("dpositions") = py::none(), py::arg("device") = "cpu",
     py::arg("dtype") = "float32",
     "dtable (or (dtable, dpositions) with position_ids) = embedding_backward(dout, ids, vocab_size,\n"
     "scale): scatter-add of scale * dout by id (+ dout by position id); rows with id skip_id skipped.");
}

}  // namespace tformer::bindings
