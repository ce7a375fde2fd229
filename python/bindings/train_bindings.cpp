// _core.TrainGraph: the C++ training step (forward, loss, backward, AdamW) of a Model.
#include <pybind11/stl.h>

#include "numpy_interop.h"
#include "register.h"
#include "tformer/errors.h"
#include "tformer/training.h"

namespace py = pybind11;

namespace tformer::bindings {

namespace {

// A resumed optimizer-state tensor (moment, master weights) into its view in the flat buffers.
void set_state(Tensor& dst, const std::string& name, const py::array& value) {
  Tensor src = tensor_from_numpy(value, DType::f32, "optimizer state '" + name + "'");
  if (src.shape() != dst.shape())
    throw_value_error("optimizer state '", name, "': expected shape ", shape_str(dst.shape()), ", got ",
                      shape_str(src.shape()));
  dst.copy_from(src);
}

}  // namespace

void register_train(py::module_& m) {
  using training::TrainGraph;
  m.def(
      "learning_rate",
      [](const std::string& schedule, int64_t step, double peak_lr, int64_t warmup_steps, int64_t total_steps,
         int64_t d_model) {
        training::ScheduleOptions o;
        o.kind = training::parse_schedule(schedule);
        o.peak_lr = peak_lr;
        o.warmup_steps = warmup_steps;
        o.total_steps = total_steps;
        o.d_model = d_model;
        training::validate(o);
        return training::learning_rate(o, step);
      },
      py::arg("schedule"), py::arg("step"), py::arg("peak_lr"), py::arg("warmup_steps"), py::arg("total_steps"),
      py::arg("d_model"), "The learning rate of `schedule` at 1-based `step` (peak_lr <= 0: the paper's formula).");
  py::class_<TrainGraph>(m, "TrainGraph", "Forward/backward/AdamW over a Model (see tformer.Trainer).")
      .def(py::init([](Transformer& model, const std::vector<std::string>& frozen, int64_t bucket_bytes,
                       const std::string& compute_dtype) {
             const std::set<std::string> frozen_set(frozen.begin(), frozen.end());
             const DType compute = parse_dtype(compute_dtype);
             // Takes the model's weights lock exclusively: never wait for it with the GIL held.
             py::gil_scoped_release release;
             return std::make_unique<TrainGraph>(model, frozen_set, bucket_bytes, compute);
           }),
           py::arg("model"), py::arg("frozen"), py::arg("bucket_bytes") = 4 << 20, py::arg("compute_dtype") = "float32",
           py::keep_alive<1, 2>())
      .def_property_readonly("compute_dtype", [](const TrainGraph& g) { return std::string(dtype_name(g.compute_dtype())); })
      .def(
          "run",
          [](TrainGraph& g, const py::array& src, const std::vector<int32_t>& src_len, const py::array& tgt,
             const std::vector<int32_t>& tgt_len, const py::array& labels, float label_smoothing, float dropout,
             float activation_dropout, uint64_t seed, float grad_scale, const py::object& on_bucket_ready) {
            TokenBatch s{tensor_from_numpy(src, DType::i32, "src_ids"), src_len};
            TokenBatch t{tensor_from_numpy(tgt, DType::i32, "tgt_ids"), tgt_len};
            Tensor lab = tensor_from_numpy(labels, DType::i32, "labels");
            training::StepOptions o;
            o.label_smoothing = label_smoothing;
            o.dropout = dropout;
            o.activation_dropout = activation_dropout;
            o.seed = seed;
            training::LossSum r;
            // The backward runs without the GIL; the callback takes it back, between layers.
            training::BucketReady ready;
            if (!on_bucket_ready.is_none()) {
              ready = [&on_bucket_ready](int64_t bucket) {
                py::gil_scoped_acquire acquire;
                on_bucket_ready(bucket);
              };
            }
            {
              py::gil_scoped_release release;
              r = g.run(s, t, lab, o, grad_scale, ready ? &ready : nullptr);
            }
            return py::make_tuple(r.loss, r.tokens);
          },
          py::arg("src_ids"), py::arg("src_lengths"), py::arg("tgt_ids"), py::arg("tgt_lengths"), py::arg("labels"),
          py::arg("label_smoothing"), py::arg("dropout"), py::arg("activation_dropout"), py::arg("seed"),
          py::arg("grad_scale"), py::arg("on_bucket_ready") = py::none(),
          "Forward (+ backward when grad_scale != 0: gradients += grad_scale * d(loss sum)); returns (loss sum, tokens).\n"
          "on_bucket_ready(i) is called as soon as bucket i of the flat gradient buffer is final.")
      .def(
          "flat_grad",
          [](TrainGraph& g) {
            if (!g.flat_grad().device().is_cpu())
              throw_value_error("flat_grad: the gradients are on ", device_name(g.flat_grad().device()),
                                ": use flat_grad_pointer()");
            return tensor_to_numpy(g.flat_grad());  // a view: the array sees every later step
          },
          "Every gradient in one float32 array (zero-copy view, CPU only), in backward order.")
      .def(
          "flat_grad_pointer",
          [](TrainGraph& g) {
            const Tensor& f = g.flat_grad();
            return py::make_tuple(reinterpret_cast<uintptr_t>(f.raw()), f.numel(), device_name(f.device()));
          },
          "(address, elements, device) of the flat gradient buffer, for device collectives.")
      .def_property_readonly("buckets",
                             [](const TrainGraph& g) {
                               std::vector<std::pair<int64_t, int64_t>> out;
                               for (const auto& b : g.buckets()) out.emplace_back(b.offset, b.size);
                               return out;
                             },
                             "(offset, size) of each bucket in the flat gradient buffer, in backward order.")
      .def("grad_offset", &TrainGraph::grad_offset, py::arg("name"))
      .def("zero_grad", &TrainGraph::zero_grad, "Sets every gradient to zero.")
      .def("grad_norm", &TrainGraph::grad_norm, py::call_guard<py::gil_scoped_release>(), "The L2 norm of all gradients.")
      .def(
          "adamw_step",
          [](TrainGraph& g, double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step,
             float grad_multiplier) {
            ops::AdamWOptions o;
            o.lr = lr;
            o.beta1 = beta1;
            o.beta2 = beta2;
            o.eps = eps;
            o.weight_decay = weight_decay;
            o.step = step;
            py::gil_scoped_release release;
            g.adamw_step(o, grad_multiplier);
          },
          py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("step"),
          py::arg("grad_multiplier"))
      .def_property_readonly("trainable", &TrainGraph::trainable)
      .def("grad", [](TrainGraph& g, const std::string& name) { return tensor_to_numpy(g.grad(name).to(Device{})); },
           py::arg("name"), "A float32 copy of one parameter's gradient.")
      .def("moment", [](TrainGraph& g, const std::string& name, int which) {
        return tensor_to_numpy(g.moment(name, which).to(Device{}));
      }, py::arg("name"), py::arg("which"), "A float32 copy of AdamW's first (which=0) or second (which=1) moment.")
      .def("set_moment", [](TrainGraph& g, const std::string& name, int which, const py::array& value) {
        set_state(g.moment(name, which), name, value);
      }, py::arg("name"), py::arg("which"), py::arg("value"), "Sets an AdamW moment (see moment).")
      .def("master", [](TrainGraph& g, const std::string& name) { return tensor_to_numpy(g.master(name).to(Device{})); },
           py::arg("name"), "The float32 master copy of a parameter (mixed precision only).")
      .def("set_master", [](TrainGraph& g, const std::string& name, const py::array& value) {
        set_state(g.master(name), name, value);
      }, py::arg("name"), py::arg("value"), "Sets the float32 master copy of a parameter (mixed precision only; the model's weights are not changed).");
}

}  // namespace tformer::bindings
