// tformer._core.bench: timing entry points whose tensors stay on the device (bench/gpu/).
// tformer._core.ops copies every input to the device and every result back on each call;
// on a GPU those copies would outweigh the kernels being timed.
#include <pybind11/stl.h>

#include <chrono>
#include <optional>
#include <string>

#include "device_args.h"
#include "register.h"
#include "tformer/backends.h"
#include "tformer/train_ops.h"

namespace tformer::bindings {
namespace {

namespace py = pybind11;

// Attention forward (attention_train: out + lse) and backward on inputs uploaded once.
// forward(n) / backward(n) launch the op n times between two device synchronisations and
// return the seconds between them; the caller divides and takes medians.
class AttentionTimer {
 public:
  AttentionTimer(const py::array& q, const py::array& k, const py::array& v, const OptArray& dout,
                 int64_t num_heads, bool causal, const std::string& device, const std::string& dtype)
      : d_(args(device, dtype)) {
    q_ = d_.put(q, "q");
    k_ = d_.put(k, "k");
    v_ = d_.put(v, "v");
    if (q_.ndim() != 3 || k_.ndim() != 3 || v_.ndim() != 3)
      throw_value_error("AttentionTimer: q, k and v must be 3-D (batch, len, heads * head_dim), got ",
                        shape_str(q_.shape()), ", ", shape_str(k_.shape()), ", ", shape_str(v_.shape()));
    if (num_heads < 1) throw_value_error("AttentionTimer: num_heads must be >= 1, got ", num_heads);
    if (dout) {
      dout_ = d_.put(*dout, "dout");
      if (dout_.shape() != q_.shape())
        throw_value_error("AttentionTimer: dout must have q's shape ", shape_str(q_.shape()), ", got ",
                          shape_str(dout_.shape()));
    }
    opt_.heads = num_heads;
    opt_.causal = causal;
    out_ = Tensor::empty(q_.shape(), d_.dtype, d_.device);
    lse_ = Tensor::empty({q_.dim(0), num_heads, q_.dim(1)}, DType::f32, d_.device);
    run_forward();  // shapes, head_dim, dtype and device are checked here, before any timing
    if (dout) {
      dq_ = Tensor::empty(q_.shape(), d_.dtype, d_.device);
      dk_ = Tensor::empty(k_.shape(), d_.dtype, d_.device);
      dv_ = Tensor::empty(v_.shape(), d_.dtype, d_.device);
    }
  }

  double forward(int64_t iters) {
    return timed(iters, "forward", [this] { run_forward(); });
  }

  double backward(int64_t iters) {
    if (!dout_.defined()) throw_value_error("AttentionTimer.backward: the timer was made without dout");
    const double s = timed(iters, "backward", [this] {
      ops::attention_backward({&dq_, 0}, {&dk_, 0}, {&dv_, 0}, {&q_, 0}, {&k_, 0}, {&v_, 0}, out_, dout_, lse_, opt_);
    });
    ran_backward_ = true;
    return s;
  }

  // The last results for the first `rows` sequences, float32 on the host (checks).
  py::dict outputs(int64_t rows) const {
    if (rows < 1 || rows > q_.dim(0))
      throw_value_error("AttentionTimer.outputs: rows must be in [1, ", q_.dim(0), "], got ", rows);
    py::dict res;
    res["out"] = d_.get(out_.slice(0, rows));
    res["lse"] = d_.get(lse_.slice(0, rows));
    if (ran_backward_) {
      res["dq"] = d_.get(dq_.slice(0, rows));
      res["dk"] = d_.get(dk_.slice(0, rows));
      res["dv"] = d_.get(dv_.slice(0, rows));
    }
    return res;
  }

 private:
  void run_forward() { ops::attention_train(out_, {&q_, 0}, {&k_, 0}, {&v_, 0}, opt_, lse_); }

  template <typename F>
  double timed(int64_t iters, const char* what, F&& launch) {
    if (iters < 1) throw_value_error("AttentionTimer.", what, ": iters must be >= 1, got ", iters);
    Backend& backend = backend_for(d_.device);
    py::gil_scoped_release release;
    backend.synchronize(d_.device.index);
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < iters; ++i) launch();
    backend.synchronize(d_.device.index);
    const auto t1 = std::chrono::steady_clock::now();
    return std::chrono::duration<double>(t1 - t0).count();
  }

  DeviceArgs d_;
  ops::AttentionOptions opt_;
  Tensor q_, k_, v_, dout_, out_, lse_, dq_, dk_, dv_;
  bool ran_backward_ = false;
};

}  // namespace

void register_bench(py::module_& m) {
  py::module_ b = m.def_submodule("bench", "Timing entry points that keep their tensors on the device (bench/gpu/).");
  py::class_<AttentionTimer>(b, "AttentionTimer",
                             "AttentionTimer(q, k, v, dout, num_heads, causal=False, device='cpu', dtype='float32'):\n"
                             "q, k, v (and dout, or None for forward only) float32 numpy (batch, len, heads * head_dim),\n"
                             "uploaded once in `dtype`. forward(n) / backward(n): seconds for n launches of\n"
                             "attention_train / attention_backward between two device synchronisations.\n"
                             "outputs(rows): the last out, lse (and dq, dk, dv) of the first rows sequences.")
      .def(py::init<const py::array&, const py::array&, const py::array&, const OptArray&, int64_t, bool,
                    const std::string&, const std::string&>(),
           py::arg("q"), py::arg("k"), py::arg("v"), py::arg("dout"), py::arg("num_heads"), py::arg("causal") = false,
           py::arg("device") = "cpu", py::arg("dtype") = "float32")
      .def("forward", &AttentionTimer::forward, py::arg("iters") = 1)
      .def("backward", &AttentionTimer::backward, py::arg("iters") = 1)
      .def("outputs", &AttentionTimer::outputs, py::arg("rows") = 1);
}

}  // namespace tformer::bindings
