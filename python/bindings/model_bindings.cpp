// _core.Model: parameters in and out as numpy arrays; encode and forward release the GIL.
// Every call that may wait for the model's weights lock releases the GIL first: a reader
// holding the lock may need the GIL (a generate_stream callback), so waiting for the lock
// with the GIL held could deadlock.
#include <pybind11/stl.h>

#include <optional>
#include <thread>
#include <tuple>

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

// `with model._core._reading():` holds the shared weights lock across several calls of
// this thread (Transformer.generate's length-sorted chunks see one set of weights).
class WeightsReading {
 public:
  explicit WeightsReading(const Transformer& model) : model_(model) {}
  void enter() {
    if (held_) throw_runtime_error("this weights reading is already entered");
    {
      py::gil_scoped_release release;
      held_.emplace(model_.weights_lock());
    }
    owner_ = std::this_thread::get_id();
  }
  void exit() {
    // The lock's bookkeeping is per thread: only the thread that entered may leave.
    if (held_ && owner_ != std::this_thread::get_id())
      throw_runtime_error("a weights reading must be left by the thread that entered it");
    held_.reset();
  }

 private:
  const Transformer& model_;
  std::optional<WeightsLock::Shared> held_;
  std::thread::id owner_;
};

}  // namespace

void register_model_generate(py::class_<Transformer>& cls);  // generate_bindings.cpp

void register_model(py::module_& m) {
  py::class_<WeightsReading>(m, "_WeightsReading")
      .def("__enter__", [](WeightsReading& r) { r.enter(); })
      .def("__exit__", [](WeightsReading& r, const py::args&) { r.exit(); });
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
             const Tensor v = tensor_from_numpy(value, DType::f32, "parameter '" + name + "'");
             py::gil_scoped_release release;
             t.set_parameter(name, v);
           },
           py::arg("name"), py::arg("value"), "Replaces one parameter (float32 values; quantized on an int8 model).")
      .def("set_parameters",
           [](Transformer& t, const std::vector<std::pair<std::string, py::array>>& values) {
             std::vector<std::pair<std::string, Tensor>> tensors;
             for (const auto& [name, value] : values)
               tensors.emplace_back(name, tensor_from_numpy(value, DType::f32, "parameter '" + name + "'"));
             py::gil_scoped_release release;
             t.set_parameters(tensors);
           },
           py::arg("values"), "Replaces several parameters at once: readers see all of them old or all new.")
      .def("parameter", [](const Transformer& t, const std::string& name) {
        Tensor copy;
        {
          py::gil_scoped_release release;
          copy = t.copy_parameter(name);
        }
        return tensor_to_numpy(copy);
      }, py::arg("name"), "A float32 copy of one parameter.")
      .def("parameters", [](const Transformer& t) {
        std::vector<std::pair<std::string, Tensor>> copies;
        {
          py::gil_scoped_release release;
          WeightsLock::Shared reading(t.weights_lock());  // one consistent set
          for (const std::string& name : t.parameter_names()) copies.emplace_back(name, t.copy_parameter(name));
        }
        py::dict out;
        for (const auto& [name, value] : copies) out[py::str(name)] = tensor_to_numpy(value);
        return out;
      }, "Float32 copies of every parameter by name, all taken under one lock.")
      .def_property_readonly("compute_dtype", [](const Transformer& t) { return std::string(dtype_name(t.compute_dtype())); },
                             "The dtype of activations: float32 for an int8 model, else dtype.")
      .def("is_int8_parameter", &Transformer::is_int8_parameter, py::arg("name"),
           "Whether the model stores this parameter as int8 + per-row scales (int8 models' matrices).")
      .def("int8_parameter_names", [](const Transformer& t) {
        std::vector<std::string> names;
        for (const std::string& name : t.parameter_names())
          if (t.is_int8_parameter(name)) names.push_back(name);
        return names;
      }, "The parameters stored as int8 (empty unless the model is int8).")
      .def("int8_parameters", [](const Transformer& t) {
        std::vector<Transformer::Int8Value> copies;
        {
          py::gil_scoped_release release;
          WeightsLock::Shared reading(t.weights_lock());  // one consistent set
          for (const std::string& name : t.parameter_names())
            if (t.is_int8_parameter(name)) copies.push_back(t.copy_int8_parameter(name));
        }
        py::dict out;
        for (const auto& v : copies) out[py::str(v.name)] = py::make_tuple(tensor_to_numpy(v.q), tensor_to_numpy(v.scale));
        return out;
      }, "{name: (int8 values, float32 row scales)} of every int8 parameter, all taken under one lock.")
      .def("set_int8_parameters",
           [](Transformer& t, const std::vector<std::tuple<std::string, py::array, py::array>>& values) {
             std::vector<Transformer::Int8Value> tensors;
             for (const auto& [name, q, scale] : values) {
               // Taken as they are, never converted: a wider array would wrap around, float64
               // scales would round.
               if (q.dtype().kind() != 'i' || q.dtype().itemsize() != 1)
                 throw_value_error("set_int8_parameters: parameter '", name, "': expected an int8 array, got dtype ",
                                   std::string(py::str(q.dtype())));
               if (scale.dtype().kind() != 'f' || scale.dtype().itemsize() != 4)
                 throw_value_error("set_int8_parameters: parameter '", name, "': expected float32 scales, got dtype ",
                                   std::string(py::str(scale.dtype())));
               tensors.push_back({name, tensor_from_numpy(q, DType::i8, "parameter '" + name + "'"),
                                  tensor_from_numpy(scale, DType::f32, "scales of '" + name + "'")});
             }
             py::gil_scoped_release release;
             t.set_int8_parameters(tensors);
           },
           py::arg("values"),
           "Sets [(name, int8 values, float32 row scales)] as they are (an int8 model only); all or none.")
      .def("_reading", [](const Transformer& t) { return WeightsReading(t); }, py::keep_alive<0, 1>())
      .def("parameter_names", &Transformer::parameter_names, "Every parameter's tformer name.")
      .def("missing_parameters", &Transformer::missing_parameters, py::call_guard<py::gil_scoped_release>(),
           "The parameters never set (a loader checks that none are left).")
      .def("to", [](const Transformer& t, const std::string& device, const std::string& dtype) {
        const Device d = parse_device(device);
        const DType dt = parse_dtype(dtype);
        py::gil_scoped_release release;
        return t.to(d, dt);
      }, py::arg("device"), py::arg("dtype"), "A copy of the model on another device and/or dtype.")
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
