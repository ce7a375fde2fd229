// _core.Model: parameters in and out as numpy arrays; encode and forward release the GIL.
#include <pybind11/stl.h>

#include "numpy_interop.h"
#include "register.h"
#include "tformer/errors.h"
#include "tformer/model.h"

namespace py = pybind11;

namespace tformer::bindings {
namespace {

TokenBatch make_batch(const py::array& ids, const std::vector<int32_t>& lengths, const char* what) {
  TokenBatch b;
  b.ids = tensor_from_numpy(ids, DType::i32, what);
  b.lengths = lengths;
  return b;
}

}  // namespace

void register_model_generate(py::class_<Transformer>& cls);  // generate_bindings.cpp

void register_model(py::module_& m) {
  py::class_<Transformer> cls(m, "Model", "The C++ encoder-decoder model (see tformer.Transformer).");
  register_model_generate(cls);
  cls
      .def(py::init([](const TransformerConfig& config, const std::string& device, const std::string& dtype) {
             return Transformer(config, parse_device(device), parse_dtype(dtype));
           }),
           py::arg("config"), py::arg("device") = "cpu", py::arg("dtype") = "float32")
      .def_property_readonly("device", [](const Transformer& t) { return device_name(t.device()); })
      .def_property_readonly("dtype", [](const Transformer& t) { return std::string(dtype_name(t.dtype())); })
      .def_property_readonly("config", [](const Transformer& t) { return t.config(); })
      .def("set_parameter",
           [](Transformer& t, const std::string& name, const py::array& value) {
             t.set_parameter(name, tensor_from_numpy(value, DType::f32, "parameter '" + name + "'"));
           },
           py::arg("name"), py::arg("value"))
      .def("parameter", [](const Transformer& t, const std::string& name) {
        Tensor p = t.parameter(name);
        return tensor_to_numpy(p.dtype() == DType::f32 ? p : p.to_dtype(DType::f32));
      }, py::arg("name"))
      .def("parameter_names", &Transformer::parameter_names)
      .def("missing_parameters", &Transformer::missing_parameters)
      .def("to", [](const Transformer& t, const std::string& device, const std::string& dtype) {
        const Device d = parse_device(device);
        const DType dt = parse_dtype(dtype);
        py::gil_scoped_release release;
        return t.to(d, dt);
      }, py::arg("device"), py::arg("dtype"))
      .def("encode",
           [](const Transformer& t, const py::array& ids, const std::vector<int32_t>& lengths) {
             TokenBatch src = make_batch(ids, lengths, "src_ids");
             Tensor out;
             {
               py::gil_scoped_release release;
               out = t.encode(src);
               if (out.dtype() != DType::f32) out = out.to_dtype(DType::f32);
               out = out.to(Device{});
             }
             return tensor_to_numpy(out);
           },
           py::arg("src_ids"), py::arg("src_lengths"),
           "Encoder output (batch, src_len, d_model) for int32 ids padded on the right.")
      .def("forward",
           [](const Transformer& t, const py::array& src_ids, const std::vector<int32_t>& src_lengths,
              const py::array& tgt_ids, const std::vector<int32_t>& tgt_lengths) {
             TokenBatch src = make_batch(src_ids, src_lengths, "src_ids");
             TokenBatch tgt = make_batch(tgt_ids, tgt_lengths, "tgt_ids");
             Tensor logits;
             {
               py::gil_scoped_release release;
               logits = t.forward(src, tgt);
             }
             return tensor_to_numpy(logits);
           },
           py::arg("src_ids"), py::arg("src_lengths"), py::arg("tgt_ids"), py::arg("tgt_lengths"),
           "Logits (batch, tgt_len, tgt_vocab) for int32 ids padded on the right.");
}

}  // namespace tformer::bindings
