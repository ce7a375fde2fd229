// _core.GenerationOptions and Model.generate (GIL released during the search; the
// streaming callback takes the GIL back for each token).
#include <cmath>

#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include "numpy_interop.h"
#include "register.h"
#include "tformer/decoding.h"
#include "tformer/model.h"

namespace py = pybind11;

namespace tformer::bindings {

namespace {

// CancelToken(timeout=None): None or a number of seconds >= 0. Deadlines past ~31 years
// are no deadline (steady_clock's range would overflow).
std::shared_ptr<CancelToken> make_cancel_token(const py::object& timeout) {
  if (timeout.is_none()) return std::make_shared<CancelToken>();
  const bool number = !py::isinstance<py::bool_>(timeout) &&
                      (py::isinstance<py::int_>(timeout) || py::isinstance<py::float_>(timeout));
  if (!number)
    throw py::type_error("CancelToken timeout must be None or a number of seconds, got " +
                         py::str(py::type::of(timeout).attr("__name__")).cast<std::string>());
  const double seconds = timeout.cast<double>();
  if (!(seconds >= 0.0))
    throw py::value_error("CancelToken timeout must be None or a number of seconds >= 0, got " +
                          py::repr(timeout).cast<std::string>());
  if (seconds > 1e9) return std::make_shared<CancelToken>();
  return std::make_shared<CancelToken>(seconds);
}

void register_cancel_token(py::module_& m) {
  py::class_<CancelToken, std::shared_ptr<CancelToken>>(
      m, "CancelToken",
      "Stops a generate call, or some of its sources, from another thread: cancel(), or a timeout\n"
      "in seconds after which it cancels by itself. Pass it as generate(..., cancel=token) (the\n"
      "whole call) or cancel=[token per source]; checked once per decode step and before encoding.")
      .def(py::init(&make_cancel_token), py::arg("timeout") = py::none())
      .def("cancel", &CancelToken::cancel, "Cancels: the sources holding this token stop at their next step.")
      .def_property_readonly("cancelled", &CancelToken::cancelled,
                             "True once cancel() was called or the timeout passed.")
      .def_property_readonly(
          "remaining", [](const CancelToken& t) -> py::object {
            if (!t.has_deadline()) return py::none();
            return py::float_(std::max(0.0, t.remaining_seconds()));
          },
          "Seconds left before the timeout (0 once passed), or None without one.")
      .def("__repr__", [](const CancelToken& t) {
        return std::string("tformer.CancelToken(cancelled=") + (t.cancelled() ? "True" : "False") + ")";
      });
}

}  // namespace

void register_generate(py::module_& m) {
  register_cancel_token(m);
  using O = GenerationOptions;
  m.attr("MAX_BEAM_SIZE") = kMaxBeamSize;
  py::class_<O>(m, "GenerationOptions", "Options of Model.generate (see tformer.Transformer.generate).")
      .def(py::init<>())
      .def_readwrite("beam_size", &O::beam_size)
      .def_readwrite("max_length", &O::max_length)
      .def_readwrite("min_length", &O::min_length)
      .def_readwrite("length_penalty", &O::length_penalty)
      .def_readwrite("num_hypotheses", &O::num_hypotheses)
      .def_readwrite("early_stopping", &O::early_stopping)
      .def_readwrite("do_sample", &O::do_sample)
      .def_readwrite("sampling_topk", &O::sampling_topk)
      .def_readwrite("sampling_topp", &O::sampling_topp)
      .def_readwrite("sampling_temperature", &O::sampling_temperature)
      .def_readwrite("seed", &O::seed)
      .def_readwrite("sample_ids", &O::sample_ids)
      .def_readwrite("target_prefix", &O::target_prefix)
      .def_readwrite("no_repeat_ngram_size", &O::no_repeat_ngram_size)
      .def_readwrite("repetition_penalty", &O::repetition_penalty)
      .def_readwrite("renormalize_logits", &O::renormalize_logits)
      .def_readwrite("bad_words_ids", &O::bad_words_ids)
      .def_readwrite("forced_bos_token_id", &O::forced_bos_token_id)
      .def_readwrite("forced_eos_token_id", &O::forced_eos_token_id)
      .def_readwrite("eos_token_ids", &O::eos_token_ids)
      .def_readwrite("decoder_start_token_id", &O::decoder_start_token_id)
      .def_readwrite("pad_token_id", &O::pad_token_id)
      .def_readwrite("return_scores", &O::return_scores)
      .def_readwrite("return_attention", &O::return_attention)
      .def("set_cancel",
           [](O& o, const std::vector<std::shared_ptr<CancelToken>>& tokens) {
             o.cancel.assign(tokens.begin(), tokens.end());
           },
           py::arg("tokens"), "One CancelToken per source (in the order of the sources given to generate).")
      .def("set_on_token", [](O& o, py::object fn) {
        if (fn.is_none()) {
          o.on_token = nullptr;
          return;
        }
        // Keep the Python callable alive inside the std::function; call it with the GIL.
        // The last copy of the options may die on a thread without the GIL (the engine's):
        // the callable is released under the GIL.
        auto holder = std::shared_ptr<py::object>(new py::object(fn), [](py::object* f) {
          py::gil_scoped_acquire gil;
          delete f;
        });
        o.on_token = [holder](int64_t source, int32_t token) {
          py::gil_scoped_acquire gil;
          (*holder)(source, token);
        };
      });

  py::class_<GenerationResult>(m, "GenerationResultCore")
      .def_readonly("tokens", &GenerationResult::tokens)
      .def_readonly("scores", &GenerationResult::scores)
      .def_readonly("src_len", &GenerationResult::src_len)
      .def_readonly("cancelled", &GenerationResult::cancelled)
      .def_property_readonly("attention", [](const GenerationResult& r) {
        py::list out;
        for (const auto& a : r.attention) {
          const int64_t rows = r.src_len ? static_cast<int64_t>(a.size()) / r.src_len : 0;
          py::array_t<float> arr({rows, r.src_len});
          std::copy(a.begin(), a.end(), arr.mutable_data());
          out.append(arr);
        }
        return out;
      });
}

void register_model_generate(py::class_<Transformer>& cls) {
  cls.def(
      "generate",
      [](const Transformer& t, const py::array& ids, const std::vector<int32_t>& lengths, const GenerationOptions& o) {
        TokenBatch src;
        src.ids = tensor_from_numpy(ids, DType::i32, "src_ids");
        src.lengths = lengths;
        std::vector<GenerationResult> out;
        {
          py::gil_scoped_release release;
          out = t.generate(src, o);
        }
        return out;
      },
      py::arg("src_ids"), py::arg("src_lengths"), py::arg("options"),
      "Decodes int32 ids padded on the right (see tformer.Transformer.generate); the GIL is released.");
}

}  // namespace tformer::bindings
